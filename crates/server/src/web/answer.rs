//! The answer stream: `POST /api/conversations/{id}/messages {parent_id, content}` (a new
//! question, or an edited one when `parent_id` is an older message) and
//! `POST /api/conversations/{id}/regenerate {message_id}` (a new sibling of an answer).
//!
//! ```text
//!  request ─> prompt = system prompt + branch root..parent (+ new question) ─> tokenize
//!        │      (400 context_length_exceeded before anything is stored)
//!        ├─> Backend::submit ─> store: question row, answer row (streaming)
//!        └─> spawned task ──────────────┬─> SSE: user, assistant, delta.., done | error
//!               tokens ─> text ─────────┴─> store: append every 250 ms; finish
//! ```
//!
//! The generation runs in a task of its own, not in the response body: the body only forwards
//! what the task sends. The task saves the text as it grows and closes the row `complete` at
//! the end, or `incomplete` (with the text so far) when the client goes away, the engine fails
//! or the server stops. A client leaving is seen as the SSE channel closing; the task then drops
//! the engine's channel, which cancels the sequence.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store::{Conversation, ConversationId, Message, MessageFinish, MessageId, MessageStatus, NewMessage, Role, UserId};
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::time::Instant;

use super::error::WebError;
use super::input::{self, Settings};
use super::json::MessageJson;
use super::session::CurrentUser;
use super::{title, WebState};
use crate::backend::{ChatMessage, FinishReason, GenSpec, SamplingSpec};
use crate::extract::ApiJson;
use crate::generation::{self, Generation, Step};
use crate::openai::common::ApiUsage;
use crate::tenant::{Identity, Tenant};
use crate::validate::{Job, JobInput};
use tracing::Instrument as _;

/// How often streamed text is written to the store.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// The temperature of a conversation without one (what the UI shows as the default).
pub const DEFAULT_TEMPERATURE: f32 = 0.7;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PostMessage {
    #[serde(default)]
    parent_id: Option<String>,
    content: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Regenerate {
    message_id: String,
}

/// The chat turns the model sees: the system prompt, the branch from the root to the parent
/// (empty or failed answers skipped), then the new question if there is one.
pub fn prompt_messages(system_prompt: Option<&str>, branch: &[&Message], question: Option<&str>) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(branch.len() + 2);
    if let Some(s) = system_prompt.filter(|s| !s.trim().is_empty()) {
        out.push(ChatMessage { role: "system".into(), content: s.to_string() });
    }
    for m in branch {
        if m.role == Role::Tool || (m.role == Role::Assistant && m.content.trim().is_empty()) {
            continue;
        }
        out.push(ChatMessage { role: m.role.as_str().into(), content: m.content.clone() });
    }
    if let Some(q) = question {
        out.push(ChatMessage { role: "user".into(), content: q.to_string() });
    }
    out
}

async fn load(st: &WebState, user: UserId, id: &str) -> Result<(Conversation, Vec<Message>), WebError> {
    let id = ConversationId(input::id(id, "conversation")?);
    let conv = st.store.conversation(user, id).await.map_err(WebError::store("conversation"))?;
    let messages = st.store.messages(user, id).await.map_err(WebError::store("conversation"))?;
    Ok((conv, messages))
}

/// `POST /api/conversations/{id}/messages`.
#[utoipa::path(post, path = "/api/conversations/{id}/messages", tag = "web", params(("id" = String, Path)), request_body = PostMessage, responses((status = 200, description = "server-sent events: the stored user message, answer deltas, the stored answer", body = String, content_type = "text/event-stream"), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn post_message(
    State(st): State<WebState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PostMessage>,
) -> Result<Response, WebError> {
    let content = input::message_text(req.content)?;
    let (conv, messages) = load(&st, user.id, &id).await?;
    let parent = match req.parent_id.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => {
            let found = p.parse::<i64>().ok().and_then(|p| messages.iter().find(|m| m.id == MessageId(p)));
            Some(found.ok_or_else(|| WebError::param("parent_id", "not a message of this conversation"))?.id)
        }
    };
    let branch = parent.map(|p| store::tree::path_to(&messages, p)).unwrap_or_default();
    let chat = prompt_messages(conv.system_prompt.as_deref(), &branch, Some(&content));
    start(&st, user.id, &conv, chat, Turn::Question { parent, content }).await
}

/// `POST /api/conversations/{id}/regenerate`: a new answer beside `message_id` (an answer; a
/// question's id answers that question again).
#[utoipa::path(post, path = "/api/conversations/{id}/regenerate", tag = "web", params(("id" = String, Path)), request_body = Regenerate, responses((status = 200, description = "server-sent events of a new answer beside `message_id`", body = String, content_type = "text/event-stream"), (status = "4XX", description = "An error: {\"error\": {\"message\", \"param\"?}}", body = Object)))]
pub async fn regenerate(
    State(st): State<WebState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<Regenerate>,
) -> Result<Response, WebError> {
    let (conv, messages) = load(&st, user.id, &id).await?;
    let target = req
        .message_id
        .trim()
        .parse::<i64>()
        .ok()
        .and_then(|m| messages.iter().find(|x| x.id == MessageId(m)))
        .ok_or_else(|| WebError::param("message_id", "not a message of this conversation"))?;
    let question = match target.role {
        Role::Assistant => target
            .parent_id
            .and_then(|p| messages.iter().find(|m| m.id == p))
            .ok_or_else(|| WebError::param("message_id", "this answer has no question to answer again"))?,
        Role::User => target,
        _ => return Err(WebError::param("message_id", "only an answer (or a question) can be regenerated")),
    };
    let branch = store::tree::path_to(&messages, question.id);
    let chat = prompt_messages(conv.system_prompt.as_deref(), &branch, None);
    let title_source = (question.role == Role::User).then(|| question.content.clone());
    start(&st, user.id, &conv, chat, Turn::Again { question: question.id, title_source }).await
}

/// What is being answered.
enum Turn {
    /// A new question under `parent` (none: a new root, i.e. an edited first question).
    Question { parent: Option<MessageId>, content: String },
    /// Another answer to the stored message `question`.
    Again { question: MessageId, title_source: Option<String> },
}

async fn start(st: &WebState, user: UserId, conv: &Conversation, mut chat: Vec<ChatMessage>, turn: Turn) -> Result<Response, WebError> {
    let policy = crate::policy::resolve_in(Some(&st.store), Some(&crate::policy::Who::user(user, None))).await?;
    if let Some(prompt) = policy.as_ref().and_then(|p| p.system_prompt()) {
        chat.insert(0, ChatMessage { role: "system".into(), content: prompt.to_string() });
    }
    // The answer carries the watermark when the server has a key; a policy may hide that.
    let marked = st.config.watermark.is_some();
    let show_marks = policy.as_ref().is_none_or(|p| p.show_marks());
    let settings = Settings::parse(&conv.settings).unwrap_or_default();
    // The conversation's model; one the server no longer serves answers with the default.
    let model = match st.config.resolve_model(conv.model.as_deref()) {
        Ok(m) => m,
        Err(_) => {
            tracing::info!(conversation = %conv.id, model = ?conv.model, "the conversation's model is not served: answering with the default");
            st.config.model_id.clone()
        }
    };
    let backend = st.models.get(Some(&model)).await?;
    let mut job = Job {
        model,
        input: JobInput::Chat(chat),
        params: GenSpec {
            sampling: SamplingSpec {
                temperature: Some(settings.temperature.map_or(DEFAULT_TEMPERATURE, |t| t as f32)),
                top_p: settings.top_p.map(|p| p as f32),
                ..SamplingSpec::default()
            },
            max_tokens: settings.max_tokens.unwrap_or(usize::MAX),
            stop: Vec::new(),
            top_logprobs: None,
            ignore_eos: false,
            grammar: None,
            logit_bias: Vec::new(),
        },
        n: 1,
        stream: true,
        include_usage: true,
    };
    if let Some(p) = &policy {
        p.admit(&job.model, &mut job.params.max_tokens).await?;
    }
    let prompts = generation::tokenize(&backend, &job).await.map_err(|e| match e {
        crate::ApiError::InvalidParam { message, .. } => WebError::param("content", message),
        other => other.into(),
    })?;
    // Submitted before anything is stored: a full queue (429) leaves no trace. Events wait in
    // the channel until the task reads them.
    let tenant = Tenant::of(&st.config, Identity::User(user.0));
    let gen = generation::submit(backend.as_ref(), st.metrics.clone(), &st.admission, &job, prompts, tenant)?.under(policy);
    drop(backend);
    let (question, answer_parent, title_source) = match turn {
        Turn::Question { parent, content } => {
            let q = st.store.add_message(user, &NewMessage::complete(conv.id, parent, Role::User, content.clone())).instrument(tracing::info_span!("store_write", op = "add_message")).await?;
            let id = q.id;
            (Some(q), id, Some(content))
        }
        Turn::Again { question, title_source } => (None, question, title_source),
    };
    let answer = st.store.add_message(user, &NewMessage::streaming_answer(conv.id, answer_parent, &job.model)).instrument(tracing::info_span!("store_write", op = "add_message")).await?;

    let (tx, rx) = mpsc::unbounded_channel::<SseEvent>();
    if let Some(q) = &question {
        let _ = tx.send(event("user", &json!({ "message": MessageJson::from(q) })));
    }
    let _ = tx.send(event("assistant", &json!({ "message": MessageJson::from(&answer) })));
    let task = AnswerTask {
        st: st.clone(),
        user,
        conversation: conv.id,
        answer: answer.id,
        title_source: title_source.filter(|_| conv.title.trim().is_empty()),
        model: job.model.clone(),
        marked,
        show_marks,
        tx,
    };
    tokio::spawn(task.run(gen));

    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    let mut resp = Sse::new(stream).keep_alive(KeepAlive::new().interval(st.config.keep_alive)).into_response();
    // Proxies (nginx) must not buffer the stream.
    resp.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

fn event(name: &str, data: &impl Serialize) -> SseEvent {
    let text = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    SseEvent::default().event(name).data(text)
}

/// How a stream ended.
enum End {
    Finished(FinishReason),
    ClientGone,
    Failed(String),
}

struct AnswerTask {
    st: WebState,
    user: UserId,
    conversation: ConversationId,
    answer: MessageId,
    /// The question to title the conversation from, when it has no title yet.
    title_source: Option<String>,
    /// The model answering (it titles the conversation too).
    model: String,
    /// The answer is generated with the watermark on.
    marked: bool,
    /// The user's policy lets the UI say so.
    show_marks: bool,
    tx: UnboundedSender<SseEvent>,
}

impl AnswerTask {
    async fn run(self, mut gen: Generation) {
        let mut text = String::new();
        let mut saved = 0usize;
        let mut last_flush = Instant::now();
        let mut finish = FinishReason::Stop;
        let end = loop {
            let due = text.len() > saved;
            tokio::select! {
                biased;
                step = gen.next() => match step {
                    Step::Token(_, t) => {
                        if !t.text.is_empty() && !self.delta(&mut text, &t.text) {
                            break End::ClientGone;
                        }
                    }
                    Step::Done { finish: f, tail, .. } => {
                        finish = f;
                        if !tail.is_empty() && !self.delta(&mut text, &tail) {
                            break End::ClientGone;
                        }
                    }
                    Step::Failed(e) => break End::Failed(e),
                    Step::Finished => break End::Finished(finish),
                },
                () = self.tx.closed() => break End::ClientGone,
                () = tokio::time::sleep_until(last_flush + FLUSH_EVERY), if due => {}
            }
            if text.len() > saved && last_flush.elapsed() >= FLUSH_EVERY {
                // A failed write is retried with the next flush, so the stored text never has
                // a gap: it is always a prefix of the answer.
                if self.flush(&text[saved..]).await {
                    saved = text.len();
                }
                last_flush = Instant::now();
            }
        };
        let usage = gen.usage();
        // Dropping the generation drops the engine's channel: a sequence still running is
        // cancelled at the engine's next step.
        drop(gen);
        self.finish(end, text, usage).await;
    }

    /// Sends a piece of text; false once the client is gone.
    fn delta(&self, text: &mut String, piece: &str) -> bool {
        text.push_str(piece);
        self.tx.send(event("delta", &json!({ "content": piece }))).is_ok()
    }

    async fn flush(&self, piece: &str) -> bool {
        match self.st.store.append_to_message(self.user, self.answer, piece).instrument(tracing::info_span!("store_write", op = "append_to_message")).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = ?e.to_string(), message = %self.answer, "could not save the streamed text (retrying)");
                false
            }
        }
    }

    async fn finish(self, end: End, text: String, usage: ApiUsage) {
        let (status, error) = match &end {
            End::Finished(FinishReason::Cancelled) => (MessageStatus::Incomplete, Some("the server stopped before the answer was complete")),
            End::Finished(_) => (MessageStatus::Complete, None),
            End::ClientGone => (MessageStatus::Incomplete, None),
            End::Failed(e) => {
                tracing::error!(error = ?e.to_string(), message = %self.answer, "generation failed");
                (MessageStatus::Incomplete, Some("the model failed while answering; the text so far is saved"))
            }
        };
        // Usage is known only when the engine reported the end of the sequence.
        let known = usage.prompt_tokens > 0;
        let count = |n: usize| known.then(|| i64::try_from(n).unwrap_or(i64::MAX));
        let fin = MessageFinish {
            status,
            content: Some(text.clone()),
            prompt_tokens: count(usage.prompt_tokens),
            completion_tokens: count(usage.completion_tokens),
            energy: usage.energy.filter(|_| known).map(|e| (i64::try_from(e.microjoules).unwrap_or(i64::MAX), e.method.as_str().to_string())),
        };
        let mut saved = self.st.store.finish_message(self.user, self.answer, &fin).instrument(tracing::info_span!("store_write", op = "finish_message")).await;
        // Every stored answer keeps its keyed fingerprint, whole or not: written before `done`
        // so an admin can match the answer as soon as the user has it.
        if let (Ok(m), Some(key)) = (&mut saved, &self.st.answer_key) {
            let recorded = crate::provenance::answers::record(&self.st.store, key, self.user, self.answer, text.clone(), self.marked)
                .instrument(tracing::info_span!("store_write", op = "set_answer_fingerprint"))
                .await;
            m.marked = recorded && self.marked;
        }
        if matches!(end, End::ClientGone) {
            tracing::info!(message = %self.answer, chars = text.chars().count(), "client left: answer saved incomplete");
            return;
        }
        let message = match saved {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = ?e.to_string(), message = %self.answer, "could not finish the answer");
                let body = WebError::internal(e).body();
                let _ = self.tx.send(event("error", &body));
                return;
            }
        };
        if let Some(msg) = error {
            let body = json!({"error": {"message": msg, "type": "server_error", "param": null, "code": "generation_failed"}});
            let _ = self.tx.send(event("error", &body));
            return;
        }
        let finish_reason = match end {
            End::Finished(f) => f.as_openai(),
            _ => "stop",
        };
        let mut shown = MessageJson::from(&message);
        shown.marked &= self.show_marks;
        let _ = self.tx.send(event("done", &json!({ "message": shown, "usage": usage, "finish_reason": finish_reason })));
        if let Some(question) = self.title_source {
            title::spawn(self.st.clone(), self.user, self.conversation, self.model, question, text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::MessageStatus;

    fn m(id: i64, role: Role, content: &str) -> Message {
        Message {
            id: MessageId(id),
            conversation_id: ConversationId(1),
            parent_id: None,
            role,
            content: content.into(),
            model: None,
            prompt_tokens: None,
            completion_tokens: None,
            energy_uj: None,
            energy_method: None,
            marked: false,
            status: MessageStatus::Complete,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn prompt_is_system_then_branch_then_question() {
        let a = m(1, Role::User, "hi");
        let b = m(2, Role::Assistant, "hello");
        let empty = m(3, Role::Assistant, "  ");
        let p = prompt_messages(Some("Be brief."), &[&a, &b, &empty], Some("again"));
        let roles: Vec<(&str, &str)> = p.iter().map(|c| (c.role.as_str(), c.content.as_str())).collect();
        assert_eq!(roles, vec![("system", "Be brief."), ("user", "hi"), ("assistant", "hello"), ("user", "again")]);
        assert_eq!(prompt_messages(Some(" "), &[], Some("q")).len(), 1);
    }
}
