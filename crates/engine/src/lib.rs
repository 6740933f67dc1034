//! The daehwa inference engine: models, tokenizers, chat templates, sampling and the KV cache.
//! No async runtime and no HTTP here; the server drives the engine through plain types.

pub mod error;
pub mod kv;
pub mod model;
pub mod sample;
pub mod text;

pub use error::{Error, Result};

/// A token id in the model's vocabulary.
pub type TokenId = u32;
