//! The float arithmetic shared by the scalar references of the newer types (q2_K, q3_K, iq4_nl,
//! iq4_xs, mxfp4) and their SIMD paths, so that every path returns the same bits.
//!
//! Each block (or super-block) yields eight exact i32 lane sums: lane `l` holds the products
//! of elements `32c + 4l .. 32c + 4l + 4` over the block's 32-element chunks `c` (what
//! `maddubs` + `madd`, or VNNI's `dpbusd`, leave in the eight 32-bit lanes of a 256-bit
//! register when the quants are laid out in element order). The lanes are then folded into
//! eight f32 accumulators as `acc[l] = acc[l] + d * float(sum[l])` (a multiply and an add, no
//! FMA, so the scalar code needs no FMA unit to match), and summed at the end in the order of
//! ggml's `hsum_float_8`. Integer sums are exact in any order, so only this fixed float order
//! matters, and the SIMD kernels follow it step for step.

/// Eight f32 lane accumulators.
#[derive(Clone, Copy, Default)]
pub(crate) struct Lanes([f32; 8]);

impl Lanes {
    /// `acc[l] += d * float(sum[l])`.
    #[inline(always)]
    pub fn add(&mut self, d: f32, sum: &[i32; 8]) {
        for (a, &s) in self.0.iter_mut().zip(sum) {
            *a += d * s as f32;
        }
    }

    /// `hsum_float_8`: `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
    #[inline(always)]
    pub fn hsum(&self) -> f32 {
        let a = &self.0;
        let s = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
        (s[0] + s[2]) + (s[1] + s[3])
    }
}

/// Adds `scale * v[i] * y[i]` over one 32-element chunk into the lane sums (lane = i / 4).
#[inline(always)]
pub(crate) fn lane_dot32(sum: &mut [i32; 8], v: &[i8; 32], y: &[i8], scale: impl Fn(usize) -> i32) {
    for (l, s) in sum.iter_mut().enumerate() {
        let mut t = 0i32;
        for k in 4 * l..4 * l + 4 {
            t += scale(k) * (v[k] as i32 * y[k] as i32);
        }
        *s += t;
    }
}

/// Unpacks 16 bytes of nibbles through a 16-entry table: low nibbles are elements 0..16, high
/// nibbles 16..32 (the iq4_nl / mxfp4 / iq4_xs order).
#[inline(always)]
pub(crate) fn nibbles_through(qs: &[u8; 16], table: &[i8; 16]) -> [i8; 32] {
    let mut v = [0i8; 32];
    for j in 0..16 {
        v[j] = table[(qs[j] & 0xF) as usize];
        v[j + 16] = table[(qs[j] >> 4) as usize];
    }
    v
}
