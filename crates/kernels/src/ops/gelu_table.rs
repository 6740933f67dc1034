//! ggml's GELU lookup table: with `GGML_GELU_FP16` (the default) ggml evaluates GELU on f32 by
//! rounding the input to f16 and reading `f16(gelu(f16_input))` from a 64 Ki-entry table. We keep
//! the same table (as f32, 256 KiB, built once on first use) so gemma's GeGLU matches llama.cpp.

use std::sync::OnceLock;

use half::f16;

use super::scalar::gelu_exact1;

fn table() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| {
                let x = f16::from_bits(bits).to_f32();
                f16::from_f32(gelu_exact1(x)).to_f32()
            })
            .collect()
    })
}

/// `f16(gelu(f16(x)))` as f32. Meant for `-10 < x < 10`; other inputs still give a value.
#[inline]
pub fn lookup(x: f32) -> f32 {
    table()[usize::from(f16::from_f32(x).to_bits())]
}
