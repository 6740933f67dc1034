//! Dot products of the read-only weight types (q2_K, q3_K, iq4_nl, iq4_xs, mxfp4): every SIMD
//! path returns the scalar reference's bits, and the reference is the dot of the dequantized rows.
//!
//! The scalar references fix one float order that the AVX2 and AVX-512 kernels follow step for
//! step (iq4_nl and mxfp4: `quant/lanes.rs`, eight lanes of exact integer block sums, `acc += d *
//! sum` per block, ggml's `hsum_float_8` at the end; q2_K, q3_K and iq4_xs: the K-quant order
//! of `quant::kquants::k_step`, one exact total per super-block), so the comparison is `to_bits`
//! equality, not a tolerance. Inputs are random blocks (every quant bit pattern; fp16 scales from subnormals to
//! 65504; every E8M0 exponent) against activations quantized from random floats, from extreme
//! ones (all +-127 quants) and from all-zero rows, over lengths of 1 to 24 blocks.
//! The property runs a fixed number of cases (TestRunner with its own Config: `.ci/run`'s
//! PROPTEST_CASES=2000 does not apply to it).

mod quant_util;

use gguf::GgmlType;
use kernels::quant;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use quant_util::*;

/// Same bits, or both NaN (a NaN's payload is not part of any contract).
fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// One activation row of `n` values quantized to `vdt`: random at `scale`, extreme, or zero.
fn activations(vdt: GgmlType, rng: &mut XorShift, n: usize, kind: u8, scale: f32) -> Vec<u8> {
    let x: Vec<f32> = match kind % 4 {
        0 | 1 => rng.vec(n, scale),
        2 => (0..n).map(|i| if (rng.next_u64() >> 7) & 1 == 0 { scale } else { -scale } * if i % 3 == 0 { 1.0 } else { 0.999 }).collect(),
        _ => vec![0.0; n],
    };
    quantize_fast(vdt, &x)
}

#[test]
fn simd_paths_equal_the_scalar_reference_bit_for_bit() {
    let mut runner = TestRunner::new(Config { cases: 256, failure_persistence: None, ..Config::default() });
    let strategy = (any::<u64>(), 1usize..=24, any::<u8>(), prop::sample::select(vec![1e-3f32, 0.1, 1.0, 30.0, 1e4]));
    let types = quant::read_only_types();
    runner
        .run(&strategy, |(seed, n_blocks, kind, scale)| {
            let mut rng = XorShift(seed | 1);
            for &ty in types {
                let scalar = quant::kernel_scalar(ty).expect("scalar kernel");
                let n = n_blocks * ty.block_size();
                let w = random_row(ty, &mut rng, n_blocks);
                let x = activations(scalar.vec_dot_type, &mut rng, n, kind, scale);
                let want = (scalar.vec_dot)(n, &w, &x);
                for k in quant::kernel_variants(ty) {
                    let got = (k.vec_dot)(n, &w, &x);
                    prop_assert!(same(got, want), "{ty} {} n={n}: {got} ({:#010x}) vs scalar {want} ({:#010x})", k.isa, got.to_bits(), want.to_bits());
                    if let Some(multi) = k.vec_dot_multi {
                        let x2 = activations(scalar.vec_dot_type, &mut rng, n, kind.wrapping_add(1), scale);
                        let want2 = (scalar.vec_dot)(n, &w, &x2);
                        for m in 1..=4 {
                            let xs: Vec<&[u8]> = (0..m).map(|i| if i % 2 == 0 { &x[..] } else { &x2[..] }).collect();
                            let mut out = vec![0f32; m];
                            multi(n, &w, &xs, &mut out);
                            for (i, &o) in out.iter().enumerate() {
                                let wi = if i % 2 == 0 { want } else { want2 };
                                prop_assert!(same(o, wi), "{ty} {} multi {m} token {i}: {o} vs {wi}", k.isa);
                            }
                        }
                    }
                }
            }
            Ok(())
        })
        .expect("SIMD paths differ from the scalar reference");
}

/// Every path the CPU offers is there: scalar first, AVX2 on AVX2 machines, AVX-512 where it has
/// VNNI; and the activation type is ggml's (q8_K for the 256-element types, q8_0 for the others).
#[test]
fn variants_exist_with_ggml_activation_types() {
    for &ty in quant::read_only_types() {
        let want = if ty.block_size() == 256 { GgmlType::Q8_K } else { GgmlType::Q8_0 };
        assert_eq!(quant::vec_dot_type(ty).expect("vec_dot_type"), want, "{ty}");
        let v = quant::kernel_variants(ty);
        assert_eq!(v[0].isa, "scalar", "{ty}");
        assert!(v.iter().all(|k| k.vec_dot_type == want && k.ty == ty), "{ty}");
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("f16c");
            assert_eq!(v.iter().any(|k| k.isa == "avx2"), avx2, "{ty}: avx2 variant");
            let wide = avx2 && std::is_x86_feature_detected!("avx512vnni") && std::is_x86_feature_detected!("avx512vl") && std::is_x86_feature_detected!("avx512bw");
            assert_eq!(v.iter().any(|k| k.isa == "avx512vnni"), wide, "{ty}: avx512vnni variant");
        }
    }
}

/// The scalar reference against the f64 dot of the dequantized rows, on ordinary scales: the
/// integer sums are exact, so what is left is f32 rounding of the block products (1e-5 of
/// `sum |w x|`, as for the other types in quant_dot.rs).
#[test]
fn scalar_reference_is_the_dequantized_dot() {
    let mut rng = XorShift(0x0ddb_a110);
    for &ty in quant::read_only_types() {
        let scalar = quant::kernel_scalar(ty).expect("scalar kernel");
        for n_blocks in [1usize, 4, 16] {
            for _ in 0..8 {
                let n = n_blocks * ty.block_size();
                let mut w = random_row(ty, &mut rng, n_blocks);
                // Ordinary scales only (kind 2 of `f16_bits`; mxfp4 exponents near 127): the
                // f64 oracle should not see overflow.
                for b in w.chunks_exact_mut(ty.type_size()) {
                    match ty {
                        GgmlType::Q2_K => { b[80..82].copy_from_slice(&f16_bits(&mut rng, 2)); b[82..84].copy_from_slice(&f16_bits(&mut rng, 2)); }
                        GgmlType::Q3_K => b[108..110].copy_from_slice(&f16_bits(&mut rng, 2)),
                        GgmlType::MXFP4 => b[0] = 120 + (rng.next_u64() % 14) as u8,
                        _ => b[0..2].copy_from_slice(&f16_bits(&mut rng, 2)),
                    }
                }
                let x = quantize_fast(scalar.vec_dot_type, &rng.vec(n, 1.0));
                let (wd, xd) = (dequantize(ty, &w, n), dequantize(scalar.vec_dot_type, &x, n));
                let (exact, mag) = (dot64(&wd, &xd), abs_dot64(&wd, &xd));
                let got = (scalar.vec_dot)(n, &w, &x);
                assert!((got as f64 - exact).abs() <= 1e-5 * mag, "{ty} n={n}: {got} vs dequantized {exact} (mag {mag})");
            }
        }
    }
}
