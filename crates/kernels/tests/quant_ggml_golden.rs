//! Bit-exactness against ggml itself: FNV-1a hashes of the blocks that ggml's
//! `quantize_row_*_ref` (and the x86 AVX2 `quantize_row_q8_0/q8_1`) produce for a fixed
//! xorshift input, and the f32 bits its `ggml_vec_dot_*_generic` return.
//!
//! The values were produced once by compiling those functions from ggml (`ggml-quants.c`,
//! `ggml-cpu/quants.c`, `ggml-cpu/arch/x86/quants.c` at ggml-org/ggml d99724f) with
//! `gcc -O2 -mavx2 -mfma -mf16c -ffp-contract=off` and feeding them the stream below
//! (x = 3 * uniform for the first 4096 values, y = uniform for the next 4096). The block hashes
//! are the same with FMA contraction on; the dot bits need `-ffp-contract=off`, the arithmetic
//! the scalar reference mirrors.
//!
//! The K-quant dots (q4_K, q5_K, q6_K) have the same exact integer block sums as ggml's but a
//! different float order on purpose (one total per super-block instead of 8 float lanes, so
//! AMX tiles can produce the same bits: `quant::kquants`), so they are held to ggml's result
//! within 1e-5 of `sum |w_i x_i|` rather than to its bits.

mod quant_util;

use gguf::GgmlType;
use kernels::quant;
use quant_util::*;

const N: usize = 4096;

fn inputs() -> (Vec<f32>, Vec<f32>) {
    let mut rng = XorShift(GOLDEN_SEED);
    let x = rng.vec(N, 3.0);
    let y = rng.vec(N, 1.0);
    (x, y)
}

#[test]
fn reference_quantization_matches_ggml_bytes() {
    let (x, _) = inputs();
    let golden: &[(GgmlType, u64)] = &[
        (GgmlType::Q4_0, 0xa544da20b880141c),
        (GgmlType::Q4_1, 0x29d14b58c9e30198),
        (GgmlType::Q5_0, 0x9b0e8095894e41b8),
        (GgmlType::Q5_1, 0x74eded18183b08ef),
        (GgmlType::Q8_0, 0xbe5091325825d421),
        (GgmlType::Q8_1, 0x9cef0fb4af051b10),
        (GgmlType::Q4_K, 0x985c1d6fa3364772),
        (GgmlType::Q5_K, 0x33d6ec1a1a9d77f5),
        (GgmlType::Q6_K, 0x08adddc9e8cd8c34),
        (GgmlType::Q8_K, 0xbe99b55c67febb24),
    ];
    let mut bad = Vec::new();
    for &(ty, want) in golden {
        let got = fnv1a(&quantize(ty, &x));
        if got != want {
            bad.push(format!("{ty}: got {got:#018x}, ggml {want:#018x}"));
        }
    }
    assert!(bad.is_empty(), "quantization differs from ggml: {bad:#?}");
}

#[test]
fn fast_activation_quantization_matches_ggml_x86_bytes() {
    let (_, y) = inputs();
    let golden: &[(GgmlType, u64)] = &[
        (GgmlType::Q8_0, 0x2b2cac192a8068c2),
        (GgmlType::Q8_1, 0x3e33a9a967123896),
    ];
    let x86_avx2 = quant::kernel(GgmlType::Q4_0).expect("q4_0").isa != "scalar";
    for &(ty, want) in golden {
        let got = fnv1a(&quantize_fast(ty, &y));
        if x86_avx2 {
            assert_eq!(
                got, want,
                "{ty}: quantize_row_fast differs from ggml's AVX2 quantize_row"
            );
        } else {
            // Without AVX2 the fast path is the reference.
            assert_eq!(got, fnv1a(&quantize(ty, &y)), "{ty}");
        }
    }
    // q8_K: ggml's x86 build uses the reference, so the fast path must equal it bit for bit.
    let (x, _) = inputs();
    assert_eq!(
        fnv1a(&quantize_fast(GgmlType::Q8_K, &x)),
        0xbe99b55c67febb24,
        "q8_K fast vs ggml reference"
    );
}

#[test]
fn scalar_dots_match_ggml_generic_bits() {
    let (x, y) = inputs();
    let golden: &[(GgmlType, u32)] = &[
        (GgmlType::Q4_0, 0xc169ecea),
        (GgmlType::Q4_1, 0xc154b322),
        (GgmlType::Q5_0, 0xc113f727),
        (GgmlType::Q5_1, 0xc10f2c38),
        (GgmlType::Q8_0, 0xc114850c),
        (GgmlType::Q4_K, 0xc17f4b90),
        (GgmlType::Q5_K, 0xc103208e),
        (GgmlType::Q6_K, 0xc10bfa36),
    ];
    for &(ty, want) in golden {
        let k = quant::kernel_scalar(ty).expect("scalar kernel");
        let w = quantize(ty, &x);
        let a = quantize(k.vec_dot_type, &y);
        let got = (k.vec_dot)(N, &w, &a);
        if matches!(ty, GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K) {
            let mag = abs_dot64(&dequantize(ty, &w, N), &dequantize(k.vec_dot_type, &a, N));
            let diff = (got as f64 - f32::from_bits(want) as f64).abs();
            assert!(diff <= 1e-5 * mag, "{ty}: {got} vs ggml {} (mag {mag})", f32::from_bits(want));
            continue;
        }
        assert_eq!(
            got.to_bits(),
            want,
            "{ty}: {got} vs ggml {}",
            f32::from_bits(want)
        );
    }
}
