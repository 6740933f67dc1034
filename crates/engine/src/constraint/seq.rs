//! One sequence's grammar state: the matcher, and its next mask being computed in the background.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use llguidance::toktrie::SimpleVob;
use llguidance::Matcher;

use super::{worker, CompiledInner};

type Computed = (Matcher, Result<SimpleVob, String>);

enum State {
    /// The mask for the next token is known.
    Ready(Matcher, SimpleVob),
    /// A worker is computing it.
    Pending(Receiver<Computed>),
    /// The grammar failed (or a worker was lost): the sequence ends with this error.
    Failed(String),
    /// The grammar is complete: nothing more may be generated.
    Done,
}

/// What committing a token did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// More tokens may follow.
    Continue,
    /// The grammar is complete: the sequence ends here (finish reason `stop`).
    Complete,
}

/// A sequence's matcher (see the module docs of [`super`]).
pub struct SeqConstraint {
    inner: Arc<CompiledInner>,
    state: State,
}

impl std::fmt::Debug for SeqConstraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeqConstraint(..)")
    }
}

fn compute(mut m: Matcher) -> Computed {
    let r = m.compute_mask().map_err(|e| e.to_string());
    (m, r)
}

impl SeqConstraint {
    pub(super) fn start(inner: Arc<CompiledInner>) -> Self {
        let matcher = Matcher::new(Ok(inner.parser.deep_clone()));
        let mut s = SeqConstraint { inner, state: State::Done };
        s.schedule(matcher);
        s
    }

    fn schedule(&mut self, matcher: Matcher) {
        let (tx, rx) = sync_channel(1);
        worker::spawn(Box::new(move || {
            let _ = tx.send(compute(matcher));
        }));
        self.state = State::Pending(rx);
    }

    /// Waits for the pending mask, if any.
    fn settle(&mut self) {
        if let State::Pending(rx) = &self.state {
            self.state = match rx.recv() {
                Ok((m, Ok(mask))) => State::Ready(m, mask),
                Ok((m, Err(e))) => State::Failed(m.get_error().unwrap_or(e)),
                Err(_) => State::Failed("the grammar's mask computation failed".into()),
            };
        }
    }

    /// Sets every token the grammar does not allow next to -inf in `logits` (the other
    /// end-of-generation tokens follow the one llguidance knows as EOS).
    pub fn apply(&mut self, logits: &mut [f32]) -> Result<(), String> {
        self.settle();
        match &self.state {
            State::Ready(_, mask) => {
                let eos_ok = mask.is_allowed(self.inner.eos);
                let saved: Vec<(usize, f32)> =
                    self.inner.eog.iter().filter_map(|&e| logits.get(e as usize).map(|&l| (e as usize, l))).collect();
                // One 32-token word of the mask at a time.
                for (w, chunk) in mask.as_slice().iter().zip(logits.chunks_mut(32)) {
                    if *w == u32::MAX {
                        continue;
                    }
                    for (b, l) in chunk.iter_mut().enumerate() {
                        if w & (1 << b) == 0 {
                            *l = f32::NEG_INFINITY;
                        }
                    }
                }
                // Ids past the grammar's vocabulary (a model's padded embedding rows) never fit.
                let covered = mask.len().min(logits.len());
                for l in &mut logits[covered..] {
                    *l = f32::NEG_INFINITY;
                }
                if eos_ok {
                    for (e, l) in saved {
                        logits[e] = l;
                    }
                }
                if logits.iter().all(|l| *l == f32::NEG_INFINITY) {
                    return Err("the grammar allows no token of this vocabulary here".into());
                }
                Ok(())
            }
            State::Failed(e) => Err(e.clone()),
            State::Done => Err("the grammar is already complete".into()),
            State::Pending(_) => Err("the grammar's mask is not ready".into()),
        }
    }

    /// Feeds the sampled token to the matcher and starts computing the next mask.
    pub fn commit(&mut self, id: u32) -> Result<Step, String> {
        self.settle();
        let m = match std::mem::replace(&mut self.state, State::Done) {
            State::Ready(m, _) => m,
            State::Failed(e) => {
                self.state = State::Failed(e.clone());
                return Err(e);
            }
            State::Done | State::Pending(_) => return Ok(Step::Complete),
        };
        let mut m = m;
        // Another end-of-generation token stands for the EOS llguidance knows.
        let fed = if id != self.inner.eos && self.inner.eog.contains(&id) { self.inner.eos } else { id };
        if let Err(e) = m.consume_token(fed) {
            let e = m.get_error().unwrap_or_else(|| e.to_string());
            self.state = State::Failed(e.clone());
            return Err(e);
        }
        if m.is_stopped() {
            return Ok(Step::Complete);
        }
        self.schedule(m);
        Ok(Step::Continue)
    }
}
