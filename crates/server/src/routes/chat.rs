//! `POST /v1/chat/completions`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::backend::{Backend, FinishReason, TokenOut};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::generation::{self, logprob_entry, Generation, Step};
use crate::openai::chat::{AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChunkChoice, Delta};
use crate::openai::common::{ApiUsage, ChoiceLogprobs};
use crate::openai::ChatCompletionRequest;
use crate::sse::{self, ChunkFormat};
use crate::{validate, AppState};

pub async fn chat_completions(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let job = validate::chat(req, &st.config)?;
    let prompts = generation::tokenize(&st.engine, &job).await?;
    let gen = generation::submit(st.engine.as_ref(), st.metrics.clone(), &job, prompts)?;
    let id = generation::response_id("chatcmpl");
    let created = generation::unix_now();
    if job.stream {
        let fmt = ChatChunks {
            backend: st.engine.clone(),
            id,
            created,
            model: job.model.clone(),
            logprobs: job.params.top_logprobs.is_some(),
            usage_field: job.include_usage,
        };
        return Ok(sse::stream(gen, fmt, job.include_usage, st.config.keep_alive).into_response());
    }
    let choices = collect(st.engine.as_ref(), gen, job.params.top_logprobs.is_some()).await?;
    let (choices, usage) = choices;
    Ok(Json(ChatCompletion { id, object: "chat.completion".into(), created, model: job.model, choices, usage })
        .into_response())
}

/// Waits for every choice and assembles the non-streaming body.
async fn collect(backend: &dyn Backend, mut gen: Generation, logprobs: bool) -> Result<(Vec<ChatChoice>, ApiUsage), ApiError> {
    let mut choices: Vec<ChatChoice> = (0..gen.n_choices())
        .map(|index| ChatChoice {
            index,
            message: AssistantMessage { role: "assistant".into(), content: String::new() },
            finish_reason: String::new(),
            logprobs: logprobs.then(ChoiceLogprobs::default),
        })
        .collect();
    loop {
        match gen.next().await {
            Step::Token(i, t) => {
                let c = &mut choices[i];
                c.message.content.push_str(&t.text);
                if let (Some(lp), Some(e)) = (c.logprobs.as_mut(), logprob_entry(backend, &t)) {
                    lp.content.push(e);
                }
            }
            Step::Done { index, finish, tail } => {
                let c = &mut choices[index];
                c.message.content.push_str(&tail);
                c.finish_reason = finish.as_openai().to_string();
            }
            Step::Failed(e) => return Err(ApiError::Internal(e)),
            Step::Finished => return Ok((choices, gen.usage())),
        }
    }
}

/// Chat stream chunks (`chat.completion.chunk`).
struct ChatChunks {
    backend: Arc<dyn Backend>,
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
    /// With `include_usage`, every chunk carries `"usage": null`.
    usage_field: bool,
}

impl ChatChunks {
    fn chunk(&self, choices: Vec<ChunkChoice>, usage: Option<ApiUsage>) -> String {
        let c = ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: self.usage_field.then_some(usage),
        };
        serde_json::to_string(&c).expect("chunk serializes")
    }
}

impl ChunkFormat for ChatChunks {
    fn start(&mut self, index: usize) -> Option<String> {
        let delta = Delta { role: Some("assistant".into()), content: Some(String::new()) };
        Some(self.chunk(vec![ChunkChoice { index, delta, logprobs: None, finish_reason: None }], None))
    }

    fn token(&mut self, index: usize, t: &TokenOut) -> Option<String> {
        let logprobs = if self.logprobs {
            logprob_entry(self.backend.as_ref(), t).map(|e| ChoiceLogprobs { content: vec![e] })
        } else {
            None
        };
        // A token that completes no character and carries no log-probs has nothing to say.
        if t.text.is_empty() && logprobs.is_none() {
            return None;
        }
        let delta = Delta { role: None, content: Some(t.text.clone()) };
        Some(self.chunk(vec![ChunkChoice { index, delta, logprobs, finish_reason: None }], None))
    }

    fn finish(&mut self, index: usize, finish: FinishReason, tail: &str) -> Vec<String> {
        let mut out = Vec::with_capacity(2);
        if !tail.is_empty() {
            let delta = Delta { role: None, content: Some(tail.to_string()) };
            let empty_lp = self.logprobs.then(ChoiceLogprobs::default);
            out.push(self.chunk(vec![ChunkChoice { index, delta, logprobs: empty_lp, finish_reason: None }], None));
        }
        let c = ChunkChoice {
            index,
            delta: Delta::default(),
            logprobs: None,
            finish_reason: Some(finish.as_openai().to_string()),
        };
        out.push(self.chunk(vec![c], None));
        out
    }

    fn usage(&mut self, usage: ApiUsage) -> String {
        self.chunk(Vec::new(), Some(usage))
    }
}
