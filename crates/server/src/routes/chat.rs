//! `POST /v1/chat/completions`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::choices::{ChoiceBuilder, ChunkHeader};
use crate::backend::{Backend, FinishReason, TokenOut};
use crate::chat::{self, OutputParser, ParseEvent, ParsedMessage, ParserConfig};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::generation::{self, logprob_entry, Generation, Step};
use crate::openai::chat::{
    AssistantMessage, ChatChoice, ChatCompletion, ChunkChoice, Delta, FunctionCallOut, FunctionDelta, ToolCallDelta,
    ToolCallOut,
};
use crate::openai::common::{ApiUsage, ChoiceLogprobs};
use crate::openai::ChatCompletionRequest;
use crate::policy::HideMark;
use crate::sse::{self, ChunkFormat};
use crate::tenant::Tenant;
use crate::{validate, AppState};

#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatCompletionRequest, responses((status = 200, description = "`chat.completion`, or with `stream: true` server-sent `chat.completion.chunk` events", content((crate::openai::chat::ChatCompletion = "application/json"), (crate::openai::chat::ChatCompletionChunk = "text/event-stream"))), (status = "4XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody), (status = "5XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody)))]
pub async fn chat_completions(
    State(st): State<AppState>,
    tenant: Option<Extension<Tenant>>,
    who: Option<Extension<crate::policy::Who>>,
    ApiJson(mut req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let policy = crate::policy::resolve(&st, who.as_deref()).await?;
    if let Some(prompt) = policy.as_ref().and_then(|p| p.system_prompt()) {
        let first = serde_json::from_value(serde_json::json!({"role": "system", "content": prompt}))
            .map_err(|e| ApiError::Internal(format!("the policy's system prompt: {e}")))?;
        req.messages.insert(0, first);
    }
    let input = chat::request::chat_input(&mut req)?;
    let mut job = validate::chat(req, &st.config)?;
    if let Some(p) = &policy {
        p.admit(&job.model, &mut job.params.max_tokens).await?;
    }
    let hide_mark = policy.as_ref().is_some_and(|p| !p.show_marks());
    // Held until the sequences are submitted (the model cannot unload under them).
    let backend = st.models.get(Some(&job.model)).await?;
    let prepared = chat::prepare(&backend, input).await?;
    job.params.grammar = prepared.grammar.clone();
    let gen = generation::submit(
        backend.as_ref(),
        st.metrics.clone(),
        &st.admission,
        &job,
        vec![prepared.prompt],
        super::tenant_of(&st, tenant),
    )?
    .under(policy);
    let (id, created) = (generation::response_id("chatcmpl"), generation::unix_now());
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
        let parsers = (0..gen.n_choices()).map(|_| OutputParser::new(prepared.parser.clone())).collect();
        let chunks = ChatChunks { header, parsers };
        return Ok(HideMark::on(hide_mark, sse::stream(gen, chunks, job.include_usage, st.config.keep_alive).into_response()));
    }
    let (choices, usage) = collect(backend.as_ref(), gen, logprobs, &prepared.parser).await?;
    Ok(HideMark::on(hide_mark, Json(ChatCompletion { id, object: "chat.completion".into(), created, model: job.model, choices, usage }).into_response()))
}

/// `finish_reason`: `tool_calls` when the answer calls tools (and was not cut off).
fn finish_reason(finish: FinishReason, msg: &ParsedMessage) -> String {
    match finish {
        FinishReason::Stop if !msg.tool_calls.is_empty() => "tool_calls".into(),
        f => f.as_openai().into(),
    }
}

fn tool_calls_out(msg: &ParsedMessage) -> Vec<ToolCallOut> {
    msg.tool_calls
        .iter()
        .map(|c| ToolCallOut {
            id: c.id.clone(),
            kind: "function".into(),
            function: FunctionCallOut { name: c.name.clone(), arguments: c.arguments.clone() },
        })
        .collect()
}

/// Waits for every choice and parses each answer.
async fn collect(
    backend: &dyn Backend,
    mut gen: Generation,
    logprobs: bool,
    parser: &ParserConfig,
) -> Result<(Vec<ChatChoice>, ApiUsage), ApiError> {
    let n = gen.n_choices();
    let mut choices: Vec<ChatChoice> = (0..n).map(|i| ChatChoice::empty(i, logprobs)).collect();
    let mut parsers: Vec<OutputParser> = (0..n).map(|_| OutputParser::new(parser.clone())).collect();
    loop {
        match gen.next().await {
            Step::Token(i, t) => {
                if let (Some(c), Some(p)) = (choices.get_mut(i), parsers.get_mut(i)) {
                    p.push(&t.text);
                    if let (Some(lp), Some(e)) = (c.logprobs.as_mut(), logprob_entry(backend, &t)) {
                        lp.content.push(e);
                    }
                }
            }
            Step::Done { index, finish, tail } => {
                if let (Some(c), Some(p)) = (choices.get_mut(index), parsers.get_mut(index)) {
                    p.push(&tail);
                    p.finish();
                    let msg = p.message();
                    c.message.content = msg.content.clone();
                    c.message.reasoning_content = msg.reasoning.clone();
                    c.message.tool_calls = tool_calls_out(msg);
                    c.finish_reason = finish_reason(finish, msg);
                }
            }
            Step::Failed(e) => return Err(ApiError::Internal(e)),
            Step::Finished => return Ok((choices, gen.usage())),
        }
    }
}

impl ChoiceBuilder for ChatChoice {
    fn empty(index: usize, logprobs: bool) -> Self {
        ChatChoice {
            index,
            message: AssistantMessage {
                role: "assistant".into(),
                content: String::new(),
                reasoning_content: None,
                tool_calls: Vec::new(),
            },
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

/// Chat stream chunks (`chat.completion.chunk`), the output parsed per choice.
struct ChatChunks {
    header: ChunkHeader,
    parsers: Vec<OutputParser>,
}

/// A parser event as a stream delta.
fn delta_of(e: ParseEvent) -> Delta {
    match e {
        ParseEvent::Content(s) => Delta { content: Some(s), ..Delta::default() },
        ParseEvent::Reasoning(s) => Delta { reasoning_content: Some(s), ..Delta::default() },
        ParseEvent::ToolCallBegin { index, id, name } => Delta {
            tool_calls: Some(vec![ToolCallDelta {
                index,
                id: Some(id),
                kind: Some("function".into()),
                function: FunctionDelta { name: Some(name), arguments: Some(String::new()) },
            }]),
            ..Delta::default()
        },
        ParseEvent::ToolCallArguments { index, fragment } => Delta {
            tool_calls: Some(vec![ToolCallDelta {
                index,
                function: FunctionDelta { name: None, arguments: Some(fragment) },
                ..ToolCallDelta::default()
            }]),
            ..Delta::default()
        },
    }
}

impl ChatChunks {
    fn event_chunks(&self, index: usize, events: Vec<ParseEvent>, mut logprobs: Option<ChoiceLogprobs>) -> Vec<String> {
        let mut out = Vec::with_capacity(events.len().max(1));
        for e in events {
            let c = ChunkChoice { index, delta: delta_of(e), logprobs: logprobs.take(), finish_reason: None };
            out.push(self.header.chunk(vec![c], None));
        }
        // Log-probs of a token whose text is held back still go out (with an empty delta).
        if let Some(lp) = logprobs {
            let c = ChunkChoice { index, delta: Delta { content: Some(String::new()), ..Delta::default() }, logprobs: Some(lp), finish_reason: None };
            out.push(self.header.chunk(vec![c], None));
        }
        out
    }
}

impl ChunkFormat for ChatChunks {
    fn start(&mut self, index: usize) -> Option<String> {
        let delta = Delta { role: Some("assistant".into()), content: Some(String::new()), ..Delta::default() };
        Some(self.header.chunk(vec![ChunkChoice { index, delta, logprobs: None, finish_reason: None }], None))
    }

    fn token(&mut self, index: usize, t: &TokenOut) -> Option<String> {
        self.token_chunks(index, t).into_iter().next()
    }

    fn token_chunks(&mut self, index: usize, t: &TokenOut) -> Vec<String> {
        let logprobs = if self.header.logprobs {
            logprob_entry(self.header.backend.as_ref(), t).map(|e| ChoiceLogprobs { content: vec![e] })
        } else {
            None
        };
        let events = match self.parsers.get_mut(index) {
            Some(p) => p.push(&t.text),
            None => Vec::new(),
        };
        self.event_chunks(index, events, logprobs)
    }

    fn finish(&mut self, index: usize, finish: FinishReason, tail: &str) -> Vec<String> {
        let (events, reason) = match self.parsers.get_mut(index) {
            Some(p) => {
                let mut ev = p.push(tail);
                ev.extend(p.finish());
                (ev, finish_reason(finish, p.message()))
            }
            None => (Vec::new(), finish.as_openai().to_string()),
        };
        // Text released at the end carries empty log-probs (it has no tokens of its own).
        let empty_lp = self.header.logprobs.then(ChoiceLogprobs::default);
        let mut out: Vec<String> = events
            .into_iter()
            .map(|e| {
                let c = ChunkChoice { index, delta: delta_of(e), logprobs: empty_lp.clone(), finish_reason: None };
                self.header.chunk(vec![c], None)
            })
            .collect();
        let c = ChunkChoice { index, delta: Delta::default(), logprobs: None, finish_reason: Some(reason) };
        out.push(self.header.chunk(vec![c], None));
        out
    }

    fn usage(&mut self, usage: ApiUsage) -> String {
        self.header.chunk(Vec::<ChunkChoice>::new(), Some(usage))
    }
}
