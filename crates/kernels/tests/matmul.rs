//! matmul against naive f64 references on dequantized weights, for synthetic matrices of every
//! weight type and for the real SmolLM2 `blk.0.ffn_gate.weight` (Q4_1).

use std::path::PathBuf;

use gguf::{GgmlType, GgufFile};
use kernels::matmul::{matmul, MatmulScratch, QMatrix};
use kernels::pool::ThreadPool;
use kernels::{quant, Error};

struct Rng(u64);
impl Rng {
    fn f32(&mut self, scale: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        (bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32(scale)).collect()
    }
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

/// Quantizes `n_rows x n_cols` f32 weights to `ty` with the reference quantizer.
fn quantize_matrix(ty: GgmlType, w: &[f32], n_cols: usize) -> Vec<u8> {
    let rb = quant::row_bytes(ty, n_cols).expect("row bytes");
    let mut data = vec![0u8; w.len() / n_cols * rb];
    for (src, dst) in w.chunks_exact(n_cols).zip(data.chunks_exact_mut(rb)) {
        quant::quantize_row(ty, src, dst).expect("quantize");
    }
    data
}

fn dequantize_matrix(m: &QMatrix) -> Vec<f32> {
    let mut w = vec![0f32; m.n_rows * m.n_cols];
    for (r, row) in w.chunks_exact_mut(m.n_cols).enumerate() {
        m.dequantize_row(r, row).expect("dequantize");
    }
    w
}

/// The activations as the dot product sees them: quantized to `vec_dot_type` and back; for
/// q8_1 also each block's stored sum `s = f16(d * sum(q))`, which ggml's q4_1/q5_1 dot uses for
/// the weight-minimum term instead of the exact sum.
fn activations_as_seen(ty: GgmlType, x: &[f32], n_cols: usize) -> (Vec<f32>, Vec<f32>) {
    let vdt = quant::kernel(ty).expect("kernel").vec_dot_type;
    if vdt == GgmlType::F32 {
        return (x.to_vec(), Vec::new());
    }
    let rb = quant::row_bytes(vdt, n_cols).expect("row bytes");
    let mut q = vec![0u8; rb];
    let mut back = vec![0f32; x.len()];
    let mut sums = Vec::new();
    for (src, dst) in x.chunks_exact(n_cols).zip(back.chunks_exact_mut(n_cols)) {
        quant::quantize_row_fast(vdt, src, &mut q).expect("quantize x");
        quant::dequantize_row(vdt, &q, dst).expect("dequantize x");
        if vdt == GgmlType::Q8_1 {
            // block_q8_1 = { f16 d, f16 s, i8 qs[32] }
            sums.extend(q.chunks_exact(vdt.type_size()).map(|b| half::f16::from_le_bytes([b[2], b[3]]).to_f32()));
        }
    }
    (back, sums)
}

/// For q4_1/q5_1 weights (block = { f16 d, f16 m, ... }, 32 elements): replaces the exact
/// `m * sum(x)` of each block by ggml's `m * s` (see `activations_as_seen`).
fn q8_1_sum_correction(m: &QMatrix, seen: &[f32], sums: &[f32], n_tokens: usize, exact: &mut [f64]) {
    let rb = m.row_bytes().expect("row bytes");
    let bs = m.ty.type_size();
    let n_blocks = m.n_cols / 32;
    for t in 0..n_tokens {
        for r in 0..m.n_rows {
            let mut corr = 0f64;
            for b in 0..n_blocks {
                let off = r * rb + b * bs;
                let mw = f64::from(half::f16::from_le_bytes([m.data[off + 2], m.data[off + 3]]).to_f32());
                let xs: f64 = seen[t * m.n_cols + b * 32..][..32].iter().map(|&v| f64::from(v)).sum();
                corr += mw * (f64::from(sums[t * n_blocks + b]) - xs);
            }
            exact[t * m.n_rows + r] += corr;
        }
    }
}

/// Naive `out[t][r] = sum_c w[r][c] * x[t][c]` in f64, plus `sum |w x|` for error bounds.
fn reference(w: &[f32], x: &[f32], n_rows: usize, n_cols: usize, n_tokens: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0f64; n_tokens * n_rows];
    let mut mag = vec![0f64; n_tokens * n_rows];
    for t in 0..n_tokens {
        for r in 0..n_rows {
            let (mut s, mut m) = (0f64, 0f64);
            for c in 0..n_cols {
                let p = f64::from(w[r * n_cols + c]) * f64::from(x[t * n_cols + c]);
                s += p;
                m += p.abs();
            }
            out[t * n_rows + r] = s;
            mag[t * n_rows + r] = m;
        }
    }
    (out, mag)
}

/// Checks matmul of `m` against the references: tightly against the exact dot of what the
/// kernel sees (dequantized weights x re-dequantized activations), loosely against the original
/// f32 activations (the activation quantization error).
fn check_matmul(pool: &ThreadPool, m: &QMatrix, x: &[f32], n_tokens: usize, scratch: &mut MatmulScratch, loose_rel: f64) -> Vec<f32> {
    let mut out = vec![f32::NAN; n_tokens * m.n_rows];
    matmul(pool, m, x, n_tokens, &mut out, scratch).expect("matmul");
    let w = dequantize_matrix(m);
    let (seen, sums) = activations_as_seen(m.ty, x, m.n_cols);
    let (mut exact, mag) = reference(&w, &seen, m.n_rows, m.n_cols, n_tokens);
    if !sums.is_empty() {
        q8_1_sum_correction(m, &seen, &sums, n_tokens, &mut exact);
    }
    let (orig, orig_mag) = reference(&w, x, m.n_rows, m.n_cols, n_tokens);
    for i in 0..out.len() {
        let got = f64::from(out[i]);
        // f32 accumulation over n_cols products.
        let tight = 2e-5 * mag[i] + 1e-6;
        assert!((got - exact[i]).abs() <= tight, "{} [{}]: got {got}, exact {} (bound {tight})", m.ty.name(), i, exact[i]);
        let loose = loose_rel * orig_mag[i] + 1e-6;
        assert!((got - orig[i]).abs() <= loose, "{} [{}]: got {got}, f32 x gives {} (bound {loose})", m.ty.name(), i, orig[i]);
    }
    out
}

#[test]
fn f32_matrix_matches_naive_reference() {
    let mut rng = Rng(11);
    let (n_rows, n_cols) = (67, 96);
    let w = rng.vec(n_rows * n_cols, 1.0);
    let data: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    let m = QMatrix::new(GgmlType::F32, &data, n_rows, n_cols).expect("matrix");
    let mut scratch = MatmulScratch::default();
    for threads in [1, 2, 4] {
        let pool = ThreadPool::new(threads);
        for n_tokens in [1, 3, 17, 40] {
            let x = rng.vec(n_tokens * n_cols, 2.0);
            check_matmul(&pool, &m, &x, n_tokens, &mut scratch, 2e-5);
        }
    }
}

#[test]
fn quantized_matrices_match_reference_on_dequantized_weights() {
    let mut rng = Rng(12);
    let (n_rows, n_cols) = (45, 512);
    let pool = ThreadPool::new(3);
    let mut scratch = MatmulScratch::default();
    let types = [
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];
    for ty in types {
        let w = rng.vec(n_rows * n_cols, 0.5);
        let data = quantize_matrix(ty, &w, n_cols);
        let m = QMatrix::new(ty, &data, n_rows, n_cols).expect("matrix");
        for n_tokens in [1, 2, 33] {
            let x = rng.vec(n_tokens * n_cols, 3.0);
            // q8 activations: about 1/254 of the block max per element.
            check_matmul(&pool, &m, &x, n_tokens, &mut scratch, 0.01);
        }
    }
}

#[test]
fn real_model_ffn_gate_q4_1() {
    let file = GgufFile::open(smollm2_path()).expect("open model");
    let info = file.tensor("blk.0.ffn_gate.weight").expect("tensor");
    assert_eq!(info.ggml_type, GgmlType::Q4_1);
    let m = QMatrix::from_tensor(&file, info).expect("matrix");
    assert_eq!((m.n_rows, m.n_cols), (1536, 576));
    let mut rng = Rng(13);
    let pool = ThreadPool::new(2);
    let mut scratch = MatmulScratch::default();
    let mut previous = None;
    for n_tokens in [1, 5, 20] {
        let x = rng.vec(n_tokens * m.n_cols, 1.0);
        let out = check_matmul(&pool, &m, &x, n_tokens, &mut scratch, 0.01);
        assert!(out.iter().any(|&v| v.abs() > 1e-3), "real weights give non-trivial outputs");
        previous = Some(out);
    }
    assert!(previous.is_some());
}

#[test]
fn result_is_independent_of_thread_count() {
    let mut rng = Rng(14);
    let (n_rows, n_cols) = (300, 256);
    let w = rng.vec(n_rows * n_cols, 1.0);
    let data = quantize_matrix(GgmlType::Q4_1, &w, n_cols);
    let m = QMatrix::new(GgmlType::Q4_1, &data, n_rows, n_cols).expect("matrix");
    for n_tokens in [1, 24, 70] {
        let x = rng.vec(n_tokens * n_cols, 1.0);
        let mut first: Option<Vec<f32>> = None;
        for threads in [1, 2, 3, 8] {
            let pool = ThreadPool::new(threads);
            let mut out = vec![0f32; n_tokens * n_rows];
            matmul(&pool, &m, &x, n_tokens, &mut out, &mut MatmulScratch::default()).expect("matmul");
            match &first {
                None => first = Some(out),
                Some(f) => assert_eq!(f, &out, "threads {threads} tokens {n_tokens}"),
            }
        }
    }
}

#[test]
fn scratch_is_reused_across_sizes() {
    let mut rng = Rng(15);
    let (n_rows, n_cols) = (32, 64);
    let w = rng.vec(n_rows * n_cols, 1.0);
    let data = quantize_matrix(GgmlType::Q8_0, &w, n_cols);
    let m = QMatrix::new(GgmlType::Q8_0, &data, n_rows, n_cols).expect("matrix");
    let pool = ThreadPool::new(2);
    let mut scratch = MatmulScratch::default();
    scratch.reserve(GgmlType::Q8_0, n_cols, 50).expect("reserve");
    for n_tokens in [50, 1, 37, 2] {
        let x = rng.vec(n_tokens * n_cols, 1.0);
        let mut shared = vec![0f32; n_tokens * n_rows];
        let mut fresh = vec![0f32; n_tokens * n_rows];
        matmul(&pool, &m, &x, n_tokens, &mut shared, &mut scratch).expect("matmul");
        matmul(&pool, &m, &x, n_tokens, &mut fresh, &mut MatmulScratch::default()).expect("matmul");
        assert_eq!(shared, fresh, "stale scratch contents must not leak into a smaller call");
    }
}

#[test]
fn shape_mismatches_are_errors() {
    let data = vec![0u8; 4 * 32 * 4];
    assert!(matches!(QMatrix::new(GgmlType::F32, &data, 4, 31), Err(Error::Shape(_))));
    assert!(matches!(QMatrix::new(GgmlType::F32, &data[1..], 4, 32), Err(Error::Shape(_))));
    assert!(matches!(QMatrix::new(GgmlType::Q4_0, &data, 4, 30), Err(Error::Shape(_))), "not whole blocks");
    let m = QMatrix::new(GgmlType::F32, &data, 4, 32).expect("matrix");
    let pool = ThreadPool::new(2);
    let mut s = MatmulScratch::default();
    let mut out = vec![0f32; 8];
    assert!(matches!(matmul(&pool, &m, &[0.0; 63], 2, &mut out, &mut s), Err(Error::Shape(_))));
    assert!(matches!(matmul(&pool, &m, &[0.0; 64], 2, &mut out[..7], &mut s), Err(Error::Shape(_))));
    let bad = QMatrix { ty: GgmlType::F32, data: &data, n_rows: 5, n_cols: 32, packed: None };
    assert!(matches!(matmul(&pool, &bad, &[0.0; 64], 2, &mut [0.0; 10], &mut s), Err(Error::Shape(_))));
    assert!(matmul(&pool, &m, &[0.0; 64], 2, &mut out, &mut s).is_ok());
    let q8k = vec![0u8; quant::row_bytes(GgmlType::Q8_K, 256).expect("q8_K row")];
    let m = QMatrix::new(GgmlType::Q8_K, &q8k, 1, 256).expect("q8_K is a valid matrix layout");
    assert!(matches!(matmul(&pool, &m, &[0.0; 256], 1, &mut [0.0; 1], &mut s), Err(Error::UnsupportedType(..))));
}
