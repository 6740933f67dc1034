//! GGML block layouts (`ggml-common.h`), viewed directly over raw GGUF bytes.
//!
//! Every field is a byte array (`[u8; 2]` for an fp16, `[u8; 4]` for an f32), so every block
//! struct has alignment 1, no padding, and every bit pattern is valid. That makes viewing a
//! `&[u8]` from the (only 1-byte aligned) mmap as `&[BlockQ4_1]` sound without copying, and
//! scalars are decoded with `from_le_bytes` (GGUF is little-endian).
//!
//! ```text
//! q4_0  [d:f16][qs:16]                          32 elems, 18 B   x = (q - 8) * d
//! q4_1  [d:f16][m:f16][qs:16]                   32 elems, 20 B   x = q * d + m
//! q5_0  [d:f16][qh:4][qs:16]                    32 elems, 22 B   x = (q - 16) * d
//! q5_1  [d:f16][m:f16][qh:4][qs:16]             32 elems, 24 B   x = q * d + m
//! q8_0  [d:f16][qs:32 i8]                       32 elems, 34 B   x = q * d
//! q8_1  [d:f16][s:f16][qs:32 i8]                32 elems, 36 B   s = d * sum(q)
//! q4_K  [d][dmin][scales:12][qs:128]           256 elems, 144 B  8 sub-blocks of 32, 6-bit scale/min
//! q5_K  [d][dmin][scales:12][qh:32][qs:128]    256 elems, 176 B
//! q6_K  [ql:128][qh:64][scales:16 i8][d]       256 elems, 210 B  16 sub-blocks of 16, 8-bit scales
//! q8_K  [d:f32][qs:256 i8][bsums:16 i16]       256 elems, 292 B  bsums = sums of 16 quants
//! ```
//! In the 32-element types the low nibbles hold elements 0..16 and the high nibbles 16..32.

use std::mem::{align_of, size_of};

use gguf::GgmlType;

use super::fp::f16_to_f32;

/// Elements per block of the 32-element ("legacy") types.
pub const QK: usize = 32;
/// Elements per super-block of the k-quants.
pub const QK_K: usize = 256;
/// Length of the packed 6-bit scales/mins of q4_K and q5_K.
pub const K_SCALE_SIZE: usize = 12;

/// A GGML block that may be viewed over raw bytes.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, have alignment 1, contain no padding, accept every bit
/// pattern, and have `size_of::<Self>() == Self::TYPE.type_size()`. The compile-time asserts
/// next to each block below check the size and alignment.
pub unsafe trait Block: Copy + 'static {
    const TYPE: GgmlType;
    /// Elements per block (a constant, so length checks compile to shifts).
    const ELEMS: usize;
}

/// Views `bytes` as blocks; `None` when the length is not a whole number of blocks.
pub fn as_blocks<B: Block>(bytes: &[u8]) -> Option<&[B]> {
    let size = size_of::<B>();
    if !bytes.len().is_multiple_of(size) {
        return None;
    }
    // SAFETY: `B: Block` has alignment 1 (any address is aligned), no padding and no invalid bit
    // patterns; the length is an exact multiple of its size, so the new slice covers exactly
    // the same bytes with the same lifetime.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size) })
}

/// Mutable counterpart of [`as_blocks`].
pub fn as_blocks_mut<B: Block>(bytes: &mut [u8]) -> Option<&mut [B]> {
    let size = size_of::<B>();
    if !bytes.len().is_multiple_of(size) {
        return None;
    }
    // SAFETY: as in `as_blocks`; the exclusive borrow of `bytes` moves to the returned slice,
    // and any value written through it is a valid byte pattern.
    Some(unsafe {
        std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), bytes.len() / size)
    })
}

/// Splits the operands of a vec_dot into `n / block_size` weight blocks and as many activation
/// blocks. Panics when `n` is not a whole number of blocks or a row is too short: that is a
/// caller bug, and checking here once lets the SIMD loops run without bounds checks.
#[track_caller]
#[inline]
pub fn dot_operands<'a, W: Block, X: Block>(
    n: usize,
    w: &'a [u8],
    x: &'a [u8],
) -> (&'a [W], &'a [X]) {
    let bs = W::ELEMS;
    assert!(
        n.is_multiple_of(bs),
        "vec_dot {}: n = {n} is not a multiple of {bs}",
        W::TYPE
    );
    let nb = n / bs;
    let (wl, xl) = (nb * size_of::<W>(), nb * size_of::<X>());
    assert!(
        w.len() >= wl && x.len() >= xl,
        "vec_dot {}: n = {n} needs {wl} weight and {xl} {} bytes, got {} and {}",
        W::TYPE,
        X::TYPE,
        w.len(),
        x.len()
    );
    let wb = as_blocks::<W>(&w[..wl]).expect("whole weight blocks");
    let xb = as_blocks::<X>(&x[..xl]).expect("whole activation blocks");
    (wb, xb)
}

/// Decodes a little-endian fp16.
#[inline(always)]
pub fn f16_le(b: [u8; 2]) -> f32 {
    f16_to_f32(u16::from_le_bytes(b))
}

/// Encodes an f32 as a little-endian fp16 (round to nearest even, like `GGML_FP32_TO_FP16`).
#[inline]
pub fn f16_le_from(x: f32) -> [u8; 2] {
    half::f16::from_f32(x).to_bits().to_le_bytes()
}

macro_rules! block {
    ($(#[$doc:meta])* $name:ident, $ty:ident, $elems:expr, $size:expr, { $($field:ident : $fty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            $(pub $field: $fty,)*
        }
        const _: () = assert!(size_of::<$name>() == $size);
        const _: () = assert!(align_of::<$name>() == 1);
        // SAFETY: repr(C), only byte-array fields (alignment 1, no padding, every bit pattern
        // valid); the size is asserted above and equals the type's ggml `type_size`
        // (checked against `GgmlType::type_size` in the unit tests).
        unsafe impl Block for $name {
            const TYPE: GgmlType = GgmlType::$ty;
            const ELEMS: usize = $elems;
        }
    };
}

block!(
    /// `block_q4_0`: 32 4-bit quants with offset 8 and one fp16 scale.
    BlockQ4_0, Q4_0, QK, 18, { d: [u8; 2], qs: [u8; QK / 2] });
block!(
    /// `block_q4_1`: 32 4-bit quants with an fp16 scale and an fp16 minimum.
    BlockQ4_1, Q4_1, QK, 20, { d: [u8; 2], m: [u8; 2], qs: [u8; QK / 2] });
block!(
    /// `block_q5_0`: 4 low bits in `qs`, the fifth bit of element j in bit j of `qh`.
    BlockQ5_0, Q5_0, QK, 22, { d: [u8; 2], qh: [u8; 4], qs: [u8; QK / 2] });
block!(
    /// `block_q5_1`: like q5_0 with an fp16 minimum instead of the offset 16.
    BlockQ5_1, Q5_1, QK, 24, { d: [u8; 2], m: [u8; 2], qh: [u8; 4], qs: [u8; QK / 2] });
block!(
    /// `block_q8_0`: 32 signed bytes and an fp16 scale.
    BlockQ8_0, Q8_0, QK, 34, { d: [u8; 2], qs: [i8; QK] });
block!(
    /// `block_q8_1`: like q8_0 plus `s = d * sum(qs)` for the minimum term of q4_1/q5_1 dots.
    BlockQ8_1, Q8_1, QK, 36, { d: [u8; 2], s: [u8; 2], qs: [i8; QK] });
block!(
    /// `block_q4_K`: 8 sub-blocks of 32 with 6-bit scales and mins relative to `d`/`dmin`.
    BlockQ4K, Q4_K, QK_K, 144, { d: [u8; 2], dmin: [u8; 2], scales: [u8; K_SCALE_SIZE], qs: [u8; QK_K / 2] });
block!(
/// `block_q5_K`: q4_K plus one high bit per element in `qh`.
BlockQ5K, Q5_K, QK_K, 176, {
    d: [u8; 2], dmin: [u8; 2], scales: [u8; K_SCALE_SIZE], qh: [u8; QK_K / 8], qs: [u8; QK_K / 2]
});
block!(
    /// `block_q6_K`: 4 low bits in `ql`, 2 high bits in `qh`, offset 32, 16 signed 8-bit scales.
    BlockQ6K, Q6_K, QK_K, 210, { ql: [u8; QK_K / 2], qh: [u8; QK_K / 4], scales: [i8; QK_K / 16], d: [u8; 2] });
block!(
    /// `block_q8_K`: activations for k-quant dots; f32 scale and sums of each 16 quants.
    BlockQ8K, Q8_K, QK_K, 292, { d: [u8; 4], qs: [i8; QK_K], bsums: [[u8; 2]; QK_K / 16] });

block!(
    /// `block_q2_K`: 16 sub-blocks of 16, 2-bit quants, a 4-bit scale (low) and min (high) each.
    BlockQ2K, Q2_K, QK_K, 84, { scales: [u8; QK_K / 16], qs: [u8; QK_K / 4], d: [u8; 2], dmin: [u8; 2] });
block!(
    /// `block_q3_K`: 2 low bits in `qs`, the third (set = no -4 offset) in `hmask`, 16 6-bit scales.
    BlockQ3K, Q3_K, QK_K, 110, { hmask: [u8; QK_K / 8], qs: [u8; QK_K / 4], scales: [u8; 12], d: [u8; 2] });
block!(
    /// `block_iq4_nl`: 32 4-bit indices into the non-linear table `KVALUES_IQ4NL`, one fp16 scale.
    BlockIQ4NL, IQ4_NL, QK, 18, { d: [u8; 2], qs: [u8; QK / 2] });
block!(
    /// `block_iq4_xs`: 8 sub-blocks of 32 iq4_nl indices with 6-bit scales (offset 32).
    BlockIQ4XS, IQ4_XS, QK_K, 136, { d: [u8; 2], scales_h: [u8; 2], scales_l: [u8; QK_K / 64], qs: [u8; QK_K / 2] });
block!(
    /// `block_mxfp4`: 32 E2M1 values (`KVALUES_MXFP4`, doubled) sharing an E8M0 exponent `e`.
    BlockMxfp4, MXFP4, QK, 17, { e: u8, qs: [u8; QK / 2] });

/// The iq4_nl / iq4_xs code book (`kvalues_iq4nl`).
pub const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
/// The E2M1 values times 2 (`kvalues_mxfp4`); the block scale is halved to match.
pub const KVALUES_MXFP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// An E8M0 exponent as `2^(e - 127) / 2` (`GGML_E8M0_TO_FP32_HALF`; exact, subnormal below e = 2).
#[inline(always)]
pub fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 { 0x0020_0000u32 << e } else { (e as u32 - 1) << 23 };
    f32::from_bits(bits)
}

impl BlockIQ4XS {
    /// The 6-bit scale of sub-block `ib` minus 32.
    #[inline(always)]
    pub fn scale(&self, ib: usize) -> i32 {
        let h = u16::from_le_bytes(self.scales_h);
        let ls = ((self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) as i32 | ((((h >> (2 * ib)) & 3) as i32) << 4);
        ls - 32
    }
}

/// The 16 signed scales of a q3_K block (6 bits, minus 32), in sub-block order.
#[inline(always)]
pub fn unpack_scales_q3k(s: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for j in 0..16 {
        let low = if j < 8 { s[j] & 0xF } else { s[j - 8] >> 4 };
        let high = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (low | (high << 4)) as i8 - 32;
    }
    out
}

impl BlockQ8K {
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }
    #[inline(always)]
    pub fn bsum(&self, j: usize) -> i16 {
        i16::from_le_bytes(self.bsums[j])
    }
}

/// Unpacks the 12 bytes of q4_K/q5_K scales into 8 six-bit scales followed by 8 six-bit mins
/// (ggml's `get_scale_min_k4` for j = 0..8; the same byte order as its `utmp` trick).
#[inline(always)]
pub fn unpack_scales_mins_k4(q: &[u8; K_SCALE_SIZE]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for j in 0..4 {
        out[j] = q[j] & 63;
        out[8 + j] = q[j + 4] & 63;
    }
    for j in 4..8 {
        out[j] = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        out[8 + j] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<B: Block>() {
        assert_eq!(size_of::<B>(), B::TYPE.type_size(), "{}", B::TYPE);
        assert_eq!(B::ELEMS, B::TYPE.block_size(), "{}", B::TYPE);
    }

    #[test]
    fn sizes_match_ggml_type_size() {
        check::<BlockQ4_0>();
        check::<BlockQ4_1>();
        check::<BlockQ5_0>();
        check::<BlockQ5_1>();
        check::<BlockQ8_0>();
        check::<BlockQ8_1>();
        check::<BlockQ4K>();
        check::<BlockQ5K>();
        check::<BlockQ6K>();
        check::<BlockQ8K>();
        check::<BlockQ2K>();
        check::<BlockQ3K>();
        check::<BlockIQ4NL>();
        check::<BlockIQ4XS>();
        check::<BlockMxfp4>();
    }

    #[test]
    fn views_unaligned_bytes() {
        let bytes: Vec<u8> = (0..=40u8).collect();
        // Offset 1 makes the view start at an odd address.
        let b = as_blocks::<BlockQ4_1>(&bytes[1..41]).expect("two blocks");
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].d, [21, 22]);
        assert!(as_blocks::<BlockQ4_1>(&bytes[1..40]).is_none());
    }

    #[test]
    fn k4_scales_roundtrip_packing() {
        // Pack like quantize_row_q4_K_ref and check the unpacked values.
        let ls: [u8; 8] = [1, 62, 33, 7, 63, 17, 40, 5];
        let lm: [u8; 8] = [60, 2, 31, 48, 0, 63, 9, 22];
        let mut s = [0u8; 12];
        for j in 0..8 {
            if j < 4 {
                s[j] = ls[j];
                s[j + 4] = lm[j];
            } else {
                s[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
                s[j - 4] |= (ls[j] >> 4) << 6;
                s[j] |= (lm[j] >> 4) << 6;
            }
        }
        let u = unpack_scales_mins_k4(&s);
        assert_eq!(&u[..8], &ls);
        assert_eq!(&u[8..], &lm);
    }
}
