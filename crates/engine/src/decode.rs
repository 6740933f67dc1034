//! The per-token half of generation, shared by [`crate::Session`] (the CLI) and the server's
//! engine thread so both finish requests the same way: sample, log-probs, streaming
//! detokenization (complete UTF-8 only) and stop strings (never leaked partly).

use crate::constraint::{SeqConstraint, Step};
use crate::sample::{logprobs, Sampler};
use crate::text::stop::StopMatcher;
use crate::text::stream::StreamDecoder;
use crate::text::tokenizer::Tokenizer;
use crate::{GenParams, TokenId, TokenOut};

pub(crate) struct Decoding {
    params: GenParams,
    sampler: Sampler,
    decoder: StreamDecoder,
    stops: StopMatcher,
    /// The grammar's matcher, when the output is constrained.
    constraint: Option<SeqConstraint>,
    /// The logits after `logit_bias` and the grammar's mask (only when either is on).
    adjusted: Vec<f32>,
}

/// How a token ended generation, if it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// An end-of-generation token (not shown).
    Eog,
    /// A stop string (cut from the text).
    StopString,
    /// The grammar is complete (the token's text is kept).
    Grammar,
}

impl Decoding {
    pub fn new(params: GenParams) -> Self {
        Decoding {
            constraint: params.grammar.as_ref().map(|g| g.start()),
            adjusted: Vec::new(),
            sampler: Sampler::new(params.sampling.clone()),
            decoder: StreamDecoder::new(false),
            stops: StopMatcher::new(params.stop.clone()),
            params,
        }
    }

    pub fn params(&self) -> &GenParams {
        &self.params
    }

    /// Picks the next token from `logits` (the row after the last token of `history`, which is
    /// prompt + generated so far) and returns it with the text that became safe to show.
    /// `logit_bias` and the grammar's mask apply first; an error means the grammar failed (the
    /// sequence must end with it).
    pub fn step(
        &mut self,
        tok: &Tokenizer,
        logits: &[f32],
        history: &[TokenId],
        lp_scratch: &mut Vec<f32>,
    ) -> Result<(TokenOut, Option<Stopped>), String> {
        let marked = self.params.watermark.is_some() && !history.is_empty();
        let logits: &[f32] = if self.constraint.is_some() || !self.params.logit_bias.is_empty() || marked {
            self.adjusted.clear();
            self.adjusted.extend_from_slice(logits);
            for &(id, bias) in &self.params.logit_bias {
                if let Some(l) = self.adjusted.get_mut(id as usize) {
                    *l += bias;
                }
            }
            if let Some(c) = self.constraint.as_mut() {
                c.apply(&mut self.adjusted)?;
            }
            if let (Some(w), Some(&prev)) = (&self.params.watermark, history.last()) {
                w.bias(prev, &mut self.adjusted);
            }
            &self.adjusted
        } else {
            logits
        };
        let id = self.sampler.sample(logits, history);
        let (logprob, top) = match self.params.top_logprobs {
            Some(n) => {
                let (lp, top) = logprobs(logits, id, n, lp_scratch);
                (Some(lp), top)
            }
            None => (None, Vec::new()),
        };
        let complete = match self.constraint.as_mut() {
            Some(c) => c.commit(id)? == Step::Complete,
            None => false,
        };
        if tok.is_eog(id) && !self.params.ignore_eos {
            return Ok((TokenOut { id, text: String::new(), logprob, top }, Some(Stopped::Eog)));
        }
        let (text, hit) = self.stops.push(&self.decoder.push(tok, id));
        let stopped = if hit {
            Some(Stopped::StopString)
        } else if complete {
            Some(Stopped::Grammar)
        } else {
            None
        };
        Ok((TokenOut { id, text, logprob, top }, stopped))
    }

    /// The stop string that ended generation, if one did.
    pub fn stop_string(&self) -> Option<String> {
        self.stops.matched().map(str::to_string)
    }

    /// Text held back until the end (an incomplete UTF-8 sequence, a possible stop-string
    /// prefix); nothing after a stop string.
    pub fn tail(&mut self, stopped: Option<Stopped>) -> String {
        if stopped == Some(Stopped::StopString) {
            return String::new();
        }
        let (mut tail, hit) = self.stops.push(&self.decoder.finish());
        if !hit {
            tail.push_str(&self.stops.finish());
        }
        tail
    }
}
