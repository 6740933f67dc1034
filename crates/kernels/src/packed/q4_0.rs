//! q4_0 x q8_0 on 4 interleaved rows and up to 4 tokens per call, AVX-512 VNNI, in the scalar
//! reference's float order (ggml's generic `vec_dot_q4_0_q8_0`): each block's exact integer
//! sum, then `sum += (float(isum) * d_w) * d_x`, block after block, into one running sum per
//! row and token. Every q4_0 path (scalar, AVX2, VNNI, these 4-row kernels and the 16-token
//! tiles of `tiles_q4_0`) follows that order, so they all return the same bits, and the tiles
//! can spend one multiply per block on 16 tokens instead of ggml's 8-lane FMA per block and token.
//!
//! The nibbles are laid out as q4_1's (one 64-byte load per block: row k in bytes 16k..16k+16,
//! `v & 0xF` elements 0..16 of the 4 rows, `v >> 4` elements 16..32). `vpdpbusd` multiplies the
//! unsigned nibbles (`q + 8`) with the signed activations: row k's 4 lanes then hold partial
//! sums of `(q + 8) * y`, and `-8 * sum(y)` per block ([`ActRow::c8`]) completes the exact
//! `sum(q * y)`. Four blocks' sums are reduced together (two rounds of unpack and add), which
//! leaves row k's four block totals in the 128-bit lane k; the float steps then run on all 16
//! (row, block) values at once, and only the additions into the running sums go block by block.

use std::arch::x86_64::*;

use super::{ActRow, ROWS};

/// Quant bytes per 4-row group and block.
const QSB: usize = 64;
/// Scale bytes per 4-row group and block (4 f16).
const DB: usize = 8;

/// `out[t][4 * g + k] = dot(row k of group g, token t)` for `g < n_groups`, `t < T`.
///
/// # Safety
/// The CPU has the features of [`super::available`]; `wq`/`wd` hold `n_groups * nb` blocks of
/// quants (64 bytes each) and scales (8 bytes each); every `a[t]` holds `nb` blocks (`qs`, `d`
/// and `c8`); every `out[t]` is valid for writing `4 * n_groups` floats that nothing else
/// accesses meanwhile.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn groups<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, n_groups: usize, a: &[ActRow; T], out: [*mut f32; T]) {
    for g in 0..n_groups {
        let res = kernel::<T>(wq.add(g * nb * QSB), wd.add(g * nb * DB), nb, a);
        for t in 0..T {
            _mm_storeu_ps(out[t].add(g * ROWS), res[t]);
        }
    }
}

#[inline(always)]
unsafe fn kernel<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T]) -> [__m128; T] {
    // Row k's running sum, in every element of the 128-bit lane k.
    let mut acc = [_mm512_setzero_ps(); T];
    let mut b = 0;
    while b + 4 <= nb {
        quad::<T>(wq, wd, b, a, &mut acc);
        b += 4;
    }
    while b < nb {
        single::<T>(wq, wd, b, a, &mut acc);
        b += 1;
    }
    let pick = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
    std::array::from_fn(|t| _mm512_castps512_ps128(_mm512_permutexvar_ps(pick, acc[t])))
}

/// Block `b`'s nibbles of the 4 rows: elements 0..16 and 16..32, unsigned.
#[inline(always)]
unsafe fn nibbles(wq: *const u8, b: usize) -> (__m512i, __m512i) {
    let q = wq.add(b * QSB);
    // SAFETY: addresses past the end (the next group follows in memory) are never dereferenced.
    _mm_prefetch::<_MM_HINT_T1>(q.wrapping_add(super::PREFETCH).cast());
    let nib = _mm512_set1_epi8(0x0F);
    let v = _mm512_loadu_si512(q.cast());
    (_mm512_and_si512(v, nib), _mm512_and_si512(_mm512_srli_epi16::<4>(v), nib))
}

/// Lane-wise `(q + 8) * y` partial sums of one block for one token: row k's 4 lanes in lane k.
#[inline(always)]
unsafe fn partial(lo: __m512i, hi: __m512i, y: *const u8) -> __m512i {
    let ylo = _mm512_broadcast_i32x4(_mm_loadu_si128(y.cast()));
    let yhi = _mm512_broadcast_i32x4(_mm_loadu_si128(y.add(16).cast()));
    _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, ylo), hi, yhi)
}

/// Blocks `b..b + 4` of every token.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn quad<const T: usize>(wq: *const u8, wd: *const u8, b: usize, a: &[ActRow; T], acc: &mut [__m512; T]) {
    let w: [(__m512i, __m512i); 4] = std::array::from_fn(|j| nibbles(wq, b + j));
    _mm_prefetch::<_MM_HINT_T1>(wd.wrapping_add(b * DB + super::PREFETCH * DB / QSB).cast());
    // The 4 blocks' scales ([block][row] in memory) as [row][block], matching the sums below.
    let transpose = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    let dw = _mm512_permutexvar_ps(transpose, _mm512_cvtph_ps(_mm256_loadu_si256(wd.add(b * DB).cast())));
    for t in 0..T {
        let at = a.get_unchecked(t);
        let y = at.qs.as_ptr().add(b * 32);
        let s: [__m512i; 4] = std::array::from_fn(|j| partial(w[j].0, w[j].1, y.add(32 * j)));
        // Within each row's 128-bit lane: [s0 s1 s2 s3] lanes -> [total 0, total 1, total 2, total 3].
        let u01 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[0], s[1]), _mm512_unpackhi_epi32(s[0], s[1]));
        let u23 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[2], s[3]), _mm512_unpackhi_epi32(s[2], s[3]));
        let tot = _mm512_add_epi32(_mm512_unpacklo_epi64(u01, u23), _mm512_unpackhi_epi64(u01, u23));
        let tot = _mm512_add_epi32(tot, _mm512_broadcast_i32x4(_mm_loadu_si128(at.c8.as_ptr().add(b).cast())));
        let dx = _mm512_broadcast_f32x4(_mm_loadu_ps(at.d.as_ptr().add(b)));
        let v = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(tot), dw), dx);
        let mut s = acc[t];
        s = _mm512_add_ps(s, _mm512_permute_ps::<0x00>(v));
        s = _mm512_add_ps(s, _mm512_permute_ps::<0x55>(v));
        s = _mm512_add_ps(s, _mm512_permute_ps::<0xAA>(v));
        acc[t] = _mm512_add_ps(s, _mm512_permute_ps::<0xFF>(v));
    }
}

/// Block `b` alone (the last `nb % 4` blocks).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn single<const T: usize>(wq: *const u8, wd: *const u8, b: usize, a: &[ActRow; T], acc: &mut [__m512; T]) {
    let (lo, hi) = nibbles(wq, b);
    let spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    let dw = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64(wd.add(b * DB).cast()))));
    for t in 0..T {
        let at = a.get_unchecked(t);
        let s = partial(lo, hi, at.qs.as_ptr().add(b * 32));
        let s = _mm512_add_epi32(s, _mm512_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm512_add_epi32(s, _mm512_shuffle_epi32::<0b10_11_00_01>(s));
        let tot = _mm512_add_epi32(s, _mm512_set1_epi32(*at.c8.get_unchecked(b)));
        let v = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(tot), dw), _mm512_set1_ps(*at.d.get_unchecked(b)));
        acc[t] = _mm512_add_ps(acc[t], v);
    }
}
