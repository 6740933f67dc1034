//! Per-kernel micro-benchmarks, so a regression shows here before it reaches `bench/compare`:
//!
//! - every weight type's `vec_dot` (each ISA variant this CPU runs) and its matmul for decode
//!   (1 token) and prefill (64 tokens), unpacked and packed (4-row interleaved, AVX-512 VNNI)
//!   where the type has a packed kernel, on a random 1536 x 768 matrix;
//! - the real SmolLM2 matrices (ffn_gate, attn_q, the 49152-row tied output) and Gemma-3-270M's
//!   (q5_0 attn_q / ffn_up, q4_K attn_output, q6_K ffn_down, the 262144-row q8_0 output, and
//!   q/k/v in one mixed-type `matmul_many`) when the models are present;
//! - attention (one decode row and a 64-token prefill over 512 cached rows; the prefill also at
//!   Gemma-3-270M's 4 x 256 heads, and at Llama-3.2-1B's 32 x 64 and Llama-3.1-8B's 32 x 128 heads over 2048 rows), RMSNorm,
//!   SwiGLU, RoPE and softmax at SmolLM2's sizes.
//!
//! `cargo bench -p kernels [-- FILTER]` (a plain harness: no dependencies). Single-thread figures
//! are medians of the thread's CPU time, so other processes on a shared machine inflate them
//! less than wall time (which the multi-thread figures must use). `DAEHWA_BENCH_QUICK=1` for a
//! smoke run.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gguf::{GgmlType, GgufFile};
use half::f16;
use kernels::attention::{attention_row, attention_rows_parallel, AttnParams, KvChunk};
use kernels::matmul::{matmul, matmul_many, MatmulScratch, QMatrix};
use kernels::ops::{self, RopeCache, RopeMode};
use kernels::packed::PackedMatrix;
use kernels::pool::{default_threads, ThreadPool};
use kernels::quant;

/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), in seconds.
#[cfg(target_os = "linux")]
fn thread_cpu_seconds() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec (two 64-bit fields on 64-bit Linux).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_seconds() -> f64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

struct Bench {
    budget: Duration,
    filter: Option<String>,
}

impl Bench {
    fn wanted(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }

    /// Median seconds per call of `f` over about `budget` of wall time: thread CPU time when
    /// `cpu` (single-threaded work), wall time otherwise.
    fn time(&self, cpu: bool, mut f: impl FnMut()) -> f64 {
        f(); // warm caches and scratch
        let mut samples = Vec::new();
        let start = Instant::now();
        while start.elapsed() < self.budget || samples.len() < 5 {
            let (w, c) = (Instant::now(), thread_cpu_seconds());
            f();
            samples.push(if cpu { thread_cpu_seconds() - c } else { w.elapsed().as_secs_f64() });
        }
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    }

    fn report(&self, name: &str, s: f64, extra: &str) {
        println!("{name:62} {:>11.2} us  {extra}", s * 1e6);
    }
}

fn model_path() -> Option<PathBuf> {
    named_model_path("DAEHWA_SMOLLM2_GGUF", "smollm2.gguf")
}

/// `$env` if set, else `~/.local/share/daehwa/models/<file>` when it exists.
fn named_model_path(env: &str, file: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").ok()?;
    let p = PathBuf::from(home).join(".local/share/daehwa/models").join(file);
    p.exists().then_some(p)
}

/// Gemma-3-270M's q/k/v (q5_0, q5_0, q8_0: one `matmul_many`, sharing q8_0 activations) for 1
/// and 64 tokens, packed.
fn bench_qkv_many(b: &Bench, f: &GgufFile, pools: &[ThreadPool]) {
    let names = ["blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"];
    let Some(infos) = names.iter().map(|n| f.tensor(n)).collect::<Option<Vec<_>>>() else { return };
    let mats: Vec<QMatrix> = infos.iter().map(|i| QMatrix::from_tensor(f, i).expect("matrix")).collect();
    let packs: Vec<Option<PackedMatrix>> = mats.iter().map(PackedMatrix::pack).collect();
    let mats: Vec<QMatrix> = mats.iter().zip(&packs).map(|(m, p)| p.as_ref().map_or(*m, |p| m.with_packed(p).expect("same shape"))).collect();
    let n_cols = mats[0].n_cols;
    let mut scratch = MatmulScratch::default();
    for pool in pools {
        for n_tokens in [1, 64] {
            let label = format!("matmul_many gemma3 q/k/v t{n_tokens} threads {}", pool.n_threads());
            if !b.wanted(&label) {
                continue;
            }
            let x = random_f32(n_tokens * n_cols, 3);
            let mut outs: Vec<Vec<f32>> = mats.iter().map(|m| vec![0f32; n_tokens * m.n_rows]).collect();
            let s = b.time(pool.n_threads() == 1, || {
                let mut jobs: Vec<(&QMatrix, &mut [f32])> = mats.iter().zip(outs.iter_mut()).map(|(m, o)| (m, &mut o[..])).collect();
                matmul_many(pool, &mut jobs, &x, n_tokens, &mut scratch).expect("matmul_many");
                black_box(&jobs);
            });
            let rows: usize = mats.iter().map(|m| m.n_rows).sum();
            b.report(&label, s, &format!("{:7.1} GFLOP/s", 2.0 * (rows * n_cols * n_tokens) as f64 / s / 1e9));
        }
    }
}

fn random_f32(n: usize, seed: u32) -> Vec<f32> {
    (0..n).map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) as f32 / u32::MAX as f32) - 0.5).collect()
}

fn random_matrix(ty: GgmlType, n_rows: usize, n_cols: usize) -> Vec<u8> {
    let rb = quant::row_bytes(ty, n_cols).expect("row bytes");
    if ty == GgmlType::IQ4_XS {
        // No quantizer for iq4_xs here: random bytes are valid blocks (4-bit codes, 6-bit
        // scales) once each block's f16 `d` (its first two of 136 bytes) is a small finite value.
        let mut data: Vec<u8> = random_f32(n_rows * rb, 11).iter().map(|v| v.to_bits() as u8).collect();
        for blk in data.chunks_exact_mut(136) {
            blk[..2].copy_from_slice(&0x2147u16.to_le_bytes());
        }
        return data;
    }
    let w = random_f32(n_rows * n_cols, 7);
    let mut data = vec![0u8; n_rows * rb];
    for (src, dst) in w.chunks_exact(n_cols).zip(data.chunks_exact_mut(rb)) {
        quant::quantize_row(ty, src, dst).expect("quantize");
    }
    data
}

/// Every variant of `m`'s dot product over all its rows, one thread.
fn bench_vec_dot(b: &Bench, name: &str, m: &QMatrix) {
    for k in quant::kernel_variants(m.ty) {
        let label = format!("vec_dot {name} [{}] x {} rows", k.isa, m.n_rows);
        if !b.wanted(&label) {
            continue;
        }
        let xrb = quant::row_bytes(k.vec_dot_type, m.n_cols).expect("row bytes");
        let mut xq = vec![0u8; xrb];
        quant::quantize_row_fast(k.vec_dot_type, &random_f32(m.n_cols, 3), &mut xq).expect("quantize");
        let rb = m.row_bytes().expect("row bytes");
        let s = b.time(true, || {
            let mut acc = 0f32;
            for row in m.data.chunks_exact(rb) {
                acc += (k.vec_dot)(m.n_cols, row, &xq);
            }
            black_box(acc);
        });
        b.report(&label, s, &format!("{:6.2} ns/row", s * 1e9 / m.n_rows as f64));
    }
}

/// matmul of `m` for 1 and 64 tokens on each pool, unpacked and (where available) packed.
fn bench_matmul(b: &Bench, name: &str, m: &QMatrix, pools: &[ThreadPool]) {
    bench_matmul_tokens(b, name, m, pools, &[1, 64]);
}

/// matmul of `m` for each token count on each pool, unpacked and (where available) packed.
fn bench_matmul_tokens(b: &Bench, name: &str, m: &QMatrix, pools: &[ThreadPool], tokens: &[usize]) {
    let packed = PackedMatrix::pack(m);
    let mut variants = vec![("", *m)];
    if let Some(p) = &packed {
        variants.push((" packed", m.with_packed(p).expect("same shape")));
    }
    let mut scratch = MatmulScratch::default();
    for pool in pools {
        for &n_tokens in tokens {
            let x = random_f32(n_tokens * m.n_cols, 3);
            let mut out = vec![0f32; n_tokens * m.n_rows];
            for (tag, mm) in &variants {
                let label = format!("matmul{tag} {name} t{n_tokens} threads {}", pool.n_threads());
                if !b.wanted(&label) {
                    continue;
                }
                let s = b.time(pool.n_threads() == 1, || {
                    matmul(pool, mm, &x, n_tokens, &mut out, &mut scratch).expect("matmul");
                    black_box(&out);
                });
                let gflops = 2.0 * (m.n_rows * m.n_cols * n_tokens) as f64 / s / 1e9;
                let gbs = m.data.len() as f64 / s / 1e9;
                b.report(&label, s, &format!("{gflops:7.1} GFLOP/s {gbs:6.1} GB/s of weights"));
            }
        }
    }
}

/// Copies (each packed) of one random 14336 x 4096 matrix of type `ty`, past 1 GiB in all, one
/// token through each in turn per call, on each pool; then a streaming read of as many bytes.
fn bench_dram_decode(b: &Bench, pools: &[ThreadPool], ty: GgmlType) {
    let (n_rows, n_cols) = (14336, 4096);
    let data = random_matrix(ty, n_rows, n_cols);
    let copies = (1usize << 30).div_ceil(data.len()) + 1;
    let owned: Vec<Vec<u8>> = (0..copies).map(|_| data.clone()).collect();
    let mats: Vec<QMatrix> = owned.iter().map(|d| QMatrix::new(ty, d, n_rows, n_cols).expect("matrix")).collect();
    let packs: Vec<Option<PackedMatrix>> = mats.iter().map(PackedMatrix::pack).collect();
    let mats: Vec<QMatrix> = mats.iter().zip(&packs).map(|(m, p)| p.as_ref().map_or(*m, |p| m.with_packed(p).expect("same shape"))).collect();
    let bytes = (data.len() * copies) as f64;
    let x = random_f32(n_cols, 3);
    let mut out = vec![0f32; n_rows];
    let mut scratch = MatmulScratch::default();
    let stream: Vec<u64> = (0..data.len() * copies / 8).map(|i| i as u64).collect();
    for pool in pools {
        let s = b.time(false, || {
            for m in &mats {
                matmul(pool, m, &x, 1, &mut out, &mut scratch).expect("matmul");
            }
            black_box(&out);
        });
        let label = format!("dram decode {} {copies}x{n_rows}x{n_cols} threads {}", ty.name(), pool.n_threads());
        b.report(&label, s, &format!("{:6.1} GB/s", bytes / s / 1e9));
        let per = stream.len().div_ceil(pool.n_threads());
        let sums: Vec<std::sync::atomic::AtomicU64> = (0..pool.n_threads()).map(|_| std::sync::atomic::AtomicU64::new(0)).collect();
        let r = b.time(false, || {
            pool.run(pool.n_threads(), &|i| {
                let part = &stream[(i * per).min(stream.len())..((i + 1) * per).min(stream.len())];
                let (mut s0, mut s1, mut s2, mut s3) = (0u64, 0u64, 0u64, 0u64);
                for c in part.chunks_exact(4) {
                    s0 = s0.wrapping_add(c[0]);
                    s1 = s1.wrapping_add(c[1]);
                    s2 = s2.wrapping_add(c[2]);
                    s3 = s3.wrapping_add(c[3]);
                }
                sums[i].store(s0 ^ s1 ^ s2 ^ s3, std::sync::atomic::Ordering::Relaxed);
            });
            black_box(&sums);
        });
        b.report(&format!("dram streaming read, threads {}", pool.n_threads()), r, &format!("{:6.1} GB/s (decode at {:.2} of it)", bytes / r / 1e9, r / s));
    }
}

/// A causal 64-token prefill chunk (the last 64 of the chunks' rows) over each pool.
fn bench_attention_prefill(b: &Bench, pools: &[ThreadPool], what: &str, q: &[f32], chunks: &[KvChunk], p: &AttnParams, out: &mut [f32]) {
    let n_kv: usize = chunks.iter().map(|c| c.n_rows).sum();
    for pool in pools {
        let label = format!("attention_rows_parallel {what}, threads {}", pool.n_threads());
        if b.wanted(&label) {
            let s = b.time(pool.n_threads() == 1, || {
                attention_rows_parallel(pool, q, 64, chunks, &|t| 0..n_kv - 63 + t, p, out);
                black_box(&*out);
            });
            b.report(&label, s, "");
        }
    }
}

/// [`bench_attention_prefill`] on random K/V (`n_kv` rows, seed `seeds.0`) and queries (seed
/// `seeds.1`, scaled by `q_scale`) of the shape `p`.
fn bench_attention_shape(b: &Bench, pools: &[ThreadPool], shape: &str, p: &AttnParams, n_kv: usize, seeds: (u32, u32), q_scale: f32) {
    let kv: Vec<f16> = random_f32(n_kv * p.n_head_kv * p.head_dim, seeds.0).into_iter().map(f16::from_f32).collect();
    let chunks = [KvChunk { k: &kv, v: &kv, n_rows: n_kv }];
    let q: Vec<f32> = random_f32(64 * p.n_head * p.head_dim, seeds.1).into_iter().map(|v| v * q_scale).collect();
    let mut out = vec![0f32; q.len()];
    bench_attention_prefill(b, pools, &format!("{shape}, 64 tokens, {n_kv} rows"), &q, &chunks, p, &mut out);
}

fn main() {
    let quick = std::env::var_os("DAEHWA_BENCH_QUICK").is_some();
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let b = Bench { budget: Duration::from_millis(if quick { 30 } else { 300 }), filter };
    let n_default = default_threads();
    let mut pools = vec![ThreadPool::new(1)];
    if n_default > 1 {
        pools.push(ThreadPool::new(n_default));
    }
    println!("kernels: {} (default_threads = {n_default}); single-thread times are thread CPU time", quant::kernel(GgmlType::Q4_1).map_or("?", |k| k.isa));

    // Every weight type on one synthetic shape (768 = 3 k-quant super-blocks = 24 blocks).
    let (n_rows, n_cols) = (1536, 768);
    let types = [
        GgmlType::F32,
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
        let data = random_matrix(ty, n_rows, n_cols);
        let m = QMatrix::new(ty, &data, n_rows, n_cols).expect("matrix");
        let name = format!("{} {n_rows}x{n_cols}", ty.name());
        bench_vec_dot(&b, &name, &m);
        bench_matmul(&b, &name, &m, &pools);
    }

    // Llama-3.2-1B's Q4_K_M shapes at a 512-token prompt: with AMX, its tiles; compare
    // `DAEHWA_KERNELS=avx512` for the AVX-512 VNNI kernels. And two of its F16 / BF16 shapes
    // (`DAEHWA_KERNELS=avx2` for the row-at-a-time dot).
    for (ty, n_rows, n_cols) in [
        (GgmlType::Q4_K, 2048, 2048),
        (GgmlType::Q4_K, 8192, 2048),
        (GgmlType::Q6_K, 2048, 8192),
        (GgmlType::IQ4_XS, 8192, 2048),
        (GgmlType::F16, 8192, 2048),
        (GgmlType::F16, 2048, 8192),
        (GgmlType::BF16, 8192, 2048),
    ] {
        let data = random_matrix(ty, n_rows, n_cols);
        let m = QMatrix::new(ty, &data, n_rows, n_cols).expect("matrix");
        bench_matmul_tokens(&b, &format!("llama1b {} {n_rows}x{n_cols}", ty.name()), &m, &pools, &[1, 16, 32, 512]);
    }

    // A Qwen3-30B-A3B expert's gate (q4_0 as in bench/moe_model.py): a 512-token prompt gives
    // each of its 128 experts about 32 tokens, fewer for shorter prompts (the 4-row kernels
    // below the q4_0 tiles' minimum).
    {
        let (ty, n_rows, n_cols) = (GgmlType::Q4_0, 768, 2048);
        let data = random_matrix(ty, n_rows, n_cols);
        let m = QMatrix::new(ty, &data, n_rows, n_cols).expect("matrix");
        bench_matmul_tokens(&b, "qwen3moe expert q4_0 768x2048", &m, &pools, &[1, 8, 12, 15, 16, 24, 32]);
    }

    // Decode with the weights in DRAM: copies of an 8B-shaped Q4_K ffn matrix (14336 x 4096),
    // together larger than any L3 here, each packed, one token through each in turn; next to
    // a plain streaming read of as many bytes on the same pool (the ceiling decode approaches).
    if b.wanted("dram") {
        bench_dram_decode(&b, &pools, GgmlType::Q4_K);
        bench_dram_decode(&b, &pools, GgmlType::Q6_K);
    }

    // The real SmolLM2 matrices.
    match model_path().and_then(|p| GgufFile::open(p).ok()) {
        Some(f) => {
            for name in ["blk.0.ffn_gate.weight", "blk.0.attn_q.weight", "token_embd.weight"] {
                if let Some(info) = f.tensor(name) {
                    let m = QMatrix::from_tensor(&f, info).expect("matrix");
                    let label = format!("smollm2 {name} ({})", info.ggml_type.name());
                    bench_matmul(&b, &label, &m, &pools);
                }
            }
        }
        None => eprintln!("SmolLM2 not found: skipping the real-matrix benchmarks (`daehwa pull smollm2`)"),
    }

    // The real Gemma-3-270M matrices (q5_0, q4_K, q6_K and the 262144-row q8_0 tied output).
    match named_model_path("DAEHWA_GEMMA3_GGUF", "gemma3-270m.gguf").and_then(|p| GgufFile::open(p).ok()) {
        Some(f) => {
            for name in ["blk.0.attn_q.weight", "blk.0.ffn_up.weight", "blk.0.attn_output.weight", "blk.0.ffn_down.weight", "token_embd.weight"] {
                if let Some(info) = f.tensor(name) {
                    let m = QMatrix::from_tensor(&f, info).expect("matrix");
                    let label = format!("gemma3 {name} ({})", info.ggml_type.name());
                    bench_matmul(&b, &label, &m, &pools);
                }
            }
            bench_qkv_many(&b, &f, &pools);
        }
        None => eprintln!("Gemma-3-270M not found: skipping its matrices (`daehwa pull gemma3-270m`)"),
    }

    // Attention at SmolLM2's shape over 512 cached rows: one decode row, then a 64-token
    // prefill chunk (causal, the last 64 positions) spread over the pool.
    let p = AttnParams { n_head: 9, n_head_kv: 3, head_dim: 64, scale: 0.125, softcap: None, sinks: None };
    let n_kv = 512;
    let kv: Vec<f16> = random_f32(n_kv * 3 * 64, 5).into_iter().map(f16::from_f32).collect();
    let chunks = [KvChunk { k: &kv, v: &kv, n_rows: n_kv }];
    let q = random_f32(64 * 9 * 64, 9);
    let mut out = vec![0f32; 64 * 9 * 64];
    let mut scratch = Vec::new();
    if b.wanted("attention_row") {
        let s = b.time(true, || {
            attention_row(&q[..576], &chunks, &p, &mut scratch, &mut out[..576]);
            black_box(&out);
        });
        b.report(&format!("attention_row 9 heads x 64, 3 kv heads, {n_kv} rows"), s, "");
    }
    bench_attention_prefill(&b, &pools, &format!("64 tokens, {n_kv} rows"), &q, &chunks, &p, &mut out);

    // Llama-3.2-1B's shape: 32 query heads of 64 over 8 KV heads (groups of 4), a 64-token
    // prefill chunk over 2048 cached rows (prompts at depth).
    let pl = AttnParams { n_head: 32, n_head_kv: 8, head_dim: 64, scale: 0.125, softcap: None, sinks: None };
    bench_attention_shape(&b, &pools, "llama 32 heads x 64, 8 kv heads", &pl, 2048, (7, 11), 1.0);
    // Llama-3.1-8B's shape: 32 query heads of 128 over 8 KV heads, the same chunk and depth.
    let p8 = AttnParams { n_head: 32, n_head_kv: 8, head_dim: 128, scale: 128f32.powf(-0.5), softcap: None, sinks: None };
    bench_attention_shape(&b, &pools, "llama8b 32 heads x 128, 8 kv heads", &p8, 2048, (8, 12), 1.0);
    // Gemma-3-270M's shape: 4 query heads of 256 over one KV head (the grouped-heads kernel),
    // a 64-token prefill chunk over 512 cached rows.
    let pg = AttnParams { n_head: 4, n_head_kv: 1, head_dim: 256, scale: 1.0, softcap: None, sinks: None };
    bench_attention_shape(&b, &pools, "gemma 4 heads x 256, 1 kv head", &pg, n_kv, (6, 10), 0.0625);

    let x = random_f32(1536, 1);
    let up = random_f32(1536, 2);
    let w = random_f32(576, 4);
    let mut y = vec![0f32; 1536];
    if b.wanted("rms_norm") {
        let mut y576 = vec![0f32; 576];
        let s = b.time(true, || {
            ops::rms_norm(&x[..576], &w, 1e-5, &mut y576);
            black_box(&y576);
        });
        b.report("rms_norm 576", s, "");
    }
    if b.wanted("swiglu") {
        let s = b.time(true, || {
            ops::swiglu(&x, &up, &mut y);
            black_box(&y);
        });
        b.report("swiglu 1536", s, "");
    }
    if b.wanted("rope") {
        let cache = RopeCache::new(64, 64, 100000.0, 1.0, 2048);
        let mut qr = random_f32(576, 8);
        let s = b.time(true, || {
            cache.apply(&mut qr, 9, 1000, RopeMode::Normal);
            black_box(&qr);
        });
        b.report("rope (cached) 9 heads x 64", s, "");
    }
    if b.wanted("softmax") {
        let mut logits = random_f32(49152, 6);
        let s = b.time(true, || {
            ops::softmax_inplace(&mut logits);
            black_box(&logits);
        });
        b.report("softmax 49152", s, "");
    }
}
