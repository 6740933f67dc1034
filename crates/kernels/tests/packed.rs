//! The repacked (4-row interleaved, AVX-512 VNNI) matmul must return bit-for-bit what the
//! row-at-a-time `vec_dot` kernels return, for every token count and row count (padding rows,
//! odd block counts), alone and several matrices per call; and stay within the scalar
//! reference's error budget. On the real SmolLM2 matrices too.

#![cfg(target_arch = "x86_64")]

mod packed_util;
mod skip;

use std::path::PathBuf;

use gguf::{GgmlType, GgufFile};
use kernels::matmul::{matmul, MatmulScratch, QMatrix};
use kernels::packed::{self, matmul_packed, matmul_packed_many, PackedMatrix};
use kernels::pool::ThreadPool;
use kernels::quant;
use packed_util::{bits, check_bytes_bit_for_bit, check_mixed_call, check_packed_bit_for_bit, quantize_matrix, random_blocks, reference, Rng};

fn require_packed() -> bool {
    if !packed::available() {
        skip::avx512_unused("the packed AVX-512 VNNI matmul tests");
        return false;
    }
    assert_eq!(quant::kernel(GgmlType::Q4_1).expect("kernel").isa, "avx512vnni");
    true
}

#[test]
fn packed_equals_vec_dot_bit_for_bit() {
    if !require_packed() {
        return;
    }
    let mut rng = Rng(0x1234_5678);
    let pools = [ThreadPool::new(1), ThreadPool::new(3)];
    for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4_0] {
        for &(n_rows, n_cols) in &[(4, 32), (13, 96), (64, 576), (37, 1536), (5, 64)] {
            check_packed_bit_for_bit(ty, n_rows, n_cols, &mut rng, &pools, 1e-4);
        }
    }
}

/// gpt-oss's mxfp4 experts (no quantizer: random block bytes, every code, exponents around 1),
/// alone and beside q8_0 in one call (both read q8_0 activations).
#[test]
fn packed_mxfp4_equals_vec_dot_bit_for_bit() {
    if !require_packed() {
        return;
    }
    let mut rng = Rng(0x6f55_0014);
    let pools = [ThreadPool::new(1), ThreadPool::new(3)];
    for &(n_rows, n_cols) in &[(4, 32), (13, 96), (64, 576), (37, 2880), (5, 64)] {
        let data = random_blocks(GgmlType::MXFP4, n_rows, n_cols, rng.next());
        check_bytes_bit_for_bit(GgmlType::MXFP4, &data, n_rows, n_cols, &mut rng, &pools);
    }
    check_mixed_call(&[(GgmlType::MXFP4, 12), (GgmlType::Q8_0, 8), (GgmlType::MXFP4, 5)], 192, &[1, 4, 9], &mut Rng(41));
}

#[test]
fn a_token_does_not_depend_on_its_batch() {
    if !require_packed() {
        return;
    }
    let mut rng = Rng(99);
    let (n_rows, n_cols) = (40, 192);
    let w = rng.vec(n_rows * n_cols);
    let data = quantize_matrix(GgmlType::Q4_1, &w, n_cols);
    let m = QMatrix::new(GgmlType::Q4_1, &data, n_rows, n_cols).expect("matrix");
    let p = PackedMatrix::pack(&m).expect("packable");
    let pool = ThreadPool::new(2);
    let x = rng.vec(21 * n_cols);
    let mut all = vec![0f32; 21 * n_rows];
    matmul_packed(&pool, &p, &x, 21, &mut all, &mut MatmulScratch::default()).expect("matmul");
    for t in 0..21 {
        let mut one = vec![0f32; n_rows];
        matmul_packed(&pool, &p, &x[t * n_cols..(t + 1) * n_cols], 1, &mut one, &mut MatmulScratch::default()).expect("matmul");
        assert_eq!(bits(&one), bits(&all[t * n_rows..(t + 1) * n_rows]), "token {t}");
    }
}

#[test]
fn many_matrices_in_one_call_equal_separate_calls() {
    if !require_packed() {
        return;
    }
    let mut rng = Rng(7);
    let n_cols = 128;
    let shapes = [64, 21, 21];
    let datas: Vec<Vec<u8>> = shapes.iter().map(|&r| quantize_matrix(GgmlType::Q4_1, &rng.vec(r * n_cols), n_cols)).collect();
    let packs: Vec<PackedMatrix> = datas
        .iter()
        .zip(shapes)
        .map(|(d, r)| PackedMatrix::pack(&QMatrix::new(GgmlType::Q4_1, d, r, n_cols).expect("matrix")).expect("packable"))
        .collect();
    let pool = ThreadPool::new(2);
    let mut scratch = MatmulScratch::default();
    for n_tokens in [1, 6] {
        let x = rng.vec(n_tokens * n_cols);
        let mut outs: Vec<Vec<f32>> = shapes.iter().map(|&r| vec![0f32; n_tokens * r]).collect();
        {
            let mut jobs: Vec<(&PackedMatrix, &mut [f32])> = packs.iter().zip(outs.iter_mut()).map(|(p, o)| (p, &mut o[..])).collect();
            matmul_packed_many(&pool, &mut jobs, &x, n_tokens, &mut scratch).expect("many");
        }
        for (p, o) in packs.iter().zip(&outs) {
            let mut one = vec![0f32; o.len()];
            matmul_packed(&pool, p, &x, n_tokens, &mut one, &mut scratch).expect("one");
            assert_eq!(bits(o), bits(&one));
        }
    }
    // Types sharing q8_0 activations (Gemma 3's q5_0 q and k beside a q8_0 v) run together.
    let mixed: Vec<(GgmlType, usize)> = vec![(GgmlType::Q5_0, 48), (GgmlType::Q5_0, 13), (GgmlType::Q8_0, 20), (GgmlType::Q4_0, 8)];
    let mdatas: Vec<Vec<u8>> = mixed.iter().map(|&(ty, r)| quantize_matrix(ty, &rng.vec(r * n_cols), n_cols)).collect();
    let mpacks: Vec<PackedMatrix> = mdatas
        .iter()
        .zip(&mixed)
        .map(|(d, &(ty, r))| PackedMatrix::pack(&QMatrix::new(ty, d, r, n_cols).expect("matrix")).expect("packable"))
        .collect();
    for n_tokens in [1, 5, 18] {
        let x = rng.vec(n_tokens * n_cols);
        let mut outs: Vec<Vec<f32>> = mixed.iter().map(|&(_, r)| vec![0f32; n_tokens * r]).collect();
        {
            let mut jobs: Vec<(&PackedMatrix, &mut [f32])> = mpacks.iter().zip(outs.iter_mut()).map(|(p, o)| (p, &mut o[..])).collect();
            matmul_packed_many(&pool, &mut jobs, &x, n_tokens, &mut scratch).expect("mixed many");
        }
        for ((p, o), d) in mpacks.iter().zip(&outs).zip(&mdatas) {
            let m = QMatrix::new(p.ty(), d, p.n_rows(), n_cols).expect("matrix");
            assert_eq!(bits(o), bits(&reference(&m, &x, n_tokens, false)), "{} in a mixed call", p.ty());
        }
    }
    // Mismatched inputs are errors, not panics.
    let q8 = quantize_matrix(GgmlType::Q8_0, &rng.vec(8 * n_cols), n_cols);
    let p8 = PackedMatrix::pack(&QMatrix::new(GgmlType::Q8_0, &q8, 8, n_cols).expect("matrix")).expect("packable");
    let (mut a, mut b) = (vec![0f32; 64], vec![0f32; 8]);
    let x = rng.vec(n_cols);
    assert!(matmul_packed_many(&pool, &mut [(&packs[0], &mut a[..]), (&p8, &mut b[..])], &x, 1, &mut scratch).is_err());
    assert!(matmul_packed(&pool, &packs[0], &x[..n_cols - 1], 1, &mut a, &mut scratch).is_err());
}

#[test]
fn unsupported_types_are_not_packed() {
    let data = quantize_matrix(GgmlType::Q5_1, &Rng(3).vec(4 * 64), 64);
    let m = QMatrix::new(GgmlType::Q5_1, &data, 4, 64).expect("matrix");
    assert!(PackedMatrix::pack(&m).is_none());
}

fn smollm2_path() -> PathBuf {
    if let Ok(p) = std::env::var("DAEHWA_SMOLLM2_GGUF") {
        return PathBuf::from(p);
    }
    let mut candidates = Vec::new();
    if let Ok(d) = std::env::var("DAEHWA_MODELS_DIR") {
        candidates.push(PathBuf::from(d).join("smollm2.gguf"));
    }
    if let Ok(d) = std::env::var("XDG_DATA_HOME") {
        candidates.push(PathBuf::from(d).join("daehwa/models/smollm2.gguf"));
    }
    if let Ok(h) = std::env::var("HOME") {
        candidates.push(PathBuf::from(h).join(".local/share/daehwa/models/smollm2.gguf"));
    }
    candidates.into_iter().find(|p| p.exists()).unwrap_or_else(|| {
        panic!("SmolLM2 model not found (set DAEHWA_SMOLLM2_GGUF); run `cargo run --release -- pull smollm2`")
    })
}

#[test]
fn real_smollm2_matrices_bit_for_bit() {
    let f = GgufFile::open(smollm2_path()).expect("open smollm2");
    if !require_packed() {
        return;
    }
    let pool = ThreadPool::new(2);
    let mut rng = Rng(5);
    for name in ["blk.0.ffn_gate.weight", "blk.3.ffn_down.weight", "blk.7.attn_k.weight", "token_embd.weight"] {
        let info = f.tensor(name).expect("tensor");
        let full = QMatrix::from_tensor(&f, info).expect("matrix");
        // The 49152-row embedding: its first 1000 rows are enough.
        let n_rows = full.n_rows.min(1000);
        let rb = full.row_bytes().expect("row bytes");
        let m = QMatrix::new(full.ty, &full.data[..n_rows * rb], n_rows, full.n_cols).expect("matrix");
        let p = PackedMatrix::pack(&m).expect("q4_1 and q8_0 pack");
        for n_tokens in [1, 5] {
            let x = rng.vec(n_tokens * m.n_cols);
            let mut out = vec![0f32; n_tokens * n_rows];
            matmul_packed(&pool, &p, &x, n_tokens, &mut out, &mut MatmulScratch::default()).expect("matmul");
            assert_eq!(bits(&out), bits(&reference(&m, &x, n_tokens, false)), "{name}");
        }
    }
}

#[test]
fn matmul_many_equals_matmul_packed_or_not() {
    let mut rng = Rng(11);
    let n_cols = 96;
    let pool = ThreadPool::new(2);
    let mut scratch = MatmulScratch::default();
    let d1 = quantize_matrix(GgmlType::Q4_1, &rng.vec(12 * n_cols), n_cols);
    let d2 = quantize_matrix(GgmlType::Q4_1, &rng.vec(5 * n_cols), n_cols);
    let d3 = quantize_matrix(GgmlType::Q5_0, &rng.vec(8 * n_cols), n_cols);
    let m1 = QMatrix::new(GgmlType::Q4_1, &d1, 12, n_cols).expect("matrix");
    let m2 = QMatrix::new(GgmlType::Q4_1, &d2, 5, n_cols).expect("matrix");
    let m3 = QMatrix::new(GgmlType::Q5_0, &d3, 8, n_cols).expect("matrix");
    let (p1, p2) = (PackedMatrix::pack(&m1), PackedMatrix::pack(&m2));
    let m1p = p1.as_ref().map_or(m1, |p| m1.with_packed(p).expect("same shape"));
    let m2p = p2.as_ref().map_or(m2, |p| m2.with_packed(p).expect("same shape"));
    for n_tokens in [1, 9] {
        let x = rng.vec(n_tokens * n_cols);
        // All packed (one run), then a mix that falls back to one call each.
        for mats in [vec![&m1p, &m2p], vec![&m1p, &m3, &m2]] {
            let mut outs: Vec<Vec<f32>> = mats.iter().map(|m| vec![0f32; n_tokens * m.n_rows]).collect();
            {
                let mut jobs: Vec<(&QMatrix, &mut [f32])> = mats.iter().copied().zip(outs.iter_mut()).map(|(m, o)| (m, &mut o[..])).collect();
                kernels::matmul::matmul_many(&pool, &mut jobs, &x, n_tokens, &mut scratch).expect("many");
            }
            for (m, o) in mats.iter().zip(&outs) {
                let mut one = vec![0f32; o.len()];
                matmul(&pool, m, &x, n_tokens, &mut one, &mut scratch).expect("one");
                assert_eq!(bits(o), bits(&one));
                assert_eq!(bits(o), bits(&reference(m, &x, n_tokens, false)));
            }
        }
    }
    // A packed matrix attached to a matrix of another shape is refused.
    if let Some(p) = &p1 {
        assert!(m2.with_packed(p).is_err());
    }
}
