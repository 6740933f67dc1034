//! Quantized CPU kernels: GGML block types with scalar reference and SIMD paths chosen at run time,
//! matmul over a persistent thread pool, and the small ops a transformer needs.

pub mod error;
pub mod quant;

pub use error::{Error, Result};
pub mod pool;
pub mod ops;
mod disjoint;
pub mod matmul;
mod fp_matmul;
pub mod attention;
pub mod rows;
pub mod packed;
pub mod cputime;
