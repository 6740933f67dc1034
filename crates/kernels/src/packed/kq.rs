//! What the packed K-quant kernels share: the q8_K activation blocks they read in place, and
//! the fold of each super-block's totals in the K-quant float order.

use std::arch::x86_64::*;

use super::{ActRow, ROWS};

/// Bytes of one expanded q8_K activation block: each 32-quant sub-block twice in a row (64
/// bytes: one plain 512-bit load gives the kernels the sub-block in both halves, for two weight
/// rows, where a 256-bit broadcast cost a shuffle), then `d` (f32) at [`D_AT`] and the 16 i16
/// block sums at [`BSUMS_AT`], padded to whole cache lines.
pub(super) const Y_BYTES: usize = super::KQ_Y_BYTES;
pub(super) const D_AT: usize = 512;
pub(super) const BSUMS_AT: usize = 516;
const Q8K_BYTES: usize = 292;

/// Expands a q8_K row (`d`, 256 quants, 16 block sums per block) into [`Y_BYTES`] blocks.
pub(super) fn expand(q8: &[u8], out: &mut [u8]) {
    for (b, o) in q8.chunks_exact(Q8K_BYTES).zip(out.chunks_exact_mut(Y_BYTES)) {
        for (sb, q) in b[4..260].chunks_exact(32).enumerate() {
            o[64 * sb..64 * sb + 32].copy_from_slice(q);
            o[64 * sb + 32..64 * sb + 64].copy_from_slice(q);
        }
        o[D_AT..D_AT + 4].copy_from_slice(&b[..4]);
        o[BSUMS_AT..BSUMS_AT + 32].copy_from_slice(&b[260..292]);
    }
}

/// The expanded q8_K block `b` of a token.
#[inline(always)]
pub(super) unsafe fn y_block(a: &ActRow, b: usize) -> *const u8 {
    a.qs.as_ptr().add(b * Y_BYTES)
}

/// Sub-block `sb` of an expanded block, in both 256-bit halves.
///
/// # Safety
/// `y` points at a whole expanded block.
#[inline(always)]
pub(super) unsafe fn y_sub(y: *const u8, sb: usize) -> __m512i {
    _mm512_loadu_si512(y.add(64 * sb).cast())
}

/// The block's `d`.
#[inline(always)]
pub(super) unsafe fn y_d(y: *const u8) -> f32 {
    f32::from_le_bytes(*(y.add(D_AT) as *const [u8; 4]))
}

/// The 16 block sums added in pairs: one i16 per 32-element sub-block (`bsums_pairs`).
///
/// # Safety
/// `y` points at a whole q8_K block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn bsum_pairs4(y: *const u8) -> __m128i {
    let s = _mm256_loadu_si256(y.add(BSUMS_AT).cast());
    _mm_hadd_epi16(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s))
}

/// A packed K-quant layout: its bytes per (group of 4 rows, super-block) and its kernel.
pub(super) trait Layout {
    /// Quant bytes per (group, super-block).
    const QS_BYTES: usize;
    /// Meta bytes per (group, super-block).
    const META_BYTES: usize;
    /// `[t][k] = dot(row k of the group at `wq`/`wd`, token t)` over `nb` super-blocks.
    ///
    /// # Safety
    /// As [`groups`], for one group; called only from functions with [`groups`]' features.
    unsafe fn kernel<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T]) -> [[f32; ROWS]; T];
    /// The same on AVX2 + FMA (`super::kq_avx2`).
    ///
    /// # Safety
    /// As [`groups_avx2`], for one group; called only from functions with its features.
    unsafe fn kernel_avx2<const T: usize>(wq: *const u8, wd: *const u8, nb: usize, a: &[ActRow; T]) -> [[f32; ROWS]; T];
}

/// `out[t][4 * g + k] = dot(row k of group g, token t)` for `g < n_groups`, `t < T`.
///
/// # Safety
/// The CPU has the features of [`super::available`]; `wq`/`wd` hold `n_groups * nb` blocks of
/// quants (`L::QS_BYTES` each) and meta (`L::META_BYTES` each); every `a[t].qs` holds `nb`
/// expanded q8_K blocks; every `out[t]` is valid for writing `4 * n_groups` floats nothing else
/// accesses.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn groups<L: Layout, const T: usize>(wq: *const u8, wd: *const u8, nb: usize, n_groups: usize, a: &[ActRow; T], out: [*mut f32; T]) {
    for g in 0..n_groups {
        let res = L::kernel::<T>(wq.add(g * nb * L::QS_BYTES), wd.add(g * nb * L::META_BYTES), nb, a);
        for t in 0..T {
            std::ptr::copy_nonoverlapping(res[t].as_ptr(), out[t].add(g * ROWS), ROWS);
        }
    }
}

/// [`groups`] on AVX2 + FMA.
///
/// # Safety
/// As [`groups`], with AVX2, FMA and F16C in place of its features.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn groups_avx2<L: Layout, const T: usize>(wq: *const u8, wd: *const u8, nb: usize, n_groups: usize, a: &[ActRow; T], out: [*mut f32; T]) {
    for g in 0..n_groups {
        let res = L::kernel_avx2::<T>(wq.add(g * nb * L::QS_BYTES), wd.add(g * nb * L::META_BYTES), nb, a);
        for t in 0..T {
            std::ptr::copy_nonoverlapping(res[t].as_ptr(), out[t].add(g * ROWS), ROWS);
        }
    }
}

/// `sumi[p] += vpdpwssd(maddubs(w[p], y), s[p])` for both row pairs.
#[inline(always)]
pub(super) unsafe fn dot_pairs(sumi: &mut [__m512i; 2], w: &[__m512i; 2], y: __m512i, s: &[__m512i; 2]) {
    for p in 0..2 {
        sumi[p] = dpwssd(sumi[p], _mm512_maddubs_epi16(w[p], y), s[p]);
    }
}

/// `acc + vpdpwssd(a, b)`, emitted as that instruction. From the intrinsic, LLVM's machine
/// combiner emits `vpmaddwd` + `vpaddd` instead (a shorter chain on `acc`): one uop more per
/// multiply, where these kernels are bound by the multiply ports and not by the chain.
///
/// # Safety
/// AVX-512 VNNI is available.
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
pub(super) unsafe fn dpwssd(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
    let mut r = acc;
    // SAFETY: register-only arithmetic; the caller guarantees AVX-512 VNNI.
    std::arch::asm!("vpdpwssd {r}, {a}, {b}", r = inout(zmm_reg) r, a = in(zmm_reg) a, b = in(zmm_reg) b, options(pure, nomem, nostack, preserves_flags));
    r
}

/// The `vpshufb` index pair that repeats i16 word `w` (< 8) of a 128-bit lane across the lane
/// (as one i16: splat it to every word of the index).
#[inline(always)]
pub(super) fn word_index(w: usize) -> i16 {
    (((2 * w + 1) << 8) | (2 * w)) as i16
}

/// `vpshufb` of `a` by `idx`, emitted as that instruction: with a constant `idx` LLVM rewrites
/// it into other shuffles (a word broadcast within each lane becomes `vpshuflw` + `vpshufhw` +
/// `vpshufd`), three uops on the shuffle port for one.
///
/// # Safety
/// AVX-512 BW is available.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn pshufb(a: __m512i, idx: __m512i) -> __m512i {
    let r: __m512i;
    // SAFETY: register-only shuffle; the caller guarantees AVX-512 BW.
    std::arch::asm!("vpshufb {r}, {a}, {i}", r = lateout(zmm_reg) r, a = in(zmm_reg) a, i = in(zmm_reg) idx, options(pure, nomem, nostack, preserves_flags));
    r
}

/// The 4 rows' `d` (f16 at `m`) and `dmin` (f16 at `m + 8`, or none for q6_K) as the
/// coefficient lanes [`fold_block`] takes (times the token's `d`): lanes `4k, 4k + 1` row k's
/// `d`, lanes `4k + 2, 4k + 3` its `dmin` (0 without).
#[inline(always)]
pub(super) unsafe fn coef_lanes(m: *const u8, with_min: bool) -> __m512 {
    let h = if with_min { _mm_loadu_si128(m.cast()) } else { _mm_loadl_epi64(m.cast()) };
    let f = _mm512_castps256_ps512(_mm256_cvtph_ps(h));
    _mm512_permutexvar_ps(_mm512_set_epi32(7, 7, 3, 3, 6, 6, 2, 2, 5, 5, 1, 1, 4, 4, 0, 0), f)
}

/// Folds one super-block of one token into its 4 rows' accumulators (row k in lane `4k` of
/// `acc`) by the K-quant float order (`quant::kquants::k_step`): the exact totals of `sumi`
/// (row 2p in lanes 0..8 of pair p, row 2p + 1 in lanes 8..16) and of `prod` (row k's min
/// products in lanes `4k..4k + 4`; zero for q6_K), then `acc + d * float(isum)`, then
/// `- dm * float(msum)`, where `dw` is [`coef_lanes`] of the block.
#[inline(always)]
pub(super) unsafe fn fold_block(acc: __m512, sumi: &[__m512i; 2], prod: __m512i, dy: f32, dw: __m512) -> __m512 {
    // Quarter k: row k's two 4-lane halves added.
    let c = _mm512_add_epi32(_mm512_shuffle_i32x4::<0b10_00_10_00>(sumi[0], sumi[1]), _mm512_shuffle_i32x4::<0b11_01_11_01>(sumi[0], sumi[1]));
    // Quarter k: [c0 + c2, c1 + c3, p0 + p2, p1 + p3], then [isum, isum, msum, msum].
    let w = _mm512_add_epi32(_mm512_unpacklo_epi64(c, prod), _mm512_unpackhi_epi64(c, prod));
    let z = _mm512_add_epi32(w, _mm512_shuffle_epi32::<0b10_11_00_01>(w));
    let f = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(dy), dw), _mm512_cvtepi32_ps(z));
    _mm512_sub_ps(_mm512_add_ps(acc, f), _mm512_shuffle_ps::<0b11_10_11_10>(f, f))
}

/// Each token's 4 results: lane `4k` of `acc[t]`.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
pub(super) unsafe fn rows<const T: usize>(acc: &[__m512; T]) -> [[f32; ROWS]; T] {
    let mut res = [[0f32; ROWS]; T];
    for t in 0..T {
        let mut f = [0f32; 16];
        _mm512_storeu_ps(f.as_mut_ptr(), acc[t]);
        for k in 0..ROWS {
            res[t][k] = f[4 * k];
        }
    }
    res
}
