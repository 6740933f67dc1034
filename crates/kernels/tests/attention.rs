//! Attention against a naive softmax(q K^T * scale) V computed in f64, with GQA, several KV
//! chunks, soft-capping, attention sinks, the parallel prefill form, and scalar against SIMD
//! kernels.

use half::f16;
use kernels::attention::{attention_row, attention_row_avx2, attention_row_scalar, attention_rows_parallel, AttnParams, KvChunk};
use kernels::pool::ThreadPool;

struct Rng(u64);
impl Rng {
    fn f32(&mut self, scale: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        (bits as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32(scale)).collect()
    }
    fn f16s(&mut self, n: usize, scale: f32) -> Vec<f16> {
        (0..n).map(|_| f16::from_f32(self.f32(scale))).collect()
    }
}

/// A KV cache of `n_kv` rows split into chunks of the given sizes.
struct Cache {
    k: Vec<f16>,
    v: Vec<f16>,
    row: usize,
}

impl Cache {
    fn new(rng: &mut Rng, n_kv: usize, p: &AttnParams) -> Self {
        let row = p.n_head_kv * p.head_dim;
        Cache { k: rng.f16s(n_kv * row, 1.0), v: rng.f16s(n_kv * row, 1.0), row }
    }
    fn chunks(&self, sizes: &[usize]) -> Vec<KvChunk<'_>> {
        let mut out = Vec::new();
        let mut start = 0;
        for &n in sizes {
            let r = start * self.row..(start + n) * self.row;
            out.push(KvChunk { k: &self.k[r.clone()], v: &self.v[r], n_rows: n });
            start += n;
        }
        out
    }
}

/// softmax(q K^T * scale [softcapped]) V over rows `range`, per head, in f64.
fn naive(q: &[f32], cache: &Cache, range: std::ops::Range<usize>, p: &AttnParams) -> Vec<f64> {
    let hd = p.head_dim;
    let group = p.n_head / p.n_head_kv;
    let mut out = vec![0f64; p.n_head * hd];
    for h in 0..p.n_head {
        let kvh = h / group;
        let scores: Vec<f64> = range
            .clone()
            .map(|j| {
                let k = &cache.k[j * cache.row + kvh * hd..][..hd];
                let dot: f64 = (0..hd).map(|d| f64::from(q[h * hd + d]) * f64::from(k[d].to_f32())).sum();
                let s = dot * f64::from(p.scale);
                match p.softcap {
                    Some(c) => f64::from(c) * (s / f64::from(c)).tanh(),
                    None => s,
                }
            })
            .collect();
        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
        // A sink logit joins the denominator only.
        let sum: f64 = w.iter().sum::<f64>() + p.sinks.map_or(0.0, |z| (f64::from(z[h]) - max).exp());
        for (j, wj) in range.clone().zip(&w) {
            let v = &cache.v[j * cache.row + kvh * hd..][..hd];
            for d in 0..hd {
                out[h * hd + d] += wj / sum * f64::from(v[d].to_f32());
            }
        }
    }
    out
}

/// One query row run alone ([`attention_row`]) over exactly the cache rows `range`, as one chunk.
fn alone(q: &[f32], cache: &Cache, range: std::ops::Range<usize>, p: &AttnParams) -> Vec<f32> {
    let r = range.start * cache.row..range.end * cache.row;
    let sub = [KvChunk { k: &cache.k[r.clone()], v: &cache.v[r], n_rows: range.len() }];
    let mut one = vec![0f32; q.len()];
    attention_row(q, &sub, p, &mut Vec::new(), &mut one);
    one
}

fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((f64::from(g) - w).abs() <= tol, "{what}[{i}]: got {g}, want {w}");
    }
}

fn params(n_head: usize, n_head_kv: usize, head_dim: usize, softcap: Option<f32>) -> AttnParams<'static> {
    AttnParams { n_head, n_head_kv, head_dim, scale: 1.0 / (head_dim as f32).sqrt(), softcap, sinks: None }
}

#[test]
fn gqa_over_several_chunks_matches_naive_f64() {
    let mut rng = Rng(21);
    // SmolLM2-135M's shape (9 heads, 3 KV heads, 64 dims), a 4:1 group, MHA, and odd sizes.
    for p in [params(9, 3, 64, None), params(8, 2, 128, None), params(4, 4, 32, None), params(6, 3, 20, None)] {
        for sizes in [vec![1], vec![16, 16, 5], vec![3, 0, 40, 1], vec![100]] {
            let n_kv: usize = sizes.iter().sum();
            let cache = Cache::new(&mut rng, n_kv, &p);
            let chunks = cache.chunks(&sizes);
            // Larger q makes the softmax peaked, exercising the running-max rescale.
            let q = rng.vec(p.n_head * p.head_dim, 4.0);
            let mut out = vec![0f32; q.len()];
            let mut scratch = Vec::new();
            attention_row(&q, &chunks, &p, &mut scratch, &mut out);
            // f32 throughout: a few f32 ulps on outputs of magnitude <= 1 (an f16-rounded query
            // or accumulator, as in llama.cpp's decode kernel, would be off by ~1e-3).
            assert_close(&format!("{p:?} {sizes:?}"), &out, &naive(&q, &cache, 0..n_kv, &p), 2e-5);
        }
    }
}

#[test]
fn single_row_returns_that_rows_value_exactly() {
    let mut rng = Rng(22);
    let p = params(4, 2, 16, None);
    let cache = Cache::new(&mut rng, 1, &p);
    let q = rng.vec(64, 1.0);
    let mut out = vec![0f32; 64];
    attention_row(&q, &cache.chunks(&[1]), &p, &mut Vec::new(), &mut out);
    for h in 0..4 {
        for d in 0..16 {
            assert_eq!(out[h * 16 + d], cache.v[(h / 2) * 16 + d].to_f32());
        }
    }
}

#[test]
fn softcap_matches_naive_f64() {
    let mut rng = Rng(23);
    let p = params(4, 1, 64, Some(5.0));
    let cache = Cache::new(&mut rng, 30, &p);
    let q = rng.vec(4 * 64, 30.0); // scores well past the cap
    let mut out = vec![0f32; q.len()];
    attention_row(&q, &cache.chunks(&[10, 20]), &p, &mut Vec::new(), &mut out);
    let want = naive(&q, &cache, 0..30, &p);
    assert_close("softcap", &out, &want, 3e-5);
    let uncapped = naive(&q, &cache, 0..30, &params(4, 1, 64, None));
    let differs = want.iter().zip(&uncapped).any(|(a, b)| (a - b).abs() > 1e-2);
    assert!(differs, "the cap must change the result for these scores");
}

#[test]
fn simd_matches_scalar_kernels() {
    let mut rng = Rng(24);
    for p in [params(9, 3, 64, None), params(2, 1, 21, Some(30.0))] {
        let cache = Cache::new(&mut rng, 77, &p);
        let chunks = cache.chunks(&[32, 32, 13]);
        let q = rng.vec(p.n_head * p.head_dim, 2.0);
        let mut fast = vec![0f32; q.len()];
        let mut reference = vec![0f32; q.len()];
        attention_row(&q, &chunks, &p, &mut Vec::new(), &mut fast);
        attention_row_scalar(&q, &chunks, &p, &mut Vec::new(), &mut reference);
        for (i, (&a, &b)) in fast.iter().zip(&reference).enumerate() {
            assert!((a - b).abs() <= 1e-5, "[{i}]: simd {a}, scalar {b}");
        }
    }
}

/// The AVX-512 form (register-resident query and accumulator) must be bit-for-bit the AVX2 form,
/// which the golden tests were calibrated on: every head size that takes it (64, 128, 256), one
/// that does not (80 is not a multiple of 16... it is: 5 x 16, but has no kernel), softcap,
/// many chunks, large scores that move the running maximum often; groups of 1-4 heads, so that
/// wide heads' V updates run in 1, 2 and 4 passes (`avx512::State::PASS`).
#[test]
fn avx512_matches_avx2_bit_for_bit() {
    let mut rng = Rng(26);
    let shapes = [
        params(9, 3, 64, None),
        params(4, 1, 128, None),
        params(6, 2, 128, Some(20.0)),
        params(4, 2, 256, Some(50.0)),
        params(4, 1, 256, None),
        params(2, 2, 256, None),
        params(2, 1, 80, None),
        params(6, 2, 64, Some(20.0)),
    ];
    for p in shapes {
        for (n_kv, sizes, qscale) in [(1usize, vec![1usize], 1.0f32), (77, vec![32, 32, 13], 2.0), (300, vec![16; 18].into_iter().chain([12]).collect(), 8.0), (120, vec![7, 30, 1, 45, 37], 4.0)] {
            let cache = Cache::new(&mut rng, n_kv, &p);
            let chunks = cache.chunks(&sizes);
            let q = rng.vec(p.n_head * p.head_dim, qscale);
            let (mut fast, mut avx2) = (vec![0f32; q.len()], vec![0f32; q.len()]);
            attention_row(&q, &chunks, &p, &mut Vec::new(), &mut fast);
            attention_row_avx2(&q, &chunks, &p, &mut Vec::new(), &mut avx2);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&avx2), "head_dim {} n_kv {n_kv}", p.head_dim);
        }
    }
}

/// gpt-oss's sinks: against the f64 softmax with the sink in its denominator, on every path
/// (AVX-512 bit-for-bit AVX2, scalar within rounding), sinks both above the scores (the
/// accumulator rescaled) and below, the parallel form equal to rows one by one; and a sink of
/// -inf changes nothing.
#[test]
fn sinks_match_naive_f64_on_every_path() {
    let mut rng = Rng(27);
    let sinks: Vec<f32> = vec![8.0, -6.0, 0.5, 3.0, -1.0, 12.0, 0.0, -20.0];
    for (hd, qscale) in [(64usize, 2.0f32), (16, 6.0), (20, 1.0)] {
        let p = AttnParams { sinks: Some(&sinks), ..params(8, 2, hd, None) };
        for sizes in [vec![1usize], vec![16, 16, 9], vec![130]] {
            let n_kv: usize = sizes.iter().sum();
            let cache = Cache::new(&mut rng, n_kv, &p);
            let chunks = cache.chunks(&sizes);
            let q = rng.vec(p.n_head * hd, qscale);
            let (mut fast, mut avx2, mut scalar) = (vec![0f32; q.len()], vec![0f32; q.len()], vec![0f32; q.len()]);
            attention_row(&q, &chunks, &p, &mut Vec::new(), &mut fast);
            attention_row_avx2(&q, &chunks, &p, &mut Vec::new(), &mut avx2);
            attention_row_scalar(&q, &chunks, &p, &mut Vec::new(), &mut scalar);
            let what = format!("head_dim {hd}, chunks {sizes:?}");
            assert_close(&what, &fast, &naive(&q, &cache, 0..n_kv, &p), 2e-5);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&avx2), "{what}: AVX-512 vs AVX2");
            // FMA against separate rounding and libm's exp: a few f32 ulps over 130 rows.
            for (i, (&a, &b)) in fast.iter().zip(&scalar).enumerate() {
                assert!((a - b).abs() <= 1e-5, "{what} [{i}]: simd {a}, scalar {b}");
            }
            // The sinks matter: without them the result differs.
            let mut plain = vec![0f32; q.len()];
            attention_row(&q, &chunks, &params(8, 2, hd, None), &mut Vec::new(), &mut plain);
            assert!(fast.iter().zip(&plain).any(|(a, b)| (a - b).abs() > 1e-2), "{what}: sinks change the output");
            // Sinks of -inf are no sinks.
            let none = vec![f32::NEG_INFINITY; 8];
            let mut same = vec![0f32; q.len()];
            attention_row(&q, &chunks, &AttnParams { sinks: Some(&none), ..params(8, 2, hd, None) }, &mut Vec::new(), &mut same);
            assert_eq!(bits(&same), bits(&plain), "{what}: -inf sinks");
        }
    }
    // The parallel prefill form equals rows one by one with sinks too, and no visible row gives 0.
    let p = AttnParams { sinks: Some(&sinks), ..params(8, 2, 64, None) };
    let cache = Cache::new(&mut rng, 40, &p);
    let chunks = cache.chunks(&[16, 24]);
    let row = 8 * 64;
    let q = rng.vec(20 * row, 3.0);
    let visible = |t: usize| 0..21 + t - 1;
    let mut out = vec![f32::NAN; 20 * row];
    attention_rows_parallel(&ThreadPool::new(2), &q, 20, &chunks, &visible, &p, &mut out);
    for t in 0..20 {
        let one = alone(&q[t * row..(t + 1) * row], &cache, visible(t), &p);
        assert_eq!(&out[t * row..(t + 1) * row], &one[..], "token {t}");
    }
    let mut empty = vec![f32::NAN; row];
    attention_row(&q[..row], &[], &p, &mut Vec::new(), &mut empty);
    assert!(empty.iter().all(|&v| v == 0.0));
}

#[test]
fn no_visible_rows_gives_zeros() {
    let p = params(2, 1, 8, None);
    let q = vec![1.0f32; 16];
    let mut out = vec![f32::NAN; 16];
    attention_row(&q, &[], &p, &mut Vec::new(), &mut out);
    assert!(out.iter().all(|&v| v == 0.0));
}

#[test]
fn parallel_causal_prefill_matches_rows_one_by_one() {
    let mut rng = Rng(25);
    let p = params(9, 3, 64, None);
    let (n_past, n_tokens) = (13, 21);
    let n_kv = n_past + n_tokens;
    let cache = Cache::new(&mut rng, n_kv, &p);
    let chunks = cache.chunks(&[16, 16, 2]);
    let row = p.n_head * p.head_dim;
    let q = rng.vec(n_tokens * row, 3.0);
    for (window, threads) in [(None, 1), (None, 3), (Some(8usize), 2)] {
        let pool = ThreadPool::new(threads);
        let visible = |t: usize| {
            let end = n_past + t + 1;
            let start = window.map_or(0, |w| end.saturating_sub(w));
            start..end
        };
        let mut out = vec![f32::NAN; n_tokens * row];
        attention_rows_parallel(&pool, &q, n_tokens, &chunks, &visible, &p, &mut out);
        for t in 0..n_tokens {
            let got = &out[t * row..(t + 1) * row];
            let want = naive(&q[t * row..(t + 1) * row], &cache, visible(t), &p);
            assert_close(&format!("token {t} window {window:?}"), got, &want, 2e-5);
            // The same arithmetic as one row at a time over exactly those rows.
            let one = alone(&q[t * row..(t + 1) * row], &cache, visible(t), &p);
            assert_eq!(got, &one[..], "token {t}");
        }
    }
}

/// A prompt over a context longer than one tile (the AVX-512 path walks the KV rows in tiles of
/// 8192 / head_dim rows, every token resuming its state per tile): each token's output is
/// bit for bit that token run alone over its rows, with GQA groups of 1 to 4 heads, ragged
/// chunks (a tile edge inside a chunk), a sliding window, sinks and a soft cap, on 1 and 2
/// threads; and within 2e-5 of the f64 softmax. Without AVX-512 the same checks hold the
/// token-at-a-time path.
#[test]
fn tiled_prefill_over_a_long_context_matches_rows_one_by_one() {
    let mut rng = Rng(31);
    let sinks: Vec<f32> = (0..12).map(|i| i as f32 - 4.0).collect();
    for (n_head, n_head_kv, hd, softcap, with_sinks) in
        [(12usize, 2usize, 64usize, None, false), (8, 2, 128, Some(30.0f32), true), (4, 1, 256, None, true), (3, 3, 64, None, true)]
    {
        let p = AttnParams { sinks: with_sinks.then_some(&sinks[..n_head]), ..params(n_head, n_head_kv, hd, softcap) };
        let (n_past, n_tokens) = (301, 37);
        let n_kv = n_past + n_tokens;
        let cache = Cache::new(&mut rng, n_kv, &p);
        let chunks = cache.chunks(&[16, 16, 7, 100, 33, 16, 130, 20]);
        let row = n_head * hd;
        let q = rng.vec(n_tokens * row, 3.0);
        for (window, threads) in [(None, 1), (None, 2), (Some(150usize), 2)] {
            let pool = ThreadPool::new(threads);
            let visible = |t: usize| {
                let end = n_past + t + 1;
                window.map_or(0, |w| end.saturating_sub(w))..end
            };
            let mut out = vec![f32::NAN; n_tokens * row];
            attention_rows_parallel(&pool, &q, n_tokens, &chunks, &visible, &p, &mut out);
            for t in 0..n_tokens {
                let what = format!("heads {n_head}/{n_head_kv} of {hd}, window {window:?}, {threads} threads, token {t}");
                let got = &out[t * row..(t + 1) * row];
                assert_close(&what, got, &naive(&q[t * row..(t + 1) * row], &cache, visible(t), &p), 2e-5);
                let one = alone(&q[t * row..(t + 1) * row], &cache, visible(t), &p);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(got), bits(&one), "{what}");
            }
        }
    }
}
