//! One request's generation state on the engine thread: sampler, streaming detokenizer, stop
//! strings and counters. The per-token logic mirrors [`crate::Session::generate`] so that the
//! CLI and the server finish requests the same way.

use super::{Event, EventSink, Progress, Usage};
use crate::decode::{Decoding, Stopped};
use crate::text::tokenizer::Tokenizer;
use crate::{FinishReason, GenParams, TokenId};

pub(super) struct LiveSeq {
    sink: Box<dyn EventSink>,
    dec: Decoding,
    pub n_prompt: usize,
    pub n_generated: usize,
    pub cached_tokens: usize,
    /// Energy of the steps it took part in, by its share of their tokens.
    pub energy_uj: u64,
    /// Whether it has started running (it then no longer counts in the queue depth).
    pub started: bool,
    /// The receiver is gone: cancel at the next step.
    pub closed: bool,
}

/// What happened after a token.
pub(super) enum Next {
    Continue,
    Finished,
}

impl LiveSeq {
    pub fn new(n_prompt: usize, params: GenParams, sink: Box<dyn EventSink>) -> Self {
        LiveSeq {
            sink,
            dec: Decoding::new(params),
            n_prompt,
            n_generated: 0,
            cached_tokens: 0,
            energy_uj: 0,
            started: false,
            closed: false,
        }
    }

    pub fn max_tokens(&self) -> usize {
        self.dec.params().max_tokens
    }

    pub fn sink_closed(&mut self) -> bool {
        if !self.closed && self.sink.is_closed() {
            self.closed = true;
        }
        self.closed
    }

    fn send(&mut self, e: Event) {
        if !self.sink.send(e) {
            self.closed = true;
        }
    }

    pub fn progress(&self, p: Progress) {
        if !self.closed {
            self.sink.progress(p);
        }
    }

    pub fn send_error(&mut self, msg: String) {
        self.send(Event::Error(msg));
    }

    /// Samples from `logits` (the row after the sequence's last token), streams the token and
    /// decides whether generation ends. `history` is prompt + generated so far; the sampled id
    /// is returned through `out` when generation continues.
    pub fn on_logits(&mut self, tok: &Tokenizer, logits: &[f32], history: &[TokenId], n_ctx: usize, lp_scratch: &mut Vec<f32>, out: &mut TokenId) -> Next {
        let (token, stop) = match self.dec.step(tok, logits, history, lp_scratch) {
            Ok(r) => r,
            Err(e) => {
                self.send_error(format!("constrained decoding failed: {e}"));
                return Next::Finished;
            }
        };
        let id = token.id;
        self.n_generated += 1;
        self.send(Event::Token(token));
        if let Some(stop) = stop {
            self.finish(FinishReason::Stop, Some(stop));
            return Next::Finished;
        }
        if self.closed {
            return Next::Finished;
        }
        // The next token would sit at position n_prompt + n_generated - 1 + 1: like the session,
        // stop while the context still has one free position.
        if self.n_prompt + self.n_generated >= n_ctx || self.n_generated >= self.dec.params().max_tokens {
            self.finish(FinishReason::Length, None);
            return Next::Finished;
        }
        *out = id;
        Next::Continue
    }

    /// Sends `Done`, releasing held-back text unless a stop string ended the stream.
    pub fn finish(&mut self, finish: FinishReason, stopped: Option<Stopped>) {
        let tail = self.dec.tail(stopped);
        let usage = Usage { prompt_tokens: self.n_prompt, completion_tokens: self.n_generated, cached_tokens: self.cached_tokens, energy_uj: self.energy_uj };
        let stop = if stopped == Some(Stopped::StopString) { self.dec.stop_string() } else { None };
        self.send(Event::Done { finish, usage, tail, stop });
    }
}
