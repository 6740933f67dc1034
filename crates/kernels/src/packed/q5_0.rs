//! q5_0 x q8_0 on 4 interleaved rows and up to 4 tokens per call, AVX-512 VNNI (q4_0, which
//! follows its scalar float order, has its own kernel: `q4_0`).
//!
//! The nibbles are laid out as q4_1's (one 64-byte load per block: row k in bytes 16k..16k+16),
//! `v & 0xF` giving elements 0..16 of the 4 rows and `v >> 4 & 0xF` elements 16..32. For q5_0
//! the fifth bits follow as two 64-bit masks (bit 16k + j: row k's element j, then j + 16), and
//! a masked byte add of 16 completes `q + 16` in 0..32, unsigned. `vpdpbusd` then multiplies
//! those unsigned weights with the signed activations, starting each lane from
//! `-16 * (sum of its 4 activation quants)`, which makes it exactly `sum(q_w * q_x)`: the same 8 partial sums per row that the
//! row-at-a-time kernel gets from the sign trick (its lanes 0..4 are our "lo" lanes, 4..8 our
//! "hi" lanes), and the float steps are the same per lane (see the parent module on exactness).

use std::arch::x86_64::*;

use super::{ActRow, ROWS};

/// `out[t][4 * g + k] = dot(row k of group g, token t)` for `g < n_groups`, `t < T`.
///
/// # Safety
/// The CPU has the features of [`super::available`]; `wq`/`wd` hold `n_groups * nb` blocks of
/// quants (80 bytes each) and scales (8 bytes each); every `a[t]` holds
/// `nb` blocks; every `out[t]` is valid for writing `4 * n_groups` floats that nothing else
/// accesses meanwhile.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn groups<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, n_groups: usize, a: &[ActRow; T], out: [*mut f32; T]) {
    let qsb = 80;
    for g in 0..n_groups {
        let mut res = [_mm_setzero_ps(); T];
        kernel::<T>(wq.add(g * nb * qsb), wd.add(g * nb * 8), nb, a, &mut res);
        for t in 0..T {
            _mm_storeu_ps(out[t].add(g * ROWS), res[t]);
        }
    }
}

/// One block of every token into one parity's (lo, hi) accumulators.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn block<const T: usize>(wq: *const u8, wd: *const u8, b: usize, a: &[ActRow; T], acc: &mut [[__m512; 2]; T]) {
    let qsb = 80;
    let nib = _mm512_set1_epi8(0x0F);
    let expand = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    // SAFETY (all loads): `run_groups` checked that the group holds `nb > b` blocks and every
    // activation row `nb` blocks; unaligned loads need no alignment. Prefetches of addresses
    // past the end (the next group follows in memory) are never dereferenced.
    let q = wq.add(b * qsb);
    _mm_prefetch::<_MM_HINT_T1>(q.wrapping_add(super::PREFETCH).cast());
    _mm_prefetch::<_MM_HINT_T1>(q.wrapping_add(64 + super::PREFETCH).cast());
    _mm_prefetch::<_MM_HINT_T1>(wd.wrapping_add(b * 8 + super::PREFETCH / 8).cast());
    let v = _mm512_loadu_si512(q.cast());
    let (lo, hi) = (_mm512_and_si512(v, nib), _mm512_and_si512(_mm512_srli_epi16::<4>(v), nib));
    let sixteen = _mm512_set1_epi8(16);
    let mlo: __mmask64 = q.add(64).cast::<u64>().read_unaligned();
    let mhi: __mmask64 = q.add(72).cast::<u64>().read_unaligned();
    let lo = _mm512_mask_add_epi8(lo, mlo, lo, sixteen);
    let hi = _mm512_mask_add_epi8(hi, mhi, hi, sixteen);
    let dw = _mm512_permutexvar_ps(expand, _mm512_castps128_ps512(_mm_cvtph_ps(_mm_loadl_epi64(wd.add(b * 8).cast()))));
    for t in 0..T {
        let at = a.get_unchecked(t);
        let y = at.qs.as_ptr().add(b * 32);
        let ylo = _mm512_broadcast_i32x4(_mm_loadu_si128(y.cast()));
        let yhi = _mm512_broadcast_i32x4(_mm_loadu_si128(y.add(16).cast()));
        // The activations carry -16 * (sum of 4 quants) per lane after q8_0's 8 lanes.
        let c = at.corr.as_ptr().add(b * super::CORR + 8);
        let (clo, chi) = (_mm512_broadcast_i32x4(_mm_loadu_si128(c.cast())), _mm512_broadcast_i32x4(_mm_loadu_si128(c.add(4).cast())));
        let dd = _mm512_mul_ps(dw, _mm512_set1_ps(*at.d.get_unchecked(b)));
        let il = _mm512_dpbusd_epi32(clo, lo, ylo);
        let ih = _mm512_dpbusd_epi32(chi, hi, yhi);
        acc[t][0] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(il), acc[t][0]);
        acc[t][1] = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(ih), acc[t][1]);
    }
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
    let pick = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
    for t in 0..T {
        // As q4_1: acc0 + acc1 per lane, then ggml's hsum_float_8 order for the 4 rows at once.
        let lo = _mm512_add_ps(even[t][0], odd[t][0]);
        let hi = _mm512_add_ps(even[t][1], odd[t][1]);
        let r = _mm512_add_ps(hi, lo);
        let u = _mm512_add_ps(r, _mm512_permute_ps::<0b01_00_11_10>(r));
        let v = _mm512_add_ps(u, _mm512_movehdup_ps(u));
        res[t] = _mm512_castps512_ps128(_mm512_permutexvar_ps(pick, v));
    }
}
