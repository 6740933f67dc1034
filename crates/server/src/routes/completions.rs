//! `POST /v1/completions` (legacy text completion).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::choices::{self, ChoiceBuilder, ChunkHeader, Started};
use crate::backend::{Backend, FinishReason, TokenOut};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::openai::common::ApiUsage;
use crate::openai::completions::{CompletionChoice, LegacyLogprobs};
use crate::openai::{Completion, CompletionRequest};
use crate::policy::HideMark;
use crate::sse::{self, ChunkFormat};
use crate::tenant::Tenant;
use crate::{validate, AppState};

#[utoipa::path(post, path = "/v1/completions", tag = "openai", request_body = crate::openai::CompletionRequest, responses((status = 200, description = "`text_completion`, or with `stream: true` server-sent chunks", content((crate::openai::completions::Completion = "application/json"), (crate::openai::completions::CompletionChunk = "text/event-stream"))), (status = "4XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody), (status = "5XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody)))]
pub async fn completions(
    State(st): State<AppState>,
    tenant: Option<Extension<Tenant>>,
    who: Option<Extension<crate::policy::Who>>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let policy = crate::policy::resolve(&st, who.as_deref()).await?;
    let backend = st.models.get(req.model.as_deref()).await?;
    let asked_max = req.max_tokens.is_some();
    let mut job = validate::completion(req, &st.config, backend.n_vocab())?;
    if let Some(p) = &policy {
        p.admit_prompts(&mut job.input)?;
        let default = job.params.max_tokens;
        if !asked_max {
            job.params.max_tokens = usize::MAX;
        }
        p.admit(&job.model, &mut job.params.max_tokens).await?;
        if job.params.max_tokens == usize::MAX {
            job.params.max_tokens = default;
        }
    }
    let hide_mark = policy.as_ref().is_some_and(|p| !p.show_marks());
    let Started { gen, id, created } = choices::start(&st, &backend, &job, "cmpl", super::tenant_of(&st, tenant)).await?;
    let gen = gen.under(policy);
    let logprobs = job.params.top_logprobs.is_some();
    if job.stream {
        let offsets = vec![0; gen.n_choices()];
        let header = ChunkHeader {
            backend: backend.clone(),
            id,
            object: "text_completion",
            created,
            model: job.model.clone(),
            logprobs,
            usage_field: job.include_usage,
        };
        let fmt = CompletionChunks { header, offsets };
        return Ok(HideMark::on(hide_mark, sse::stream(gen, fmt, job.include_usage, st.config.keep_alive).into_response()));
    }
    let (choices, usage) = choices::collect::<CompletionChoice>(backend.as_ref(), gen, logprobs).await?;
    Ok(HideMark::on(hide_mark, Json(Completion { id, object: "text_completion".into(), created, model: job.model, choices, usage }).into_response()))
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

impl ChoiceBuilder for CompletionChoice {
    fn empty(index: usize, logprobs: bool) -> Self {
        CompletionChoice { text: String::new(), index, logprobs: logprobs.then(LegacyLogprobs::default), finish_reason: None }
    }

    fn token(&mut self, backend: &dyn Backend, t: &TokenOut) {
        if let Some(lp) = self.logprobs.as_mut() {
            push_logprob(backend, lp, t, self.text.len());
        }
        self.text.push_str(&t.text);
    }

    fn finish(&mut self, finish: FinishReason, tail: &str) {
        self.text.push_str(tail);
        self.finish_reason = Some(finish.as_openai().to_string());
    }
}

struct CompletionChunks {
    header: ChunkHeader,
    /// Text emitted so far per choice (for `text_offset`).
    offsets: Vec<usize>,
}

impl ChunkFormat for CompletionChunks {
    fn start(&mut self, _index: usize) -> Option<String> {
        None
    }

    fn token(&mut self, index: usize, t: &TokenOut) -> Option<String> {
        let offset = self.offsets.get(index).copied().unwrap_or(0);
        let logprobs = if self.header.logprobs && t.logprob.is_some() {
            let mut lp = LegacyLogprobs::default();
            push_logprob(self.header.backend.as_ref(), &mut lp, t, offset);
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
        Some(self.header.chunk(vec![c], None))
    }

    fn finish(&mut self, index: usize, finish: FinishReason, tail: &str) -> Vec<String> {
        let c = CompletionChoice {
            text: tail.to_string(),
            index,
            logprobs: None,
            finish_reason: Some(finish.as_openai().to_string()),
        };
        vec![self.header.chunk(vec![c], None)]
    }

    fn usage(&mut self, usage: ApiUsage) -> String {
        self.header.chunk(Vec::<CompletionChoice>::new(), Some(usage))
    }
}
