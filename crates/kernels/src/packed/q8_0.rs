//! q8_0 x q8_0 on 4 interleaved rows and up to 4 tokens per call, AVX-512 VNNI.
//!
//! The packed weights hold `q + 128` (unsigned), so `vpdpbusd` multiplies them with the signed
//! activations directly; starting each lane from `-128 * (sum of its 4 activation quants)` makes
//! the lane exactly `sum(q_w * q_x)`, the 4-element partial sum the row-at-a-time kernel gets
//! with its sign trick. Rows 4g, 4g+1 share one register (8 lanes each), rows 4g+2, 4g+3 another;
//! the activation block is broadcast to both halves.

use std::arch::x86_64::*;

use super::{ActRow, ROWS};

/// `out[t][4 * g + k] = dot(row k of group g, token t)` for `g < n_groups`, `t < T`.
///
/// # Safety
/// The CPU has the features of [`super::available`]; `wq`/`wd` hold `n_groups * nb` blocks of
/// quants (128 bytes each) and scales (8 bytes each); every `a[t]` holds `nb` blocks; every
/// `out[t]` is valid for writing `4 * n_groups` floats that nothing else accesses meanwhile.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn groups<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, n_groups: usize, a: &[ActRow; T], out: [*mut f32; T]) {
    for g in 0..n_groups {
        let mut res = [_mm_setzero_ps(); T];
        kernel::<T>(wq.add(g * nb * 128), wd.add(g * nb * 8), nb, a, &mut res);
        for t in 0..T {
            _mm_storeu_ps(out[t].add(g * ROWS), res[t]);
        }
    }
}

/// One block of every token into one parity's (rows 0-1, rows 2-3) accumulators.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn block<const T: usize>(wq: *const u8, wd: *const u8, b: usize, a: &[ActRow; T], acc: &mut [[__m512; 2]; T]) {
    let idx01 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let idx23 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    // SAFETY (all loads): `tile` checked that the group holds `nb > b` blocks and every
    // activation row `nb` blocks; unaligned loads need no alignment.
    // See q4_1: prefetch the weight stream ahead (two lines of quants per block).
    _mm_prefetch::<_MM_HINT_T1>(wq.wrapping_add(b * 128 + super::PREFETCH).cast());
    _mm_prefetch::<_MM_HINT_T1>(wq.wrapping_add(b * 128 + 64 + super::PREFETCH).cast());
    _mm_prefetch::<_MM_HINT_T1>(wd.wrapping_add(b * 8 + super::PREFETCH / 16).cast());
    let v01 = _mm512_loadu_si512(wq.add(b * 128).cast());
    let v23 = _mm512_loadu_si512(wq.add(b * 128 + 64).cast());
    let d4 = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64(wd.add(b * 8).cast())));
    let dw01 = _mm512_permutexvar_ps(idx01, d4);
    let dw23 = _mm512_permutexvar_ps(idx23, d4);
    for t in 0..T {
        let at = a.get_unchecked(t);
        let y = _mm512_broadcast_i64x4(_mm256_loadu_si256(at.qs.as_ptr().add(b * 32).cast()));
        let corr = _mm512_broadcast_i64x4(_mm256_loadu_si256(at.corr.as_ptr().add(b * super::CORR).cast()));
        let dx = _mm512_set1_ps(*at.d.get_unchecked(b));
        let i01 = _mm512_dpbusd_epi32(corr, v01, y);
        let i23 = _mm512_dpbusd_epi32(corr, v23, y);
        acc[t][0] = _mm512_fmadd_ps(_mm512_mul_ps(dw01, dx), _mm512_cvtepi32_ps(i01), acc[t][0]);
        acc[t][1] = _mm512_fmadd_ps(_mm512_mul_ps(dw23, dx), _mm512_cvtepi32_ps(i23), acc[t][1]);
    }
}

/// ggml's hsum_float_8 on both 8-lane halves of `z`: the results land in lanes 0 and 8.
#[inline(always)]
pub(super) unsafe fn hsum_halves(z: __m512) -> __m512 {
    let r = _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_11_00_01>(z, z), z);
    let u = _mm512_add_ps(r, _mm512_permute_ps::<0b01_00_11_10>(r));
    _mm512_add_ps(u, _mm512_movehdup_ps(u))
}

#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn kernel<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T], res: &mut [__m128; T]) {
    let mut even = [[_mm512_setzero_ps(); 2]; T];
    let mut odd = [[_mm512_setzero_ps(); 2]; T];
    let mut b = 0;
    while b + 2 <= nb {
        block::<T>(wq, wd, b, a, &mut even);
        block::<T>(wq, wd, b + 1, a, &mut odd);
        b += 2;
    }
    if b < nb {
        block::<T>(wq, wd, b, a, &mut even);
    }
    let pick = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 24, 16, 8, 0);
    for t in 0..T {
        let h01 = hsum_halves(_mm512_add_ps(even[t][0], odd[t][0]));
        let h23 = hsum_halves(_mm512_add_ps(even[t][1], odd[t][1]));
        res[t] = _mm512_castps512_ps128(_mm512_permutex2var_ps(h01, pick, h23));
    }
}
