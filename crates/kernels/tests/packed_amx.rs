//! The AMX path of the packed K-quant matmul (q2_K to q6_K and iq4_xs prompts of 16 tokens or more:
//! `packed::amx`) must return bit-for-bit what the row-at-a-time `vec_dot` kernels (and so the
//! AVX-512 kernels of decode steps) return: on quantized weights and on random block bytes
//! (every scale, min, code and scale sign), for partial row tiles (rows not a multiple of 16),
//! partial token tiles, one to many super-blocks, mixed in one call, on 1 to 3 threads; and
//! `DAEHWA_KERNELS=avx512` must switch it off with the same results.
//!
//! On a CPU without AMX these tests note that there is nothing to run (the AMX unit is absent,
//! so it is not a skip); on a CPU with AMX the path must be in use.

#![cfg(target_arch = "x86_64")]

mod packed_util;
mod skip;

use gguf::GgmlType;
use kernels::matmul::{MatmulScratch, QMatrix};
use kernels::packed::{self, matmul_packed, PackedMatrix};
use kernels::pool::ThreadPool;
use packed_util::{bits, check_mixed_call, random_blocks, reference, some_matrix, Rng};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const TYPES: [GgmlType; 6] = [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K, GgmlType::Q3_K, GgmlType::Q2_K, GgmlType::IQ4_XS];

/// Whether to run: AMX in use where the CPU has it (a failure if not, unless forced off).
fn require_amx(test: &str) -> bool {
    if !skip::cpu_has_amx_int8() {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("NOTICE: {test}: this CPU has no AMX-INT8, nothing to test\n").as_bytes());
        return false;
    }
    if std::env::var("DAEHWA_KERNELS").as_deref() == Ok("avx512") {
        assert!(!packed::amx::enabled(), "DAEHWA_KERNELS=avx512 turns AMX off");
        return true;
    }
    if std::env::var("DAEHWA_KERNELS").is_ok() {
        skip::skip(test, "DAEHWA_KERNELS caps the kernels below AMX");
        return false;
    }
    assert!(packed::amx::enabled(), "this CPU has AMX-INT8 and AVX-512 VNNI, but the AMX path is off (did arch_prctl refuse?)");
    true
}

fn check(pool: &ThreadPool, ty: GgmlType, data: &[u8], n_rows: usize, n_cols: usize, n_tokens: usize, seed: u64) -> Result<(), String> {
    let m = QMatrix::new(ty, data, n_rows, n_cols).expect("matrix");
    let p = PackedMatrix::pack(&m).expect("packable");
    let x = Rng(seed ^ 0xabcd).vec(n_tokens * n_cols);
    let want = reference(&m, &x, n_tokens, false);
    let mut out = vec![f32::NAN; n_tokens * n_rows];
    matmul_packed(pool, &p, &x, n_tokens, &mut out, &mut MatmulScratch::default()).expect("matmul");
    if bits(&out) == bits(&want) {
        return Ok(());
    }
    let i = out.iter().zip(&want).position(|(a, b)| a.to_bits() != b.to_bits()).unwrap_or(0);
    Err(format!("{ty} {n_rows}x{n_cols}, {n_tokens} tokens, {} threads: out[{i}] = {} vs vec_dot {}", pool.n_threads(), out[i], want[i]))
}

#[test]
fn amx_equals_vec_dot_on_quantized_weights() {
    if !require_amx("amx_equals_vec_dot_on_quantized_weights") {
        return;
    }
    let mut rng = Rng(0xa3c5_0016);
    let pools = [ThreadPool::new(1), ThreadPool::new(3)];
    for ty in TYPES {
        // 600 rows: more than one group of 8 row tiles per task (`amx::write_rows`).
        for &(n_rows, n_cols) in &[(16, 256), (37, 2048), (5, 512), (64, 768), (600, 256)] {
            // Quantized floats, or random block bytes for the types without a quantizer.
            let data = some_matrix(ty, n_rows, n_cols, &mut rng);
            for n_tokens in [16, 17, 31, 48, 70] {
                for pool in &pools {
                    check(pool, ty, &data, n_rows, n_cols, n_tokens, rng.next()).unwrap_or_else(|e| panic!("{e}"));
                }
            }
        }
    }
}

#[test]
fn amx_equals_vec_dot_on_random_block_bytes() {
    if !require_amx("amx_equals_vec_dot_on_random_block_bytes") {
        return;
    }
    let pool = ThreadPool::new(2);
    let mut runner = TestRunner::new(Config { cases: 64, ..Config::default() });
    let strategy = (0usize..TYPES.len(), 1usize..41, 1usize..5, 16usize..50, any::<u64>());
    runner
        .run(&strategy, |(ti, n_rows, n_sb, n_tokens, seed)| {
            let (ty, n_cols) = (TYPES[ti], 256 * n_sb);
            let data = random_blocks(ty, n_rows, n_cols, seed);
            check(&pool, ty, &data, n_rows, n_cols, n_tokens, seed).map_err(TestCaseError::fail)
        })
        .expect("AMX equals vec_dot");
}

#[test]
fn amx_q4_k_q5_k_and_q6_k_in_one_call() {
    if !require_amx("amx_q4_k_q5_k_and_q6_k_in_one_call") {
        return;
    }
    check_mixed_call(&[(GgmlType::Q4_K, 40), (GgmlType::Q6_K, 24), (GgmlType::Q5_K, 3)], 512, &[16, 40, 3], &mut Rng(77));
    // Q3_K_M and IQ4_XS files' mixes, and q2_K beside them.
    check_mixed_call(&[(GgmlType::Q3_K, 33), (GgmlType::Q5_K, 16), (GgmlType::Q2_K, 20)], 512, &[16, 33, 2], &mut Rng(78));
    check_mixed_call(&[(GgmlType::IQ4_XS, 48), (GgmlType::Q5_K, 17)], 768, &[16, 50], &mut Rng(79));
}

/// The tests above again in a child process with `DAEHWA_KERNELS=avx512`: AMX off, the same bits.
#[test]
fn amx_off_under_daehwa_kernels_avx512() {
    if !skip::cpu_has_amx_int8() || std::env::var("DAEHWA_KERNELS").is_ok() {
        let _ = require_amx("amx_off_under_daehwa_kernels_avx512");
        return;
    }
    let names = ["amx_equals_vec_dot_on_quantized_weights", "amx_q4_k_q5_k_and_q6_k_in_one_call", "amx_off_under_daehwa_kernels_avx512"];
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(names)
        .args(["--exact", "--test-threads", "1"])
        .env("DAEHWA_KERNELS", "avx512")
        .output()
        .expect("run the tests again under DAEHWA_KERNELS=avx512");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "under DAEHWA_KERNELS=avx512:\n{text}");
    assert!(text.contains("test result: ok. 3 passed"), "all 3 tests ran under DAEHWA_KERNELS=avx512:\n{text}");
}

