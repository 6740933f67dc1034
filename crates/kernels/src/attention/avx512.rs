//! AVX-512 form of one head's online-softmax attention ([`super::head`]) for head sizes that are
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

/// One head of one query (`NV * 16` values) over the KV rows `range` of the concatenated
/// chunks: `out = softmax(q K^T * scale [softcapped]) V` with ggml's f16 accumulator rounding.
///
/// # Safety
/// [`available`]; every chunk holds `n_rows * stride` values; `kvh * NV * 16 + NV * 16 <= stride`;
/// `q` and `out` hold `NV * 16` values.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avx512f")]
pub(super) unsafe fn head<const NV: usize>(
    q: &[f32],
    chunks: &[KvChunk],
    range: std::ops::Range<usize>,
    stride: usize,
    kvh: usize,
    scale: f32,
    cap: f32,
    out: &mut [f32],
) -> bool {
    let hd = NV * 16;
    // Q rounded to f16, as ggml's flash attention converts it to K's vec_dot type.
    let mut qv = [_mm512_setzero_ps(); NV];
    for (i, r) in qv.iter_mut().enumerate() {
        *r = round16(_mm512_loadu_ps(q.as_ptr().add(i * 16)));
    }
    let mut acc = [_mm512_setzero_ps(); NV];
    let mut m = f32::NEG_INFINITY;
    let mut sum = 0f32;
    let mut base = 0;
    for c in chunks {
        let lo = range.start.max(base);
        let hi = range.end.min(base + c.n_rows);
        for j in lo.saturating_sub(base)..hi.saturating_sub(base) {
            let off = j * stride + kvh * hd;
            let (kp, vp) = (c.k.as_ptr().add(off), c.v.as_ptr().add(off));
            let mut d = _mm512_setzero_ps();
            for (i, &qi) in qv.iter().enumerate() {
                d = _mm512_fmadd_ps(qi, load16(kp.add(i * 16)), d);
            }
            let mut s = hsum_halves(d) * scale;
            if cap != 0.0 {
                s = cap * s.tanh();
            }
            let mut ms = 1.0;
            let mut vs = 1.0;
            if s > m {
                ms = (m - s).exp();
                m = s;
                let msv = _mm512_set1_ps(ms);
                for a in acc.iter_mut() {
                    *a = round16(_mm512_mul_ps(*a, msv));
                }
            } else {
                vs = (s - m).exp();
            }
            let vsv = _mm512_set1_ps(vs);
            for (i, a) in acc.iter_mut().enumerate() {
                *a = round16(_mm512_fmadd_ps(load16(vp.add(i * 16)), vsv, *a));
            }
            sum = sum * ms + vs;
        }
        base += c.n_rows;
    }
    let inv = _mm512_set1_ps(if sum == 0.0 { 0.0 } else { 1.0 / sum });
    for (i, a) in acc.iter().enumerate() {
        _mm512_storeu_ps(out.as_mut_ptr().add(i * 16), _mm512_mul_ps(*a, inv));
    }
    true
}
