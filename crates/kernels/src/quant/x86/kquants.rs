//! AVX2+FMA dot products of q4_K, q5_K and q6_K with q8_K (ports of ggml's `__AVX2__` branches).
//!
//! The quants are unsigned (q4/q5 as stored, q6 before its -32 offset), so `maddubs` gives
//! exact 16-bit pair sums (at most 63 * 128 * 2 < 2^15); the minimum / offset terms come from
//! the q8_K block sums. The integer work is ggml's; the float steps follow the K-quant order
//! of `quant::kquants` (per super-block integer totals, then [`k_step`]), so the results are
//! bit-for-bit the scalar reference's.

use std::arch::x86_64::*;

use super::legacy::wrapper;
use super::{f16, hsum_i32_8, load32};
use crate::quant::kquants::k_step;
use crate::quant::blocks::{
    dot_operands, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K,
};

wrapper!(vec_dot_q4_k_q8_k, q4_k_q8_k, BlockQ4K, BlockQ8K);
wrapper!(vec_dot_q5_k_q8_k, q5_k_q8_k, BlockQ5K, BlockQ8K);
wrapper!(vec_dot_q6_k_q8_k, q6_k_q8_k, BlockQ6K, BlockQ8K);

/// Row i broadcasts the 16-bit scale i to every 16-bit lane (`get_scale_shuffle_k4`).
pub(super) const SHUF_K4: [[u8; 32]; 8] = {
    let mut t = [[0u8; 32]; 8];
    let mut i = 0;
    while i < 8 {
        let mut j = 0;
        while j < 32 {
            t[i][j] = (2 * i + (j & 1)) as u8;
            j += 1;
        }
        i += 1;
    }
    t
};

/// Row i puts byte 2i in the first 8 bytes and byte 2i+1 in the last 8 (`get_scale_shuffle`).
pub(crate) const SHUF_Q6: [[u8; 16]; 8] = {
    let mut t = [[0u8; 16]; 8];
    let mut i = 0;
    while i < 8 {
        let mut j = 0;
        while j < 16 {
            t[i][j] = (2 * i + j / 8) as u8;
            j += 1;
        }
        i += 1;
    }
    t
};

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn load16<T: Copy>(a: &[T; 16]) -> __m128i {
    const { assert!(std::mem::size_of::<T>() == 1) };
    // SAFETY: `a` is 16 readable bytes; `loadu` needs no alignment.
    unsafe { _mm_loadu_si128(a.as_ptr().cast()) }
}

/// The 6-bit scales (low 128 bits) and mins (high 128 bits) of a q4_K/q5_K block as i16.
///
/// [`unpack_scales_mins_k4`] in registers, on the three little-endian words `u0 u1 u2` of the
/// 12 bytes (ggml's `utmp` trick, four bytes per lane): scales 0-3 = `u0 & 0x3f..`, scales 4-7 =
/// `u2 & 0x0f.. | (u0 >> 2) & 0x30..`, mins 0-3 = `u1 & 0x3f..`, mins 4-7 = `u2 >> 4 & 0x0f.. |
/// (u1 >> 2) & 0x30..`. The byte-wise version stored 16 bytes one at a time and loaded them back
/// as a vector, a failed store-to-load forward every super-block (`scales_match_the_scalar_unpack`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn mins_and_scales(scales: &[u8; 12]) -> __m256i {
    let w = |i: usize| i32::from_le_bytes([scales[4 * i], scales[4 * i + 1], scales[4 * i + 2], scales[4 * i + 3]]);
    let v = _mm_set_epi32(0, w(2), w(1), w(0));
    let low = _mm_srlv_epi32(_mm_shuffle_epi32::<0b10_01_10_00>(v), _mm_set_epi32(4, 0, 0, 0));
    let top = _mm_srli_epi32::<2>(_mm_shuffle_epi32::<0b01_01_00_00>(v));
    let low = _mm_and_si128(low, _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f));
    let top = _mm_and_si128(top, _mm_set_epi32(0x30303030, 0, 0x30303030, 0));
    _mm256_cvtepu8_epi16(_mm_or_si128(low, top))
}

/// Sum of the 16 bsums in pairs: one i16 per 32-element sub-block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn bsums_pairs(b: &BlockQ8K) -> __m128i {
    // SAFETY: `bsums` is 16 little-endian i16 = 32 readable bytes; `loadu` needs no alignment.
    let q8sums = unsafe { _mm256_loadu_si256(b.bsums.as_ptr().cast()) };
    _mm_hadd_epi16(
        _mm256_castsi256_si128(q8sums),
        _mm256_extracti128_si256::<1>(q8sums),
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = 0f32;
    for (a, b) in x.iter().zip(y) {
        let d = b.d() * f16(a.d);
        let dm = b.d() * f16(a.dmin);
        let ms = mins_and_scales(&a.scales);
        let msum = hsum_i32_4(_mm_madd_epi16(_mm256_extracti128_si256::<1>(ms), bsums_pairs(b)));
        let sc128 = _mm256_castsi256_si128(ms);
        let scales = _mm256_set_m128i(sc128, sc128);

        let q4: &[[u8; 32]] = a.qs.as_chunks::<32>().0;
        let q8: &[[i8; 32]] = b.qs.as_chunks::<32>().0;
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let scale_l = _mm256_shuffle_epi8(scales, load32(&SHUF_K4[2 * j]));
            let scale_h = _mm256_shuffle_epi8(scales, load32(&SHUF_K4[2 * j + 1]));
            let q4bits = load32(&q4[j]);
            let q4l = _mm256_and_si256(q4bits, m4);
            let q4h = _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits), m4);
            let p16l = _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, load32(&q8[2 * j])));
            let p16h =
                _mm256_madd_epi16(scale_h, _mm256_maddubs_epi16(q4h, load32(&q8[2 * j + 1])));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16l, p16h));
        }
        acc = k_step(acc, d, hsum_i32_8(sumi), dm, msum);
    }
    acc
}

/// Sum of 4 i32 lanes (exact, any order).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_i32_4(v: __m128i) -> i32 {
    let s = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
    _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k_q8_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let m4 = _mm256_set1_epi8(0xF);
    let m16 = _mm256_set1_epi8(16);
    let mut acc = 0f32;
    for (a, b) in x.iter().zip(y) {
        let d = b.d() * f16(a.d);
        let dm = b.d() * f16(a.dmin);
        let ms = mins_and_scales(&a.scales);
        let msum = hsum_i32_4(_mm_madd_epi16(_mm256_extracti128_si256::<1>(ms), bsums_pairs(b)));
        let sc128 = _mm256_castsi256_si128(ms);
        let scales = _mm256_set_m128i(sc128, sc128);

        let hbits = load32(&a.qh);
        let mut hmask = _mm256_set1_epi8(1);
        let q5: &[[u8; 32]] = a.qs.as_chunks::<32>().0;
        let q8: &[[i8; 32]] = b.qs.as_chunks::<32>().0;
        let mut sumi = _mm256_setzero_si256();
        for j in 0..4 {
            let scale_0 = _mm256_shuffle_epi8(scales, load32(&SHUF_K4[2 * j]));
            let scale_1 = _mm256_shuffle_epi8(scales, load32(&SHUF_K4[2 * j + 1]));
            let q5bits = load32(&q5[j]);
            // 16 where this sub-block's high bit is set (ggml shifts the bit into place;
            // comparing against the mask gives the same bytes without a variable shift).
            let h0 = _mm256_and_si256(
                _mm256_cmpeq_epi8(_mm256_and_si256(hbits, hmask), hmask),
                m16,
            );
            hmask = _mm256_slli_epi16::<1>(hmask);
            let h1 = _mm256_and_si256(
                _mm256_cmpeq_epi8(_mm256_and_si256(hbits, hmask), hmask),
                m16,
            );
            hmask = _mm256_slli_epi16::<1>(hmask);
            let q5_0 = _mm256_add_epi8(_mm256_and_si256(q5bits, m4), h0);
            let q5_1 = _mm256_add_epi8(_mm256_and_si256(_mm256_srli_epi16::<4>(q5bits), m4), h1);
            let p16_0 = _mm256_madd_epi16(scale_0, _mm256_maddubs_epi16(q5_0, load32(&q8[2 * j])));
            let p16_1 =
                _mm256_madd_epi16(scale_1, _mm256_maddubs_epi16(q5_1, load32(&q8[2 * j + 1])));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16_0, p16_1));
        }
        acc = k_step(acc, d, hsum_i32_8(sumi), dm, msum);
    }
    acc
}

/// Scales 2i (lanes 0..8) and 2i+1 (lanes 8..16) of a q6_K block as i16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_scales(scales: __m128i, i: usize) -> __m256i {
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, load16(&SHUF_Q6[i])))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let m3 = _mm256_set1_epi8(3);
    let m15 = _mm256_set1_epi8(15);
    let mut acc = 0f32;
    for (a, b) in x.iter().zip(y) {
        let d = b.d() * f16(a.d);
        // SAFETY: `bsums` is 32 readable bytes; `loadu` needs no alignment.
        let q8sums = unsafe { _mm256_loadu_si256(b.bsums.as_ptr().cast()) };
        let scales = load16(&a.scales);
        let scales_16 = _mm256_cvtepi8_epi16(scales);
        // 32 * scale * bsum: the -32 offset of every quant, subtracted once per block.
        let q8sclsub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(q8sums, scales_16));

        let ql: &[[u8; 32]] = a.ql.as_chunks::<32>().0;
        let qh: &[[u8; 32]] = a.qh.as_chunks::<32>().0;
        let q8: &[[i8; 32]] = b.qs.as_chunks::<32>().0;
        let mut sumi = _mm256_setzero_si256();
        for j in 0..2 {
            let q4bits1 = load32(&ql[2 * j]);
            let q4bits2 = load32(&ql[2 * j + 1]);
            let q4bits_h = load32(&qh[j]);
            let q4h_0 = _mm256_slli_epi16::<4>(_mm256_and_si256(q4bits_h, m3));
            let q4h_1 = _mm256_slli_epi16::<2>(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(12)));
            let q4h_2 = _mm256_and_si256(q4bits_h, _mm256_set1_epi8(48));
            let q4h_3 = _mm256_srli_epi16::<2>(_mm256_and_si256(q4bits_h, _mm256_set1_epi8(-64)));
            let q4_0 = _mm256_or_si256(_mm256_and_si256(q4bits1, m15), q4h_0);
            let q4_1 = _mm256_or_si256(_mm256_and_si256(q4bits2, m15), q4h_1);
            let q4_2 = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits1), m15),
                q4h_2,
            );
            let q4_3 = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(q4bits2), m15),
                q4h_3,
            );

            let p16_0 = _mm256_maddubs_epi16(q4_0, load32(&q8[4 * j]));
            let p16_1 = _mm256_maddubs_epi16(q4_1, load32(&q8[4 * j + 1]));
            let p16_2 = _mm256_maddubs_epi16(q4_2, load32(&q8[4 * j + 2]));
            let p16_3 = _mm256_maddubs_epi16(q4_3, load32(&q8[4 * j + 3]));

            let p16_0 = _mm256_madd_epi16(q6_scales(scales, 4 * j), p16_0);
            let p16_1 = _mm256_madd_epi16(q6_scales(scales, 4 * j + 1), p16_1);
            let p16_2 = _mm256_madd_epi16(q6_scales(scales, 4 * j + 2), p16_2);
            let p16_3 = _mm256_madd_epi16(q6_scales(scales, 4 * j + 3), p16_3);
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16_0, p16_1));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p16_2, p16_3));
        }
        sumi = _mm256_sub_epi32(sumi, q8sclsub);
        acc = k_step(acc, d, hsum_i32_8(sumi), 0.0, 0);
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::blocks::unpack_scales_mins_k4;

    #[test]
    fn scales_match_the_scalar_unpack() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")) {
            return;
        }
        let mut state = 0x9e37_79b9_u32;
        for case in 0..20_000 {
            let mut s = [0u8; 12];
            for b in &mut s {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *b = state as u8;
            }
            if case < 256 {
                s = [case as u8; 12]; // every byte value, all bits of the 6-bit fields
            }
            let mut got = [0u16; 16];
            let mut want = [0u16; 16];
            // SAFETY: the features were detected above; the stores write 32 bytes into 32.
            unsafe {
                _mm256_storeu_si256(got.as_mut_ptr().cast(), mins_and_scales(&s));
                _mm256_storeu_si256(want.as_mut_ptr().cast(), _mm256_cvtepu8_epi16(load16(&unpack_scales_mins_k4(&s))));
            }
            assert_eq!(got, want, "{s:?}");
        }
    }
}
