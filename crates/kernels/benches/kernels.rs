//! Throughput of the hot kernels on SmolLM2-135M's shapes (the real weights when the model is
//! present, random Q4_1 matrices otherwise): matmul for decode (1 token) and prefill (64 tokens)
//! on 1 thread and on `default_threads()`, attention over a 512-row KV cache, and the f32 ops.
//!
//! `cargo bench -p kernels` (a plain timing harness: no dependencies, medians of repeated runs).
//! Set `DAEHWA_BENCH_QUICK=1` for a smoke run.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gguf::{GgmlType, GgufFile};
use half::f16;
use kernels::attention::{attention_row, AttnParams, KvChunk};
use kernels::matmul::{matmul, MatmulScratch, QMatrix};
use kernels::ops::{self, RopeCache, RopeMode};
use kernels::pool::{default_threads, ThreadPool};
use kernels::quant;

/// Median seconds per call of `f`, over about `budget` of wall time.
fn time(budget: Duration, mut f: impl FnMut()) -> f64 {
    f(); // warm caches and scratch
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 5 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn model_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("DAEHWA_SMOLLM2_GGUF") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").ok()?;
    let p = PathBuf::from(home).join(".local/share/daehwa/models/smollm2.gguf");
    p.exists().then_some(p)
}

fn random_f32(n: usize, seed: u32) -> Vec<f32> {
    (0..n).map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) as f32 / u32::MAX as f32) - 0.5).collect()
}

fn random_q4_1(n_rows: usize, n_cols: usize) -> Vec<u8> {
    let rb = quant::row_bytes(GgmlType::Q4_1, n_cols).expect("row bytes");
    let w = random_f32(n_rows * n_cols, 7);
    let mut data = vec![0u8; n_rows * rb];
    for (src, dst) in w.chunks_exact(n_cols).zip(data.chunks_exact_mut(rb)) {
        quant::quantize_row(GgmlType::Q4_1, src, dst).expect("quantize");
    }
    data
}

fn main() {
    let quick = std::env::var_os("DAEHWA_BENCH_QUICK").is_some();
    let budget = Duration::from_millis(if quick { 50 } else { 400 });
    let file = model_path().and_then(|p| GgufFile::open(p).ok());
    let synthetic: Vec<(String, Vec<u8>, usize, usize)> = [("ffn_gate", 1536, 576), ("attn_q", 576, 576), ("output", 49152, 576)]
        .iter()
        .map(|&(n, r, c)| (format!("{n} (random q4_1)"), random_q4_1(r, c), r, c))
        .collect();
    let mut mats: Vec<(String, QMatrix)> = Vec::new();
    match &file {
        Some(f) => {
            for name in ["blk.0.ffn_gate.weight", "blk.0.attn_q.weight", "token_embd.weight"] {
                if let Some(info) = f.tensor(name) {
                    let m = QMatrix::from_tensor(f, info).expect("matrix");
                    mats.push((format!("{name} ({})", info.ggml_type.name()), m));
                }
            }
        }
        None => {
            eprintln!("model not found: benchmarking random Q4_1 matrices");
            for (name, data, r, c) in &synthetic {
                mats.push((name.clone(), QMatrix::new(GgmlType::Q4_1, data, *r, *c).expect("matrix")));
            }
        }
    }

    // The bare dot-product kernel over the first matrix, single-threaded: the floor for matmul.
    if let Some((name, m)) = mats.first() {
        let k = quant::kernel(m.ty).expect("kernel");
        let xrb = quant::row_bytes(k.vec_dot_type, m.n_cols).expect("row bytes");
        let mut xq = vec![0u8; xrb];
        quant::quantize_row_fast(k.vec_dot_type, &random_f32(m.n_cols, 3), &mut xq).expect("quantize");
        let rb = m.row_bytes().expect("row bytes");
        let s = time(budget, || {
            let mut acc = 0f32;
            for row in m.data.chunks_exact(rb) {
                acc += (k.vec_dot)(m.n_cols, row, &xq);
            }
            black_box(acc);
        });
        println!("vec_dot ({}) over {name}: {:9.1} us for {} rows", k.isa, s * 1e6, m.n_rows);
    }

    let n_default = default_threads();
    println!("default_threads = {n_default}");
    for threads in [1, n_default] {
        let pool = ThreadPool::new(threads);
        let mut scratch = MatmulScratch::default();
        for (name, m) in &mats {
            for n_tokens in [1, 64] {
                let x = random_f32(n_tokens * m.n_cols, 3);
                let mut out = vec![0f32; n_tokens * m.n_rows];
                let s = time(budget, || {
                    matmul(&pool, m, &x, n_tokens, &mut out, &mut scratch).expect("matmul");
                    black_box(&out);
                });
                let gflops = 2.0 * (m.n_rows * m.n_cols * n_tokens) as f64 / s / 1e9;
                let gbs = m.data.len() as f64 / s / 1e9;
                println!("matmul {name:40} tokens {n_tokens:3} threads {threads}: {:9.1} us  {gflops:6.1} GFLOP/s  {gbs:5.1} GB/s weights", s * 1e6);
                if let Some(p) = kernels::packed::PackedMatrix::pack(m) {
                    let mp = m.with_packed(&p).expect("packed");
                    let s = time(budget, || {
                        matmul(&pool, &mp, &x, n_tokens, &mut out, &mut scratch).expect("matmul");
                        black_box(&out);
                    });
                    let gflops = 2.0 * (m.n_rows * m.n_cols * n_tokens) as f64 / s / 1e9;
                    let gbs = m.data.len() as f64 / s / 1e9;
                    println!("packed {name:40} tokens {n_tokens:3} threads {threads}: {:9.1} us  {gflops:6.1} GFLOP/s  {gbs:5.1} GB/s weights", s * 1e6);
                }
            }
        }
        if threads == n_default && threads == 1 {
            break;
        }
    }

    // Attention: SmolLM2 shape, one decode query over 512 cached rows.
    let p = AttnParams { n_head: 9, n_head_kv: 3, head_dim: 64, scale: 0.125, softcap: None };
    let n_kv = 512;
    let kv: Vec<f16> = random_f32(n_kv * 3 * 64, 5).into_iter().map(f16::from_f32).collect();
    let chunks = [KvChunk { k: &kv, v: &kv, n_rows: n_kv }];
    let q = random_f32(9 * 64, 9);
    let mut out = vec![0f32; 9 * 64];
    let mut scratch = Vec::new();
    let s = time(budget, || {
        attention_row(&q, &chunks, &p, &mut scratch, &mut out);
        black_box(&out);
    });
    println!("attention_row 9x64 heads, 3 kv heads, {n_kv} rows: {:9.1} us", s * 1e6);

    let x = random_f32(1536, 1);
    let up = random_f32(1536, 2);
    let w = random_f32(576, 4);
    let mut y = vec![0f32; 1536];
    let s = time(budget, || {
        ops::swiglu(&x, &up, &mut y);
        black_box(&y);
    });
    println!("swiglu 1536: {:9.3} us", s * 1e6);
    let mut y576 = vec![0f32; 576];
    let s = time(budget, || {
        ops::rms_norm(&x[..576], &w, 1e-5, &mut y576);
        black_box(&y576);
    });
    println!("rms_norm 576: {:9.3} us", s * 1e6);
    let cache = RopeCache::new(64, 64, 100000.0, 1.0, 2048);
    let mut qr = random_f32(576, 8);
    let s = time(budget, || {
        cache.apply(&mut qr, 9, 1000, RopeMode::Normal);
        black_box(&qr);
    });
    println!("rope (cached) 9x64: {:9.3} us", s * 1e6);
    let mut logits = random_f32(49152, 6);
    let s = time(budget, || {
        ops::softmax_inplace(&mut logits);
        black_box(&logits);
    });
    println!("softmax 49152: {:9.1} us", s * 1e6);
}
