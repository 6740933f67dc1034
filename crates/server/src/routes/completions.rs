//! `POST /v1/completions` (legacy text completion).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::backend::{Backend, FinishReason, TokenOut};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::generation::{self, Generation, Step};
use crate::openai::common::ApiUsage;
use crate::openai::completions::{CompletionChoice, LegacyLogprobs};
use crate::openai::{Completion, CompletionChunk, CompletionRequest};
use crate::sse::{self, ChunkFormat};
use crate::{validate, AppState};

pub async fn completions(
    State(st): State<AppState>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let job = validate::completion(req, &st.config, st.engine.n_vocab())?;
    let prompts = generation::tokenize(&st.engine, &job).await?;
    let gen = generation::submit(st.engine.as_ref(), st.metrics.clone(), &job, prompts)?;
    let id = generation::response_id("cmpl");
    let created = generation::unix_now();
    let logprobs = job.params.top_logprobs.is_some();
    if job.stream {
        let fmt = CompletionChunks {
            backend: st.engine.clone(),
            id,
            created,
            model: job.model.clone(),
            logprobs,
            usage_field: job.include_usage,
            offsets: vec![0; gen.n_choices()],
        };
        return Ok(sse::stream(gen, fmt, job.include_usage, st.config.keep_alive).into_response());
    }
    let (choices, usage) = collect(st.engine.as_ref(), gen, logprobs).await?;
    Ok(Json(Completion { id, object: "text_completion".into(), created, model: job.model, choices, usage }).into_response())
}

/// Appends token `t` (at text offset `offset`) to the column-wise log-probs.
fn push_logprob(backend: &dyn Backend, lp: &mut LegacyLogprobs, t: &TokenOut, offset: usize) {
    let Some(logprob) = t.logprob else { return };
    lp.tokens.push(String::from_utf8_lossy(&backend.token_bytes(t.id)).into_owned());
    lp.token_logprobs.push(logprob);
    lp.top_logprobs.push(
        t.top
            .iter()
            .map(|a| (String::from_utf8_lossy(&backend.token_bytes(a.id)).into_owned(), a.logprob))
            .collect::<BTreeMap<_, _>>(),
    );
    lp.text_offset.push(offset);
}

async fn collect(backend: &dyn Backend, mut gen: Generation, logprobs: bool) -> Result<(Vec<CompletionChoice>, ApiUsage), ApiError> {
    let mut choices: Vec<CompletionChoice> = (0..gen.n_choices())
        .map(|index| CompletionChoice {
            text: String::new(),
            index,
            logprobs: logprobs.then(LegacyLogprobs::default),
            finish_reason: None,
        })
        .collect();
    loop {
        match gen.next().await {
            Step::Token(i, t) => {
                let c = &mut choices[i];
                if let Some(lp) = c.logprobs.as_mut() {
                    push_logprob(backend, lp, &t, c.text.len());
                }
                c.text.push_str(&t.text);
            }
            Step::Done { index, finish, tail } => {
                let c = &mut choices[index];
                c.text.push_str(&tail);
                c.finish_reason = Some(finish.as_openai().to_string());
            }
            Step::Failed(e) => return Err(ApiError::Internal(e)),
            Step::Finished => return Ok((choices, gen.usage())),
        }
    }
}

struct CompletionChunks {
    backend: Arc<dyn Backend>,
    id: String,
    created: u64,
    model: String,
    logprobs: bool,
    usage_field: bool,
    /// Text emitted so far per choice (for `text_offset`).
    offsets: Vec<usize>,
}

impl CompletionChunks {
    fn chunk(&self, choices: Vec<CompletionChoice>, usage: Option<ApiUsage>) -> String {
        let c = CompletionChunk {
            id: self.id.clone(),
            object: "text_completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: self.usage_field.then_some(usage),
        };
        serde_json::to_string(&c).expect("chunk serializes")
    }
}

impl ChunkFormat for CompletionChunks {
    fn start(&mut self, _index: usize) -> Option<String> {
        None
    }

    fn token(&mut self, index: usize, t: &TokenOut) -> Option<String> {
        let offset = self.offsets.get(index).copied().unwrap_or(0);
        let logprobs = if self.logprobs && t.logprob.is_some() {
            let mut lp = LegacyLogprobs::default();
            push_logprob(self.backend.as_ref(), &mut lp, t, offset);
            Some(lp)
        } else {
            None
        };
        if t.text.is_empty() && logprobs.is_none() {
            return None;
        }
        if let Some(o) = self.offsets.get_mut(index) {
            *o += t.text.len();
        }
        let c = CompletionChoice { text: t.text.clone(), index, logprobs, finish_reason: None };
        Some(self.chunk(vec![c], None))
    }

    fn finish(&mut self, index: usize, finish: FinishReason, tail: &str) -> Vec<String> {
        let c = CompletionChoice {
            text: tail.to_string(),
            index,
            logprobs: None,
            finish_reason: Some(finish.as_openai().to_string()),
        };
        vec![self.chunk(vec![c], None)]
    }

    fn usage(&mut self, usage: ApiUsage) -> String {
        self.chunk(Vec::new(), Some(usage))
    }
}
