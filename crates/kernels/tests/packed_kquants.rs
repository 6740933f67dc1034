//! The repacked K-quant matmul (q4_K, q5_K, q6_K, q3_K, q2_K and iq4_xs: 4 interleaved rows, up to 4 tokens per weight load,
//! AVX-512 VNNI, or AVX2 + FMA where that is the level: `packed_kquants_under_forced_avx2` runs
//! this file again with `DAEHWA_KERNELS=avx2`) must return bit-for-bit what the row-at-a-time `vec_dot` kernels return, for
//! every token count and row count (padding rows, one or many super-blocks), on quantized
//! weights and on random block bytes, alone and mixed in one call; and stay within the scalar
//! reference's error budget.

#![cfg(target_arch = "x86_64")]

mod packed_util;
mod skip;

use gguf::GgmlType;
use kernels::matmul::{MatmulScratch, QMatrix};
use kernels::packed::{self, matmul_packed, PackedMatrix};
use kernels::pool::ThreadPool;
use kernels::quant;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use packed_util::{bits, check_bytes_bit_for_bit, check_mixed_call, check_packed_bit_for_bit, random_blocks, reference, rerun_under, Rng};

fn require_packed() -> bool {
    if !packed::packs(GgmlType::Q4_K) {
        skip::avx512_unused("the packed K-quant matmul tests");
        return false;
    }
    true
}

const TYPES: [GgmlType; 6] = [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q3_K, GgmlType::Q2_K, GgmlType::IQ4_XS];
/// The types daehwa only reads (no quantizer): tested on random block bytes.
const READ_ONLY: [GgmlType; 3] = [GgmlType::Q3_K, GgmlType::Q2_K, GgmlType::IQ4_XS];

#[test]
fn packed_kquants_equal_vec_dot_bit_for_bit() {
    if !require_packed() {
        return;
    }
    let mut rng = Rng(0x5eed_0015);
    let pools = [ThreadPool::new(1), ThreadPool::new(3)];
    for ty in TYPES {
        for &(n_rows, n_cols) in &[(4, 256), (13, 512), (37, 2048), (6, 768)] {
            if READ_ONLY.contains(&ty) {
                let data = random_blocks(ty, n_rows, n_cols, rng.next());
                check_bytes_bit_for_bit(ty, &data, n_rows, n_cols, &mut rng, &pools);
            } else {
                check_packed_bit_for_bit(ty, n_rows, n_cols, &mut rng, &pools, 1e-3);
            }
        }
    }
}

#[test]
fn packed_kquants_on_random_block_bytes() {
    if !require_packed() {
        return;
    }
    let pool = ThreadPool::new(2);
    // Expensive per case: a bounded count whatever PROPTEST_CASES says.
    let mut runner = TestRunner::new(Config { cases: 48, ..Config::default() });
    // Token counts past 16 reach the prompt tiles (AMX or `tiles16`).
    let strategy = (0usize..TYPES.len(), 1usize..40, 1usize..4, prop::sample::select(vec![1usize, 2, 3, 5, 9, 16, 17, 35]), any::<u64>());
    runner
        .run(&strategy, |(ti, n_rows, n_sb, n_tokens, seed)| {
            let (ty, n_cols) = (TYPES[ti], 256 * n_sb);
            let data = random_blocks(ty, n_rows, n_cols, seed);
            let m = QMatrix::new(ty, &data, n_rows, n_cols).expect("matrix");
            let p = PackedMatrix::pack(&m).expect("packable");
            let x = Rng(seed ^ 0xabcd).vec(n_tokens * n_cols);
            let want = reference(&m, &x, n_tokens, false);
            let mut out = vec![f32::NAN; n_tokens * n_rows];
            matmul_packed(&pool, &p, &x, n_tokens, &mut out, &mut MatmulScratch::default()).expect("matmul");
            prop_assert_eq!(bits(&out), bits(&want), "{} {}x{}, {} tokens", ty, n_rows, n_cols, n_tokens);
            Ok(())
        })
        .expect("packed K-quants equal vec_dot");
}

#[test]
fn q4_k_and_q6_k_share_one_call() {
    if !require_packed() {
        return;
    }
    // Llama's Q4_K_M: q, k (q4_K) beside v (q6_K) on the same activations.
    assert!(packed::same_activations(GgmlType::Q4_K, GgmlType::Q6_K));
    check_mixed_call(&[(GgmlType::Q4_K, 24), (GgmlType::Q4_K, 9), (GgmlType::Q6_K, 10)], 512, &[1, 5, 18], &mut Rng(31));
    // Q3_K_M: q, k (q3_K) beside v (q5_K); IQ4_XS files: iq4_xs beside q5_K; q2_K beside q3_K and q4_K.
    check_mixed_call(&[(GgmlType::Q3_K, 20), (GgmlType::Q3_K, 8), (GgmlType::Q5_K, 8)], 512, &[1, 4, 17], &mut Rng(32));
    check_mixed_call(&[(GgmlType::IQ4_XS, 12), (GgmlType::Q5_K, 5)], 768, &[1, 6, 16], &mut Rng(33));
    check_mixed_call(&[(GgmlType::Q2_K, 9), (GgmlType::Q3_K, 7), (GgmlType::Q4_K, 4)], 256, &[2, 19], &mut Rng(34));
}

/// The AVX-512 prompt tiles (`tiles16`, 16 tokens per register), which CPUs without AMX run for
/// prompts of 16 tokens or more: where this CPU has AMX, the tests above again in a child process
/// with `DAEHWA_KERNELS=avx512` (AMX off, the tiles on); elsewhere the tests above ran them.
#[test]
fn packed_kquants_under_forced_avx512() {
    if !skip::cpu_has_avx512_vnni() {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), b"NOTICE: packed_kquants_under_forced_avx512: this CPU has no AVX-512 VNNI, nothing to test\n");
        return;
    }
    if std::env::var("DAEHWA_KERNELS").as_deref() == Ok("avx512") {
        assert_eq!(packed::prompt_kernels(), "avx512-tiles", "DAEHWA_KERNELS=avx512: prompts on the AVX-512 tiles");
        return;
    }
    if std::env::var("DAEHWA_KERNELS").is_ok() {
        skip::skip("packed_kquants_under_forced_avx512", "DAEHWA_KERNELS caps the kernels below AVX-512");
        return;
    }
    if packed::prompt_kernels() == "avx512-tiles" {
        return; // the tests above ran the tiles
    }
    let names = ["packed_kquants_equal_vec_dot_bit_for_bit", "packed_kquants_on_random_block_bytes", "q4_k_and_q6_k_share_one_call", "packed_kquants_under_forced_avx512"];
    rerun_under("avx512", &names);
}

/// The AVX2 kernels of the same layouts: the tests above in a child process of this binary with
/// `DAEHWA_KERNELS=avx2`, where the K-quants must still be packed (and the legacy types not),
/// and must equal the AVX2 `vec_dot` bit for bit.
#[test]
fn packed_kquants_under_forced_avx2() {
    let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("f16c");
    if !avx2 {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), b"NOTICE: packed_kquants_under_forced_avx2: this CPU has no AVX2, nothing to test\n");
        return;
    }
    if std::env::var("DAEHWA_KERNELS").as_deref() == Ok("avx2") {
        // The child: the AVX2 layouts are in use, the AVX-512-only ones are not.
        assert!(TYPES.iter().all(|&ty| packed::packs(ty)), "K-quants packed under DAEHWA_KERNELS=avx2");
        assert!(!packed::available() && !packed::packs(GgmlType::Q4_0), "no AVX-512 layouts under DAEHWA_KERNELS=avx2");
        assert_eq!(quant::kernel(GgmlType::Q4_K).expect("kernel").isa, "avx2", "the reference is the AVX2 vec_dot");
        return;
    }
    let names = ["packed_kquants_equal_vec_dot_bit_for_bit", "packed_kquants_on_random_block_bytes", "q4_k_and_q6_k_share_one_call", "packed_kquants_under_forced_avx2"];
    rerun_under("avx2", &names);
}
