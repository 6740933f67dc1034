//! `POST /v1/responses`, `GET /v1/responses/{id}` and `DELETE /v1/responses/{id}` (OpenAI
//! Responses; the types and conversions are in [`crate::responses`]).

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use serde_json::{json, Value};
use store::{ResponseOwner, StoredResponse};

use crate::backend::FinishReason;
use crate::chat::{ChatInput, OutputParser, Role, Turn};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::generation::{self, Generation, Step};
use crate::responses::input::{self, Conversation, Request};
use crate::responses::output::{item_id, OutputBuilder};
use crate::responses::saved::Saved;
use crate::responses::wire::{
    CreateResponse, DeletedResponse, IncompleteDetails, InputTokensDetails, OutputItem, OutputTokensDetails, ResponseObject,
    ResponseUsage,
};
use crate::tenant::Tenant;
use crate::AppState;

/// Where this server keeps responses (see [`crate::responses::saved`]).
fn saved(st: &AppState) -> Saved<'_> {
    match &st.accounts {
        Some(a) => Saved::Db(&a.store, &st.responses),
        None => Saved::Memory(&st.responses),
    }
}

fn owner_of(o: Option<Extension<ResponseOwner>>) -> ResponseOwner {
    o.map_or(ResponseOwner::Anyone, |e| e.0)
}

/// The chat core names chat completions' parameters; these are Responses' names for them.
fn rename_param(e: ApiError) -> ApiError {
    match e {
        ApiError::InvalidParam { param: Some(p), message } => {
            let p = match p.as_str() {
                "messages" => "input".to_string(),
                "response_format" => "text.format".to_string(),
                _ => p,
            };
            ApiError::InvalidParam { param: Some(p), message }
        }
        other => other,
    }
}

#[utoipa::path(post, path = "/v1/responses", tag = "openai", request_body = CreateResponse, responses((status = 200, description = "a `response` object, or with `stream: true` server-sent events named as OpenAI names them (`response.created`, `response.output_text.delta`, ... `response.completed`)", content((ResponseObject = "application/json"), (Object = "text/event-stream"))), (status = "4XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody), (status = "5XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody)))]
pub async fn create_response(
    State(st): State<AppState>,
    tenant: Option<Extension<Tenant>>,
    who: Option<Extension<crate::policy::Who>>,
    owner: Option<Extension<ResponseOwner>>,
    ApiJson(req): ApiJson<CreateResponse>,
) -> Result<Response, ApiError> {
    let req = input::request(req, &st.config)?;
    let backend = st.models.get(Some(&req.model)).await?;
    let owner = owner_of(owner);
    let mut conv = Conversation::default();
    if let Some(text) = &req.instructions {
        conv.turns.push(Turn::text(Role::System, text.clone()));
    }
    // The conversation so far, as stored items: the previous response's, then this input.
    let mut history: Vec<Value> = Vec::new();
    if let Some(prev) = &req.previous_response_id {
        let p = saved(&st).get(&owner, prev).await.map_err(|e| match e {
            ApiError::NotFound { .. } => ApiError::NotFound {
                param: Some("previous_response_id".into()),
                message: format!("previous response with id `{prev}` not found"),
            },
            other => other,
        })?;
        let items = input::stored_items(&p.conversation)?;
        conv.push_items(&items, &|_| "previous_response_id".to_string())?;
        history = p.conversation.as_array().cloned().unwrap_or_default();
    }
    conv.push_items(&req.items, &|i| format!("input[{i}]"))?;
    history.extend(req.items_json.iter().cloned());
    let chat_input = ChatInput {
        turns: conv.turns,
        tools: req.tools.clone(),
        tool_choice: req.tool_choice.clone(),
        parallel_tool_calls: req.parallel_tool_calls,
        format: req.format.clone(),
    };
    let tenant = super::tenant_of(&st, tenant);
    let started = super::converse::start(&st, &backend, (tenant, who.as_deref()), req.model.clone(), chat_input, req.params.clone()).await.map_err(rename_param)?;
    let hide_mark = started.hide_mark;
    let run = Run {
        gen: started.gen,
        parser: OutputParser::new(started.prepared.parser),
        builder: OutputBuilder::new(),
        finish: None,
        meta: Meta { id: item_id("resp"), created_at: generation::unix_now(), req, owner, history },
        st: st.clone(),
    };
    if run.meta.req.stream {
        return Ok(crate::policy::HideMark::on(hide_mark, stream(run, st.config.keep_alive).into_response()));
    }
    Ok(crate::policy::HideMark::on(hide_mark, Json(run.collect().await?).into_response()))
}

#[utoipa::path(get, path = "/v1/responses/{id}", tag = "openai", params(("id" = String, Path, description = "a response id (`resp_...`)")), responses((status = 200, description = "the stored `response` object", body = ResponseObject), (status = "4XX", description = "An OpenAI-shaped error (404 for an id that is not the caller's)", body = crate::error::ErrorBody), (status = "5XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody)))]
pub async fn get_response(
    State(st): State<AppState>,
    owner: Option<Extension<ResponseOwner>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(saved(&st).get(&owner_of(owner), &id).await?.response))
}

#[utoipa::path(get, path = "/v1/responses/{id}/input_items", tag = "openai", params(("id" = String, Path, description = "a response id (`resp_...`)"), ("order" = Option<String>, Query, description = "`desc` (default, newest first) or `asc`"), ("limit" = Option<u32>, Query, description = "1 to 100, default 20"), ("after" = Option<String>, Query, description = "list the items after this item id")), responses((status = 200, description = "`{object: \"list\", data: [input items with ids], first_id, last_id, has_more}`", body = Object), (status = "4XX", description = "An OpenAI-shaped error (404 for an id that is not the caller's)", body = crate::error::ErrorBody), (status = "5XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody)))]
pub async fn list_input_items(
    State(st): State<AppState>,
    owner: Option<Extension<ResponseOwner>>,
    Path(id): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let q = crate::responses::items::ListQuery::parse(&q)?;
    let saved = saved(&st).get(&owner_of(owner), &id).await?;
    Ok(Json(crate::responses::items::list(&id, &saved.input_items, &q)?))
}

#[utoipa::path(delete, path = "/v1/responses/{id}", tag = "openai", params(("id" = String, Path, description = "a response id (`resp_...`)")), responses((status = 200, description = "deleted", body = DeletedResponse), (status = "4XX", description = "An OpenAI-shaped error (404 for an id that is not the caller's)", body = crate::error::ErrorBody), (status = "5XX", description = "An OpenAI-shaped error", body = crate::error::ErrorBody)))]
pub async fn delete_response(
    State(st): State<AppState>,
    owner: Option<Extension<ResponseOwner>>,
    Path(id): Path<String>,
) -> Result<Json<DeletedResponse>, ApiError> {
    saved(&st).delete(&owner_of(owner), &id).await?;
    Ok(Json(DeletedResponse { id, object: "response".into(), deleted: true }))
}

/// What the Response object says besides its output.
struct Meta {
    id: String,
    created_at: u64,
    req: Request,
    owner: ResponseOwner,
    /// The conversation before this response's output, as stored items.
    history: Vec<Value>,
}

impl Meta {
    fn object(&self, status: &str, output: Vec<OutputItem>, usage: Option<ResponseUsage>) -> ResponseObject {
        let r = &self.req;
        ResponseObject {
            id: self.id.clone(),
            object: "response".into(),
            created_at: self.created_at,
            status: status.into(),
            error: None,
            incomplete_details: (status == "incomplete").then(|| IncompleteDetails { reason: "max_output_tokens".into() }),
            instructions: r.instructions.clone(),
            max_output_tokens: r.echo.max_output_tokens,
            model: r.model.clone(),
            output,
            parallel_tool_calls: r.parallel_tool_calls,
            previous_response_id: r.previous_response_id.clone(),
            reasoning: json!({"effort": null, "summary": null}),
            store: r.store,
            temperature: r.echo.temperature,
            text: r.echo.text.clone(),
            tool_choice: r.echo.tool_choice.clone(),
            tools: r.echo.tools.clone(),
            top_p: r.echo.top_p,
            truncation: "disabled".into(),
            usage,
            user: None,
            metadata: r.metadata.clone(),
        }
    }
}

/// One running response: the generation, its parser and the items being built.
struct Run {
    gen: Generation,
    parser: OutputParser,
    builder: OutputBuilder,
    finish: Option<FinishReason>,
    meta: Meta,
    st: AppState,
}

/// What one step of a [`Run`] gives.
enum Next {
    Events(Vec<Value>),
    /// The generation is over: call [`Run::complete`].
    Over,
    Failed(String),
}

fn status_of(finish: Option<FinishReason>) -> &'static str {
    match finish {
        Some(FinishReason::Length) => "incomplete",
        _ => "completed",
    }
}

impl Run {
    async fn next(&mut self) -> Next {
        match self.gen.next().await {
            Step::Token(_, t) => Next::Events(self.parser.push(&t.text).into_iter().flat_map(|e| self.builder.push(e)).collect()),
            Step::Done { finish, tail, .. } => {
                let mut ev = self.parser.push(&tail);
                ev.extend(self.parser.finish());
                let mut out: Vec<Value> = ev.into_iter().flat_map(|e| self.builder.push(e)).collect();
                self.finish = Some(finish);
                out.extend(self.builder.finish(status_of(self.finish)));
                Next::Events(out)
            }
            Step::Finished => Next::Over,
            Step::Failed(e) => Next::Failed(e),
        }
    }

    /// The finished Response object, saved when `store` is on.
    async fn complete(&mut self) -> Result<ResponseObject, ApiError> {
        let u = self.gen.usage();
        let usage = ResponseUsage {
            input_tokens: u.prompt_tokens,
            input_tokens_details: InputTokensDetails { cached_tokens: u.prompt_tokens_details.cached_tokens },
            output_tokens: u.completion_tokens,
            output_tokens_details: OutputTokensDetails::default(),
            total_tokens: u.prompt_tokens + u.completion_tokens,
            energy: u.energy,
        };
        let items = std::mem::take(&mut self.builder).into_items();
        let obj = self.meta.object(status_of(self.finish), items, Some(usage));
        if self.meta.req.store {
            let mut conversation = std::mem::take(&mut self.meta.history);
            conversation.extend(obj.output.iter().filter_map(|i| serde_json::to_value(i).ok()));
            let r = StoredResponse {
                id: obj.id.clone(),
                previous_response_id: obj.previous_response_id.clone(),
                model: obj.model.clone(),
                response: serde_json::to_value(&obj).map_err(|e| ApiError::Internal(format!("a response as JSON: {e}")))?,
                input_items: Value::Array(self.meta.req.items_json.clone()),
                conversation: Value::Array(conversation),
                created_at: store::now_ms(),
            };
            saved(&self.st).save(&self.meta.owner, &r).await?;
        }
        Ok(obj)
    }

    /// The whole answer (non-streaming).
    async fn collect(mut self) -> Result<ResponseObject, ApiError> {
        loop {
            match self.next().await {
                Next::Events(_) => {}
                Next::Over => return self.complete().await,
                Next::Failed(e) => return Err(ApiError::Internal(e)),
            }
        }
    }
}

/// The stream's state: events are numbered in order (`sequence_number`).
struct Driver {
    run: Run,
    queue: VecDeque<SseEvent>,
    seq: u64,
    ended: bool,
}

impl Driver {
    fn send(&mut self, mut v: Value) {
        v["sequence_number"] = json!(self.seq);
        self.seq += 1;
        let name = v["type"].as_str().unwrap_or("message").to_string();
        self.queue.push_back(SseEvent::default().event(name).data(v.to_string()));
    }

    fn failed(&mut self, message: &str) {
        let mut obj = serde_json::to_value(self.run.meta.object("failed", Vec::new(), None)).unwrap_or_else(|_| json!({}));
        obj["error"] = json!({"code": "server_error", "message": message});
        self.send(json!({"type": "response.failed", "response": obj}));
        self.ended = true;
    }

    async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            if self.ended {
                return None;
            }
            match self.run.next().await {
                Next::Events(ev) => ev.into_iter().for_each(|e| self.send(e)),
                Next::Failed(e) => {
                    tracing::error!(error = ?e, "response stream failed");
                    self.failed("internal error");
                }
                Next::Over => match self.run.complete().await {
                    Ok(obj) => {
                        let kind = if obj.status == "incomplete" { "response.incomplete" } else { "response.completed" };
                        let obj = serde_json::to_value(&obj).unwrap_or_else(|_| json!({}));
                        self.send(json!({"type": kind, "response": obj}));
                        self.ended = true;
                    }
                    Err(e) => {
                        tracing::error!(error = ?e, "finishing a streamed response failed");
                        self.failed(&e.to_string());
                    }
                },
            }
        }
    }
}

/// The SSE response: `response.created`, `response.in_progress`, the items' events, then
/// `response.completed` (or `response.incomplete` / `response.failed`), each as `event: <type>`
/// and `data: <json>`; comment keep-alives while the model is busy.
fn stream(run: Run, keep_alive: std::time::Duration) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut d = Driver { run, queue: VecDeque::new(), seq: 0, ended: false };
    let start = serde_json::to_value(d.run.meta.object("in_progress", Vec::new(), None)).unwrap_or_else(|_| json!({}));
    d.send(json!({"type": "response.created", "response": start.clone()}));
    d.send(json!({"type": "response.in_progress", "response": start}));
    let s = futures_util::stream::unfold(d, |mut d| async move {
        let e = d.next_event().await?;
        Some((Ok(e), d))
    });
    Sse::new(s).keep_alive(KeepAlive::new().interval(keep_alive))
}
