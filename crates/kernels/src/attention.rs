//! Attention of query rows over an f16 KV cache in f32, one (token, head) at a time, with the
//! same arithmetic for a query whatever else runs beside it (a prompt token and a decode step
//! give the same bits: the batch-invariance tests):
//!
//! ```text
//! for each visible KV row j, in order:      (online softmax, Milakov & Gimelshein 2018;
//!     s = dot(q[h], K[j, kvh]) * scale       Rabe & Staats 2021, arXiv:2112.05682)
//!     s = softcap * tanh(s / softcap)        (only with a softcap, e.g. gemma 2)
//!     if s > M: acc *= exp(M - s); S *= exp(M - s); M = s; w = 1
//!     else:     w = exp(s - M)
//!     acc = fma(V[j, kvh], w, acc);  S = S * (rescale or 1) + w
//! [with a sink logit z_h (gpt-oss): if z_h > M: acc *= exp(M - z_h); S = S * exp(M - z_h) + 1
//!                                   else:       S += exp(z_h - M)]
//! out_h = acc / S
//! ```
//!
//! with GQA `kvh = h / (n_head / n_head_kv)`. One pass over K and V, O(head_dim) state per head,
//! O(n_kv * head_dim) work per head.
//!
//! **Numerics: f32, not llama.cpp's decode rounding.** llama.cpp's CPU flash attention has two
//! arithmetics: prompts of 64 or more tokens run a tiled f32 kernel
//! (`ggml_compute_forward_flash_attn_ext_tiled`), decode steps `..._f16_one_chunk`, which rounds
//! Q to f16 and the V accumulator to f16 after every row. daehwa needs one arithmetic for both
//! (batch invariance). Until session 18 it copied the f16 one; its two conversions per
//! accumulator update made attention 58% of a 512-token prompt's time at depth 4096. Measured on
//! the goldens (SmolLM2 and Gemma 3 against llama.cpp 0c1e570), f32 gives top-5 log-prob
//! differences of 0.06-0.19 on average per prompt (f16 form: 0.07-0.15; the rule is 0.35), a worst
//! position of 0.99 (f16 form: 1.30), and greedy partings only at near-ties (gaps <= 0.37; the rule
//! is 0.5). An older measurement (before the matmul kernels followed ggml's order) had seen f32
//! part at a gap of 0.85; it no longer does.
//!
//! `exp` on the SIMD paths is ggml's vectorised `expf` (`ggml_v_expf`, about 1.5 ulp, inlined),
//! the same bits on AVX2 and AVX-512; the AVX-512 kernel computes 16 rows' weights at once
//! (see `avx512::heads`). The scalar reference calls libm.
//!
//! The KV rows may live in several chunks (blocks of a paged cache); the caller passes exactly
//! the rows a query may see (causal limit, sliding window), in position order.

use std::ops::Range;

use half::f16;

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod tiles;

use crate::disjoint::DisjointMut;
use crate::pool::ThreadPool;

/// A run of consecutive KV-cache rows. Each row holds `n_head_kv * head_dim` values, row-major.
#[derive(Clone, Copy, Debug)]
pub struct KvChunk<'a> {
    /// (n_rows, n_head_kv * head_dim)
    pub k: &'a [f16],
    /// (n_rows, n_head_kv * head_dim)
    pub v: &'a [f16],
    pub n_rows: usize,
}

/// Shape and scaling of one attention layer.
#[derive(Clone, Copy, Debug)]
pub struct AttnParams<'a> {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Usually `1 / sqrt(head_dim)`.
    pub scale: f32,
    /// Gemma-2 style score soft-capping: `s = softcap * tanh(s / softcap)`.
    pub softcap: Option<f32>,
    /// Attention sinks (gpt-oss's `attn_sinks`): one logit per query head that joins the
    /// softmax's denominator but has no value row, so a head may attend to "nothing". Folded
    /// in after the last KV row as llama.cpp's flash-attention kernel does.
    pub sinks: Option<&'a [f32]>,
}

impl AttnParams<'_> {
    fn row_len(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    fn check(&self, chunks: &[KvChunk]) {
        assert!(self.n_head_kv > 0 && self.n_head.is_multiple_of(self.n_head_kv), "n_head {} is not a multiple of n_head_kv {}", self.n_head, self.n_head_kv);
        if let Some(s) = self.sinks {
            assert_eq!(s.len(), self.n_head, "one sink logit per query head");
        }
        let row = self.row_len();
        for (i, c) in chunks.iter().enumerate() {
            assert!(
                c.k.len() >= c.n_rows * row && c.v.len() >= c.n_rows * row,
                "kv chunk {i}: {} rows of {row} need {} values, k has {}, v has {}",
                c.n_rows,
                c.n_rows * row,
                c.k.len(),
                c.v.len()
            );
        }
    }
}

/// One query row `q = [n_head][head_dim]` attends to every KV row of every chunk; writes
/// `out = [n_head][head_dim]`. `scratch` is grown to `2 * head_dim` and reused.
///
/// # Panics
/// On inconsistent shapes (`q`/`out` not `n_head * head_dim`, a chunk shorter than its
/// `n_rows`, `n_head` not a multiple of `n_head_kv`).
pub fn attention_row(q: &[f32], chunks: &[KvChunk], p: &AttnParams, scratch: &mut Vec<f32>, out: &mut [f32]) {
    attention_row_with(q, chunks, p, scratch, out, Path::best())
}

/// [`attention_row`] on the scalar reference kernels (for tests and debugging).
pub fn attention_row_scalar(q: &[f32], chunks: &[KvChunk], p: &AttnParams, scratch: &mut Vec<f32>, out: &mut [f32]) {
    attention_row_with(q, chunks, p, scratch, out, Path::Scalar)
}

/// [`attention_row`] on the AVX2 kernels even where AVX-512 is available (for tests: the
/// AVX-512 form must match it bit for bit). Falls back to scalar without AVX2.
pub fn attention_row_avx2(q: &[f32], chunks: &[KvChunk], p: &AttnParams, scratch: &mut Vec<f32>, out: &mut [f32]) {
    let path = if simd::available() { Path::Avx2 } else { Path::Scalar };
    attention_row_with(q, chunks, p, scratch, out, path)
}

/// Which kernels a head runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Scalar,
    /// AVX2 + FMA + F16C, accumulator in memory.
    Avx2,
    /// AVX-512 with query and accumulator in registers (head sizes that are multiples of 16).
    Avx512,
}

impl Path {
    fn best() -> Path {
        #[cfg(target_arch = "x86_64")]
        if avx512::available() && simd::available() {
            return Path::Avx512;
        }
        if simd::available() {
            Path::Avx2
        } else {
            Path::Scalar
        }
    }
}

fn attention_row_with(q: &[f32], chunks: &[KvChunk], p: &AttnParams, scratch: &mut Vec<f32>, out: &mut [f32], path: Path) {
    let hd = p.head_dim;
    assert_eq!(q.len(), p.n_head * hd, "attention_row: q length");
    assert_eq!(out.len(), p.n_head * hd, "attention_row: out length");
    p.check(chunks);
    if scratch.len() < 2 * hd {
        scratch.resize(2 * hd, 0.0);
    }
    let n_kv: usize = chunks.iter().map(|c| c.n_rows).sum();
    let groups = HeadGroups::new(p, MAX_GROUP);
    let cx = Ctx { chunks, p, path };
    for kvh in 0..p.n_head_kv {
        for sub in 0..groups.subs {
            let (h0, n) = groups.heads(kvh, sub);
            let r = h0 * hd..(h0 + n) * hd;
            heads(cx, &q[r.clone()], h0, n, 0..n_kv, &mut scratch[..2 * hd], &mut out[r]);
        }
    }
}

/// The most query heads of one KV head that [`heads`] runs together (their dot products and
/// accumulator updates interleave, and each K/V row is loaded and converted once for all). The
/// AVX-512 kernel keeps 4 heads' accumulators in registers up to 64 wide and runs wider heads'
/// V updates in passes (`avx512::State::PASS`); 4 heads measured faster than 2 at 128 and 256
/// wide (`cargo bench -p kernels -- attention`, AMD Zen 5: Llama-3.1-8B's shape 18.3 -> 15.0 ms,
/// Gemma-3's 965 -> 845 us).
const MAX_GROUP: usize = 4;

/// The query heads of each KV head (`g` of them) split into `subs` sub-groups of at most `size`
/// heads, the units [`heads`] runs.
struct HeadGroups {
    g: usize,
    size: usize,
    subs: usize,
}

impl HeadGroups {
    fn new(p: &AttnParams, size: usize) -> Self {
        let g = p.n_head / p.n_head_kv;
        let size = size.clamp(1, g.max(1));
        HeadGroups { g, size, subs: g.div_ceil(size) }
    }

    /// Sub-group `sub` of KV head `kvh`: its first query head and how many heads it has.
    fn heads(&self, kvh: usize, sub: usize) -> (usize, usize) {
        (kvh * self.g + sub * self.size, self.size.min(self.g - sub * self.size))
    }
}

/// Many query rows at once, (token, head) pairs spread over the pool: the prefill path.
///
/// `q` and `out` are `[n_tokens][n_head][head_dim]`. Every token attends over the same
/// `chunks`, limited to the rows `visible(t)` (indices into the concatenation of the chunks'
/// rows; e.g. `0..n_past + t + 1` for a causal mask, with a later start for a sliding window).
///
/// # Panics
/// As [`attention_row`], or if a visible range goes past the chunks' rows.
pub fn attention_rows_parallel(
    pool: &ThreadPool,
    q: &[f32],
    n_tokens: usize,
    chunks: &[KvChunk],
    visible: &(dyn Fn(usize) -> Range<usize> + Sync),
    p: &AttnParams,
    out: &mut [f32],
) {
    let hd = p.head_dim;
    let row = p.n_head * hd;
    assert_eq!(q.len(), n_tokens * row, "attention_rows_parallel: q length");
    assert_eq!(out.len(), n_tokens * row, "attention_rows_parallel: out length");
    p.check(chunks);
    let n_kv: usize = chunks.iter().map(|c| c.n_rows).sum();
    if n_tokens == 0 {
        return;
    }
    // A unit of work: one token's query heads `h0..h0 + n` that share one KV head. Heads of a
    // group run together (fewer loads, more independent work per KV row) unless that would
    // leave threads idle, as for a single decode token.
    let mut groups = HeadGroups::new(p, MAX_GROUP);
    while groups.size > 1 && pool.n_threads() > 1 && n_tokens * p.n_head_kv * groups.subs < 2 * pool.n_threads() {
        groups = HeadGroups::new(p, groups.size.div_ceil(2));
    }
    let cx = Ctx { chunks, p, path: Path::best() };
    #[cfg(target_arch = "x86_64")]
    if tiles::applies(cx, n_tokens, &groups) {
        return tiles::rows_tiled(pool, cx, q, n_tokens, visible, &groups, out);
    }
    let per_token = p.n_head_kv * groups.subs;
    let n_units = n_tokens * per_token;
    // Units are dealt round-robin: a later token sees more rows (causal mask), so contiguous
    // ranges would give the last task most of the work.
    let n_tasks = (pool.n_threads() * 4).min(n_units);
    let out = DisjointMut::new(out);
    pool.run(n_tasks, &|task| {
        // Per-task state on the stack for common head sizes: no allocation per call.
        let mut stack = [0f32; 2 * 256];
        let mut heap = Vec::new();
        let buf: &mut [f32] = if hd <= 256 {
            &mut stack[..2 * hd]
        } else {
            heap.resize(2 * hd, 0.0);
            &mut heap
        };
        for unit in (task..n_units).step_by(n_tasks) {
            let (t, rem) = (unit / per_token, unit % per_token);
            let (h0, n) = groups.heads(rem / groups.subs, rem % groups.subs);
            let range = visible(t);
            assert!(range.start <= range.end && range.end <= n_kv, "token {t}: visible rows {range:?} of {n_kv}");
            let off = t * row + h0 * hd;
            // SAFETY: unit (t, kvh, sub) is handled by exactly one task and owns these heads' slice.
            let orow = unsafe { out.slice(off, n * hd) };
            heads(cx, &q[off..off + n * hd], h0, n, range, buf, orow);
        }
    });
}

/// What every head of one attention call shares: the KV chunks, the shape, the kernel path.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    chunks: &'a [KvChunk<'a>],
    p: &'a AttnParams<'a>,
    path: Path,
}

/// `n` consecutive query heads `h0..h0 + n` of one query, all of one KV head (`n <=
/// MAX_GROUP`), over the KV rows `range`; `q` and `out` hold those heads' `n * head_dim` values,
/// `scratch` at least `2 * head_dim` (for [`head`]). Each head's arithmetic is that of [`head`]
/// alone, bit for bit: only the order in which the heads' independent operations are issued
/// changes.
fn heads(cx: Ctx, q: &[f32], h0: usize, n: usize, range: Range<usize>, scratch: &mut [f32], out: &mut [f32]) {
    let Ctx { p, path, .. } = cx;
    let hd = p.head_dim;
    #[cfg(target_arch = "x86_64")]
    if path == Path::Avx512 && avx512::supported(hd, n) && q.len() == n * hd && out.len() == n * hd {
        let sinks = p.sinks.map(|s| &s[h0..h0 + n]);
        // SAFETY: `Path::Avx512` means `avx512::available()`; `check` verified every chunk holds
        // `n_rows * stride` values and `kvh * hd + hd <= stride` since kvh < n_head_kv; q and out
        // are `n * hd` long (checked just above); callers keep `range` within the chunks' rows.
        return unsafe { avx512::heads(kv_of(cx, h0), hd, n, q, range, sinks, out) };
    }
    for i in 0..n {
        let r = i * hd..(i + 1) * hd;
        head(cx, &q[r.clone()], h0 + i, range.clone(), scratch, &mut out[r]);
    }
}

/// Where query head `h`'s KV head lies in the chunks, and its score scaling, for the AVX-512
/// kernels.
#[cfg(target_arch = "x86_64")]
fn kv_of<'a>(cx: Ctx<'a>, h: usize) -> avx512::Kv<'a> {
    let p = cx.p;
    let (scale, cap) = scale_cap(p);
    avx512::Kv { chunks: cx.chunks, stride: p.row_len(), kvh: h / (p.n_head / p.n_head_kv), scale, cap }
}

/// The score scale and soft cap a kernel applies: with a cap `c`, `s = c * tanh(dot * scale / c)`.
fn scale_cap(p: &AttnParams) -> (f32, f32) {
    match p.softcap {
        Some(c) if c != 0.0 => (p.scale / c, c),
        _ => (p.scale, 0.0),
    }
}

/// One head of one query over the KV rows `range` of the concatenated chunks; `scratch` holds
/// at least `2 * head_dim` values (a copy of the query, then the accumulator).
fn head(cx: Ctx, qrow: &[f32], h: usize, range: Range<usize>, scratch: &mut [f32], out: &mut [f32]) {
    let Ctx { chunks, p, path } = cx;
    let hd = p.head_dim;
    let (qh, rest) = scratch.split_at_mut(hd);
    let acc = &mut rest[..hd];
    let kvh = h / (p.n_head / p.n_head_kv);
    let stride = p.row_len();
    let (scale, cap) = scale_cap(p);
    let simd = path != Path::Scalar;
    qh.copy_from_slice(qrow);
    acc.iter_mut().for_each(|a| *a = 0.0);
    let mut m = f32::NEG_INFINITY;
    let mut sum = 0f32;
    let mut base = 0;
    for c in chunks {
        let lo = range.start.max(base);
        let hi = range.end.min(base + c.n_rows);
        for j in lo.saturating_sub(base)..hi.saturating_sub(base) {
            let off = j * stride + kvh * hd;
            let k = &c.k[off..off + hd];
            let v = &c.v[off..off + hd];
            let mut s = simd::dot(qh, k, simd) * scale;
            if cap != 0.0 {
                s = cap * s.tanh();
            }
            let mut ms = 1.0;
            let mut vs = 1.0;
            if s > m {
                ms = simd::exp(m - s, simd);
                m = s;
                simd::scale(acc, ms, simd);
            } else {
                vs = simd::exp(s - m, simd);
            }
            simd::mad(acc, v, vs, simd);
            sum = sum * ms + vs;
        }
        base += c.n_rows;
    }
    if let Some(sinks) = p.sinks {
        let ms;
        (sum, ms) = sink(sinks[h], m, sum, |x| simd::exp(x, simd));
        acc.iter_mut().for_each(|a| *a *= ms);
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (o, &a) in out.iter_mut().zip(acc.iter()) {
        *o = a * inv;
    }
}

/// Folds a head's sink logit `z` into its running max `m` and sum `sum` after the last KV row, as
/// ggml's flash attention does: returns the new sum and the factor the accumulator is then
/// multiplied by (in f32; `exp(m - z)` when the sink is the larger, else exactly 1).
#[inline(always)]
fn sink(z: f32, m: f32, sum: f32, exp: impl Fn(f32) -> f32) -> (f32, f32) {
    if z > m {
        let ms = exp(m - z);
        (sum * ms + 1.0, ms)
    } else {
        (sum + exp(z - m), 1.0)
    }
}

/// f16 dot / multiply-add kernels: scalar reference and F16C+FMA variants.
mod simd {
    use half::f16;

    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            crate::ops::simd_available() && std::arch::is_x86_feature_detected!("f16c")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    #[inline]
    pub fn dot(q: &[f32], k: &[f16], simd: bool) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` is `available()`: AVX2, FMA and F16C are present.
            return unsafe { x86::dot(q, k) };
        }
        let _ = simd;
        q.iter().zip(k).map(|(&a, &b)| a * b.to_f32()).sum()
    }

    /// `exp(x)`: with `simd`, ggml's vectorised `expf` (`crate::ops::expf8`, about 1.5 ulp; the
    /// AVX-512 kernel computes the same 16 lanes at a time); else the libm call.
    #[inline]
    pub fn exp(x: f32, simd: bool) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if simd {
            use std::arch::x86_64::*;
            // SAFETY: `simd` is `available()`: AVX2 and FMA are present.
            return unsafe { _mm256_cvtss_f32(crate::ops::expf8(_mm256_set1_ps(x))) };
        }
        let _ = simd;
        x.exp()
    }

    #[inline]
    pub fn mad(acc: &mut [f32], v: &[f16], s: f32, simd: bool) {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: as in `dot`.
            return unsafe { x86::mad(acc, v, s) };
        }
        let _ = simd;
        acc.iter_mut().zip(v).for_each(|(a, &b)| *a += b.to_f32() * s);
    }

    /// `acc *= s`.
    #[inline]
    pub fn scale(acc: &mut [f32], s: f32, simd: bool) {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: as in `dot`.
            return unsafe { x86::scale(acc, s) };
        }
        let _ = simd;
        acc.iter_mut().for_each(|a| *a *= s);
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use half::f16;
        use std::arch::x86_64::*;

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load8(p: *const f16) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn dot(q: &[f32], k: &[f16]) -> f32 {
            let n = q.len().min(k.len());
            let (qp, kp) = (q.as_ptr(), k.as_ptr());
            let mut a0 = _mm256_setzero_ps();
            let mut a1 = _mm256_setzero_ps();
            let mut i = 0;
            while i + 16 <= n {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(i)), load8(kp.add(i)), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(i + 8)), load8(kp.add(i + 8)), a1);
                i += 16;
            }
            if i + 8 <= n {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qp.add(i)), load8(kp.add(i)), a0);
                i += 8;
            }
            let a = _mm256_add_ps(a0, a1);
            let h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
            let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            let h = _mm_add_ss(h, _mm_movehdup_ps(h));
            let mut s = _mm_cvtss_f32(h);
            for j in i..n {
                s += q[j] * k[j].to_f32();
            }
            s
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn mad(acc: &mut [f32], v: &[f16], s: f32) {
            let n = acc.len().min(v.len());
            let (ap, vp) = (acc.as_mut_ptr(), v.as_ptr());
            let vs = _mm256_set1_ps(s);
            let mut i = 0;
            while i + 8 <= n {
                let r = _mm256_fmadd_ps(load8(vp.add(i)), vs, _mm256_loadu_ps(ap.add(i)));
                _mm256_storeu_ps(ap.add(i), r);
                i += 8;
            }
            for j in i..n {
                acc[j] = v[j].to_f32().mul_add(s, acc[j]);
            }
        }

        #[target_feature(enable = "avx2,fma,f16c")]
        pub unsafe fn scale(acc: &mut [f32], s: f32) {
            let n = acc.len();
            let ap = acc.as_mut_ptr();
            let vs = _mm256_set1_ps(s);
            let mut i = 0;
            while i + 8 <= n {
                _mm256_storeu_ps(ap.add(i), _mm256_mul_ps(_mm256_loadu_ps(ap.add(i)), vs));
                i += 8;
            }
            for a in &mut acc[i..n] {
                *a *= s;
            }
        }
    }
}
