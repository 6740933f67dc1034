//! What the chat-shaped APIs other than chat completions (OpenAI Responses, Anthropic Messages)
//! share: one answer to a [`ChatInput`] through the chat core and the generation machinery
//! (admission, prompt limits, the tenant's prefix-cache salt), read whole ([`collect`]) or as
//! server-sent events with *named* events ([`stream`]: `event: <name>` then `data: <json>`, no
//! `[DONE]`), which is how both APIs stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;

use crate::backend::{Backend, FinishReason, GenSpec};
use crate::chat::{self, ChatInput, OutputParser, ParseEvent, ParsedMessage, Prepared};
use crate::error::ApiError;
use crate::generation::{self, Generation, Step};
use crate::openai::common::ApiUsage;
use crate::tenant::Tenant;
use crate::validate::{Job, JobInput};
use crate::AppState;

/// A started answer: the running generation (one choice) and what the chat core prepared.
pub struct Started {
    pub gen: Generation,
    pub prepared: Prepared,
    /// The policy hides provenance marks: the response must not carry the mark header.
    pub hide_mark: bool,
}

/// Prepares `input` (template, grammar, parser) and submits one sequence with `params`, under
/// the use-case policy of `who` (its system prompt first, its model and token limits checked).
pub async fn start(
    st: &AppState,
    backend: &Arc<dyn Backend>,
    (tenant, who): (Tenant, Option<&crate::policy::Who>),
    model: String,
    mut input: ChatInput,
    mut params: GenSpec,
) -> Result<Started, ApiError> {
    let policy = crate::policy::resolve(st, who).await?;
    if let Some(p) = &policy {
        if let Some(system) = p.system_prompt() {
            input.turns.insert(0, crate::chat::Turn::text(crate::chat::Role::System, system));
        }
        p.admit(&model, &mut params.max_tokens).await?;
    }
    let hide_mark = policy.as_ref().is_some_and(|p| !p.show_marks());
    let prepared = chat::prepare(backend, input).await?;
    params.grammar = prepared.grammar.clone();
    let job = Job { model, input: JobInput::Chat(Vec::new()), params, n: 1, stream: false, include_usage: false };
    let gen = generation::submit(backend.as_ref(), st.metrics.clone(), &st.admission, &job, vec![prepared.prompt.clone()], tenant)?.under(policy);
    Ok(Started { gen, prepared, hide_mark })
}

/// A whole answer.
pub struct Answer {
    pub message: ParsedMessage,
    pub finish: FinishReason,
    pub usage: ApiUsage,
    /// The stop sequence that ended the answer, if one did.
    pub stop_sequence: Option<String>,
}

/// Waits for the answer and parses it.
pub async fn collect(started: Started) -> Result<Answer, ApiError> {
    let Started { mut gen, prepared, .. } = started;
    let mut parser = OutputParser::new(prepared.parser);
    let mut finish = FinishReason::Stop;
    loop {
        match gen.next().await {
            Step::Token(_, t) => {
                parser.push(&t.text);
            }
            Step::Done { finish: f, tail, .. } => {
                parser.push(&tail);
                parser.finish();
                finish = f;
            }
            Step::Failed(e) => return Err(ApiError::Internal(e)),
            Step::Finished => {
                let stop_sequence = gen.stop_sequence(0).map(str::to_string);
                return Ok(Answer { message: parser.into_message(), finish, usage: gen.usage(), stop_sequence });
            }
        }
    }
}

/// One server-sent event: its name and its JSON data.
pub type Named = (&'static str, serde_json::Value);

/// How an API renders an answer as named events.
pub trait EventFormat: Send + 'static {
    /// The events before any output (`response.created`, `message_start`).
    fn start(&mut self) -> Vec<Named>;
    /// Parsed output as it arrives.
    fn events(&mut self, events: Vec<ParseEvent>) -> Vec<Named>;
    /// The closing events, once the answer is complete.
    fn finish(&mut self, answer: &Answer) -> Vec<Named>;
    /// The event that reports a failure mid-stream (ends the stream).
    fn error(&mut self, message: &str) -> Named;
}

struct Driver<F> {
    gen: Generation,
    parser: OutputParser,
    fmt: F,
    queue: VecDeque<Named>,
    finish: FinishReason,
    ended: bool,
}

impl<F: EventFormat> Driver<F> {
    async fn next_event(&mut self) -> Option<Named> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            match self.gen.next().await {
                Step::Token(_, t) => {
                    let ev = self.parser.push(&t.text);
                    if !ev.is_empty() {
                        self.queue.extend(self.fmt.events(ev));
                    }
                }
                Step::Done { finish, tail, .. } => {
                    let mut ev = self.parser.push(&tail);
                    ev.extend(self.parser.finish());
                    self.queue.extend(self.fmt.events(ev));
                    self.finish = finish;
                }
                Step::Failed(e) => {
                    tracing::error!(error = ?e, "stream failed");
                    self.ended = true;
                    return Some(self.fmt.error("internal error"));
                }
                Step::Finished => {
                    let stop_sequence = self.gen.stop_sequence(0).map(str::to_string);
                    let answer = Answer { message: self.parser.message().clone(), finish: self.finish, usage: self.gen.usage(), stop_sequence };
                    self.queue.extend(self.fmt.finish(&answer));
                    self.ended = true;
                }
            }
        }
    }
}

/// The SSE response of a started answer in `fmt`'s events.
pub fn stream<F: EventFormat>(
    started: Started,
    mut fmt: F,
    keep_alive: Duration,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let queue = fmt.start().into();
    let parser = OutputParser::new(started.prepared.parser);
    let driver = Driver { gen: started.gen, parser, fmt, queue, finish: FinishReason::Stop, ended: false };
    let s = futures_util::stream::unfold(driver, |mut d| async move {
        let (name, data) = d.next_event().await?;
        Some((Ok(SseEvent::default().event(name).data(super::to_json(&data))), d))
    });
    Sse::new(s).keep_alive(KeepAlive::new().interval(keep_alive))
}

/// The prompt's length in tokens for `input`, rendered as [`chat::prepare`] renders it (the
/// model's template, with tools when it takes them, else the generic tool format), without
/// compiling a grammar or generating: what `count_tokens` answers.
pub async fn count_prompt(backend: &Arc<dyn Backend>, input: ChatInput) -> Result<usize, ApiError> {
    use crate::backend::{ChatMessage, PromptError};
    use chat::render;
    let bytes_in = JobInput::Chat(input.turns.iter().map(|t| ChatMessage { role: String::new(), content: t.content.clone() }).collect());
    crate::prompt_limits::check_bytes(backend.as_ref(), &bytes_in)?;
    let _permit = crate::prompt_limits::tokenize_permit().await?;
    let b = backend.clone();
    let n_ctx = backend.n_ctx();
    tokio::task::spawn_blocking(move || {
        let traits = chat::ModelTraits::from_template(b.chat_template_source().as_deref());
        let too_long = |e: PromptError| match e {
            PromptError::TooLong { at_least, .. } => ApiError::ContextLengthExceededAtLeast { at_least, n_ctx },
            PromptError::Invalid(m) => ApiError::param("messages", m),
        };
        let max = n_ctx.saturating_sub(1);
        let prompt = if !render::uses_tools(&input) && input.turns.iter().all(|t| t.reasoning.is_none()) {
            let msgs: Vec<ChatMessage> =
                input.turns.iter().map(|t| ChatMessage { role: t.role.as_str().to_string(), content: t.content.clone() }).collect();
            b.chat_prompt(&msgs, max).map_err(too_long)?
        } else if traits.template_tools {
            let tools = render::template_tools(&input);
            b.chat_prompt_json(&render::template_messages(&input.turns), tools.as_ref(), max).map_err(too_long)?
        } else {
            b.chat_prompt(&render::generic_messages(&input), max).map_err(too_long)?
        };
        Ok(prompt.len())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("count tokens task: {e}")))?
}
