//! Float element types: f32, f16 and bf16 rows, their conversions and scalar dot products.
//!
//! The fp16 decoder is the branch-free bit trick ggml uses (`ggml_compute_fp16_to_fp32`, from
//! Maratyszcza's FP16 library), exact for every input; encoding rounds to nearest even like
//! `GGML_FP32_TO_FP16`. bf16 encoding follows `ggml_compute_fp32_to_bf16` (round to nearest
//! even, NaN kept quiet).

/// Exact fp16 -> f32 without tables or CPU feature checks (usable in any inner loop).
#[inline(always)]
pub fn f16_to_f32(h: u16) -> f32 {
    let w = (h as u32) << 16;
    let sign = w & 0x8000_0000;
    let two_w = w.wrapping_add(w);
    // Normal numbers: move the exponent/mantissa into place and rescale by 2^-112.
    let exp_offset: u32 = 0xE0 << 23;
    let normalized = f32::from_bits((two_w >> 4) + exp_offset) * f32::from_bits(0x0780_0000); // 2^-112
                                                                                              // Subnormals: build 0.5 + m * 2^-24 ... and subtract the bias.
    let magic_mask: u32 = 126 << 23;
    let denormalized = f32::from_bits((two_w >> 17) | magic_mask) - 0.5;
    let cutoff: u32 = 1 << 27;
    let bits = if two_w < cutoff {
        denormalized.to_bits()
    } else {
        normalized.to_bits()
    };
    f32::from_bits(sign | bits)
}

/// f32 -> fp16 bits, round to nearest even.
#[inline]
pub fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// bf16 -> f32 is exact: the bf16 bits are the high half of the f32.
#[inline(always)]
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// f32 -> bf16 bits, round to nearest even; NaNs stay NaN (quiet bit forced) as in ggml.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16
}

pub fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    }
}

pub fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = f16_to_f32(u16::from_le_bytes([s[0], s[1]]));
    }
}

pub fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *d = bf16_to_f32(u16::from_le_bytes([s[0], s[1]]));
    }
}

pub fn quantize_f32(src: &[f32], dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(4).zip(src) {
        d.copy_from_slice(&s.to_le_bytes());
    }
}

pub fn quantize_f16(src: &[f32], dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(2).zip(src) {
        d.copy_from_slice(&f32_to_f16(*s).to_le_bytes());
    }
}

pub fn quantize_bf16(src: &[f32], dst: &mut [u8]) {
    for (d, s) in dst.chunks_exact_mut(2).zip(src) {
        d.copy_from_slice(&f32_to_bf16(*s).to_le_bytes());
    }
}

#[inline(always)]
fn f32_at(b: &[u8]) -> f32 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Checks the row lengths of a float dot; panics on misuse (a caller bug, not a data error).
pub(crate) fn check_fp(n: usize, w: &[u8], x: &[u8], w_elem: usize) {
    assert!(
        w.len() >= n * w_elem && x.len() >= n * 4,
        "vec_dot: n = {n} needs {} weight and {} activation bytes, got {} and {}",
        n * w_elem,
        n * 4,
        w.len(),
        x.len()
    );
}

/// f32 weights x f32 activations; accumulates in f64 so the reference is the accurate one.
pub fn vec_dot_f32(n: usize, w: &[u8], x: &[u8]) -> f32 {
    check_fp(n, w, x, 4);
    let mut sum = 0f64;
    for (a, b) in w[..n * 4].chunks_exact(4).zip(x[..n * 4].chunks_exact(4)) {
        sum += f32_at(a) as f64 * f32_at(b) as f64;
    }
    sum as f32
}

/// f16 weights x f32 activations.
pub fn vec_dot_f16(n: usize, w: &[u8], x: &[u8]) -> f32 {
    check_fp(n, w, x, 2);
    let mut sum = 0f64;
    for (a, b) in w[..n * 2].chunks_exact(2).zip(x[..n * 4].chunks_exact(4)) {
        sum += f16_to_f32(u16::from_le_bytes([a[0], a[1]])) as f64 * f32_at(b) as f64;
    }
    sum as f32
}

/// bf16 weights x f32 activations.
pub fn vec_dot_bf16(n: usize, w: &[u8], x: &[u8]) -> f32 {
    check_fp(n, w, x, 2);
    let mut sum = 0f64;
    for (a, b) in w[..n * 2].chunks_exact(2).zip(x[..n * 4].chunks_exact(4)) {
        sum += bf16_to_f32(u16::from_le_bytes([a[0], a[1]])) as f64 * f32_at(b) as f64;
    }
    sum as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_decoder_is_exact_for_all_inputs() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            let got = f16_to_f32(h);
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}");
            }
        }
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (1.0).
        assert_eq!(f32_to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        // 1 + 3 * 2^-8 is halfway again: ties to even (upwards this time).
        assert_eq!(f32_to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(bf16_to_f32(f32_to_bf16(-2.5)), -2.5);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
    }
}
