//! The daehwa inference engine: models, tokenizers, chat templates, sampling and the KV cache.
//! No async runtime and no HTTP here; the server drives the engine through plain types.

pub mod constraint;
mod decode;
pub mod engine;
pub mod error;
pub mod kv;
pub mod memory;
pub mod model;
pub mod runner;
pub mod sample;
pub mod sched;
pub mod session;
pub mod text;

pub use engine::{Engine, EngineConfig};
pub use error::{Error, Result};
pub use session::{FinishReason, GenParams, Generation, Session, TokenOut};

/// A token id in the model's vocabulary.
pub type TokenId = u32;
