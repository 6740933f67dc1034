//! quantize_row -> dequantize_row error budgets for every supported type, and the row API's
//! error handling.
//!
//! Two measures: ggml's own (`test-quantize-fns.cpp`: `sqrt(sum d^2) / n` on its cosine data
//! of 4096 values must stay below 0.002), and a plain relative RMSE `rms(x - y) / rms(x)` on
//! uniform random data with a per-type budget about 1.3x what the format achieves (so a
//! wrong scale, offset or bit order fails).

mod quant_util;

use gguf::GgmlType;
use kernels::{quant, Error};
use quant_util::*;

fn lengths(ty: GgmlType) -> &'static [usize] {
    match ty.block_size() {
        1 => &[1, 7, 33, 576, 1537],
        32 => &[32, 96, 576, 1536, 4096],
        _ => &[256, 512, 1536, 4096],
    }
}

/// Relative RMSE budget on uniform data.
fn budget(ty: GgmlType) -> f64 {
    use GgmlType::*;
    match ty {
        F32 => 0.0,
        F16 => 4e-4,
        BF16 => 3e-3,
        Q8_0 | Q8_1 | Q8_K => 5e-3,
        Q6_K => 0.018,
        Q5_K => 0.036,
        Q5_0 | Q5_1 => 0.042,
        Q4_K => 0.07,
        Q4_0 | Q4_1 => 0.085,
        other => panic!("no budget for {other}"),
    }
}

fn rel_rmse(x: &[f32], y: &[f32]) -> f64 {
    let err: f64 = x
        .iter()
        .zip(y)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let norm: f64 = x.iter().map(|&a| (a as f64).powi(2)).sum();
    (err / norm).sqrt()
}

#[test]
fn roundtrip_within_budget_for_every_type() {
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let mut report = Vec::new();
    for &ty in quant::supported_types() {
        let mut worst = 0f64;
        for &n in lengths(ty) {
            for scale in [1.0f32, 0.02, 150.0] {
                let x = rng.vec(n, scale);
                let q = quantize(ty, &x);
                assert_eq!(q.len(), quant::row_bytes(ty, n).expect("row_bytes"));
                let y = dequantize(ty, &q, n);
                let e = rel_rmse(&x, &y);
                assert!(
                    e <= budget(ty),
                    "{ty} n={n} scale={scale}: relative RMSE {e:.5} > {}",
                    budget(ty)
                );
                worst = worst.max(e);
            }
        }
        report.push(format!("{ty}: {worst:.5}"));
    }
    eprintln!("worst relative RMSE: {}", report.join(", "));
}

#[test]
fn ggml_total_quantization_error() {
    // test-quantize-fns.cpp: test_size = 32 * 128, MAX_QUANTIZATION_TOTAL_ERROR = 0.002.
    let n = 32 * 128;
    let x = ggml_test_data(0.0, n);
    for &ty in quant::supported_types() {
        let y = dequantize(ty, &quantize(ty, &x), n);
        let err = x
            .iter()
            .zip(&y)
            .map(|(&a, &b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            / n as f64;
        assert!(err < 0.002, "{ty}: ggml total quantization error {err}");
    }
}

#[test]
fn fast_quantization_is_close_to_reference() {
    // test-quantize-fns.cpp: MAX_QUANTIZATION_REFERENCE_ERROR = 0.0001 between from_float and
    // the reference; q8_K and f32 must be identical.
    let n = 32 * 128;
    let x = ggml_test_data(0.0, n);
    for ty in [
        GgmlType::F32,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q8_K,
    ] {
        let fast = quantize_fast(ty, &x);
        let slow = quantize(ty, &x);
        if matches!(ty, GgmlType::F32 | GgmlType::Q8_K) {
            assert_eq!(fast, slow, "{ty}");
        }
        let (a, b) = (dequantize(ty, &fast, n), dequantize(ty, &slow, n));
        let err = a
            .iter()
            .zip(&b)
            .map(|(&p, &q)| ((p - q) as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            / n as f64;
        assert!(err < 1e-4, "{ty}: fast vs reference {err}");
    }
}

#[test]
fn known_values_decode_exactly() {
    // q4_0: d = -0.5 (fp16 0xb800), nibbles j and 15 - j: x = (q - 8) * d.
    let mut b = vec![0x00, 0xb8];
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = dequantize(GgmlType::Q4_0, &b, 32);
    for j in 0..16 {
        assert_eq!(y[j], (j as f32 - 8.0) * -0.5);
        assert_eq!(y[j + 16], ((15 - j) as f32 - 8.0) * -0.5);
    }
    // q4_1: d = 1, m = -2.
    let mut b = vec![0x00, 0x3c, 0x00, 0xc0];
    b.extend([0x21u8; 16]);
    let y = dequantize(GgmlType::Q4_1, &b, 32);
    assert!(
        y[..16].iter().all(|&v| v == -1.0) && y[16..].iter().all(|&v| v == 0.0),
        "{y:?}"
    );
    // q5_0: element 0 has its fifth bit set (qh bit 0): (16 + 3 - 16) * 2 = 6; element 16: (0 - 16) * 2.
    let mut b = vec![0x00, 0x40, 0x01, 0x00, 0x00, 0x00];
    b.extend([0x03u8; 16]);
    let y = dequantize(GgmlType::Q5_0, &b, 32);
    assert_eq!(y[0], 6.0);
    assert_eq!(y[1], (3.0 - 16.0) * 2.0);
    assert_eq!(y[16], -32.0);
    // bf16 and f16 of 1.5.
    assert_eq!(dequantize(GgmlType::BF16, &[0xc0, 0x3f], 1), vec![1.5]);
    assert_eq!(dequantize(GgmlType::F16, &[0x00, 0x3e], 1), vec![1.5]);
}

#[test]
fn reads_unaligned_bytes() {
    let mut rng = XorShift(7);
    for &ty in quant::supported_types() {
        let n = 512;
        let x = rng.vec(n, 1.0);
        let q = quantize(ty, &x);
        let mut shifted = vec![0u8; q.len() + 3];
        shifted[3..].copy_from_slice(&q);
        assert_eq!(
            dequantize(ty, &shifted[3..], n),
            dequantize(ty, &q, n),
            "{ty}"
        );
    }
}

#[test]
fn errors_name_the_problem() {
    let x = vec![0f32; 64];
    let mut out = vec![0u8; 1024];
    match quant::quantize_row(GgmlType::Q2_K, &vec![0f32; 256], &mut out) {
        Err(Error::UnsupportedType(GgmlType::Q2_K, list)) => {
            assert!(list.contains("q4_K"), "{list}")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        quant::kernel(GgmlType::IQ2_XS),
        Err(Error::UnsupportedType(GgmlType::IQ2_XS, _))
    ));
    // Activation-only types have no dot product.
    assert!(quant::kernel(GgmlType::Q8_K).is_err());
    assert!(matches!(
        quant::row_bytes(GgmlType::Q4_K, 100),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        quant::quantize_row(GgmlType::Q4_0, &x[..40], &mut out),
        Err(Error::Shape(_))
    ));
    let mut small = vec![0u8; 35];
    assert!(matches!(
        quant::quantize_row(GgmlType::Q4_0, &x, &mut small),
        Err(Error::Shape(_))
    ));
    let mut y = vec![0f32; 64];
    assert!(matches!(
        quant::dequantize_row(GgmlType::Q8_0, &out[..67], &mut y),
        Err(Error::Shape(_))
    ));
    assert_eq!(
        quant::row_bytes(GgmlType::Q4_1, 576).expect("row_bytes"),
        18 * 20
    );
    assert_eq!(
        quant::row_bytes(GgmlType::Q6_K, 1536).expect("row_bytes"),
        6 * 210
    );
    assert_eq!(quant::row_bytes(GgmlType::BF16, 7).expect("row_bytes"), 14);
}
