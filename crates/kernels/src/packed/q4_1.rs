//! q4_1 x q8_1 on 4 interleaved rows and up to 4 tokens per call, AVX-512 VNNI.
//!
//! Per block, one 64-byte load holds the 4 rows' nibbles; `v & 0xF` gives elements 0..16 of the
//! 4 rows (16 lanes of 4 bytes: row k in lanes 4k..4k+4) and `v >> 4 & 0xF` elements 16..32.
//! Against each half of the activation block broadcast to the four 128-bit lanes, `vpdpbusd`
//! yields exactly the 8 partial sums per row that the row-at-a-time kernel computes (its lanes
//! 0..4 are our "lo" lanes, its lanes 4..8 our "hi" lanes), and the float steps are the same per
//! lane (see the parent module on exactness).

use std::arch::x86_64::*;

use super::{ActRow, ROWS};

/// `out[t][4 * g + k] = dot(row k of group g, token t)` for `g < n_groups`, `t < T`.
///
/// # Safety
/// The CPU has the features of [`super::available`]; `wq`/`wd` hold `n_groups * nb` blocks of
/// quants (64 bytes each) and scales (16 bytes each); every `a[t]` holds `nb` blocks; every
/// `out[t]` is valid for writing `4 * n_groups` floats that nothing else accesses meanwhile.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn groups<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, n_groups: usize, a: &[ActRow; T], out: [*mut f32; T]) {
    for g in 0..n_groups {
        let mut res = [_mm_setzero_ps(); T];
        kernel::<T>(wq.add(g * nb * 64), wd.add(g * nb * 16), nb, a, &mut res);
        for t in 0..T {
            _mm_storeu_ps(out[t].add(g * ROWS), res[t]);
        }
    }
}

/// One block of every token into one parity's (lo, hi) accumulators.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn block<const T: usize>(
    wq: *const u8,
    wd: *const u8,
    b: usize,
    a: &[ActRow; T],
    acc: &mut [[__m512; 2]; T],
    summ: &mut [__m128; T],
) {
    let nib = _mm512_set1_epi8(0x0F);
    let expand = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    // SAFETY (all loads): `tile` checked that the group holds `nb > b` blocks and every
    // activation row `nb` blocks; unaligned loads need no alignment.
    // Weights stream from memory once per token: ask for the lines PREFETCH bytes ahead (past
    // the group's end this is the next group, which follows in memory; never dereferenced).
    _mm_prefetch::<_MM_HINT_T1>(wq.wrapping_add(b * 64 + super::PREFETCH).cast());
    _mm_prefetch::<_MM_HINT_T1>(wd.wrapping_add(b * 16 + super::PREFETCH / 4).cast());
    let v = _mm512_loadu_si512(wq.add(b * 64).cast());
    let lo = _mm512_and_si512(v, nib);
    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), nib);
    let dm = _mm_loadu_si128(wd.add(b * 16).cast());
    let dw = _mm512_permutexvar_ps(expand, _mm512_castps128_ps512(_mm_cvtph_ps(dm)));
    let m4 = _mm_cvtph_ps(_mm_unpackhi_epi64(dm, dm));
    for t in 0..T {
        let y = a.get_unchecked(t).qs.as_ptr().add(b * 32);
        let ylo = _mm512_broadcast_i32x4(_mm_loadu_si128(y.cast()));
        let yhi = _mm512_broadcast_i32x4(_mm_loadu_si128(y.add(16).cast()));
        let dd = _mm512_mul_ps(dw, _mm512_set1_ps(*a.get_unchecked(t).d.get_unchecked(b)));
        let il = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, ylo);
        let ih = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, yhi);
        acc[t][0] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(il), acc[t][0]);
        acc[t][1] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(ih), acc[t][1]);
        let s = _mm_set1_ps(*a.get_unchecked(t).s.get_unchecked(b));
        summ[t] = _mm_add_ps(summ[t], _mm_mul_ps(m4, s));
    }
}

#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn kernel<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T], res: &mut [__m128; T]) {
    let mut even = [[_mm512_setzero_ps(); 2]; T];
    let mut odd = [[_mm512_setzero_ps(); 2]; T];
    let mut summ = [_mm_setzero_ps(); T];
    let mut b = 0;
    while b + 2 <= nb {
        block::<T>(wq, wd, b, a, &mut even, &mut summ);
        block::<T>(wq, wd, b + 1, a, &mut odd, &mut summ);
        b += 2;
    }
    if b < nb {
        block::<T>(wq, wd, b, a, &mut even, &mut summ);
    }
    let pick = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
    for t in 0..T {
        // acc0 + acc1 per lane, then ggml's hsum_float_8 order for the 4 rows at once:
        // (a_i + a_{4+i}) -> (r0 + r2, r1 + r3) -> their sum, in lane 4k of row k.
        let lo = _mm512_add_ps(even[t][0], odd[t][0]);
        let hi = _mm512_add_ps(even[t][1], odd[t][1]);
        let r = _mm512_add_ps(hi, lo);
        let u = _mm512_add_ps(r, _mm512_permute_ps::<0b01_00_11_10>(r));
        let v = _mm512_add_ps(u, _mm512_movehdup_ps(u));
        let h = _mm512_castps512_ps128(_mm512_permutexvar_ps(pick, v));
        res[t] = _mm_add_ps(h, summ[t]);
    }
}
