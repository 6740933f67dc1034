//! f32, f16 and bf16 weight matrices on AVX-512 (several rows and tokens per pass): every
//! result bit-for-bit the AVX2 `vec_dot` of its row and token, for row counts that leave
//! every remainder, column counts with 8-element steps and a scalar tail, one token (decode)
//! and prompt sizes that leave partial tiles, on one thread and three; so a prompt's logits are
//! the same bits as its tokens decoded one at a time. Also within a tight bound of the f64 sum.

#![cfg(target_arch = "x86_64")]

mod skip;

use gguf::GgmlType;
use kernels::matmul::{matmul, MatmulScratch, QMatrix};
use kernels::pool::ThreadPool;
use kernels::quant;

struct Rng(u64);
impl Rng {
    fn f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn avx2_dot(ty: GgmlType) -> quant::VecDotFn {
    quant::kernel_variants(ty).into_iter().find(|k| k.isa == "avx2").expect("an AVX2 dot on an AVX-512 CPU").vec_dot
}

#[test]
fn float_matmul_equals_the_avx2_vec_dot_bit_for_bit() {
    if !skip::cpu_has_avx512_vnni() || std::env::var("DAEHWA_KERNELS").is_ok_and(|v| v == "avx2" || v == "scalar") {
        skip::avx512_unused("the AVX-512 float matmul tests");
        return;
    }
    let mut rng = Rng(0x0f16_bf16);
    let pools = [ThreadPool::new(1), ThreadPool::new(3)];
    let mut scratch = MatmulScratch::default();
    let mut checked = 0;
    for ty in [GgmlType::F16, GgmlType::BF16, GgmlType::F32] {
        let dot = avx2_dot(ty);
        for &(n_rows, n_cols) in &[(1, 32), (7, 8), (13, 77), (29, 200), (64, 2048), (11, 2061), (40, 96)] {
            let w: Vec<f32> = (0..n_rows * n_cols).map(|_| rng.f32() * 0.1).collect();
            let rb = quant::row_bytes(ty, n_cols).expect("row bytes");
            let mut data = vec![0u8; n_rows * rb];
            for (src, dst) in w.chunks_exact(n_cols).zip(data.chunks_exact_mut(rb)) {
                quant::quantize_row(ty, src, dst).expect("encode");
            }
            let m = QMatrix::new(ty, &data, n_rows, n_cols).expect("matrix");
            for &n_tokens in &[1, 2, 3, 4, 5, 16, 17, 37] {
                let x: Vec<f32> = (0..n_tokens * n_cols).map(|_| rng.f32()).collect();
                for pool in &pools {
                    let mut out = vec![f32::NAN; n_tokens * n_rows];
                    matmul(pool, &m, &x, n_tokens, &mut out, &mut scratch).expect("matmul");
                    for t in 0..n_tokens {
                        let xb: Vec<u8> = x[t * n_cols..(t + 1) * n_cols].iter().flat_map(|v| v.to_le_bytes()).collect();
                        for r in 0..n_rows {
                            let want = dot(n_cols, &data[r * rb..(r + 1) * rb], &xb);
                            let got = out[t * n_rows + r];
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "{} {n_rows}x{n_cols}, {n_tokens} tokens, {} threads: row {r} token {t}: {got} vs vec_dot {want}",
                                ty.name(),
                                pool.n_threads()
                            );
                            // And close to the exact sum of the stored weights.
                            let mut row = vec![0f32; n_cols];
                            quant::dequantize_row(ty, &data[r * rb..(r + 1) * rb], &mut row).expect("decode");
                            let exact: f64 = row.iter().zip(&x[t * n_cols..]).map(|(&a, &b)| a as f64 * b as f64).sum();
                            let mag: f64 = row.iter().zip(&x[t * n_cols..]).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                            assert!((got as f64 - exact).abs() <= 1e-6 * mag + 1e-30, "{} row {r} token {t}: {got} vs exact {exact}", ty.name());
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 10_000, "{checked}");
}
