//! AVX2 and AVX-512 dots of iq4_xs with q8_K.
//!
//! AVX2: per 32-element sub-block, `pshufb` through `KVALUES_IQ4NL`, the sign trick, `maddubs`,
//! and `madd` by the sub-block's scale (minus 32) leave in lane `l` the exact sum of elements
//! `4l..4l + 4`; the eight sub-blocks add up into one exact total per super-block, folded by
//! the K-quant float order as the scalar reference (`k_step`). Pairs stay below 2^15: codes
//! and quants are at most 127 in magnitude.
//!
//! AVX-512: two sub-blocks per 512-bit register, laid out as (A low nibbles, B low, A high,
//! B high), the q8_K quants permuted to match; the super-block's lanes are summed exactly, so
//! the float steps and the result are the AVX2 kernel's. It takes 1 to 4
//! tokens: a super-block's codes and scales are looked up once for all of them (prefill).

use std::arch::x86_64::*;

use super::kquants512::wrappers;
use super::legacy::wrapper;
use super::{bytes_from_nibbles_32, f16, hsum_i32_8, load32};
use crate::quant::kquants::k_step;
use crate::quant::blocks::{dot_operands, BlockIQ4XS, BlockQ8K, KVALUES_IQ4NL};

wrapper!(vec_dot_iq4_xs_q8_k, iq4_xs_avx2, BlockIQ4XS, BlockQ8K);

wrappers!(vec_dot_iq4_xs_q8_k_512, vec_dot_multi_iq4_xs_q8_k_512, iq4_xs_512, BlockIQ4XS);

#[target_feature(enable = "avx2,fma,f16c")]
fn iq4_xs_avx2(x: &[BlockIQ4XS], y: &[BlockQ8K]) -> f32 {
    // SAFETY: the table is 16 readable bytes; `loadu` needs no alignment.
    let tab = _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) });
    let mut acc = 0f32;
    for (a, b) in x.iter().zip(y) {
        let q8: &[[i8; 32]] = b.qs.as_chunks::<32>().0;
        let qs: &[[u8; 16]] = a.qs.as_chunks::<16>().0;
        let mut sumi = _mm256_setzero_si256();
        for ib in 0..8 {
            let v = _mm256_shuffle_epi8(tab, bytes_from_nibbles_32(&qs[ib]));
            let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(load32(&q8[ib]), v));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, _mm256_set1_epi16(a.scale(ib) as i16)));
        }
        acc = k_step(acc, f16(a.d) * b.d(), hsum_i32_8(sumi), 0.0, 0);
    }
    acc
}

/// # Safety
/// Every `ys[t]` has at least `x.len()` blocks (the wrappers check this).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::needless_range_loop)]
unsafe fn iq4_xs_512<const T: usize>(x: &[BlockIQ4XS], ys: [&[BlockQ8K]; T], out: &mut [f32; T]) {
    // SAFETY: the table is 16 readable bytes; `loadu` needs no alignment.
    let tab = _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr().cast()) });
    let m4 = _mm512_set1_epi8(0xF);
    let mut acc = [0f32; T];
    for (i, a) in x.iter().enumerate() {
        let qs: &[[u8; 32]] = a.qs.as_chunks::<32>().0;
        let mut av = [_mm512_setzero_si512(); 4];
        let mut neg = [0u64; 4];
        let mut sc = [_mm512_setzero_si512(); 4];
        for j in 0..4 {
            let q = load32(&qs[j]);
            let idx = _mm512_and_si512(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(q), _mm256_srli_epi16::<4>(q)), m4);
            let v = _mm512_shuffle_epi8(tab, idx);
            // No `vpsignb` in AVX-512: |v| and y negated where v < 0.
            neg[j] = _mm512_movepi8_mask(v);
            av[j] = _mm512_abs_epi8(v);
            let (sa, sb) = (a.scale(2 * j) as i16, a.scale(2 * j + 1) as i16);
            let half = _mm256_set_m128i(_mm_set1_epi16(sb), _mm_set1_epi16(sa));
            sc[j] = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(half), half);
        }
        let dw = f16(a.d);
        for t in 0..T {
            // SAFETY: the caller's contract: `ys[t]` has a block `i`.
            let b = unsafe { ys[t].get_unchecked(i) };
            let q8: &[[i8; 64]] = b.qs.as_chunks::<64>().0;
            let mut sumi = _mm512_setzero_si512();
            for j in 0..4 {
                // SAFETY: 64 readable bytes; `loadu` needs no alignment.
                let yv = unsafe { _mm512_loadu_si512(q8[j].as_ptr().cast()) };
                // (A 0..16, A 16..32, B 0..16, B 16..32) -> (A 0..16, B 0..16, A 16..32, B 16..32).
                let yv = _mm512_shuffle_i64x2::<0b11_01_10_00>(yv, yv);
                let sy = _mm512_mask_sub_epi8(yv, neg[j], _mm512_setzero_si512(), yv);
                let p16 = _mm512_maddubs_epi16(av[j], sy);
                sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(p16, sc[j]));
            }
            acc[t] = k_step(acc[t], dw * b.d(), _mm512_reduce_add_epi32(sumi), 0.0, 0);
        }
    }
    *out = acc;
}
