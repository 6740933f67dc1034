//! `daehwa bench`: prompt-processing and generation speed, measured like llama-bench
//! (pp: one batch of P prompt tokens into an empty cache; tg: N tokens decoded one at a time
//! from an empty cache; each the mean of R runs after one warm-up).

use std::time::Instant;

use engine::kv::KvCache;
use engine::model::{Batch, ForwardCtx, Workspace};

use super::ModelArgs;
use crate::models::ModelsDir;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt tokens processed in one batch (0 = skip)
    #[arg(short = 'p', long, default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens generated one by one (0 = skip)
    #[arg(short = 'n', long, default_value_t = 128)]
    pub n_gen: usize,
    /// Repetitions averaged per test
    #[arg(short = 'r', long, default_value_t = 3)]
    pub reps: usize,
    /// Print {"pp_tokens_per_s", "tg_tokens_per_s", "threads", ...}
    #[arg(long)]
    pub json: bool,
}

pub fn bench(a: BenchArgs, dir: &ModelsDir) -> anyhow::Result<()> {
    let engine = a.model.load(dir, None)?;
    let hp = engine.model.hparams().clone();
    let n_ctx = (a.n_prompt.max(a.n_gen) + 1).max(16);
    anyhow::ensure!(n_ctx <= hp.n_ctx_train, "-p/-n exceed the model's context ({})", hp.n_ctx_train);
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
    let mut pp = Vec::new();
    if a.n_prompt > 0 {
        for r in 0..=reps {
            kv.truncate(0, 0);
            batch.clear();
            for i in 0..a.n_prompt {
                batch.push(next_token(), i, 0, i + 1 == a.n_prompt);
            }
            let t = Instant::now();
            engine.model.forward(&batch, &mut ForwardCtx { pool: &engine.pool, kv: &mut kv, ws: &mut ws }, &mut logits)?;
            if r > 0 {
                pp.push(a.n_prompt as f64 / t.elapsed().as_secs_f64());
            }
        }
    }
    let mut tg = Vec::new();
    if a.n_gen > 0 {
        for r in 0..=reps {
            kv.truncate(0, 0);
            let t = Instant::now();
            for i in 0..a.n_gen {
                batch.clear();
                batch.push(next_token(), i, 0, true);
                engine.model.forward(&batch, &mut ForwardCtx { pool: &engine.pool, kv: &mut kv, ws: &mut ws }, &mut logits)?;
            }
            if r > 0 {
                tg.push(a.n_gen as f64 / t.elapsed().as_secs_f64());
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
                "n_prompt": a.n_prompt, "n_gen": a.n_gen, "reps": reps,
                "pp_runs": pp, "tg_runs": tg,
                "weight_bytes_per_token": engine.model.weight_bytes(),
                "tg_weight_gb_per_s": mean(&tg) * weight_gb,
            })
        );
    } else {
        println!("| model | threads | test | t/s |");
        println!("|---|---|---|---|");
        let name = engine.file.opt_str("general.name").ok().flatten().unwrap_or("?").to_string();
        if a.n_prompt > 0 {
            println!("| {name} | {threads} | pp{} | {:.2} |", a.n_prompt, mean(&pp));
        }
        if a.n_gen > 0 {
            println!("| {name} | {threads} | tg{} | {:.2} |", a.n_gen, mean(&tg));
            println!("(generation reads {:.1} MB of weights per token: {:.2} GB/s)", weight_gb * 1e3, mean(&tg) * weight_gb);
        }
    }
    Ok(())
}
