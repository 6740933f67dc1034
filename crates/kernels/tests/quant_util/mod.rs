//! Shared helpers of the `quant_*` tests: deterministic data, hashing, and the f32 oracle.
#![allow(dead_code)]

use gguf::GgmlType;
use kernels::quant;

/// xorshift64 (13, 7, 17): deterministic test data without a `rand` dependency.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1) with 24 random bits (exact in f32).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / 16_777_216.0 * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// The seed of the ggml cross-check (the golden hashes were computed from this stream).
pub const GOLDEN_SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// 64-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// ggml's `generate_data` in test-quantize-fns.cpp.
pub fn ggml_test_data(offset: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 0.1 + 2.0 * (i as f32 + offset).cos())
        .collect()
}

pub fn quantize(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut q = vec![0u8; quant::row_bytes(ty, x.len()).expect("row_bytes")];
    quant::quantize_row(ty, x, &mut q).expect("quantize_row");
    q
}

pub fn quantize_fast(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut q = vec![0u8; quant::row_bytes(ty, x.len()).expect("row_bytes")];
    quant::quantize_row_fast(ty, x, &mut q).expect("quantize_row_fast");
    q
}

pub fn dequantize(ty: GgmlType, q: &[u8], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; n];
    quant::dequantize_row(ty, q, &mut y).expect("dequantize_row");
    y
}

/// Dot in f64.
pub fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Sum of |a_i * b_i|: the scale against which float reordering errors are measured.
pub fn abs_dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 * y as f64).abs())
        .sum()
}

pub const WEIGHT_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

/// A finite fp16 with a random sign: subnormal, tiny, ordinary or near 65504 by `kind`.
pub fn f16_bits(rng: &mut XorShift, kind: u64) -> [u8; 2] {
    let r = rng.next_u64();
    let sign = (((r >> 20) & 1) as u16) << 15;
    let mant = (r & 0x3ff) as u16;
    let exp: u16 = match kind % 4 {
        0 => 0,                          // subnormal (or zero)
        1 => 1 + (r >> 11) as u16 % 4,   // tiny normal
        2 => 10 + (r >> 11) as u16 % 8,  // ordinary (2^-5 .. 2^2)
        _ => 27 + (r >> 11) as u16 % 4,  // large, up to 65504
    };
    (sign | (exp << 10) | mant).to_le_bytes()
}

/// `n_blocks` random blocks of `ty`: random bytes, then the fp16 scale fields made finite.
pub fn random_row(ty: GgmlType, rng: &mut XorShift, n_blocks: usize) -> Vec<u8> {
    let size = ty.type_size();
    let mut row = vec![0u8; n_blocks * size];
    for (i, b) in row.chunks_exact_mut(size).enumerate() {
        for x in b.iter_mut() {
            *x = rng.next_u64() as u8;
        }
        let kind = i as u64;
        // Offsets of the fp16 fields in each layout (blocks.rs).
        let halves: &[usize] = match ty {
            GgmlType::Q2_K => &[80, 82],
            GgmlType::Q3_K => &[108],
            GgmlType::IQ4_NL | GgmlType::IQ4_XS => &[0],
            GgmlType::MXFP4 => &[],
            other => panic!("{other}"),
        };
        for (k, &o) in halves.iter().enumerate() {
            let v = f16_bits(rng, kind + k as u64);
            b[o..o + 2].copy_from_slice(&v);
        }
        if ty == GgmlType::MXFP4 && i < 256 {
            b[0] = i as u8; // every exponent, 2^-128 to 2^127
        }
    }
    row
}

