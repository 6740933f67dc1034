//! `POST /v1/chat/completions`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::choices::{self, ChoiceBuilder, ChunkHeader, Started};
use crate::backend::{Backend, FinishReason, TokenOut};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::generation::logprob_entry;
use crate::openai::chat::{AssistantMessage, ChatChoice, ChatCompletion, ChunkChoice, Delta};
use crate::openai::common::{ApiUsage, ChoiceLogprobs};
use crate::openai::ChatCompletionRequest;
use crate::sse::{self, ChunkFormat};
use crate::tenant::Tenant;
use crate::{validate, AppState};

#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatCompletionRequest, responses((status = 200, description = "`chat.completion`, or with `stream: true` server-sent `chat.completion.chunk` events", content((crate::openai::chat::ChatCompletion = "application/json"), (crate::openai::chat::ChatCompletionChunk = "text/event-stream"))), (status = "4XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody), (status = "5XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody)))]
pub async fn chat_completions(
    State(st): State<AppState>,
    tenant: Option<Extension<Tenant>>,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let job = validate::chat(req, &st.config)?;
    let backend = st.models.get(Some(&job.model)).await?;
    let Started { gen, id, created } = choices::start(&st, &backend, &job, "chatcmpl", super::tenant_of(&st, tenant)).await?;
    let logprobs = job.params.top_logprobs.is_some();
    if job.stream {
        let header = ChunkHeader {
            backend: backend.clone(),
            id,
            object: "chat.completion.chunk",
            created,
            model: job.model.clone(),
            logprobs,
            usage_field: job.include_usage,
        };
        return Ok(sse::stream(gen, ChatChunks(header), job.include_usage, st.config.keep_alive).into_response());
    }
    let (choices, usage) = choices::collect::<ChatChoice>(backend.as_ref(), gen, logprobs).await?;
    Ok(Json(ChatCompletion { id, object: "chat.completion".into(), created, model: job.model, choices, usage })
        .into_response())
}

impl ChoiceBuilder for ChatChoice {
    fn empty(index: usize, logprobs: bool) -> Self {
        ChatChoice {
            index,
            message: AssistantMessage { role: "assistant".into(), content: String::new() },
            finish_reason: String::new(),
            logprobs: logprobs.then(ChoiceLogprobs::default),
        }
    }

    fn token(&mut self, backend: &dyn Backend, t: &TokenOut) {
        self.message.content.push_str(&t.text);
        if let (Some(lp), Some(e)) = (self.logprobs.as_mut(), logprob_entry(backend, t)) {
            lp.content.push(e);
        }
    }

    fn finish(&mut self, finish: FinishReason, tail: &str) {
        self.message.content.push_str(tail);
        self.finish_reason = finish.as_openai().to_string();
    }
}

/// Chat stream chunks (`chat.completion.chunk`).
struct ChatChunks(ChunkHeader);

impl ChunkFormat for ChatChunks {
    fn start(&mut self, index: usize) -> Option<String> {
        let delta = Delta { role: Some("assistant".into()), content: Some(String::new()) };
        Some(self.0.chunk(vec![ChunkChoice { index, delta, logprobs: None, finish_reason: None }], None))
    }

    fn token(&mut self, index: usize, t: &TokenOut) -> Option<String> {
        let logprobs = if self.0.logprobs {
            logprob_entry(self.0.backend.as_ref(), t).map(|e| ChoiceLogprobs { content: vec![e] })
        } else {
            None
        };
        // A token that completes no character and carries no log-probs has nothing to say.
        if t.text.is_empty() && logprobs.is_none() {
            return None;
        }
        let delta = Delta { role: None, content: Some(t.text.clone()) };
        Some(self.0.chunk(vec![ChunkChoice { index, delta, logprobs, finish_reason: None }], None))
    }

    fn finish(&mut self, index: usize, finish: FinishReason, tail: &str) -> Vec<String> {
        let mut out = Vec::with_capacity(2);
        if !tail.is_empty() {
            let delta = Delta { role: None, content: Some(tail.to_string()) };
            let empty_lp = self.0.logprobs.then(ChoiceLogprobs::default);
            out.push(self.0.chunk(vec![ChunkChoice { index, delta, logprobs: empty_lp, finish_reason: None }], None));
        }
        let c = ChunkChoice {
            index,
            delta: Delta::default(),
            logprobs: None,
            finish_reason: Some(finish.as_openai().to_string()),
        };
        out.push(self.0.chunk(vec![c], None));
        out
    }

    fn usage(&mut self, usage: ApiUsage) -> String {
        self.0.chunk(Vec::<ChunkChoice>::new(), Some(usage))
    }
}
