//! Model architectures. Each family lives in its own file with its hyper-parameters, weight
//! loading and forward pass together; one `match` on `general.architecture` picks the loader.
//!
//! Models are stateless: the KV cache, the scheduler and the sampler live outside them.

mod exaone;
mod gemma2;
mod gemma3;
mod hparams;
mod llama;
mod phi3;
mod moe;
mod moe_families;
mod qwen;
mod rope_scaling;
mod weights;

use std::sync::Arc;

use gguf::GgufFile;
use kernels::pool::ThreadPool;

pub use hparams::{HParams, RopeStyle};
pub use llama::Llama;
pub use rope_scaling::RopeScaling;

use crate::kv::KvStore;
use crate::{Error, Result, TokenId};

/// Architectures `load` accepts (`general.architecture`).
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3", "exaone", "exaone4", "gemma3", "gemma2", "phi3", "mistral3", "qwen3moe", "gpt-oss"];

/// A flat batch, like llama.cpp's `llama_batch`: tokens of one or many sequences, each with its
/// position, its sequence slot in the KV cache and whether its logits are wanted.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub tokens: Vec<TokenId>,
    pub pos: Vec<usize>,
    pub seq: Vec<usize>,
    pub logits: Vec<bool>,
}

impl Batch {
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.pos.clear();
        self.seq.clear();
        self.logits.clear();
    }
    pub fn push(&mut self, token: TokenId, pos: usize, seq: usize, logits: bool) {
        self.tokens.push(token);
        self.pos.push(pos);
        self.seq.push(seq);
        self.logits.push(logits);
    }
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
    pub fn n_logits(&self) -> usize {
        self.logits.iter().filter(|&&l| l).count()
    }
}

/// Everything a forward pass needs besides the weights and the batch.
pub struct ForwardCtx<'a> {
    pub pool: &'a ThreadPool,
    pub kv: &'a mut dyn KvStore,
    pub ws: &'a mut Workspace,
}

/// Activation buffers reused across forward passes: they grow to the largest batch seen and are
/// never freed, so the decode loop allocates nothing once warm.
#[derive(Default)]
pub struct Workspace {
    pub(crate) x: Vec<f32>,
    pub(crate) h: Vec<f32>,
    pub(crate) q: Vec<f32>,
    pub(crate) k: Vec<f32>,
    pub(crate) v: Vec<f32>,
    pub(crate) att: Vec<f32>,
    pub(crate) proj: Vec<f32>,
    pub(crate) gate: Vec<f32>,
    pub(crate) up: Vec<f32>,
    pub(crate) rows: Vec<usize>,
    pub(crate) mm: kernels::matmul::MatmulScratch,
    pub(crate) moe: moe::MoeScratch,
}

/// Grows `v` to at least `n` elements (never shrinks) and returns the first `n`.
pub(crate) fn grow(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    if v.len() < n {
        v.resize(n, 0.0);
    }
    &mut v[..n]
}

/// A loaded model of any supported architecture.
pub trait Model: Send + Sync {
    fn hparams(&self) -> &HParams;
    /// Runs the batch, stores its K/V in the cache, and writes the logits of the tokens whose
    /// `logits` flag is set into `out` (`n_logits * n_vocab`, in batch order).
    fn forward(&self, batch: &Batch, ctx: &mut ForwardCtx<'_>, out: &mut Vec<f32>) -> Result<()>;
    /// Bytes of weights read per generated token (for bandwidth figures).
    fn weight_bytes(&self) -> usize;
}

/// Loads the model named by `general.architecture`.
pub fn load(file: Arc<GgufFile>) -> Result<Box<dyn Model>> {
    let arch = file.get_str("general.architecture")?.to_string();
    match arch.as_str() {
        "llama" => Ok(Box::new(Llama::load(file)?)),
        "qwen2" => Ok(Box::new(qwen::load_qwen2(file)?)),
        "qwen3" => Ok(Box::new(qwen::load_qwen3(file)?)),
        "exaone" => Ok(Box::new(exaone::load_exaone(file)?)),
        "exaone4" => Ok(Box::new(exaone::load_exaone4(file)?)),
        "gemma3" => Ok(Box::new(gemma3::load_gemma3(file)?)),
        "gemma2" => Ok(Box::new(gemma2::load_gemma2(file)?)),
        "phi3" => Ok(Box::new(phi3::load_phi3(file)?)),
        "mistral3" => Ok(Box::new(Llama::load_variant(file, llama::MISTRAL3)?)),
        "qwen3moe" => Ok(Box::new(moe_families::load_qwen3moe(file)?)),
        "gpt-oss" => Ok(Box::new(moe_families::load_gpt_oss(file)?)),
        _ => Err(Error::UnsupportedArchitecture { arch, supported: SUPPORTED_ARCHITECTURES.join(", ") }),
    }
}

/// First position a query at `pos` sees: `0` for full attention; with a sliding window of `w`,
/// the keys at `p0 > pos - w` (llama.cpp masks `pos - p0 >= w`), i.e. the last `w` positions.
pub(crate) fn visible_start(pos: usize, window: Option<usize>) -> usize {
    match window {
        Some(w) => (pos + 1).saturating_sub(w),
        None => 0,
    }
}

/// Causal attention for every token of the batch: each run of consecutive tokens of one sequence
/// attends over that sequence's cached rows `0..=pos`, its query heads spread over the pool;
/// row-independent, so a token's result does not depend on what else is in the batch. With a
/// sliding window, a token at `pos` sees only the cached rows
/// `visible_start(pos, window)..=pos`. Rows before a run's first visible position are not even
/// fetched from the cache, so a paged store may have dropped them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_window(
    pool: &ThreadPool,
    kv: &dyn KvStore,
    il: usize,
    batch: &Batch,
    q: &[f32],
    p: &kernels::attention::AttnParams,
    window: Option<usize>,
    out: &mut [f32],
) {
    let row = p.n_head * p.head_dim;
    for (a, b) in seq_runs(batch) {
        let seq = batch.seq[a];
        let end = batch.pos[a..b].iter().copied().max().map_or(0, |m| m + 1);
        // Positions increase within a run, so its first token sees the earliest row.
        let start = visible_start(batch.pos[a], window);
        let pos = &batch.pos[a..b];
        let (q_run, out_run) = (&q[a * row..b * row], &mut out[a * row..b * row]);
        kv.with_chunks(il, seq, start, end, &mut |chunks| {
            let visible = |t: usize| visible_start(pos[t], window) - start..pos[t] + 1 - start;
            kernels::attention::attention_rows_parallel(pool, q_run, b - a, chunks, &visible, p, out_run);
        });
    }
}

/// The batch's runs `a..b`: consecutive tokens of one sequence at increasing positions (what
/// one fetch of that sequence's cached rows serves).
pub(crate) fn seq_runs(batch: &Batch) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut a = 0;
    std::iter::from_fn(move || {
        if a >= batch.len() {
            return None;
        }
        let mut b = a + 1;
        while b < batch.len() && batch.seq[b] == batch.seq[a] && batch.pos[b] > batch.pos[b - 1] {
            b += 1;
        }
        let run = (a, b);
        a = b;
        Some(run)
    })
}
