//! AVX-512 form of the online-softmax attention of [`super::head`], for a few heads sharing one KV
//! head at once (see [`heads`]), for head sizes that are
//! a multiple of 16, with the f16-rounded query and the f16-rounded V accumulator held in
//! registers across the KV rows (the AVX2 form loads and stores the accumulator per row).
//!
//! Bit-for-bit the same as the AVX2 form: the dot product's two 8-lane accumulators (even and
//! odd 8-element chunks) are the low and high halves of one 16-lane register, fed the same
//! fused multiply-adds in the same order and summed the same way; every V update is the same
//! `fma(v, w, acc)` rounded to f16; `exp` is the same libm call; the running sum is the same
//! scalar code.

use std::arch::x86_64::*;

use half::f16;

use super::KvChunk;

/// Whether this process runs [`head`]: the kernels' AVX-512 level (not capped by
/// `DAEHWA_KERNELS=avx2`), which includes AVX-512 F and F16C/FMA/AVX2.
pub(super) fn available() -> bool {
    crate::quant::chosen_level() >= crate::quant::Level::Avx512Vnni
}

/// `round_f16(x)` on 16 lanes (round to nearest even, like `_mm256_cvtps_ph` in ggml).
#[inline(always)]
unsafe fn round16(x: __m512) -> __m512 {
    _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x))
}

#[inline(always)]
unsafe fn load16(p: *const f16) -> __m512 {
    _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
}

/// ggml's hsum over the 8-lane sum of the two halves (`hsum_float_8` order).
#[inline(always)]
unsafe fn hsum_halves(a: __m512) -> f32 {
    let a = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a))));
    let h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_movehdup_ps(h));
    _mm_cvtss_f32(h)
}

/// `G` heads of one query that share one KV head (`NV * 16` values each, consecutive in `q` and
/// `out`) over the KV rows `range` of the concatenated chunks: per head, `out = softmax(q K^T *
/// scale [softcapped]) V` with ggml's f16 accumulator rounding.
///
/// Each K and V row is loaded and converted once for the `G` heads, and the heads' dot products
/// and updates are independent chains the core overlaps (one head alone waits on its dot
/// product's FMA chain, its horizontal sum and `exp` every row). A head's own operations are
/// the single-head kernel's in the same order, so the result is the same bit for bit.
///
/// # Safety
/// [`available`]; every chunk holds `n_rows * stride` values; `kvh * NV * 16 + NV * 16 <= stride`;
/// `q` and `out` hold `G * NV * 16` values; `sinks`, where given, `G`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn heads<const NV: usize, const G: usize>(
    q: &[f32],
    chunks: &[KvChunk],
    range: std::ops::Range<usize>,
    stride: usize,
    kvh: usize,
    scale: f32,
    cap: f32,
    sinks: Option<&[f32]>,
    out: &mut [f32],
) {
    let hd = NV * 16;
    // Q rounded to f16, as ggml's flash attention converts it to K's vec_dot type.
    let mut qv = [[_mm512_setzero_ps(); NV]; G];
    for (g, qg) in qv.iter_mut().enumerate() {
        for (i, r) in qg.iter_mut().enumerate() {
            *r = round16(_mm512_loadu_ps(q.as_ptr().add(g * hd + i * 16)));
        }
    }
    let mut acc = [[_mm512_setzero_ps(); NV]; G];
    let mut m = [f32::NEG_INFINITY; G];
    let mut sum = [0f32; G];
    let mut base = 0;
    for c in chunks {
        let lo = range.start.max(base);
        let hi = range.end.min(base + c.n_rows);
        for j in lo.saturating_sub(base)..hi.saturating_sub(base) {
            let off = j * stride + kvh * hd;
            let (kp, vp) = (c.k.as_ptr().add(off), c.v.as_ptr().add(off));
            let mut d = [_mm512_setzero_ps(); G];
            for i in 0..NV {
                let k = load16(kp.add(i * 16));
                for g in 0..G {
                    d[g] = _mm512_fmadd_ps(qv[g][i], k, d[g]);
                }
            }
            let mut vs = [1f32; G];
            for g in 0..G {
                let mut s = hsum_halves(d[g]) * scale;
                if cap != 0.0 {
                    s = cap * s.tanh();
                }
                let mut ms = 1.0;
                if s > m[g] {
                    ms = (m[g] - s).exp();
                    m[g] = s;
                    let msv = _mm512_set1_ps(ms);
                    for a in acc[g].iter_mut() {
                        *a = round16(_mm512_mul_ps(*a, msv));
                    }
                } else {
                    vs[g] = (s - m[g]).exp();
                }
                sum[g] = sum[g] * ms + vs[g];
            }
            let vsv: [__m512; G] = std::array::from_fn(|g| _mm512_set1_ps(vs[g]));
            for i in 0..NV {
                let v = load16(vp.add(i * 16));
                for g in 0..G {
                    acc[g][i] = round16(_mm512_fmadd_ps(v, vsv[g], acc[g][i]));
                }
            }
        }
        base += c.n_rows;
    }
    if let Some(z) = sinks {
        for g in 0..G {
            let ms;
            (sum[g], ms) = super::sink(z[g], m[g], sum[g]);
            let msv = _mm512_set1_ps(ms);
            for a in acc[g].iter_mut() {
                *a = _mm512_mul_ps(*a, msv);
            }
        }
    }
    for g in 0..G {
        let inv = _mm512_set1_ps(if sum[g] == 0.0 { 0.0 } else { 1.0 / sum[g] });
        for (i, a) in acc[g].iter().enumerate() {
            _mm512_storeu_ps(out.as_mut_ptr().add(g * hd + i * 16), _mm512_mul_ps(*a, inv));
        }
    }
}
