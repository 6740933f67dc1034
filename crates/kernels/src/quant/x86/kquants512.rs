//! AVX-512 dot products of q4_K and q6_K with q8_K, for one weight row against 1 to 4 tokens.
//!
//! Bit-for-bit the AVX2 kernels (`kquants.rs`): those build, per 256-element super-block, an
//! 8-lane i32 sum `sumi` from `maddubs` + `madd` (by the sub-block scale) over 32-byte halves,
//! then fold its total into the accumulator by the K-quant float order (`k_step`). Here each 512-bit register holds two of those
//! 32-byte steps (q4_K: a sub-block's low nibbles and the next one's high nibbles, whose q8_K
//! quants are contiguous; q6_K: sub-blocks 4j, 4j+1 or 4j+2, 4j+3), and the two 256-bit halves
//! are added at the end of the super-block. Integer sums are exact (at most 2 * 63 * 128 per
//! `maddubs` pair, far from i32 limits) whatever their order, so `sumi` and every float step
//! after it are the AVX2 kernel's. The weight unpacking and scale shuffles are done once per
//! super-block and reused by every token of the call, which is what makes prefill faster.

use std::arch::x86_64::*;

use super::kquants::{bsums_pairs, hsum_i32_4, load16, mins_and_scales, SHUF_K4, SHUF_Q6};
use super::{f16, hsum_i32_8};
use crate::quant::kquants::k_step;
use crate::quant::blocks::{dot_operands, BlockQ4K, BlockQ6K, BlockQ8K};

/// Rows `2j` and `2j + 1` of an 8-row shuffle table side by side (`M == 2 * N`): the shuffles of
/// the two 256-bit steps one 512-bit step does.
const fn pairs<const N: usize, const M: usize>(rows: &[[u8; N]; 8]) -> [[u8; M]; 4] {
    assert!(M == 2 * N);
    let mut t = [[0u8; M]; 4];
    let mut j = 0;
    while j < 4 {
        let mut i = 0;
        while i < N {
            t[j][i] = rows[2 * j][i];
            t[j][N + i] = rows[2 * j + 1][i];
            i += 1;
        }
        j += 1;
    }
    t
}

/// `SHUF_K4[2j]` then `SHUF_K4[2j + 1]`: the scale shuffles of one 512-bit step.
static SHUF_K4_PAIRS: [[u8; 64]; 4] = pairs(&SHUF_K4);

/// `SHUF_Q6[2j]` then `SHUF_Q6[2j + 1]`.
static SHUF_Q6_PAIRS: [[u8; 32]; 4] = pairs(&SHUF_Q6);

/// Defines the one-token `vec_dot` and the 1..=4-token `vec_dot_multi` wrappers of a kernel.
macro_rules! wrappers {
    ($one:ident, $multi:ident, $body:ident, $w:ty) => {
        pub fn $one(n: usize, w: &[u8], x: &[u8]) -> f32 {
            let (wb, xb) = dot_operands::<$w, BlockQ8K>(n, w, x);
            let mut out = [0f32];
            // SAFETY: only handed out (the avx512vnni kernel table) after run-time detection
            // found every feature the body enables.
            unsafe { $body::<1>(wb, [xb], &mut out) };
            out[0]
        }

        /// `out[i] = vec_dot(n, w, xs[i])` for 1 to 4 tokens (panics on other counts or short rows).
        pub fn $multi(n: usize, w: &[u8], xs: &[&[u8]], out: &mut [f32]) {
            assert_eq!(xs.len(), out.len(), "vec_dot_multi: {} rows, {} outputs", xs.len(), out.len());
            let y = |i: usize| dot_operands::<$w, BlockQ8K>(n, w, xs[i]).1;
            let wb = dot_operands::<$w, BlockQ8K>(n, w, xs[0]).0;
            // SAFETY: as above; `dot_operands` checked every row holds the blocks of `n`.
            unsafe {
                match xs.len() {
                    1 => $body::<1>(wb, [y(0)], out.try_into().expect("1 output")),
                    2 => $body::<2>(wb, [y(0), y(1)], out.try_into().expect("2 outputs")),
                    3 => $body::<3>(wb, [y(0), y(1), y(2)], out.try_into().expect("3 outputs")),
                    4 => $body::<4>(wb, [y(0), y(1), y(2), y(3)], out.try_into().expect("4 outputs")),
                    k => panic!("vec_dot_multi: {k} tokens (1 to 4)"),
                }
            }
        }
    };
}

pub(crate) use wrappers;

wrappers!(vec_dot_q4_k_q8_k, vec_dot_multi_q4_k_q8_k, q4_k, BlockQ4K);
wrappers!(vec_dot_q6_k_q8_k, vec_dot_multi_q6_k_q8_k, q6_k, BlockQ6K);

/// Asks for the `LINES` cache lines `PREFETCH` bytes past the super-block `a` (144 bytes for
/// q4_K, 210 for q6_K) to be brought into L2. A decode step streams each matrix once, row after
/// row, so this is (at the end of a row) the next rows' bytes; see `packed::PREFETCH` for why and
/// how far. Past the matrix's end the address is never dereferenced.
#[inline(always)]
fn prefetch_ahead<const LINES: usize, B>(a: &B) {
    let p = (a as *const B).cast::<i8>().wrapping_add(crate::packed::PREFETCH);
    for l in 0..LINES {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(64 * l)) };
    }
}

/// Adds the two 256-bit halves of `v` (lane i + lane 8 + i).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn fold(v: __m512i) -> __m256i {
    _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v))
}

/// # Safety
/// Every `ys[t]` has at least `x.len()` blocks (the wrappers check this).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::needless_range_loop)]
unsafe fn q4_k<const T: usize>(x: &[BlockQ4K], ys: [&[BlockQ8K]; T], out: &mut [f32; T]) {
    let m4 = _mm512_set1_epi8(0xF);
    // Low nibbles in the lower half, high nibbles in the upper half.
    let nib_shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
    let mut acc = [0f32; T];
    for (i, a) in x.iter().enumerate() {
        prefetch_ahead::<3, _>(a);
        let ms = mins_and_scales(&a.scales);
        let mins = _mm256_extracti128_si256::<1>(ms);
        let scales = _mm512_broadcast_i32x4(_mm256_castsi256_si128(ms));
        let mut w = [_mm512_setzero_si512(); 4];
        let mut s = [_mm512_setzero_si512(); 4];
        for j in 0..4 {
            // SAFETY: a static of 4 x 64 bytes; `qs` is 128 bytes, 32 read at 32j.
            s[j] = _mm512_shuffle_epi8(scales, _mm512_loadu_si512(SHUF_K4_PAIRS[j].as_ptr().cast()));
            let bits = _mm512_broadcast_i64x4(_mm256_loadu_si256(a.qs.as_ptr().add(32 * j).cast()));
            w[j] = _mm512_and_si512(_mm512_srlv_epi64(bits, nib_shift), m4);
        }
        let (dw, dminw) = (f16(a.d), f16(a.dmin));
        for t in 0..T {
            let b = ys[t].get_unchecked(i);
            let d = b.d() * dw;
            let dm = b.d() * dminw;
            let msum = hsum_i32_4(_mm_madd_epi16(mins, bsums_pairs(b)));
            let q8 = b.qs.as_ptr();
            let mut sumi = _mm512_setzero_si512();
            for j in 0..4 {
                // SAFETY: `qs` is 256 bytes; 64 read at 64j.
                let y = _mm512_loadu_si512(q8.add(64 * j).cast());
                sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(s[j], _mm512_maddubs_epi16(w[j], y)));
            }
            acc[t] = k_step(acc[t], d, hsum_i32_8(fold(sumi)), dm, msum);
        }
    }
    *out = acc;
}

/// # Safety
/// Every `ys[t]` has at least `x.len()` blocks (the wrappers check this).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::needless_range_loop)]
unsafe fn q6_k<const T: usize>(x: &[BlockQ6K], ys: [&[BlockQ8K]; T], out: &mut [f32; T]) {
    let m15 = _mm512_set1_epi8(15);
    let m3 = _mm512_set1_epi8(3);
    // Sub-blocks 4j (lower half) and 4j+1 take qh bits 0-1 and 2-3; 4j+2 and 4j+3 bits 4-5, 6-7.
    let shift_a = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
    let shift_b = _mm512_set_epi64(6, 6, 6, 6, 4, 4, 4, 4);
    let mut acc = [0f32; T];
    for (i, a) in x.iter().enumerate() {
        prefetch_ahead::<4, _>(a);
        let scales = load16(&a.scales);
        let scales_16 = _mm256_cvtepi8_epi16(scales);
        let scales2 = _mm256_broadcastsi128_si256(scales);
        let mut w = [_mm512_setzero_si512(); 4];
        let mut s = [_mm512_setzero_si512(); 4];
        for j in 0..2 {
            // SAFETY: `ql` is 128 bytes (64 read at 64j), `qh` 64 bytes (32 read at 32j).
            let ql = _mm512_loadu_si512(a.ql.as_ptr().add(64 * j).cast());
            let qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(a.qh.as_ptr().add(32 * j).cast()));
            let ha = _mm512_slli_epi64::<4>(_mm512_and_si512(_mm512_srlv_epi64(qh, shift_a), m3));
            let hb = _mm512_slli_epi64::<4>(_mm512_and_si512(_mm512_srlv_epi64(qh, shift_b), m3));
            // ql holds ql[2j] (lower) and ql[2j+1] (upper): their low nibbles are sub-blocks 4j
            // and 4j+1, their high nibbles 4j+2 and 4j+3.
            w[2 * j] = _mm512_or_si512(_mm512_and_si512(ql, m15), ha);
            w[2 * j + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(ql), m15), hb);
            for k in 0..2 {
                // SAFETY: a static of 4 x 32 bytes.
                let sh = _mm256_shuffle_epi8(scales2, _mm256_loadu_si256(SHUF_Q6_PAIRS[2 * j + k].as_ptr().cast()));
                s[2 * j + k] = _mm512_cvtepi8_epi16(sh);
            }
        }
        let dw = f16(a.d);
        for t in 0..T {
            let b = ys[t].get_unchecked(i);
            let d = b.d() * dw;
            // SAFETY: `bsums` is 32 readable bytes.
            let q8sums = _mm256_loadu_si256(b.bsums.as_ptr().cast());
            let q8sclsub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(q8sums, scales_16));
            let q8 = b.qs.as_ptr();
            let mut sumi = _mm512_setzero_si512();
            for j in 0..4 {
                // SAFETY: `qs` is 256 bytes; 64 read at 64j.
                let y = _mm512_loadu_si512(q8.add(64 * j).cast());
                sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(s[j], _mm512_maddubs_epi16(w[j], y)));
            }
            let sumi = _mm256_sub_epi32(fold(sumi), q8sclsub);
            acc[t] = k_step(acc[t], d, hsum_i32_8(sumi), 0.0, 0);
        }
    }
    *out = acc;
}
