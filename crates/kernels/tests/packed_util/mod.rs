//! What the packed-matmul tests (`packed.rs`, `packed_kquants.rs`) share: a seeded generator,
//! quantized matrices, the row-at-a-time reference and the bit-for-bit check of one matrix.
#![allow(dead_code)]

use gguf::GgmlType;
use kernels::matmul::{matmul, MatmulScratch, QMatrix};
use kernels::packed::{matmul_packed, PackedMatrix};
use kernels::pool::ThreadPool;
use kernels::quant;

/// xorshift64*: deterministic test data.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

/// `w` (rows of `n_cols`) quantized to `ty`, row by row.
pub fn quantize_matrix(ty: GgmlType, w: &[f32], n_cols: usize) -> Vec<u8> {
    let rb = quant::row_bytes(ty, n_cols).expect("row bytes");
    let mut data = vec![0u8; w.len() / n_cols * rb];
    for (src, dst) in w.chunks_exact(n_cols).zip(data.chunks_exact_mut(rb)) {
        quant::quantize_row(ty, src, dst).expect("quantize");
    }
    data
}

/// `vec_dot` of every (token, row) with the kernel `quant::kernel` picks (or the scalar one), on
/// activations quantized exactly as matmul quantizes them.
pub fn reference(m: &QMatrix, x: &[f32], n_tokens: usize, scalar: bool) -> Vec<f32> {
    let k = if scalar { quant::kernel_scalar(m.ty) } else { quant::kernel(m.ty) }.expect("kernel");
    let xrb = quant::row_bytes(k.vec_dot_type, m.n_cols).expect("row bytes");
    let mut out = vec![0f32; n_tokens * m.n_rows];
    let mut xq = vec![0u8; xrb];
    for t in 0..n_tokens {
        quant::quantize_row_fast(k.vec_dot_type, &x[t * m.n_cols..(t + 1) * m.n_cols], &mut xq).expect("quantize");
        for r in 0..m.n_rows {
            out[t * m.n_rows + r] = (k.vec_dot)(m.n_cols, m.row(r).expect("row"), &xq);
        }
    }
    out
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// `data` (an `n_rows x n_cols` matrix of `ty`) packed: for 1 to 33 tokens, on every pool, the
/// packed matmul equals `vec_dot` and the unpacked matmul bit for bit.
pub fn check_bytes_bit_for_bit(ty: GgmlType, data: &[u8], n_rows: usize, n_cols: usize, rng: &mut Rng, pools: &[ThreadPool]) {
    let m = QMatrix::new(ty, data, n_rows, n_cols).expect("matrix");
    let p = PackedMatrix::pack(&m).expect("packable");
    assert_eq!((p.ty(), p.n_rows(), p.n_cols()), (ty, n_rows, n_cols));
    for n_tokens in [1, 2, 3, 4, 5, 7, 12, 16, 17, 27, 33] {
        let x = rng.vec(n_tokens * n_cols);
        let want = reference(&m, &x, n_tokens, false);
        for pool in pools {
            let mut out = vec![f32::NAN; n_tokens * n_rows];
            matmul_packed(pool, &p, &x, n_tokens, &mut out, &mut MatmulScratch::default()).expect("matmul");
            assert_eq!(bits(&out), bits(&want), "{ty} {n_rows}x{n_cols}, {n_tokens} tokens, {} threads", pool.n_threads());
            let mut plain = vec![0f32; n_tokens * n_rows];
            matmul(pool, &m, &x, n_tokens, &mut plain, &mut MatmulScratch::default()).expect("matmul");
            assert_eq!(bits(&out), bits(&plain), "packed vs unpacked matmul, {ty}");
        }
        // The scalar reference follows the same float order: the same bits.
        assert_eq!(bits(&want), bits(&reference(&m, &x, n_tokens, true)), "{ty}: SIMD vec_dot vs scalar");
    }
}

/// A random `n_rows x n_cols` matrix quantized to `ty` and packed: for 1 to 33 tokens, on every
/// pool, the packed matmul equals `vec_dot` and the unpacked matmul bit for bit, and stays within
/// `scalar_tol` (relative) of the scalar reference (a different float order, same integers).
pub fn check_packed_bit_for_bit(ty: GgmlType, n_rows: usize, n_cols: usize, rng: &mut Rng, pools: &[ThreadPool], scalar_tol: f32) {
    let data = quantize_matrix(ty, &rng.vec(n_rows * n_cols), n_cols);
    let m = QMatrix::new(ty, &data, n_rows, n_cols).expect("matrix");
    let p = PackedMatrix::pack(&m).expect("packable");
    assert_eq!((p.ty(), p.n_rows(), p.n_cols()), (ty, n_rows, n_cols));
    for n_tokens in [1, 2, 3, 4, 5, 7, 12, 16, 17, 27, 33] {
        let x = rng.vec(n_tokens * n_cols);
        let want = reference(&m, &x, n_tokens, false);
        for pool in pools {
            let mut out = vec![f32::NAN; n_tokens * n_rows];
            matmul_packed(pool, &p, &x, n_tokens, &mut out, &mut MatmulScratch::default()).expect("matmul");
            assert_eq!(bits(&out), bits(&want), "{ty} {n_rows}x{n_cols}, {n_tokens} tokens, {} threads", pool.n_threads());
            let mut plain = vec![0f32; n_tokens * n_rows];
            matmul(pool, &m, &x, n_tokens, &mut plain, &mut MatmulScratch::default()).expect("matmul");
            assert_eq!(bits(&out), bits(&plain), "packed vs unpacked matmul, {ty}");
        }
        let scalar = reference(&m, &x, n_tokens, true);
        if ty == GgmlType::Q4_0 {
            // Every q4_0 path follows the scalar reference's float order (`packed::q4_0`).
            assert_eq!(bits(&want), bits(&scalar), "{ty} {n_rows}x{n_cols}, {n_tokens} tokens: SIMD vs scalar");
        }
        for (a, b) in want.iter().zip(&scalar) {
            assert!((a - b).abs() <= scalar_tol * (1.0 + b.abs()), "{ty}: {a} vs scalar {b}");
        }
    }
}

/// Random bytes for every block, with finite f16 scales (`d`, and `dmin` where the type has one) of either
/// sign: every field's full range, as a file of random weights has.
pub fn random_blocks(ty: GgmlType, n_rows: usize, n_cols: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let rb = quant::row_bytes(ty, n_cols).expect("row bytes");
    let mut data: Vec<u8> = (0..n_rows * rb).map(|_| rng.next() as u8).collect();
    let f16 = |rng: &mut Rng| half::f16::from_f32(rng.f32() * 0.01).to_bits();
    let (size, d_at): (usize, &[usize]) = match ty {
        GgmlType::Q4_K => (144, &[0, 2]),
        GgmlType::Q5_K => (176, &[0, 2]),
        GgmlType::Q6_K => (210, &[208]),
        GgmlType::Q3_K => (110, &[108]),
        GgmlType::Q2_K => (84, &[80, 82]),
        GgmlType::IQ4_XS => (136, &[0]),
        GgmlType::MXFP4 => (17, &[]),
        _ => unreachable!(),
    };
    if ty == GgmlType::MXFP4 {
        // E8M0 exponents around 2^0 (2^-17 .. 2^13): finite products.
        for blk in data.chunks_exact_mut(size) {
            blk[0] = 110 + (rng.next() % 30) as u8;
        }
        return data;
    }
    for blk in data.chunks_exact_mut(size) {
        for &o in d_at {
            blk[o..o + 2].copy_from_slice(&f16(&mut rng).to_le_bytes());
        }
    }
    data
}

/// An `n_rows x n_cols` matrix of `ty`: random floats quantized, or random block bytes for the
/// types daehwa only reads (q2_K, q3_K, iq4_xs, mxfp4: no quantizer).
pub fn some_matrix(ty: GgmlType, n_rows: usize, n_cols: usize, rng: &mut Rng) -> Vec<u8> {
    if matches!(ty, GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::IQ4_XS | GgmlType::MXFP4) {
        random_blocks(ty, n_rows, n_cols, rng.next())
    } else {
        quantize_matrix(ty, &rng.vec(n_rows * n_cols), n_cols)
    }
}

/// `mixed` matrices (type, rows) of `n_cols` columns in one `matmul_packed_many` call for each
/// token count: every output bit-for-bit the row-at-a-time reference.
pub fn check_mixed_call(mixed: &[(GgmlType, usize)], n_cols: usize, token_counts: &[usize], rng: &mut Rng) {
    let datas: Vec<Vec<u8>> = mixed.iter().map(|&(ty, r)| some_matrix(ty, r, n_cols, rng)).collect();
    let packs: Vec<PackedMatrix> = datas
        .iter()
        .zip(mixed)
        .map(|(d, &(ty, r))| PackedMatrix::pack(&QMatrix::new(ty, d, r, n_cols).expect("matrix")).expect("packable"))
        .collect();
    let pool = ThreadPool::new(2);
    let mut scratch = MatmulScratch::default();
    for &n_tokens in token_counts {
        let x = rng.vec(n_tokens * n_cols);
        let mut outs: Vec<Vec<f32>> = mixed.iter().map(|&(_, r)| vec![f32::NAN; n_tokens * r]).collect();
        {
            let mut jobs: Vec<(&PackedMatrix, &mut [f32])> = packs.iter().zip(outs.iter_mut()).map(|(p, o)| (p, &mut o[..])).collect();
            kernels::packed::matmul_packed_many(&pool, &mut jobs, &x, n_tokens, &mut scratch).expect("mixed many");
        }
        for ((p, o), d) in packs.iter().zip(&outs).zip(&datas) {
            let m = QMatrix::new(p.ty(), d, p.n_rows(), n_cols).expect("matrix");
            assert_eq!(bits(o), bits(&reference(&m, &x, n_tokens, false)), "{} in a mixed call, {n_tokens} tokens", p.ty());
        }
    }
}

/// Runs the named tests of this test binary again in a child process with
/// `DAEHWA_KERNELS=level`: all of them must pass there, and none may skip.
pub fn rerun_under(level: &str, names: &[&str]) {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(names)
        .args(["--exact", "--test-threads", "1"])
        .env("DAEHWA_KERNELS", level)
        .output()
        .unwrap_or_else(|e| panic!("run the tests again under DAEHWA_KERNELS={level}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "under DAEHWA_KERNELS={level}:\n{text}");
    let want = format!("test result: ok. {} passed", names.len());
    assert!(text.contains(&want), "all {} tests ran under DAEHWA_KERNELS={level}:\n{text}", names.len());
    assert!(!text.contains("SKIPPED"), "nothing skipped under DAEHWA_KERNELS={level}:\n{text}");
}
