//! OpenAI's wire format: the raw request bodies exactly as clients send them (an unknown field is
//! a 400 naming it, like OpenAI's `Unrecognized request argument`) and the response bodies and
//! stream chunks we send back. Nothing here validates: [`crate::validate`] turns requests into
//! trusted types.

pub mod chat;
pub mod common;
pub mod completions;
pub mod models;

pub use chat::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest};
pub use common::{ApiUsage, ChoiceLogprobs, LogprobEntry, StopParam, StreamOptions, TopLogprob};
pub use completions::{Completion, CompletionChunk, CompletionRequest, PromptParam};
pub use models::{Model, ModelList};
