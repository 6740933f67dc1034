//! What `/v1/chat/completions` and `/v1/completions` share around a generation: starting it,
//! the envelope of every stream chunk, and assembling the choices of a non-streaming answer.
//! The endpoints differ only in their choice types ([`ChoiceBuilder`]) and chunk contents.

use std::sync::Arc;

use serde::Serialize;

use crate::backend::{Backend, FinishReason, TokenOut};
use crate::error::ApiError;
use crate::generation::{self, Generation, Step};
use crate::openai::common::{ApiUsage, Chunk};
use crate::tenant::Tenant;
use crate::validate::Job;
use crate::AppState;

/// A submitted generation with the id and creation time its response carries.
pub struct Started {
    pub gen: Generation,
    pub id: String,
    pub created: u64,
}

/// Tokenizes the job's prompts, submits one sequence per choice and names the response
/// (`{id_prefix}-...`).
pub async fn start(st: &AppState, backend: &Arc<dyn Backend>, job: &Job, id_prefix: &str, tenant: Tenant) -> Result<Started, ApiError> {
    let prompts = generation::tokenize(backend, job).await?;
    let gen = generation::submit(backend.as_ref(), st.metrics.clone(), &st.admission, job, prompts, tenant)?;
    Ok(Started { gen, id: generation::response_id(id_prefix), created: generation::unix_now() })
}

/// Serializes a wire value. The API's types always serialize (string keys, no fallible
/// `Serialize` impls); should one ever fail, the client gets an error object instead of a
/// panic in the server.
pub fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        let body = ApiError::Internal(format!("serializing a response: {e}")).body();
        serde_json::to_string(&body).unwrap_or_else(|_| r#"{"error":{"message":"internal error"}}"#.into())
    })
}

/// The fields every chunk of one stream repeats.
pub struct ChunkHeader {
    pub backend: Arc<dyn Backend>,
    pub id: String,
    /// `chat.completion.chunk` or `text_completion`.
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    /// The request asked for log-probs.
    pub logprobs: bool,
    /// With `include_usage`, every chunk carries `"usage": null` (the last one the usage).
    pub usage_field: bool,
}

impl ChunkHeader {
    /// The JSON of one `data:` event.
    pub fn chunk<C: Serialize>(&self, choices: Vec<C>, usage: Option<ApiUsage>) -> String {
        to_json(&Chunk {
            id: self.id.clone(),
            object: self.object.to_string(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: self.usage_field.then_some(usage),
        })
    }
}

/// A choice of a non-streaming response, built from its sequence's events.
pub trait ChoiceBuilder: Sized {
    fn empty(index: usize, logprobs: bool) -> Self;
    fn token(&mut self, backend: &dyn Backend, t: &TokenOut);
    /// The held-back text released at the end, and why the sequence ended.
    fn finish(&mut self, finish: FinishReason, tail: &str);
}

/// Waits for every choice of `gen` and returns them with the usage.
pub async fn collect<C: ChoiceBuilder>(
    backend: &dyn Backend,
    mut gen: Generation,
    logprobs: bool,
) -> Result<(Vec<C>, ApiUsage), ApiError> {
    let mut choices: Vec<C> = (0..gen.n_choices()).map(|i| C::empty(i, logprobs)).collect();
    loop {
        match gen.next().await {
            Step::Token(i, t) => {
                if let Some(c) = choices.get_mut(i) {
                    c.token(backend, &t);
                }
            }
            Step::Done { index, finish, tail } => {
                if let Some(c) = choices.get_mut(index) {
                    c.finish(finish, &tail);
                }
            }
            Step::Failed(e) => return Err(ApiError::Internal(e)),
            Step::Finished => return Ok((choices, gen.usage())),
        }
    }
}
