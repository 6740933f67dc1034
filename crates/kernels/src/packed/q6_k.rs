//! q6_K x q8_K on 4 interleaved rows and up to 4 tokens per call, AVX-512 VNNI.
//!
//! Packed layout per (group of 4 rows, super-block), see `super::pack_k` (the same 840 bytes as
//! the 4 GGUF blocks, reordered):
//! - quants, 768 bytes: `ql` as 32-byte chunks `2j + c` (c = 0, 1) for row pair `p`, row 2p's
//!   chunk then row 2p+1's, at `((2j + c) * 2 + p) * 64`; then `qh` chunks `j` per pair the same
//!   way at `512 + (2j + p) * 64`;
//! - meta, 72 bytes: the 16 scales (i8) of each of the 4 rows, then `d` of the 4 rows (f16).
//!
//! As in `q4_k`: two rows per register, `maddubs` then `vpdpwssd` by the scales gives per row
//! the 8 i32 lanes of the AVX2 kernel (sub-block 4j + i from `ql` chunk `2j + (i & 1)`, its low
//! nibbles for i < 2 and high ones after, with `qh` bits `2i, 2i + 1`; scale `2 sb` on its first
//! 16 elements, `2 sb + 1` on the rest), minus `32 * madd(bsums, scales)`, then the same float
//! steps: bit-for-bit `vec_dot_q6_k_q8_k`.

use std::arch::x86_64::*;

use super::k16::{sub16_layout, Sub16};

/// Quant bytes per (group, super-block).
pub(super) const QS_BYTES: usize = 768;
/// Meta bytes per (group, super-block).
pub(super) const META_BYTES: usize = 72;

/// The unsigned 6-bit quants (0..64) of sub-blocks `4j + i`, `i = 0..4`, for row pair `p` of a
/// packed block at `q`: row 2p in the lower 256 bits, row 2p + 1 in the upper (shared with
/// `super::amx`).
///
/// # Safety
/// `q` points at a whole packed block ([`QS_BYTES`]); `j, p < 2`; AVX-512 BW is available.
#[inline(always)]
pub(super) unsafe fn quants(q: *const u8, j: usize, p: usize) -> [__m512i; 4] {
    let m15 = _mm512_set1_epi8(15);
    let qh = _mm512_loadu_si512(q.add(512 + (2 * j + p) * 64).cast());
    let l0 = _mm512_loadu_si512(q.add((4 * j + p) * 64).cast());
    let l1 = _mm512_loadu_si512(q.add((4 * j + 2 + p) * 64).cast());
    let h0 = _mm512_slli_epi16::<4>(_mm512_and_si512(qh, _mm512_set1_epi8(3)));
    let h1 = _mm512_slli_epi16::<2>(_mm512_and_si512(qh, _mm512_set1_epi8(12)));
    let h2 = _mm512_and_si512(qh, _mm512_set1_epi8(48));
    let h3 = _mm512_srli_epi16::<2>(_mm512_and_si512(qh, _mm512_set1_epi8(-64)));
    [
        _mm512_or_si512(_mm512_and_si512(l0, m15), h0),
        _mm512_or_si512(_mm512_and_si512(l1, m15), h1),
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(l0), m15), h2),
        _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(l1), m15), h3),
    ]
}

/// The q6_K layout (marker for [`super::kq::groups`]; its kernels are `super::k16`'s).
pub(super) struct Q6K;

impl Sub16 for Q6K {
    const QS_BYTES: usize = QS_BYTES;
    const META_BYTES: usize = META_BYTES;
    const OFFSET_LOG2: Option<u32> = Some(5);
    const MINS: bool = false;

    #[inline(always)]
    unsafe fn quants(q: *const u8, j: usize, p: usize) -> [__m512i; 4] {
        quants(q, j, p)
    }

    #[inline(always)]
    unsafe fn quants_avx2(q: *const u8, j: usize, k: usize) -> [__m256i; 4] {
        let m15 = _mm256_set1_epi8(15);
        let l0 = _mm256_loadu_si256(q.add(128 * (2 * j) + 32 * k).cast());
        let l1 = _mm256_loadu_si256(q.add(128 * (2 * j + 1) + 32 * k).cast());
        let qh = _mm256_loadu_si256(q.add(512 + 128 * j + 32 * k).cast());
        let h0 = _mm256_slli_epi16::<4>(_mm256_and_si256(qh, _mm256_set1_epi8(3)));
        let h1 = _mm256_slli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(12)));
        let h2 = _mm256_and_si256(qh, _mm256_set1_epi8(48));
        let h3 = _mm256_srli_epi16::<2>(_mm256_and_si256(qh, _mm256_set1_epi8(-64)));
        [
            _mm256_or_si256(_mm256_and_si256(l0, m15), h0),
            _mm256_or_si256(_mm256_and_si256(l1, m15), h1),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l0), m15), h2),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(l1), m15), h3),
        ]
    }
}

sub16_layout!(Q6K);
