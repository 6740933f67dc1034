//! Dot products: every SIMD variant against the scalar reference, the reference against the
//! f64 dot of the dequantized rows, and ggml's end-to-end budget.
//!
//! Tolerances, all relative to `mag = sum |w_i * x_i|` of the dequantized rows (a relative
//! error on the result itself is meaningless when the terms cancel):
//! - variant vs scalar: 1e-4 * mag. The integer block sums are exact in both; only the float
//!   accumulation order differs (8 lanes + FMA vs sequential). q4_0, q4_K, q5_K and q6_K: the
//!   same bits, as every path follows one float order (q4_0 the scalar one, `packed::q4_0`;
//!   the K-quants `quant::kquants`).
//! - scalar vs dequantized f64 dot: 1e-5 * mag, except q4_1/q5_1 at 2e-3 * mag: their minimum
//!   term uses q8_1's `s = d * sum(q)`, stored as fp16 (2^-11 relative per block), instead of
//!   the exact sum of the dequantized activations.
//! - end to end (ggml's MAX_DOT_PRODUCT_ERROR): |dot(quantized) - dot(f32)| / n < 0.02 on
//!   ggml's cosine data, for every variant.

mod quant_util;
mod skip;

use gguf::GgmlType;
use kernels::quant;
use quant_util::*;

fn lengths(ty: GgmlType) -> &'static [usize] {
    match ty.block_size() {
        1 => &[1, 7, 8, 33, 64, 576, 1537],
        32 => &[32, 64, 576, 1536, 4096],
        _ => &[256, 1536, 4096],
    }
}

#[test]
fn variants_match_scalar_and_dequantized_dot() {
    let mut rng = XorShift(0xdead_beef_cafe_f00d);
    for &ty in WEIGHT_TYPES {
        let variants = quant::kernel_variants(ty);
        let scalar = quant::kernel_scalar(ty).expect("scalar");
        assert_eq!(variants[0].isa, "scalar");
        assert_eq!(
            scalar.vec_dot_type,
            quant::vec_dot_type(ty).expect("vec_dot_type")
        );
        for &n in lengths(ty) {
            // Activation scales keep q8's fp16 `d` out of the fp16 subnormal range, where `s`
            // (computed from the unrounded d) and the stored d drift apart by more than 2^-11.
            for (ws, xs) in [(1.0f32, 1.0f32), (0.05, 20.0), (3.0, 0.02)] {
                let w = quantize(ty, &rng.vec(n, ws));
                let x = quantize_fast(scalar.vec_dot_type, &rng.vec(n, xs));
                let wd = dequantize(ty, &w, n);
                let xd = dequantize(scalar.vec_dot_type, &x, n);
                let exact = dot64(&wd, &xd);
                let mag = abs_dot64(&wd, &xd);
                let reference = (scalar.vec_dot)(n, &w, &x);
                let tol = if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                    2e-3
                } else {
                    1e-5
                };
                assert!(
                    (reference as f64 - exact).abs() <= tol * mag,
                    "{ty} n={n}: scalar {reference} vs dequantized {exact} (mag {mag})"
                );
                for k in &variants {
                    assert_eq!(k.ty, ty);
                    assert_eq!(k.vec_dot_type, scalar.vec_dot_type);
                    let got = (k.vec_dot)(n, &w, &x);
                    if matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K) {
                        // One float order for every K-quant path (`quant::kquants`), and for
                        // every q4_0 path (the scalar one: `packed::q4_0`).
                        assert_eq!(got.to_bits(), reference.to_bits(), "{ty} n={n} {}: {got} vs scalar {reference}", k.isa);
                    }
                    assert!(
                        (got as f64 - reference as f64).abs() <= 1e-4 * mag,
                        "{ty} n={n} {}: {got} vs scalar {reference} (mag {mag})",
                        k.isa
                    );
                }
            }
        }
    }
}

#[test]
fn ggml_dot_product_error() {
    let n = 32 * 128;
    let a = ggml_test_data(0.0, n);
    let b = ggml_test_data(1.0, n);
    let exact = dot64(&a, &b);
    for &ty in WEIGHT_TYPES {
        for k in quant::kernel_variants(ty) {
            let w = quantize(ty, &a);
            let x = quantize_fast(k.vec_dot_type, &b);
            let got = (k.vec_dot)(n, &w, &x);
            let err = (got as f64 - exact).abs() / n as f64;
            assert!(err < 0.02, "{ty} {}: dot error {err}", k.isa);
        }
    }
}

#[test]
fn best_kernel_is_one_of_the_variants() {
    for &ty in WEIGHT_TYPES {
        let best = quant::kernel(ty).expect("kernel");
        let variants = quant::kernel_variants(ty);
        assert!(
            variants.iter().any(|v| std::ptr::eq(*v, best)),
            "{ty}: {}",
            best.isa
        );
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            assert!(
                variants.iter().any(|v| v.isa == "avx2"),
                "{ty}: no avx2 variant"
            );
            if std::env::var("DAEHWA_KERNELS").is_err() {
                assert_ne!(best.isa, "scalar", "{ty}");
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512vl") {
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            assert!(
                quant::kernel_variants(ty)
                    .iter()
                    .any(|v| v.isa == "avx512vnni"),
                "{ty}"
            );
        }
    }
}

#[test]
fn extreme_activations_do_not_saturate_q8_0() {
    // -128 never comes out of quantization, but a q8_0 weight row may hold it; with values
    // that large `maddubs` saturates in ggml's AVX2 path too, so keep to the quantizer's range.
    let n = 64;
    let w = quantize(GgmlType::Q8_0, &vec![127.0; n]);
    let x = quantize(GgmlType::Q8_0, &vec![-127.0; n]);
    for k in quant::kernel_variants(GgmlType::Q8_0) {
        assert_eq!(
            (k.vec_dot)(n, &w, &x),
            -127.0 * 127.0 * n as f32,
            "{}",
            k.isa
        );
    }
}

#[test]
#[should_panic(expected = "vec_dot")]
fn short_rows_panic_instead_of_reading_out_of_bounds() {
    let k = quant::kernel(GgmlType::Q4_1).expect("kernel");
    let w = vec![0u8; 20];
    let x = vec![0u8; 36];
    (k.vec_dot)(64, &w, &x);
}

/// The AVX-512 q4_K / q6_K kernels (one token and 1..=4 tokens per call) are bit-for-bit the
/// AVX2 ones: the same integer sums per lane, the same float steps.
#[test]
#[cfg(target_arch = "x86_64")]
fn avx512_k_quants_equal_avx2_bit_for_bit() {
    let mut rng = XorShift(0x5eed_0f4a_1100);
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
        let variants = quant::kernel_variants(ty);
        let (Some(avx2), Some(wide)) = (variants.iter().find(|k| k.isa == "avx2"), variants.iter().find(|k| k.isa == "avx512vnni")) else {
            skip::avx512_unused(&format!("avx512_k_quants_equal_avx2_bit_for_bit ({ty})"));
            continue;
        };
        let multi = wide.vec_dot_multi.expect("multi-token kernel");
        for n in [256, 512, 1024, 2048] {
            for (ws, xs) in [(1.0f32, 1.0f32), (0.05, 20.0), (3.0, 0.02)] {
                let w = quantize(ty, &rng.vec(n, ws));
                let xs: Vec<Vec<u8>> = (0..4).map(|_| quantize_fast(GgmlType::Q8_K, &rng.vec(n, xs))).collect();
                let want: Vec<u32> = xs.iter().map(|x| (avx2.vec_dot)(n, &w, x).to_bits()).collect();
                let one: Vec<u32> = xs.iter().map(|x| (wide.vec_dot)(n, &w, x).to_bits()).collect();
                assert_eq!(one, want, "{ty} n={n}: one token");
                for m in 1..=4 {
                    let refs: Vec<&[u8]> = xs[..m].iter().map(|x| &x[..]).collect();
                    let mut out = vec![0f32; m];
                    multi(n, &w, &refs, &mut out);
                    let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                    assert_eq!(got, want[..m], "{ty} n={n}: {m} tokens");
                }
            }
        }
    }
}

/// The K-quant float order (`quant::kquants`: one exact integer total per super-block, then
/// `acc + d * isum - dm * msum`) is as accurate as ggml's (eight float lanes per row, mins
/// apart): over random q4_K rows against q8_K activations, both are measured against the exact
/// value of the same integers and scales (f64), relative to `sum |w_i x_i|`.
#[test]
fn k_quant_float_order_is_as_accurate_as_ggml_order() {
    use half::f16;
    let f16at = |b: &[u8], o: usize| f16::from_bits(u16::from_le_bytes([b[o], b[o + 1]])).to_f32();
    let mut rng = XorShift(0x0dd_5eed);
    let (n, nb) = (4096, 16);
    let (mut err_new, mut err_old) = (0f64, 0f64);
    for _ in 0..300 {
        let w = quantize(GgmlType::Q4_K, &rng.vec(n, 1.0));
        let x = quantize_fast(GgmlType::Q8_K, &rng.vec(n, 1.0));
        let new = (quant::kernel_scalar(GgmlType::Q4_K).expect("scalar").vec_dot)(n, &w, &x);
        let (mut exact, mut mag) = (0f64, 0f64);
        let (mut sums, mut sumf) = ([0f32; 8], 0f32);
        for b in 0..nb {
            let wb = &w[144 * b..144 * (b + 1)];
            let xb = &x[292 * b..292 * (b + 1)];
            let (dw, dmin) = (f16at(wb, 0), f16at(wb, 2));
            let dx = f32::from_le_bytes([xb[0], xb[1], xb[2], xb[3]]);
            let sm = quant::blocks::unpack_scales_mins_k4(wb[4..16].try_into().expect("12 bytes"));
            let q = |e: usize| -> i32 { let byte = wb[16 + 32 * (e / 64) + e % 32]; (if e % 64 < 32 { byte & 15 } else { byte >> 4 }) as i32 };
            let xq = |e: usize| xb[4 + e] as i8 as i32;
            let bsum = |j: usize| i16::from_le_bytes([xb[260 + 2 * j], xb[261 + 2 * j]]) as i32;
            let msum: i32 = (0..16).map(|j| bsum(j) * sm[8 + j / 2] as i32).sum();
            let mut aux = [0i32; 8];
            for e in 0..256 {
                aux[e % 8] += sm[e / 32] as i32 * q(e) * xq(e);
                mag += ((dw as f64 * sm[e / 32] as f64 * q(e) as f64 - dmin as f64 * sm[8 + e / 32] as f64) * dx as f64 * xq(e) as f64).abs();
            }
            let isum: i64 = aux.iter().map(|&a| a as i64).sum();
            exact += dx as f64 * (dw as f64 * isum as f64 - dmin as f64 * msum as f64);
            // ggml's generic order.
            let d = dx * dw;
            for l in 0..8 {
                sums[l] += d * aux[l] as f32;
            }
            sumf -= dx * dmin * msum as f32;
        }
        for s in sums {
            sumf += s;
        }
        err_new += (new as f64 - exact).abs() / mag;
        err_old += (sumf as f64 - exact).abs() / mag;
    }
    println!("mean relative error: K-quant order {:.3e}, ggml order {:.3e}", err_new / 300.0, err_old / 300.0);
    assert!(err_new <= 1.25 * err_old, "K-quant order {err_new:.3e} vs ggml order {err_old:.3e} (sums over 300 rows)");
}
