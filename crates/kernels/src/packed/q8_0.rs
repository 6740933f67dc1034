//! q8_0 x q8_0 on 4 interleaved rows and up to 4 tokens per call, AVX-512 VNNI.
//!
//! The packed weights hold `q + 128` (unsigned), so `vpdpbusd` multiplies them with the signed
//! activations directly; starting each lane from `-128 * (sum of its 4 activation quants)` makes
//! the lane exactly `sum(q_w * q_x)`, the 4-element partial sum the row-at-a-time kernel gets
//! with its sign trick. Rows 4g, 4g+1 share one register (8 lanes each), rows 4g+2, 4g+3 another;
//! the activation block is broadcast to both halves.

use std::arch::x86_64::*;

use super::{ActRow, ROWS};

/// `res[t][k] = dot(row k of the group, token t)` for `t < a.len() <= 4`.
/// `wq` is the group's `nb * 128` quant bytes, `wd` its `nb * 8` scale bytes.
pub(super) fn tile(wq: &[u8], wd: &[u8], nb: usize, a: &[ActRow], res: &mut [[f32; ROWS]]) {
    assert!(wq.len() >= nb * 128 && wd.len() >= nb * 8 && a.len() == res.len());
    for t in a {
        assert!(t.qs.len() >= nb * 32 && t.d.len() >= nb && t.corr.len() >= nb * 8, "activation row too short");
    }
    // SAFETY: `packed::available()` (AVX-512 F/BW/VL/VNNI + AVX2/FMA/F16C) is a precondition of
    // every PackedMatrix; the lengths were checked above.
    unsafe {
        match a.len() {
            1 => kernel::<1>(wq, wd, nb, a, res),
            2 => kernel::<2>(wq, wd, nb, a, res),
            3 => kernel::<3>(wq, wd, nb, a, res),
            4 => kernel::<4>(wq, wd, nb, a, res),
            n => unreachable!("tile of {n} tokens"),
        }
    }
}

/// One block of every token into one parity's (rows 0-1, rows 2-3) accumulators.
#[inline(always)]
unsafe fn block<const T: usize>(wq: *const u8, wd: *const u8, b: usize, a: &[ActRow], acc: &mut [[__m512; 2]; T]) {
    let idx01 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let idx23 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    // SAFETY (all loads): `tile` checked that the group holds `nb > b` blocks and every
    // activation row `nb` blocks; unaligned loads need no alignment.
    let v01 = _mm512_loadu_si512(wq.add(b * 128).cast());
    let v23 = _mm512_loadu_si512(wq.add(b * 128 + 64).cast());
    let d4 = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64(wd.add(b * 8).cast())));
    let dw01 = _mm512_permutexvar_ps(idx01, d4);
    let dw23 = _mm512_permutexvar_ps(idx23, d4);
    for t in 0..T {
        let at = a.get_unchecked(t);
        let y = _mm512_broadcast_i64x4(_mm256_loadu_si256(at.qs.as_ptr().add(b * 32).cast()));
        let corr = _mm512_broadcast_i64x4(_mm256_loadu_si256(at.corr.as_ptr().add(b * 8).cast()));
        let dx = _mm512_set1_ps(*at.d.get_unchecked(b));
        let i01 = _mm512_dpbusd_epi32(corr, v01, y);
        let i23 = _mm512_dpbusd_epi32(corr, v23, y);
        acc[t][0] = _mm512_fmadd_ps(_mm512_mul_ps(dw01, dx), _mm512_cvtepi32_ps(i01), acc[t][0]);
        acc[t][1] = _mm512_fmadd_ps(_mm512_mul_ps(dw23, dx), _mm512_cvtepi32_ps(i23), acc[t][1]);
    }
}

/// ggml's hsum_float_8 on both 8-lane halves of `z`: the results land in lanes 0 and 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn hsum_halves(z: __m512) -> __m512 {
    let r = _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_11_00_01>(z, z), z);
    let u = _mm512_add_ps(r, _mm512_permute_ps::<0b01_00_11_10>(r));
    _mm512_add_ps(u, _mm512_movehdup_ps(u))
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn kernel<const T: usize>(wq: &[u8], wd: &[u8], nb: usize, a: &[ActRow], res: &mut [[f32; ROWS]]) {
    let (wq, wd) = (wq.as_ptr(), wd.as_ptr());
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
        let h = _mm512_castps512_ps128(_mm512_permutex2var_ps(h01, pick, h23));
        _mm_storeu_ps(res.get_unchecked_mut(t).as_mut_ptr(), h);
    }
}
