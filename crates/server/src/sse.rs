//! Server-sent events exactly as OpenAI streams them: one `data: {chunk}` per event, `data:
//! [DONE]` at the end, an optional usage chunk with empty `choices` before it, and comment
//! keep-alives while the model is busy with a long prefill. An error mid-stream is sent as
//! `data: {"error": {...}}` (what the SDKs raise as `APIError`) and ends the stream.
//!
//! The endpoint decides what a chunk looks like ([`ChunkFormat`]); the driver here decides when
//! chunks are sent. When the client goes away axum drops this stream, the [`Generation`] inside
//! drops its receiver, and the engine cancels the sequences at its next step.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;

use crate::backend::{FinishReason, TokenOut};
use crate::error::ApiError;
use crate::generation::{Generation, Step};
use crate::openai::common::ApiUsage;

/// How one endpoint renders stream chunks (each returns the JSON of a `data:` line).
pub trait ChunkFormat: Send + 'static {
    /// Sent once per choice before any token (chat's `delta.role`).
    fn start(&mut self, index: usize) -> Option<String>;
    /// A token; `None` when there is nothing to send (no text and no log-probs).
    fn token(&mut self, index: usize, t: &TokenOut) -> Option<String>;
    /// A token as any number of chunks (a chat token may complete a tool call's name and start
    /// its arguments); by default [`token`](Self::token)'s one chunk.
    fn token_chunks(&mut self, index: usize, t: &TokenOut) -> Vec<String> {
        self.token(index, t).into_iter().collect()
    }
    /// The held-back `tail` text (if any) and the chunk with `finish_reason`.
    fn finish(&mut self, index: usize, finish: FinishReason, tail: &str) -> Vec<String>;
    /// The `include_usage` chunk.
    fn usage(&mut self, usage: ApiUsage) -> String;
}

struct Driver<F> {
    gen: Generation,
    fmt: F,
    include_usage: bool,
    queue: VecDeque<String>,
    ended: bool,
}

impl<F: ChunkFormat> Driver<F> {
    /// The next `data:` payload, or `None` after `[DONE]` (or an error).
    async fn next_payload(&mut self) -> Option<String> {
        loop {
            if let Some(p) = self.queue.pop_front() {
                return Some(p);
            }
            if self.ended {
                return None;
            }
            match self.gen.next().await {
                Step::Token(i, t) => self.queue.extend(self.fmt.token_chunks(i, &t)),
                Step::Done { index, finish, tail } => self.queue.extend(self.fmt.finish(index, finish, &tail)),
                Step::Failed(e) => {
                    tracing::error!(error = ?e, "stream failed");
                    self.ended = true;
                    let body = ApiError::Internal(e).body();
                    return Some(crate::routes::to_json(&body));
                }
                Step::Finished => {
                    if self.include_usage {
                        let u = self.gen.usage();
                        self.queue.push_back(self.fmt.usage(u));
                    }
                    self.queue.push_back("[DONE]".to_string());
                    self.ended = true;
                }
            }
        }
    }
}

/// The SSE response for a running generation.
pub fn stream<F: ChunkFormat>(
    gen: Generation,
    mut fmt: F,
    include_usage: bool,
    keep_alive: Duration,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let queue = (0..gen.n_choices()).filter_map(|i| fmt.start(i)).collect();
    let driver = Driver { gen, fmt, include_usage, queue, ended: false };
    let s = futures_util::stream::unfold(driver, |mut d| async move {
        let p = d.next_payload().await?;
        Some((Ok(SseEvent::default().data(p)), d))
    });
    Sse::new(s).keep_alive(KeepAlive::new().interval(keep_alive))
}
