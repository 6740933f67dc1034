//! The `tracing` spans of one request's generation, children of its `request` span (so they
//! carry its `request_id` and reach an OTLP collector with it):
//!
//! * `queue_and_prefill` (one per choice): from submission to the first token, so the time the
//!   sequence waited for a place in the engine's batch plus its prefill (chunked by the
//!   engine's step budget);
//! * `decode` (one per choice): from the first token to the end, with `prompt_tokens`,
//!   `cached_tokens`, `completion_tokens` and `finish` recorded when it closes.
//!
//! A span closes when its phase ends (or the request is dropped: a client that went away).

use tracing::field::Empty;
use tracing::Span;

use crate::backend::{FinishReason, Usage};

#[derive(Default)]
struct Choice {
    waiting: Option<Span>,
    decoding: Option<Span>,
}

/// The spans of a [`crate::generation::Generation`]'s choices.
pub struct GenTrace {
    parent: Span,
    choices: Vec<Choice>,
}

impl GenTrace {
    /// Opens `queue_and_prefill` for `n` choices under the current span (the request's).
    pub fn new(n: usize) -> GenTrace {
        let parent = Span::current();
        let choices = (0..n)
            .map(|index| Choice { waiting: Some(tracing::info_span!(parent: &parent, "queue_and_prefill", choice = index)), decoding: None })
            .collect();
        GenTrace { parent, choices }
    }

    /// Choice `index` produced its first token: its wait and prefill are over, decoding begins.
    pub fn first_token(&mut self, index: usize) {
        if let Some(c) = self.choices.get_mut(index) {
            c.waiting = None;
            c.decoding = Some(tracing::info_span!(
                parent: &self.parent,
                "decode",
                choice = index,
                prompt_tokens = Empty,
                cached_tokens = Empty,
                completion_tokens = Empty,
                finish = Empty
            ));
        }
    }

    /// Choice `index` is done: its usage is recorded on its span, which closes.
    pub fn done(&mut self, index: usize, usage: &Usage, finish: FinishReason) {
        let Some(c) = self.choices.get_mut(index) else { return };
        c.waiting = None;
        // Finished without a token (an empty answer): the decode span is still recorded.
        let span = c.decoding.take().unwrap_or_else(|| {
            tracing::info_span!(parent: &self.parent, "decode", choice = index, prompt_tokens = Empty, cached_tokens = Empty, completion_tokens = Empty, finish = Empty)
        });
        span.record("prompt_tokens", usage.prompt_tokens);
        span.record("cached_tokens", usage.cached_tokens);
        span.record("completion_tokens", usage.completion_tokens);
        span.record("finish", finish.as_openai());
        span.in_scope(|| tracing::debug!(prompt_tokens = usage.prompt_tokens, cached_tokens = usage.cached_tokens, completion_tokens = usage.completion_tokens, "choice done"));
    }
}
