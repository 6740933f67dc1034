//! The `tracing` spans of one request's generation, children of its `request` span (so they
//! carry its `request_id` and reach an OTLP collector with it), one set per choice:
//!
//! * `queue`: from submission until the engine gives the sequence a place in its batch;
//! * `prefill`: from then to the first token, with `prompt_tokens` and `cached_tokens` (the
//!   prefix cache's share); its children `prefill_chunk`, one per engine step that computed
//!   part of the prompt (`start`, `end`: the positions; each lasts from the end of the one
//!   before, so it includes the other sequences' work in that step);
//! * `decode`: from the first token to the end, with `prompt_tokens`, `cached_tokens`,
//!   `completion_tokens` and `finish` recorded when it closes.
//!
//! A backend that reports no progress gives `queue` until the first token and no `prefill`. A
//! span closes when its phase ends (or the request is dropped: a client that went away).

use tracing::field::Empty;
use tracing::Span;

use crate::backend::{FinishReason, Progress, Usage};

#[derive(Default)]
struct Choice {
    queued: Option<Span>,
    prefill: Option<Span>,
    chunk: Option<Span>,
    decoding: Option<Span>,
}

/// The spans of a [`crate::generation::Generation`]'s choices.
pub struct GenTrace {
    parent: Span,
    choices: Vec<Choice>,
}

impl GenTrace {
    /// Opens `queue` for `n` choices under the current span (the request's).
    pub fn new(n: usize) -> GenTrace {
        let parent = Span::current();
        let choices = (0..n).map(|index| Choice { queued: Some(tracing::info_span!(parent: &parent, "queue", choice = index)), ..Choice::default() }).collect();
        GenTrace { parent, choices }
    }

    /// The engine reported choice `index`'s prompt progress.
    pub fn progress(&mut self, index: usize, p: Progress) {
        let Some(c) = self.choices.get_mut(index) else { return };
        match p {
            Progress::Admitted { cached_tokens, n_prompt } => {
                c.queued = None;
                let prefill = tracing::info_span!(parent: &self.parent, "prefill", choice = index, prompt_tokens = n_prompt, cached_tokens = cached_tokens);
                c.chunk = Some(tracing::info_span!(parent: &prefill, "prefill_chunk", start = Empty, end = Empty));
                c.prefill = Some(prefill);
            }
            Progress::Prefilled { start, end, n_prompt } => {
                let Some(prefill) = &c.prefill else { return };
                let chunk = c.chunk.take().unwrap_or_else(|| tracing::info_span!(parent: prefill, "prefill_chunk", start = Empty, end = Empty));
                chunk.record("start", start);
                chunk.record("end", end);
                drop(chunk);
                if end < n_prompt {
                    c.chunk = Some(tracing::info_span!(parent: prefill, "prefill_chunk", start = Empty, end = Empty));
                }
            }
        }
    }

    /// Choice `index` produced its first token: its wait and prefill are over, decoding begins.
    pub fn first_token(&mut self, index: usize) {
        if let Some(c) = self.choices.get_mut(index) {
            c.close_prompt_spans();
            c.decoding = Some(decode_span(&self.parent, index));
        }
    }

    /// Choice `index` is done: its usage is recorded on its span, which closes.
    pub fn done(&mut self, index: usize, usage: &Usage, finish: FinishReason) {
        let Some(c) = self.choices.get_mut(index) else { return };
        c.close_prompt_spans();
        // Finished without a token (an empty answer): the decode span is still recorded.
        let span = c.decoding.take().unwrap_or_else(|| decode_span(&self.parent, index));
        span.record("prompt_tokens", usage.prompt_tokens);
        span.record("cached_tokens", usage.cached_tokens);
        span.record("completion_tokens", usage.completion_tokens);
        span.record("finish", finish.as_openai());
        span.in_scope(|| tracing::debug!(prompt_tokens = usage.prompt_tokens, cached_tokens = usage.cached_tokens, completion_tokens = usage.completion_tokens, "choice done"));
    }
}

impl Choice {
    /// Closes the queue and prefill spans (children first).
    fn close_prompt_spans(&mut self) {
        self.queued = None;
        self.chunk = None;
        self.prefill = None;
    }
}

fn decode_span(parent: &Span, index: usize) -> Span {
    tracing::info_span!(parent: parent, "decode", choice = index, prompt_tokens = Empty, cached_tokens = Empty, completion_tokens = Empty, finish = Empty)
}
