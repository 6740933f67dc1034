//! Token sampling: turning the model's logits into the next token id.
//!
//! The chain follows llama.cpp's default (`common/sampling.cpp`, `src/llama-sampling.cpp`):
//!
//! ```text
//! logits ─▶ penalties ─▶ top-k ─▶ top-p ─▶ min-p ─▶ temperature ─▶ softmax + draw
//!           (repeat,      (keep k   (smallest  (drop p <    (divide      (one uniform
//!            presence,     best)     set with   min_p·p_max) logits)      number)
//!            frequency)              Σp ≥ top_p)
//! ```
//!
//! Top-p and min-p see the distribution *before* temperature, as in llama.cpp. Temperature 0 is
//! greedy: the argmax of the (penalised) logits, ties going to the lowest id. Cost per token: O(V)
//! for penalties, top-k selection and min-p, plus O(k log k) sorting (O(V log V) when top-k is off
//! and top-p is on). After the first call, sampling allocates nothing.
//!
//! ```
//! use engine::sample::{Sampler, SamplingParams};
//! let logits = [0.1, 2.0, -1.0, 1.9];
//! assert_eq!(Sampler::new(SamplingParams::greedy()).sample(&logits, &[]), 1);
//! let params = SamplingParams { seed: Some(7), ..SamplingParams::default() };
//! let a = Sampler::new(params.clone()).sample(&logits, &[]);
//! assert_eq!(a, Sampler::new(params).sample(&logits, &[]));
//! ```

mod rng;
pub mod watermark;

use crate::{Error, TokenId};
use rng::Xoshiro256;

/// How to pick tokens; OpenAI/llama.cpp request fields map onto it one to one.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 => greedy (argmax, ties -> lowest id).
    pub temperature: f32,
    /// 0 => off.
    pub top_k: usize,
    /// 1.0 => off.
    pub top_p: f32,
    /// 0.0 => off.
    pub min_p: f32,
    /// 1.0 => off. llama.cpp semantics: positive logits are divided by it, negative multiplied.
    pub repeat_penalty: f32,
    /// How many of the latest history tokens the penalties look at (0 = off; `usize::MAX` = all,
    /// llama.cpp's -1).
    pub repeat_last_n: usize,
    /// OpenAI semantics: subtracted once from the logit of every token already in the window.
    pub presence_penalty: f32,
    /// OpenAI semantics: subtracted once per occurrence in the window.
    pub frequency_penalty: f32,
    /// `None` => a random seed from the OS.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    /// llama.cpp's defaults.
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Deterministic argmax decoding with no penalties.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            ..Self::default()
        }
    }

    /// Checks the ranges the OpenAI API documents (and llama.cpp accepts), so a bad request is
    /// refused with a message instead of sampling nonsense.
    pub fn validate(&self) -> Result<(), Error> {
        fn bad(param: &'static str, message: String) -> Result<(), Error> {
            Err(Error::InvalidParam { param, message })
        }
        let t = self.temperature;
        if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
            return bad("temperature", format!("must be between 0 and 2, got {t}"));
        }
        let p = self.top_p;
        if !(p.is_finite() && p > 0.0 && p <= 1.0) {
            return bad("top_p", format!("must be in (0, 1], got {p}"));
        }
        let m = self.min_p;
        if !(m.is_finite() && (0.0..=1.0).contains(&m)) {
            return bad("min_p", format!("must be between 0 and 1, got {m}"));
        }
        let r = self.repeat_penalty;
        if !(r.is_finite() && r > 0.0) {
            return bad(
                "repeat_penalty",
                format!("must be a positive number, got {r}"),
            );
        }
        for (param, v) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if !(v.is_finite() && (-2.0..=2.0).contains(&v)) {
                return bad(param, format!("must be between -2 and 2, got {v}"));
            }
        }
        Ok(())
    }

    fn penalties_active(&self) -> bool {
        self.repeat_last_n > 0
            && (self.repeat_penalty != 1.0
                || self.presence_penalty != 0.0
                || self.frequency_penalty != 0.0)
    }
}

/// A candidate token during sampling.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    id: TokenId,
    logit: f32,
}

/// Higher logit first, then lower id: a total order, so results never depend on sort stability.
fn by_logit_desc(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Samples tokens with one [`SamplingParams`]; owns its RNG and scratch buffers, so keep one per
/// generation and call [`sample`](Self::sample) once per token.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: Xoshiro256,
    /// The surviving candidates; capacity n_vocab after the first call.
    cands: Vec<Candidate>,
    /// Penalised logits for the greedy path (only used when penalties are on).
    penalised: Vec<f32>,
    /// Occurrences of each token in the penalty window; all zero between calls.
    counts: Vec<u32>,
    /// Probabilities of `cands` during the final draw.
    probs: Vec<f32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let seed = params.seed.unwrap_or_else(Xoshiro256::os_seed);
        Self {
            params,
            rng: Xoshiro256::from_seed(seed),
            cands: Vec::new(),
            penalised: Vec::new(),
            counts: Vec::new(),
            probs: Vec::new(),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks the next token from raw logits (len n_vocab); `history` = prompt + generated ids (for
    /// penalties). Does not allocate after the first call with a given vocabulary size.
    ///
    /// # Panics
    /// If `logits` is empty.
    pub fn sample(&mut self, logits: &[f32], history: &[TokenId]) -> TokenId {
        assert!(!logits.is_empty(), "sample: empty logits");
        let penalise = self.params.penalties_active();
        if self.params.temperature <= 0.0 {
            if !penalise {
                return argmax(logits);
            }
            let mut buf = std::mem::take(&mut self.penalised);
            buf.clear();
            buf.extend_from_slice(logits);
            self.apply_penalties(logits.len(), history, |id, f| {
                let l = &mut buf[id as usize];
                *l = f(*l);
            });
            let id = argmax(&buf);
            self.penalised = buf;
            return id;
        }

        self.cands.clear();
        self.cands
            .extend(logits.iter().enumerate().map(|(i, &l)| Candidate {
                id: i as TokenId,
                // A NaN logit (a broken model) must never win; -inf drops it from every step.
                logit: if l.is_nan() { f32::NEG_INFINITY } else { l },
            }));
        if penalise {
            let mut cands = std::mem::take(&mut self.cands);
            self.apply_penalties(logits.len(), history, |id, f| {
                let c = &mut cands[id as usize];
                c.logit = f(c.logit);
            });
            self.cands = cands;
        }
        let sorted = self.top_k();
        self.top_p(sorted);
        self.min_p();
        let inv_t = 1.0 / self.params.temperature;
        for c in &mut self.cands {
            c.logit *= inv_t;
        }
        self.draw()
    }

    /// llama.cpp's `penalties` sampler over the last `repeat_last_n` history tokens: for each token
    /// seen `n` times, the repeat penalty (divide a positive logit, multiply a non-positive one),
    /// then `logit -= n * frequency + presence`. `update(id, f)` replaces token `id`'s logit `l` by
    /// `f(l)`; each seen token is updated exactly once.
    fn apply_penalties(
        &mut self,
        n_vocab: usize,
        history: &[TokenId],
        mut update: impl FnMut(TokenId, &dyn Fn(f32) -> f32),
    ) {
        if self.counts.len() < n_vocab {
            self.counts.resize(n_vocab, 0);
        }
        // Counts only up to n_vocab: a stray id beyond the vocabulary is ignored, not a panic.
        let window = &history[history.len().saturating_sub(self.params.repeat_last_n)..];
        for &id in window {
            if (id as usize) < n_vocab {
                self.counts[id as usize] += 1;
            }
        }
        let (rep, freq, pres) = (
            self.params.repeat_penalty,
            self.params.frequency_penalty,
            self.params.presence_penalty,
        );
        for &id in window {
            // Ids outside the vocabulary were never counted (c == 0) and are skipped too.
            let Some(c) = self.counts.get_mut(id as usize) else {
                continue;
            };
            if *c == 0 {
                continue; // already penalised (a repeated id in the window)
            }
            let n = *c as f32;
            *c = 0; // also restores the all-zero invariant
            update(id, &|l: f32| {
                let l = if l <= 0.0 { l * rep } else { l / rep };
                l - n * freq - pres
            });
        }
    }

    /// Keeps the `top_k` best candidates, sorted; returns whether `cands` is now sorted.
    fn top_k(&mut self) -> bool {
        let k = self.params.top_k;
        if k == 0 || k >= self.cands.len() {
            return false;
        }
        // O(V) selection, then sort only the k survivors.
        self.cands.select_nth_unstable_by(k - 1, by_logit_desc);
        self.cands.truncate(k);
        self.cands.sort_unstable_by(by_logit_desc);
        true
    }

    /// Keeps the smallest prefix of the sorted candidates whose probability mass reaches `top_p`.
    fn top_p(&mut self, sorted: bool) {
        let p = self.params.top_p;
        if p >= 1.0 {
            return;
        }
        if !sorted {
            self.cands.sort_unstable_by(by_logit_desc);
        }
        let max = self.cands[0].logit;
        let total: f64 = self
            .cands
            .iter()
            .map(|c| f64::from((c.logit - max).exp()))
            .sum();
        let target = f64::from(p) * total;
        let mut cum = 0.0f64;
        let mut keep = self.cands.len();
        for (i, c) in self.cands.iter().enumerate() {
            cum += f64::from((c.logit - max).exp());
            if cum >= target {
                keep = i + 1;
                break;
            }
        }
        self.cands.truncate(keep);
    }

    /// Drops candidates whose probability is below `min_p` times the best one's, i.e. whose logit
    /// is below `max + ln(min_p)`.
    fn min_p(&mut self) {
        let p = self.params.min_p;
        if p <= 0.0 {
            return;
        }
        let max = self
            .cands
            .iter()
            .map(|c| c.logit)
            .fold(f32::NEG_INFINITY, f32::max);
        let floor = max + p.ln();
        self.cands.retain(|c| c.logit >= floor);
    }

    /// Softmax over the survivors and one uniform draw (inverse CDF).
    fn draw(&mut self) -> TokenId {
        let max = self
            .cands
            .iter()
            .map(|c| c.logit)
            .fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            // Nothing has any mass (all logits -inf or NaN): fall back to the lowest id left.
            return self
                .cands
                .iter()
                .map(|c| c.id)
                .min()
                .expect("invariant: top-k keeps >= 1");
        }
        self.probs.clear();
        self.probs
            .extend(self.cands.iter().map(|c| (c.logit - max).exp()));
        let total: f64 = self.probs.iter().map(|&p| f64::from(p)).sum();
        let mut u = self.rng.next_f64() * total;
        for (c, &p) in self.cands.iter().zip(&self.probs) {
            u -= f64::from(p);
            if u < 0.0 {
                return c.id;
            }
        }
        // Rounding left a sliver at the end: the last candidate with mass takes it.
        let last = self
            .probs
            .iter()
            .rposition(|&p| p > 0.0)
            .expect("invariant: max has mass");
        self.cands[last].id
    }
}

/// Index of the largest logit; ties (and NaNs, which never win) go to the lowest id.
fn argmax(logits: &[f32]) -> TokenId {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    let mut any = false;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v || (!any && !v.is_nan()) {
            best = i;
            best_v = v;
            any = true;
        }
    }
    best as TokenId
}

/// One alternative token and its log-probability.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TokenLogprob {
    pub id: TokenId,
    pub logprob: f32,
}

/// log_softmax of the raw logits (the model's own distribution, before temperature/penalties):
/// the chosen token's logprob and the `top_n` most likely tokens (sorted, descending; ties by
/// lower id). After the call `scratch` holds the whole log-softmax (len n_vocab), reusable by the
/// caller. A `chosen` outside the vocabulary gets `-inf`.
pub fn logprobs(
    logits: &[f32],
    chosen: TokenId,
    top_n: usize,
    scratch: &mut Vec<f32>,
) -> (f32, Vec<TokenLogprob>) {
    let max = logits
        .iter()
        .copied()
        .filter(|v| !v.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    // log Σ exp(l) = max + log Σ exp(l - max), summed in f64 so large vocabularies stay exact.
    let sum: f64 = logits
        .iter()
        .map(|&l| f64::from(l - max).exp())
        .filter(|e| !e.is_nan())
        .sum();
    let lse = f64::from(max) + sum.ln();
    scratch.clear();
    scratch.extend(logits.iter().map(|&l| (f64::from(l) - lse) as f32));

    let chosen_lp = scratch
        .get(chosen as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY);
    let n = top_n.min(scratch.len());
    // A small sorted buffer beats sorting V entries for the usual n <= 20.
    let mut top: Vec<TokenLogprob> = Vec::with_capacity(n + 1);
    if n > 0 {
        for (i, &lp) in scratch.iter().enumerate() {
            if lp.is_nan() || (top.len() == n && lp <= top[n - 1].logprob) {
                continue;
            }
            let at = top.partition_point(|t| t.logprob >= lp);
            top.insert(
                at,
                TokenLogprob {
                    id: i as TokenId,
                    logprob: lp,
                },
            );
            top.truncate(n);
        }
    }
    (chosen_lp, top)
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_ties_and_nans() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0, f32::NAN, 0.5]), 3);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), 0);
    }
}
