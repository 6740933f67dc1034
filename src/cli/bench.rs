//! `daehwa bench`: prompt-processing and generation speed, measured like llama-bench
//! (pp: one batch of P prompt tokens into an empty cache; tg: N tokens decoded one at a time
//! from an empty cache; each the mean of R runs after one warm-up).
//!
//! `--depth D` (llama-bench's `-d`) first fills the cache with D tokens (untimed, in batches of
//! 512), so pp and tg run at that depth of context: attention then reads D more KV rows per token.
//!
//! `--batch B` adds the batched test of llama.cpp's `llama-batched-bench` (its default pattern,
//! not `-pps`): B sequences each get a `--batch-prompt` token prompt (prefilled together in
//! steps of at most 512 tokens), then all B decode `--batch-gen` tokens together, one token per sequence
//! per forward pass, every one with logits. Reported: B x n / decode time (llama's `S_TG`) and
//! B x prompt / prefill time (`S_PP`).

use std::time::Instant;

use engine::kv::KvCache;
use engine::model::{Batch, ForwardCtx, Workspace};

use super::ModelArgs;
use crate::models::ModelsDir;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt tokens, processed in steps of up to 512 as `serve` does (0 = skip)
    #[arg(short = 'p', long, default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens generated one by one (0 = skip)
    #[arg(short = 'n', long, default_value_t = 128)]
    pub n_gen: usize,
    /// Tokens already in the context before each pp/tg test (llama-bench's -d)
    #[arg(short = 'd', long, default_value_t = 0)]
    pub depth: usize,
    /// Repetitions averaged per test
    #[arg(short = 'r', long, default_value_t = 3)]
    pub reps: usize,
    /// Sequences decoding together in the batched test (0 = skip it)
    #[arg(short = 'B', long, default_value_t = 0)]
    pub batch: usize,
    /// Prompt tokens per sequence before the batched decode (llama-batched-bench's -npp)
    #[arg(long, default_value_t = 128)]
    pub batch_prompt: usize,
    /// Tokens each sequence decodes in the batched test (llama-batched-bench's -ntg)
    #[arg(long, default_value_t = 128)]
    pub batch_gen: usize,
    /// Print {"pp_tokens_per_s", "tg_tokens_per_s", "threads", ...}
    #[arg(long)]
    pub json: bool,
}

/// Largest number of tokens in one prefill forward: the depth fill, the prompt test and the
/// batched test (like the server's step budget and llama.cpp's n_ubatch).
const BATCH_STEP_TOKENS: usize = 512;

pub fn bench(a: BenchArgs, dir: &ModelsDir) -> anyhow::Result<()> {
    let engine = a.model.load(dir, None)?;
    let hp = engine.model.hparams().clone();
    let n_ctx = (a.depth + a.n_prompt.max(a.n_gen) + 1).max(16);
    anyhow::ensure!(n_ctx <= hp.n_ctx_train, "-p/-n exceed the model's context ({})", hp.n_ctx_train);
    let batch_ctx = a.batch_prompt + a.batch_gen + 1;
    anyhow::ensure!(
        a.batch == 0 || batch_ctx <= hp.n_ctx_train,
        "--batch-prompt + --batch-gen exceed the model's context ({})",
        hp.n_ctx_train
    );
    anyhow::ensure!(a.batch == 0 || a.batch_gen > 0, "--batch needs --batch-gen > 0");
    let mut kv = KvCache::new(hp.n_layer, n_ctx, hp.kv_dim(), 1);
    let mut ws = Workspace::default();
    let mut batch = Batch::default();
    let mut logits = Vec::new();
    // Deterministic pseudo-random tokens, like llama-bench's random prompt.
    let mut s = 0x2545F4914F6CDD1Du64;
    let mut next_token = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % hp.n_vocab as u64) as u32
    };
    let reps = a.reps.max(1);
    let depth = a.depth;
    // Runs `tokens` at positions `pos0..` of sequence 0 in forwards of at most
    // BATCH_STEP_TOKENS, with logits for the last token only.
    let steps = |kv: &mut KvCache, batch: &mut Batch, ws: &mut Workspace, logits: &mut Vec<f32>, tokens: &[u32], pos0: usize| -> anyhow::Result<()> {
        for (s, part) in tokens.chunks(BATCH_STEP_TOKENS).enumerate() {
            batch.clear();
            for (j, &tok) in part.iter().enumerate() {
                let i = s * BATCH_STEP_TOKENS + j;
                batch.push(tok, pos0 + i, 0, i + 1 == tokens.len());
            }
            engine.model.forward(batch, &mut ForwardCtx { pool: &engine.pool, kv, ws }, logits)?;
        }
        Ok(())
    };
    // Brings the cache to `depth` tokens (untimed): filled once, as llama-bench keeps its depth
    // state; later runs drop what they appended after it.
    let fill = |kv: &mut KvCache, batch: &mut Batch, ws: &mut Workspace, logits: &mut Vec<f32>, next: &mut dyn FnMut() -> u32| -> anyhow::Result<()> {
        if kv.seq_len(0) >= depth {
            kv.truncate(0, depth);
            return Ok(());
        }
        let tokens: Vec<u32> = (0..depth).map(|_| next()).collect();
        steps(kv, batch, ws, logits, &tokens, 0)
    };
    let mut pp = Vec::new();
    if a.n_prompt > 0 {
        for r in 0..=reps {
            fill(&mut kv, &mut batch, &mut ws, &mut logits, &mut next_token)?;
            let prompt: Vec<u32> = (0..a.n_prompt).map(|_| next_token()).collect();
            // In steps, as `serve` schedules a prompt (its default step budget) and llama.cpp runs
            // one (its default n_ubatch).
            let t = Instant::now();
            steps(&mut kv, &mut batch, &mut ws, &mut logits, &prompt, depth)?;
            if r > 0 {
                pp.push(a.n_prompt as f64 / t.elapsed().as_secs_f64());
            }
        }
    }
    let mut tg = Vec::new();
    if a.n_gen > 0 {
        for r in 0..=reps {
            fill(&mut kv, &mut batch, &mut ws, &mut logits, &mut next_token)?;
            let t = Instant::now();
            for i in 0..a.n_gen {
                batch.clear();
                batch.push(next_token(), depth + i, 0, true);
                engine.model.forward(&batch, &mut ForwardCtx { pool: &engine.pool, kv: &mut kv, ws: &mut ws }, &mut logits)?;
            }
            if r > 0 {
                tg.push(a.n_gen as f64 / t.elapsed().as_secs_f64());
            }
        }
    }
    let (mut bpp, mut btg) = (Vec::new(), Vec::new());
    if a.batch > 0 {
        drop(kv);
        let nb = a.batch;
        let mut kv = KvCache::new(hp.n_layer, batch_ctx, hp.kv_dim(), nb);
        for r in 0..=reps {
            for seq in 0..nb {
                kv.truncate(seq, 0);
            }
            // Prefill: every sequence's prompt, packed into forwards of at most BATCH_STEP_TOKENS.
            let t = Instant::now();
            batch.clear();
            for seq in 0..nb {
                for i in 0..a.batch_prompt {
                    batch.push(next_token(), i, seq, i + 1 == a.batch_prompt);
                    if batch.len() == BATCH_STEP_TOKENS {
                        engine.model.forward(&batch, &mut ForwardCtx { pool: &engine.pool, kv: &mut kv, ws: &mut ws }, &mut logits)?;
                        batch.clear();
                    }
                }
            }
            if !batch.is_empty() {
                engine.model.forward(&batch, &mut ForwardCtx { pool: &engine.pool, kv: &mut kv, ws: &mut ws }, &mut logits)?;
            }
            let t_pp = t.elapsed().as_secs_f64();
            // Decode: one token per sequence per step, all with logits.
            let t = Instant::now();
            for i in 0..a.batch_gen {
                batch.clear();
                for seq in 0..nb {
                    batch.push(next_token(), a.batch_prompt + i, seq, true);
                }
                engine.model.forward(&batch, &mut ForwardCtx { pool: &engine.pool, kv: &mut kv, ws: &mut ws }, &mut logits)?;
            }
            let t_tg = t.elapsed().as_secs_f64();
            if r > 0 {
                if a.batch_prompt > 0 {
                    bpp.push((nb * a.batch_prompt) as f64 / t_pp);
                }
                btg.push((nb * a.batch_gen) as f64 / t_tg);
            }
        }
    }
    let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    let threads = engine.pool.n_threads();
    let weight_gb = engine.model.weight_bytes() as f64 / 1e9;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "pp_tokens_per_s": mean(&pp), "tg_tokens_per_s": mean(&tg), "threads": threads,
                "n_prompt": a.n_prompt, "n_gen": a.n_gen, "depth": depth, "reps": reps,
                "pp_runs": pp, "tg_runs": tg,
                "weight_bytes_per_token": engine.model.weight_bytes(),
                "tg_weight_gb_per_s": mean(&tg) * weight_gb,
                "batch": a.batch, "batch_prompt": a.batch_prompt, "batch_gen": a.batch_gen,
                "batched_pp_tokens_per_s": mean(&bpp), "batched_tg_tokens_per_s": mean(&btg),
                "batched_pp_runs": bpp, "batched_tg_runs": btg,
            })
        );
    } else {
        println!("| model | threads | test | t/s |");
        println!("|---|---|---|---|");
        let name = engine.file.opt_str("general.name").ok().flatten().unwrap_or("?").to_string();
        let at = if depth > 0 { format!(" @ d{depth}") } else { String::new() };
        if a.n_prompt > 0 {
            println!("| {name} | {threads} | pp{}{at} | {:.2} |", a.n_prompt, mean(&pp));
        }
        if a.n_gen > 0 {
            println!("| {name} | {threads} | tg{}{at} | {:.2} |", a.n_gen, mean(&tg));
            println!("(generation reads {:.1} MB of weights per token: {:.2} GB/s)", weight_gb * 1e3, mean(&tg) * weight_gb);
        }
        if a.batch > 0 {
            if a.batch_prompt > 0 {
                println!("| {name} | {threads} | pp{} x{} | {:.2} |", a.batch_prompt, a.batch, mean(&bpp));
            }
            println!("| {name} | {threads} | tg{} x{} | {:.2} |", a.batch_gen, a.batch, mean(&btg));
        }
    }
    Ok(())
}
