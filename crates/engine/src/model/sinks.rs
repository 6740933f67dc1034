//! Attention sinks (gpt-oss, `blk.N.attn_sinks.weight`): one learned logit per query head that
//! joins the softmax's denominator but has no value row, so a head may attend to "nothing".
//!
//! llama.cpp folds the sink into its flash-attention kernel after the last KV row
//! (`S += exp(sink - M)`, rescaling when the sink is the larger). The same result is had from the
//! sink-less attention output: with `M` the largest score of a head's visible rows and
//! `S = sum_j exp(s_j - M)`,
//!
//! ```text
//!   out_sink = out * S / (S + exp(sink - M))
//! ```
//!
//! which [`apply_sinks`] computes in one more pass over the visible keys (the scores alone, no
//! value rows), leaving the shared attention kernel untouched. Scores are computed as the kernel
//! does: the query rounded to f16, dotted with the f16 keys in f32, times the scale.

use half::f16;
use kernels::attention::AttnParams;
use kernels::pool::ThreadPool;
use kernels::rows::par_rows;

use super::{seq_runs, visible_start, Batch};
use crate::kv::KvStore;

/// Rescales `out` (the attention output of every token of `batch`, `[n][n_head][head_dim]`,
/// computed by `attend_window` with the same `q`, `p` and `window`) for the per-head `sinks`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_sinks(
    pool: &ThreadPool,
    kv: &dyn KvStore,
    il: usize,
    batch: &Batch,
    q: &[f32],
    p: &AttnParams,
    window: Option<usize>,
    sinks: &[f32],
    out: &mut [f32],
) {
    let (hd, row) = (p.head_dim, p.n_head * p.head_dim);
    let (kv_row, group) = (p.n_head_kv * hd, p.n_head / p.n_head_kv);
    for (a, b) in seq_runs(batch) {
        let seq = batch.seq[a];
        let end = batch.pos[a..b].iter().copied().max().map_or(0, |m| m + 1);
        let start = visible_start(batch.pos[a], window);
        let pos = &batch.pos[a..b];
        let (q_run, out_run) = (&q[a * row..b * row], &mut out[a * row..b * row]);
        kv.with_chunks(il, seq, start, end, &mut |chunks| {
            par_rows(pool, b - a, [(&mut *out_run, row)], &|r, [o]| {
                let mut qh = vec![0f32; hd];
                for (i, o) in r.zip(o.chunks_exact_mut(row)) {
                    let visible = visible_start(pos[i], window) - start..pos[i] + 1 - start;
                    for h in 0..p.n_head {
                        let kvh = h / group;
                        for (d, v) in qh.iter_mut().zip(&q_run[i * row + h * hd..i * row + (h + 1) * hd]) {
                            *d = f16::from_f32(*v).to_f32();
                        }
                        // Online max and sum over the visible rows, in position order.
                        let (mut m, mut s) = (f32::NEG_INFINITY, 0f32);
                        let mut j0 = 0;
                        for c in chunks {
                            for jr in 0..c.n_rows {
                                let j = j0 + jr;
                                if j < visible.start || j >= visible.end {
                                    continue;
                                }
                                let k = &c.k[jr * kv_row + kvh * hd..jr * kv_row + (kvh + 1) * hd];
                                let dot: f32 = qh.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum();
                                let sc = dot * p.scale;
                                if sc > m {
                                    s = s * (m - sc).exp() + 1.0;
                                    m = sc;
                                } else {
                                    s += (sc - m).exp();
                                }
                            }
                            j0 += c.n_rows;
                        }
                        let factor = s / (s + (sinks[h] - m).exp());
                        for v in &mut o[h * hd..(h + 1) * hd] {
                            *v *= factor;
                        }
                    }
                }
            });
        });
    }
}
