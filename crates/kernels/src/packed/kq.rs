//! What the packed K-quant kernels share: the q8_K activation blocks they read in place, and
//! the final horizontal sums in the row-at-a-time kernels' order.

use std::arch::x86_64::*;

use super::ActRow;

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

/// `hsum_float_8(lanes)` plus, when given, the 4 min lanes summed as the kernels do
/// (`(m0 + m2) + (m1 + m3)`).
#[inline(always)]
pub(super) fn finish_row(x: &[f32; 8], m: Option<&[f32; 4]>) -> f32 {
    let r = [x[4] + x[0], x[5] + x[1], x[6] + x[2], x[7] + x[3]];
    let h = (r[0] + r[2]) + (r[1] + r[3]);
    match m {
        Some(m) => h + ((m[0] + m[2]) + (m[1] + m[3])),
        None => h,
    }
}
