//! AVX2 and AVX-512 dots of q2_K and q3_K with q8_K.
//!
//! AVX2 (ggml's approach): per 32-element chunk `c`, the 2-bit quants shifted out of `qs`
//! (q3_K: plus 4 where the `hmask` bit is set, minus `4 * y` through a second `maddubs`),
//! `maddubs` with the q8_K quants and `madd` by the two 16-element sub-block scales leave in lane
//! `l` the exact sum of elements `4l..4l + 4`; eight chunks add up per super-block into one
//! exact total, folded by the K-quant float order as the scalar reference (`k_step`). q2_K's
//! minimum term is one exact i32 per super-block (`madd` of the 4-bit mins with the q8_K block
//! sums), subtracted in the same step.
//!
//! AVX-512: chunks `c` and `c + 1` in one 512-bit register (their q8_K quants are contiguous);
//! the super-block's lanes are summed exactly, so the float steps and the result are the AVX2
//! kernel's. The AVX-512 kernels
//! take 1 to 4 tokens: a super-block's quants and scales are unpacked once and used by every
//! token (prefill), each token's arithmetic exactly the one-token kernel's.

// The loops index by chunk number (`c = 4h + j`) as the layout comment does.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::kquants::SHUF_Q6;
use super::kquants512::wrappers;
use super::legacy::wrapper;
use super::{f16, hsum_i32_8, load32};
use crate::quant::kquants::k_step;
use crate::quant::blocks::{dot_operands, unpack_scales_q3k, BlockQ2K, BlockQ3K, BlockQ8K};

wrapper!(vec_dot_q2_k_q8_k, q2_k_avx2, BlockQ2K, BlockQ8K);
wrapper!(vec_dot_q3_k_q8_k, q3_k_avx2, BlockQ3K, BlockQ8K);
wrappers!(vec_dot_q2_k_q8_k_512, vec_dot_multi_q2_k_q8_k_512, q2_k_512, BlockQ2K);
wrappers!(vec_dot_q3_k_q8_k_512, vec_dot_multi_q3_k_q8_k_512, q3_k_512, BlockQ3K);

/// Row k: bytes 4k (x8), 4k+1 (x8) in the low 128 bits, 4k+2 (x8), 4k+3 (x8) in the high:
/// the scales of chunks 2k and 2k + 1 for one 512-bit step.
static SHUF_PAIR: [[u8; 32]; 4] = {
    let mut t = [[0u8; 32]; 4];
    let mut k = 0;
    while k < 4 {
        let mut i = 0;
        while i < 32 {
            t[k][i] = (4 * k + i / 8) as u8;
            i += 1;
        }
        k += 1;
    }
    t
};

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load16(a: &[u8; 16]) -> __m128i {
    // SAFETY: 16 readable bytes; `loadu` needs no alignment.
    unsafe { _mm_loadu_si128(a.as_ptr().cast()) }
}

/// Scales of chunk `c` (sub-blocks 2c, 2c + 1) as 16 i16: eight of each.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn chunk_scales(scales: __m128i, c: usize) -> __m256i {
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, load16(&SHUF_Q6[c])))
}

/// The 2-bit quants of chunk `4h + j` from `qs[32h..32h + 32]` (`j` is a run-time shift).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn low2(q: __m256i, j: usize) -> __m256i {
    _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * j as i32)), _mm256_set1_epi8(3))
}

/// q2_K's exact minimum sum `sum_g min_g * bsum_g`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q2_min_sum(sc: __m128i, b: &BlockQ8K) -> i32 {
    let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(sc), _mm_set1_epi8(0xF)));
    // SAFETY: `bsums` is 32 readable bytes; `loadu` needs no alignment.
    let bsums = unsafe { _mm256_loadu_si256(b.bsums.as_ptr().cast()) };
    hsum_i32_8(_mm256_madd_epi16(mins, bsums))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k_avx2(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let mut acc = 0f32;
    for (a, b) in x.iter().zip(y) {
        let sc_bytes = load16(&a.scales);
        let scales = _mm_and_si128(sc_bytes, _mm_set1_epi8(0xF));
        let isum_min = q2_min_sum(sc_bytes, b);
        let qs: &[[u8; 32]] = a.qs.as_chunks::<32>().0;
        let q8: &[[i8; 32]] = b.qs.as_chunks::<32>().0;
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let q2 = load32(&qs[h]);
            for j in 0..4 {
                let c = 4 * h + j;
                let p16 = _mm256_maddubs_epi16(low2(q2, j), load32(&q8[c]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(chunk_scales(scales, c), p16));
            }
        }
        acc = k_step(acc, b.d() * f16(a.d), hsum_i32_8(sumi), b.d() * f16(a.dmin), isum_min);
    }
    acc
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q3_k_avx2(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let four = _mm256_set1_epi8(4);
    let mut acc = 0f32;
    for (a, b) in x.iter().zip(y) {
        let scales = load16(&unpack_scales_q3k(&a.scales).map(|s| s as u8));
        let hbits = load32(&a.hmask);
        let qs: &[[u8; 32]] = a.qs.as_chunks::<32>().0;
        let q8: &[[i8; 32]] = b.qs.as_chunks::<32>().0;
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let q3 = load32(&qs[h]);
            for j in 0..4 {
                let c = 4 * h + j;
                let m = _mm256_set1_epi8((1u8 << c) as i8);
                let hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hbits, m), m), four);
                let q = _mm256_or_si256(low2(q3, j), hb);
                let yv = load32(&q8[c]);
                let p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q, yv), _mm256_maddubs_epi16(four, yv));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(chunk_scales(scales, c), p16));
            }
        }
        acc = k_step(acc, b.d() * f16(a.d), hsum_i32_8(sumi), 0.0, 0);
    }
    acc
}

/// Scales of chunks `2k`, `2k + 1` as 32 i16 (eight each of sub-blocks 4k .. 4k + 4).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair_scales(scales: __m256i, k: usize) -> __m512i {
    _mm512_cvtepi8_epi16(_mm256_shuffle_epi8(scales, load32(&SHUF_PAIR[k])))
}

/// The 2-bit quants of chunks `4h + 2p` and `4h + 2p + 1` (shifts `4p` and `4p + 2`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn low2_pair(q: __m256i, p: usize) -> __m512i {
    let s = _mm_cvtsi32_si128(4 * p as i32);
    let lo = _mm256_srl_epi16(q, s);
    let both = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), _mm256_srli_epi16::<2>(lo));
    _mm512_and_si512(both, _mm512_set1_epi8(3))
}


/// # Safety
/// Every `ys[t]` has at least `x.len()` blocks (the wrappers check this).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q2_k_512<const T: usize>(x: &[BlockQ2K], ys: [&[BlockQ8K]; T], out: &mut [f32; T]) {
    let mut acc = [0f32; T];
    for (i, a) in x.iter().enumerate() {
        let sc_bytes = load16(&a.scales);
        let scales = _mm256_broadcastsi128_si256(_mm_and_si128(sc_bytes, _mm_set1_epi8(0xF)));
        let qs: &[[u8; 32]] = a.qs.as_chunks::<32>().0;
        let mut w = [_mm512_setzero_si512(); 4];
        let mut s = [_mm512_setzero_si512(); 4];
        for h in 0..2 {
            let q2 = load32(&qs[h]);
            for p in 0..2 {
                w[2 * h + p] = low2_pair(q2, p);
                s[2 * h + p] = pair_scales(scales, 2 * h + p);
            }
        }
        let (dw, dminw) = (f16(a.d), f16(a.dmin));
        for t in 0..T {
            // SAFETY: the caller's contract: `ys[t]` has a block `i`.
            let b = unsafe { ys[t].get_unchecked(i) };
            let isum_min = q2_min_sum(sc_bytes, b);
            let q8: &[[i8; 64]] = b.qs.as_chunks::<64>().0;
            let mut sumi = _mm512_setzero_si512();
            for k in 0..4 {
                // SAFETY: 64 readable bytes; `loadu` needs no alignment.
                let yv = unsafe { _mm512_loadu_si512(q8[k].as_ptr().cast()) };
                sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(s[k], _mm512_maddubs_epi16(w[k], yv)));
            }
            acc[t] = k_step(acc[t], b.d() * dw, _mm512_reduce_add_epi32(sumi), b.d() * dminw, isum_min);
        }
    }
    *out = acc;
}

/// # Safety
/// Every `ys[t]` has at least `x.len()` blocks (the wrappers check this).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q3_k_512<const T: usize>(x: &[BlockQ3K], ys: [&[BlockQ8K]; T], out: &mut [f32; T]) {
    let four = _mm512_set1_epi8(4);
    let mut acc = [0f32; T];
    for (i, a) in x.iter().enumerate() {
        let scales = _mm256_broadcastsi128_si256(load16(&unpack_scales_q3k(&a.scales).map(|s| s as u8)));
        let hb = load32(&a.hmask);
        let hbits = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(hb), hb);
        let qs: &[[u8; 32]] = a.qs.as_chunks::<32>().0;
        let mut w = [_mm512_setzero_si512(); 4];
        let mut s = [_mm512_setzero_si512(); 4];
        for h in 0..2 {
            let q3 = load32(&qs[h]);
            for p in 0..2 {
                let k = 2 * h + p;
                let c = 2 * k;
                let m = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_set1_epi8((1u8 << c) as i8)), _mm256_set1_epi8((1u8 << (c + 1)) as i8));
                let lo = low2_pair(q3, p);
                w[k] = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(hbits, m), lo, four);
                s[k] = pair_scales(scales, k);
            }
        }
        let dw = f16(a.d);
        for t in 0..T {
            // SAFETY: the caller's contract: `ys[t]` has a block `i`.
            let b = unsafe { ys[t].get_unchecked(i) };
            let q8: &[[i8; 64]] = b.qs.as_chunks::<64>().0;
            let mut sumi = _mm512_setzero_si512();
            for k in 0..4 {
                // SAFETY: 64 readable bytes; `loadu` needs no alignment.
                let yv = unsafe { _mm512_loadu_si512(q8[k].as_ptr().cast()) };
                let p16 = _mm512_sub_epi16(_mm512_maddubs_epi16(w[k], yv), _mm512_maddubs_epi16(four, yv));
                sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(s[k], p16));
            }
            acc[t] = k_step(acc[t], b.d() * dw, _mm512_reduce_add_epi32(sumi), 0.0, 0);
        }
    }
    *out = acc;
}
