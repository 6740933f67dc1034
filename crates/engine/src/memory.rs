//! Memory honesty: what a model will hold once loaded and serving, estimated from its file
//! before anything is loaded, and what the machine has to give. One definition, used by the CLI
//! (`run`, `chat` refuse a configuration that does not fit), `daehwa list` and the server's
//! multi-model registry (`--model-memory`).
//!
//! The estimate is the sum of
//! - **weights**: the GGUF's bytes (mapped; every page is read while the model runs), less those
//!   of the repacked matrices, whose pages are given back once packed (`GgufFile::release_pages`);
//! - **repacked**: the copies the fast kernels make at first use of the matrices whose type has a
//!   packed layout on this CPU (`kernels::packed::packs`): every 2-D weight but the embedding
//!   table, which is only looked up, unless it doubles as the output matrix (tied embeddings);
//!   the same bytes reordered (q4_K and q5_K: 16 more per 4 blocks, their decoded scales);
//! - **kv**: the KV cache the caller sizes (f16 K and V per layer, position and sequence; the
//!   paged server cache gives sliding-window layers only their window, see [`kv_bytes`]);
//! - **scratch**: the activation workspace of one step of `batch_tokens` tokens, the logits of
//!   `n_seq` rows, RoPE tables, the tokenizer's tables and the process's own baseline (code,
//!   thread stacks, allocator).

use gguf::GgufFile;

use crate::model::HParams;

/// Bytes of resident memory not tied to the model: the binary's code and data, thread stacks,
/// the allocator's arenas. Measured: `daehwa serve` on SmolLM2-135M holds ~30 MiB beyond its
/// model, weights and cache.
pub const BASELINE_BYTES: u64 = 32 << 20;

/// Tokenizer tables per vocabulary entry: the token's text, its entry in the text-to-id map
/// and its merge rank (~100 bytes each on a 262k-entry Gemma vocabulary).
const TOKENIZER_BYTES_PER_TOKEN: u64 = 112;

/// RoPE tables hold at most this many positions (`model::llama`'s `ROPE_TABLE_POSITIONS`).
const ROPE_TABLE_POSITIONS: usize = 8192;

/// What a model will hold, by part (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub weights: u64,
    pub repacked: u64,
    pub kv: u64,
    pub scratch: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.weights + self.repacked + self.kv + self.scratch
    }
}

/// How the model will be run, for [`estimate`].
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// KV cache bytes, as the cache that will be used sizes it ([`kv_bytes`] for the contiguous
    /// one; the server's paged cache computes its own from its block sizing).
    pub kv_bytes: u64,
    /// Sequences decoded at once (their logits rows).
    pub n_seq: usize,
    /// Most tokens one forward pass runs (the workspace grows to it).
    pub batch_tokens: usize,
}

/// KV cache bytes for `n_seq` sequences of `n_ctx` positions, f16 K and V: a layer with a
/// sliding window of `w` holds `min(w, n_ctx)` positions when `windowed` (the paged cache),
/// `n_ctx` otherwise (the contiguous cache of `Session` allocates every layer in full).
pub fn kv_bytes(hp: &HParams, n_ctx: usize, n_seq: usize, windowed: bool) -> u64 {
    (0..hp.n_layer)
        .map(|il| {
            let positions = match hp.window_of(il) {
                Some(w) if windowed => w.min(n_ctx),
                _ => n_ctx,
            };
            2 * 2 * (positions * hp.kv_dim() * n_seq) as u64
        })
        .sum()
}

/// The one estimate (see the module docs).
pub fn estimate(file: &GgufFile, hp: &HParams, usage: &Usage) -> MemoryEstimate {
    let weights = file.bytes().len() as u64;
    let tied = file.tensor("output.weight").is_none();
    let packable = |t: &&gguf::TensorInfo| t.dims.len() >= 2 && t.n_rows() > 1 && (tied || t.name != "token_embd.weight");
    // The packed copies replace the mapped bytes (released); some layouts grow by their decoded
    // scales (q4_K by 16 / 576, q5_K 16 / 704, q3_K 16 / 440, iq4_xs 8 / 544).
    let (repacked, k_extra) = file
        .tensors()
        .iter()
        .filter(packable)
        .filter_map(|t| kernels::packed::packed_bytes(t.ggml_type, t.n_rows(), t.row_len()).map(|p| (t.n_bytes, (p as u64).saturating_sub(t.n_bytes))))
        .fold((0u64, 0u64), |(a, b), (n, x)| (a + n, b + x));
    let weights = weights.saturating_sub(repacked);
    let repacked = repacked + k_extra;
    let n = usage.batch_tokens.max(1);
    // x, h, proj (n_embd); q, att (q_dim); k, v (kv_dim); gate, up (n_ff): f32 each, plus the
    // activations quantized for the matmuls (about a byte per value of the widest input).
    let per_token = 3 * hp.n_embd + 2 * hp.q_dim() + 2 * hp.kv_dim() + 2 * hp.n_ff;
    let workspace = (n * per_token * 4 + n * hp.n_ff.max(hp.q_dim()).max(hp.n_embd) * 2) as u64;
    let logits = (usage.n_seq.max(1) * hp.n_vocab * 4 * 2) as u64;
    let tables = if hp.sliding_window.is_some() { 2 } else { 1 };
    let rope = (hp.n_ctx_train.clamp(1, ROPE_TABLE_POSITIONS) * hp.n_rot * 4 * tables) as u64;
    let tokenizer = hp.n_vocab as u64 * TOKENIZER_BYTES_PER_TOKEN;
    MemoryEstimate { weights, repacked, kv: usage.kv_bytes, scratch: workspace + logits + rope + tokenizer + BASELINE_BYTES }
}

/// Parameters of a model, counted from its tensors (no architecture knowledge needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamCount {
    pub total: u64,
    /// Parameters one token uses: expert tensors (`*_exps`) count
    /// `expert_used_count / expert_count` of their size; equal to `total` for dense models.
    pub active: u64,
}

/// Counts the parameters of `file`.
pub fn param_count(file: &GgufFile) -> ParamCount {
    let arch = file.opt_str("general.architecture").ok().flatten().unwrap_or_default().to_string();
    let get = |k: &str| file.opt_u32(&format!("{arch}.{k}")).ok().flatten().map(u64::from);
    let ratio = match (get("expert_used_count"), get("expert_count")) {
        (Some(used), Some(n)) if n > 0 && used <= n => Some((used, n)),
        _ => None,
    };
    let mut pc = ParamCount { total: 0, active: 0 };
    for t in file.tensors() {
        let n = t.n_elements();
        pc.total += n;
        pc.active += match ratio {
            Some((used, experts)) if t.name.contains("_exps") => n * used / experts,
            _ => n,
        };
    }
    pc
}

/// Memory this process may still take: `MemAvailable` from `/proc/meminfo`, or the cgroup's
/// limit minus its usage where that is lower. `DAEHWA_AVAILABLE_MEMORY` (bytes) overrides both,
/// for tests of the refusal. `None` where neither can be read (no refusal then).
pub fn available_memory() -> Option<u64> {
    if let Some(v) = std::env::var("DAEHWA_AVAILABLE_MEMORY").ok().and_then(|v| v.trim().parse().ok()) {
        return Some(v);
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("MemAvailable:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    let meminfo = meminfo.map(|kb| kb * 1024);
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    // cgroup v2, then v1 (whose "no limit" is a huge number, harmless under `min`).
    let cgroup = match (read("/sys/fs/cgroup/memory.max"), read("/sys/fs/cgroup/memory.current")) {
        (Some(max), Some(cur)) => Some(max.saturating_sub(cur)),
        _ => match (read("/sys/fs/cgroup/memory/memory.limit_in_bytes"), read("/sys/fs/cgroup/memory/memory.usage_in_bytes")) {
            (Some(max), Some(cur)) => Some(max.saturating_sub(cur)),
            _ => None,
        },
    };
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `Err` with both numbers when `need` bytes do not fit in [`available_memory`].
pub fn check_fits(need: &MemoryEstimate, what: &str) -> Result<(), String> {
    let Some(avail) = available_memory() else { return Ok(()) };
    if need.total() <= avail {
        return Ok(());
    }
    let mib = |b: u64| b.div_ceil(1 << 20);
    Err(format!(
        "{what} needs about {} MiB (weights {} MiB, repacked weights {} MiB, KV cache {} MiB, scratch {} MiB) but only {} MiB of memory is available; use a smaller --ctx (or fewer sequences) or a smaller model",
        mib(need.total()),
        mib(need.weights),
        mib(need.repacked),
        mib(need.kv),
        mib(need.scratch),
        mib(avail)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_override_is_the_available_memory() {
        // Only this test sets the variable in the unit-test binary.
        std::env::set_var("DAEHWA_AVAILABLE_MEMORY", "1048576");
        assert_eq!(available_memory(), Some(1 << 20));
        let big = MemoryEstimate { weights: 2 << 20, ..MemoryEstimate::default() };
        let err = check_fits(&big, "x").expect_err("2 MiB > 1 MiB");
        assert!(err.contains("needs about 2 MiB") && err.contains("only 1 MiB"), "{err}");
        assert!(check_fits(&MemoryEstimate { weights: 1000, ..MemoryEstimate::default() }, "x").is_ok());
        std::env::remove_var("DAEHWA_AVAILABLE_MEMORY");
        assert!(available_memory().is_some_and(|m| m > 0), "this machine has /proc/meminfo");
    }
}
