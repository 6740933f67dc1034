//! Mixture-of-experts feed-forward block, as llama.cpp's `build_moe_ffn` computes it:
//!
//! ```text
//!   logits = h Wrouter (+ router bias)                       [n_expert per token]
//!   Softmax gating (Qwen 2/3 MoE, Mixtral):   p = softmax(logits); chosen = top_k(p); w = p[chosen]
//!   Sigmoid gating:                            p = sigmoid(logits); chosen = top_k(p); w = p[chosen]
//!   SoftmaxWeight gating (gpt-oss):            chosen = top_k(logits); w = softmax(logits[chosen])
//!   [norm_weights: w /= max(sum(w), 2^-14)]    (Qwen 3 MoE's norm_topk_prob)
//!   for each chosen expert x, in rank order:
//!     g, u = h Wgate[x] (+ bgate[x]), h Wup[x] (+ bup[x])
//!     a    = silu(g) * u                       | gpt-oss: min(g, L) * sigmoid(1.702 min(g, L)) * (clamp(u, -L, L) + 1), L = 7
//!     y_x  = (a Wdown[x] (+ bdown[x])) * w_x
//!   f = y_0 + y_1 + ... + y_{k-1}              (+ the shared expert where the file has one)
//! ```
//!
//! The experts live in 3-D tensors (`blk.N.ffn_{gate,up,down}_exps`), split at load into one 2-D
//! view per expert ([`Weight::load_experts`]). A batch is grouped by expert: the rows of every
//! token routed to expert `x` are gathered and multiplied by `x`'s matrices in one call, so each
//! expert's weights are read once per step whatever the batch size, and experts no token chose
//! are not read at all (a decode step reads only its `k` experts). Each token's `k` results are
//! kept apart and summed in rank order afterwards, so a token's output does not depend on which
//! other tokens share its batch: a batched prefill gives the same values as token-by-token decode.

use gguf::GgufFile;
use kernels::matmul::{matmul, matmul_many, MatmulScratch};
use kernels::ops;
use kernels::pool::ThreadPool;

use super::grow;
use super::weights::{load_optional_vector, Weight};
use super::HParams;
use crate::{Error, Result};

/// How router logits become the chosen experts and their weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gating {
    /// Softmax over all experts, top-k of the probabilities, weights = those probabilities.
    Softmax,
    /// Sigmoid of each logit, top-k, weights = those sigmoids (no family loaded here uses it yet:
    /// llama.cpp gives it to DeepSeek V3, GLM 4.5 and Llama 4, which need more than this block).
    #[allow(dead_code)]
    Sigmoid,
    /// Top-k of the logits, weights = softmax over the chosen logits only (gpt-oss).
    SoftmaxWeight,
}

/// The gated activation inside each expert.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum ExpertAct {
    /// `silu(g) * u`.
    Silu,
    /// gpt-oss's clamped SwiGLU (ggml `swiglu_oai`): `x = min(g, limit)`,
    /// `x * sigmoid(alpha * x) * (clamp(u, -limit, limit) + 1)`.
    SwigluOai { alpha: f32, limit: f32 },
}

/// What distinguishes one family's MoE block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct MoeVariant {
    pub gating: Gating,
    /// Renormalise the chosen weights to sum to 1 (Qwen 3 MoE's `norm_topk_prob`).
    pub norm_weights: bool,
    pub act: ExpertAct,
}

/// Routes one token: the `ids.len()` (= k) experts with the largest score, best first (ties to
/// the lower index), and their weights, as llama.cpp's `build_moe_ffn` computes them. `logits`
/// is overwritten (with probabilities for softmax and sigmoid gating).
pub(crate) fn route(v: &MoeVariant, logits: &mut [f32], ids: &mut [u32], weights: &mut [f32]) {
    let k = ids.len();
    debug_assert!(k <= logits.len() && weights.len() == k);
    match v.gating {
        Gating::Softmax => ops::softmax_inplace(logits),
        Gating::Sigmoid => logits.iter_mut().for_each(|l| *l = 1.0 / (1.0 + (-*l).exp())),
        Gating::SoftmaxWeight => {}
    }
    top_k(logits, ids);
    for (w, &id) in weights.iter_mut().zip(ids.iter()) {
        *w = logits[id as usize];
    }
    if v.gating == Gating::SoftmaxWeight {
        ops::softmax_inplace(weights);
    }
    if v.norm_weights {
        // ggml clamps the sum to the smallest normal f16 before dividing.
        let sum = weights.iter().sum::<f32>().max(6.103_515_6e-5);
        weights.iter_mut().for_each(|w| *w /= sum);
    }
}

/// The indices of the `ids.len()` largest values of `x`, largest first; equal values keep index
/// order. NaN sorts last.
pub(crate) fn top_k(x: &[f32], ids: &mut [u32]) {
    let k = ids.len();
    let mut n = 0usize;
    for (i, &v) in x.iter().enumerate() {
        // Insertion into the sorted prefix `ids[..n]` (k is small: 2 to 8).
        let better = |j: u32| v > x[j as usize] || (x[j as usize].is_nan() && !v.is_nan());
        let mut at = n;
        while at > 0 && better(ids[at - 1]) {
            at -= 1;
        }
        if at < k {
            let end = n.min(k - 1);
            ids.copy_within(at..end, at + 1);
            ids[at] = i as u32;
            n = (n + 1).min(k);
        }
    }
}

/// `g = act(g, u)` in place.
fn act(a: ExpertAct, g: &mut [f32], u: &[f32]) {
    match a {
        ExpertAct::Silu => {
            ops::silu_inplace(g);
            ops::mul_inplace(g, u);
        }
        ExpertAct::SwigluOai { alpha, limit } => {
            for (g, &u) in g.iter_mut().zip(u) {
                let x = g.min(limit);
                let y = u.clamp(-limit, limit);
                *g = x / (1.0 + (alpha * -x).exp()) * (y + 1.0);
            }
        }
    }
}

/// A dense gated FFN beside the routed experts (`ffn_{gate,up,down}_shexp`), optionally scaled
/// by `sigmoid(h . ffn_gate_inp_shexp)` (Qwen 2 MoE).
struct Shared {
    gate: Weight,
    up: Weight,
    down: Weight,
    gate_inp: Option<Vec<f32>>,
    n_ff: usize,
}

/// One layer's MoE block.
pub(crate) struct MoeFfn {
    v: MoeVariant,
    n_embd: usize,
    n_ff: usize,
    n_used: usize,
    router: Weight, // (n_expert, n_embd)
    router_b: Option<Vec<f32>>,
    gate: Vec<Weight>, // per expert (n_ff, n_embd)
    up: Vec<Weight>,   // per expert (n_ff, n_embd)
    down: Vec<Weight>, // per expert (n_embd, n_ff)
    gate_b: Option<Vec<f32>>, // (n_expert, n_ff)
    up_b: Option<Vec<f32>>,   // (n_expert, n_ff)
    down_b: Option<Vec<f32>>, // (n_expert, n_embd)
    shared: Option<Shared>,
}

/// Buffers reused across forward passes (grown, never shrunk).
#[derive(Default)]
pub struct MoeScratch {
    logits: Vec<f32>,
    ids: Vec<u32>,
    weights: Vec<f32>,
    /// (token, rank) pairs grouped by expert.
    order: Vec<u32>,
    counts: Vec<usize>,
    xs: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    d: Vec<f32>,
    /// Each (token, rank)'s weighted expert output, `n * k * n_embd`.
    res: Vec<f32>,
}

impl MoeFfn {
    /// Loads layer `il`'s router and experts (`hp.n_expert`, `hp.n_expert_used`, `hp.n_ff_exp`).
    pub(crate) fn load(f: &GgufFile, hp: &HParams, il: usize, v: MoeVariant) -> Result<Self> {
        let n = |s: &str| format!("blk.{il}.{s}");
        let (e, ff, nx) = (hp.n_embd, hp.n_ff_exp, hp.n_expert);
        if hp.n_expert_used == 0 || hp.n_expert_used > nx || ff == 0 {
            return Err(Error::Model(format!(
                "{}: expert_used_count {} of {nx} experts of width {ff} (expert_feed_forward_length)",
                hp.arch, hp.n_expert_used
            )));
        }
        let shared = match f.tensor(&n("ffn_up_shexp.weight")) {
            None => None,
            Some(t) => {
                let sff = t.n_rows();
                Some(Shared {
                    gate: Weight::load(f, &n("ffn_gate_shexp.weight"), e, sff)?,
                    up: Weight::load(f, &n("ffn_up_shexp.weight"), e, sff)?,
                    down: Weight::load(f, &n("ffn_down_shexp.weight"), sff, e)?,
                    gate_inp: load_optional_vector(f, &n("ffn_gate_inp_shexp.weight"), e)?,
                    n_ff: sff,
                })
            }
        };
        Ok(MoeFfn {
            v,
            n_embd: e,
            n_ff: ff,
            n_used: hp.n_expert_used,
            router: Weight::load(f, &n("ffn_gate_inp.weight"), e, nx)?,
            router_b: load_optional_vector(f, &n("ffn_gate_inp.bias"), nx)?,
            gate: Weight::load_experts(f, &n("ffn_gate_exps.weight"), e, ff, nx)?,
            up: Weight::load_experts(f, &n("ffn_up_exps.weight"), e, ff, nx)?,
            down: Weight::load_experts(f, &n("ffn_down_exps.weight"), ff, e, nx)?,
            gate_b: load_optional_vector(f, &n("ffn_gate_exps.bias"), nx * ff)?,
            up_b: load_optional_vector(f, &n("ffn_up_exps.bias"), nx * ff)?,
            down_b: load_optional_vector(f, &n("ffn_down_exps.bias"), nx * e)?,
            shared,
        })
    }

    /// Bytes of weights one token reads: the router, `k` experts and the shared expert.
    pub(crate) fn active_bytes(&self, f: &GgufFile) -> usize {
        let one = self.gate[0].bytes(f).len() + self.up[0].bytes(f).len() + self.down[0].bytes(f).len();
        let shared = self.shared.as_ref().map_or(0, |s| s.gate.bytes(f).len() + s.up.bytes(f).len() + s.down.bytes(f).len());
        self.router.bytes(f).len() + self.n_used * one + shared
    }

    /// `out = moe(h)` for the `n` rows of `h` (`n * n_embd` each).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        pool: &ThreadPool,
        f: &GgufFile,
        h: &[f32],
        n: usize,
        out: &mut [f32],
        s: &mut MoeScratch,
        mm: &mut MatmulScratch,
    ) -> Result<()> {
        let (e, ff, k, nx) = (self.n_embd, self.n_ff, self.n_used, self.gate.len());
        // Route every token.
        let logits = grow(&mut s.logits, n * nx);
        matmul(pool, &self.router.matrix(f), h, n, logits, mm)?;
        if s.ids.len() < n * k {
            s.ids.resize(n * k, 0);
        }
        let weights = grow(&mut s.weights, n * k);
        for t in 0..n {
            let l = &mut logits[t * nx..(t + 1) * nx];
            if let Some(b) = &self.router_b {
                ops::add_inplace(l, b);
            }
            route(&self.v, l, &mut s.ids[t * k..(t + 1) * k], &mut weights[t * k..(t + 1) * k]);
        }
        // Group the (token, rank) pairs by expert, tokens in batch order (a counting sort).
        s.counts.clear();
        s.counts.resize(nx + 1, 0);
        for &id in &s.ids[..n * k] {
            s.counts[id as usize + 1] += 1;
        }
        for x in 0..nx {
            s.counts[x + 1] += s.counts[x];
        }
        s.order.resize(n * k, 0);
        {
            let mut next = s.counts.clone();
            for (tr, &id) in s.ids[..n * k].iter().enumerate() {
                s.order[next[id as usize]] = tr as u32;
                next[id as usize] += 1;
            }
        }
        let res = grow(&mut s.res, n * k * e);
        for x in 0..nx {
            let group = &s.order[s.counts[x]..s.counts[x + 1]];
            let m = group.len();
            if m == 0 {
                continue;
            }
            let xs = grow(&mut s.xs, m * e);
            for (j, &tr) in group.iter().enumerate() {
                let t = tr as usize / k;
                xs[j * e..(j + 1) * e].copy_from_slice(&h[t * e..(t + 1) * e]);
            }
            let (g, u) = (grow(&mut s.g, m * ff), grow(&mut s.u, m * ff));
            let (wg, wu) = (self.gate[x].matrix(f), self.up[x].matrix(f));
            matmul_many(pool, &mut [(&wg, &mut *g), (&wu, &mut *u)], xs, m, mm)?;
            for j in 0..m {
                let (gr, ur) = (&mut g[j * ff..(j + 1) * ff], &mut u[j * ff..(j + 1) * ff]);
                if let Some(b) = &self.gate_b {
                    ops::add_inplace(gr, &b[x * ff..(x + 1) * ff]);
                }
                if let Some(b) = &self.up_b {
                    ops::add_inplace(ur, &b[x * ff..(x + 1) * ff]);
                }
                act(self.v.act, gr, ur);
            }
            let d = grow(&mut s.d, m * e);
            matmul(pool, &self.down[x].matrix(f), g, m, d, mm)?;
            for (j, &tr) in group.iter().enumerate() {
                let dr = &mut d[j * e..(j + 1) * e];
                if let Some(b) = &self.down_b {
                    ops::add_inplace(dr, &b[x * e..(x + 1) * e]);
                }
                let w = weights[tr as usize];
                let tr = tr as usize;
                for (r, &v) in res[tr * e..(tr + 1) * e].iter_mut().zip(dr.iter()) {
                    *r = v * w;
                }
            }
        }
        // Sum each token's experts in rank order.
        for t in 0..n {
            let o = &mut out[t * e..(t + 1) * e];
            o.copy_from_slice(&res[t * k * e..(t * k + 1) * e]);
            for r in 1..k {
                ops::add_inplace(o, &res[(t * k + r) * e..(t * k + r + 1) * e]);
            }
        }
        if let Some(sh) = &self.shared {
            self.shared_forward(sh, pool, f, h, n, out, s, mm)?;
        }
        Ok(())
    }

    /// `out += shared(h)` (times `sigmoid(h . gate_inp)` where the file has that gate).
    #[allow(clippy::too_many_arguments)]
    fn shared_forward(&self, sh: &Shared, pool: &ThreadPool, f: &GgufFile, h: &[f32], n: usize, out: &mut [f32], s: &mut MoeScratch, mm: &mut MatmulScratch) -> Result<()> {
        let (e, sff) = (self.n_embd, sh.n_ff);
        let (g, u) = (grow(&mut s.g, n * sff), grow(&mut s.u, n * sff));
        let (wg, wu) = (sh.gate.matrix(f), sh.up.matrix(f));
        matmul_many(pool, &mut [(&wg, &mut *g), (&wu, &mut *u)], h, n, mm)?;
        for (gr, ur) in g.chunks_exact_mut(sff).zip(u.chunks_exact(sff)) {
            ops::silu_inplace(gr);
            ops::mul_inplace(gr, ur);
        }
        let d = grow(&mut s.d, n * e);
        matmul(pool, &sh.down.matrix(f), g, n, d, mm)?;
        for t in 0..n {
            let dr = &mut d[t * e..(t + 1) * e];
            if let Some(gi) = &sh.gate_inp {
                let z: f32 = h[t * e..(t + 1) * e].iter().zip(gi).map(|(a, b)| a * b).sum();
                ops::scale_inplace(dr, 1.0 / (1.0 + (-z).exp()));
            }
            ops::add_inplace(&mut out[t * e..(t + 1) * e], dr);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN3MOE: MoeVariant = MoeVariant { gating: Gating::Softmax, norm_weights: true, act: ExpertAct::Silu };
    const GPT_OSS: MoeVariant =
        MoeVariant { gating: Gating::SoftmaxWeight, norm_weights: false, act: ExpertAct::SwigluOai { alpha: 1.702, limit: 7.0 } };

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn top_k_picks_the_largest_best_first_ties_to_the_lower_index() {
        let mut ids = [0u32; 3];
        top_k(&[0.1, 0.5, -1.0, 0.5, 0.7, 0.2], &mut ids);
        assert_eq!(ids, [4, 1, 3]);
        let mut ids = [0u32; 2];
        top_k(&[3.0, 2.0, 1.0], &mut ids);
        assert_eq!(ids, [0, 1]);
        let mut ids = [0u32; 2];
        top_k(&[1.0, 2.0, 3.0], &mut ids);
        assert_eq!(ids, [2, 1]);
        let mut ids = [0u32; 1];
        top_k(&[f32::NAN, -5.0], &mut ids);
        assert_eq!(ids, [1]);
    }

    /// Qwen 3 MoE: softmax over all 4 experts, then the top 2 renormalised.
    /// logits [1, 2, 0, 3] -> softmax = e^l / (e + e^2 + 1 + e^3) = [0.0871, 0.2369, 0.0321, 0.6439];
    /// top 2 = experts 3, 1 with 0.6439 / 0.8808 = 0.7311 and 0.2369 / 0.8808 = 0.2689
    /// (= softmax over [3, 2], as renormalised softmax must be).
    #[test]
    fn softmax_gating_renormalises_the_chosen_probabilities() {
        let (mut ids, mut w) = ([0u32; 2], [0f32; 2]);
        let mut logits = [1.0, 2.0, 0.0, 3.0];
        route(&QWEN3MOE, &mut logits, &mut ids, &mut w);
        assert_eq!(ids, [3, 1]);
        let e1 = 1f32.exp();
        assert!(close(&w, &[e1 / (1.0 + e1), 1.0 / (1.0 + e1)]), "{w:?}");
        // Without renormalisation the weights are the raw probabilities.
        let plain = MoeVariant { norm_weights: false, ..QWEN3MOE };
        let mut logits = [1.0, 2.0, 0.0, 3.0];
        route(&plain, &mut logits, &mut ids, &mut w);
        let z = 1f32.exp() + 2f32.exp() + 1.0 + 3f32.exp();
        assert!(close(&w, &[3f32.exp() / z, 2f32.exp() / z]), "{w:?}");
    }

    /// gpt-oss: top-k on the biased logits, softmax over the chosen only.
    #[test]
    fn softmax_weight_gating_normalises_over_the_chosen_logits() {
        let (mut ids, mut w) = ([0u32; 3], [0f32; 3]);
        let mut logits = [0.5, -2.0, 4.0, 1.5, 1.0];
        route(&GPT_OSS, &mut logits, &mut ids, &mut w);
        assert_eq!(ids, [2, 3, 4]);
        let z = 4f32.exp() + 1.5f32.exp() + 1f32.exp();
        assert!(close(&w, &[4f32.exp() / z, 1.5f32.exp() / z, 1f32.exp() / z]), "{w:?}");
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn sigmoid_gating_weights_are_the_sigmoids() {
        let v = MoeVariant { gating: Gating::Sigmoid, norm_weights: false, act: ExpertAct::Silu };
        let (mut ids, mut w) = ([0u32; 2], [0f32; 2]);
        let mut logits = [0.0, -1.0, 2.0];
        route(&v, &mut logits, &mut ids, &mut w);
        assert_eq!(ids, [2, 0]);
        assert!(close(&w, &[1.0 / (1.0 + (-2f32).exp()), 0.5]), "{w:?}");
    }

    /// gpt-oss's activation at hand-computed points: the gate is capped at 7 (above), the up
    /// projection clamped to [-7, 7], and `+ 1` on the up side.
    #[test]
    fn swiglu_oai_clamps_like_ggml() {
        let m = |alpha: f32, x: f32, u: f32| {
            let x2 = x.min(7.0);
            x2 / (1.0 + (-alpha * x2).exp()) * (u.clamp(-7.0, 7.0) + 1.0)
        };
        let mut g = [1.0f32, 10.0, -3.0, 0.0];
        let u = [2.0f32, -20.0, 0.5, 9.0];
        act(GPT_OSS.act, &mut g, &u);
        let want = [m(1.702, 1.0, 2.0), m(1.702, 10.0, -20.0), m(1.702, -3.0, 0.5), 0.0];
        assert!(close(&g, &want), "{g:?} vs {want:?}");
        // 10 is capped to 7: 7 * sigmoid(11.914) * (-7 + 1).
        assert!((g[1] - 7.0 / (1.0 + (-11.914f32).exp()) * -6.0).abs() < 1e-4);
        // 1 * sigmoid(1.702) * 3.
        assert!((g[0] - 3.0 / (1.0 + (-1.702f32).exp())).abs() < 1e-5);
    }

}
