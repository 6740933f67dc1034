//! From a validated [`Job`] to running sequences and back: tokenizing (on the blocking pool),
//! submitting one sequence per choice, and reading their events in arrival order while recording
//! latency metrics. Both endpoints, streaming or not, go through here.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::admission::{Admission, Slot};
use crate::backend::{Backend, ChoiceSink, Event, FinishReason, GenRequest, PromptError, TokenId, TokenOut, Usage};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::prompt_limits;
use crate::openai::common::{ApiUsage, LogprobEntry, TopLogprob};
use crate::tenant::Tenant;
use crate::validate::{Job, JobInput, PromptInput};

/// Tokenizes the job's prompts off the async runtime (templates and BPE on long conversations
/// take milliseconds) and checks them against the context. A prompt longer in bytes than the
/// context can hold is refused before tokenizing, only a few tokenize at once
/// ([`prompt_limits`]), and tokenizing stops as soon as a prompt cannot fit.
pub async fn tokenize(backend: &Arc<dyn Backend>, job: &Job) -> Result<Vec<Vec<TokenId>>, ApiError> {
    prompt_limits::check_bytes(backend.as_ref(), &job.input)?;
    let _permit = prompt_limits::tokenize_permit().await?;
    let b = backend.clone();
    let input = job.input.clone();
    let n_ctx = backend.n_ctx();
    // A prompt must leave room for one generated token.
    let max = n_ctx.saturating_sub(1);
    let too_long = move |e: PromptError, param: &str| match e {
        PromptError::TooLong { at_least, .. } => ApiError::ContextLengthExceededAtLeast { at_least, n_ctx },
        PromptError::Invalid(m) => ApiError::param(param, m),
    };
    let prompts = tokio::task::spawn_blocking(move || -> Result<Vec<Vec<TokenId>>, ApiError> {
        match input {
            JobInput::Chat(msgs) => {
                let p = b.chat_prompt(&msgs, max).map_err(|e| too_long(e, "messages"))?;
                Ok(vec![p])
            }
            JobInput::Prompts(ps) => ps
                .into_iter()
                .map(|p| match p {
                    PromptInput::Text(s) => b.raw_prompt(&s, max).map_err(|e| too_long(e, "prompt")),
                    PromptInput::Tokens(t) => Ok(t),
                })
                .collect(),
        }
    })
    .await
    .map_err(|e| ApiError::Internal(format!("tokenizer task: {e}")))??;
    for p in &prompts {
        if p.is_empty() {
            return Err(ApiError::param("prompt", "the prompt has no tokens"));
        }
        if p.len() >= n_ctx {
            return Err(ApiError::ContextLengthExceeded { n_prompt: p.len(), n_ctx });
        }
    }
    Ok(prompts)
}

/// What one read of a [`Generation`] gives.
#[derive(Debug)]
pub enum Step {
    Token(usize, TokenOut),
    Done { index: usize, finish: FinishReason, tail: String },
    /// The engine failed; the response cannot complete.
    Failed(String),
    /// Every choice is done.
    Finished,
}

struct ChoiceState {
    last: Option<Instant>,
    done: bool,
    /// Its sequence has sent an event (it has left the engine's queue).
    started: bool,
    /// The stop string that ended it.
    stop: Option<String>,
}

/// The running choices of one HTTP request. Dropping it drops the receiver, which cancels every
/// sequence still running (their sinks report closed).
pub struct Generation {
    rx: mpsc::UnboundedReceiver<(usize, Event)>,
    choices: Vec<ChoiceState>,
    open: usize,
    n_per_prompt: usize,
    started: Instant,
    metrics: Arc<Metrics>,
    usage: ApiUsage,
    /// The request's place in the server's queue, held until every sequence has started.
    slot: Option<Slot>,
    unstarted: usize,
    /// The `queue`, `prefill` and `decode` spans of each choice.
    trace: crate::gen_trace::GenTrace,
    /// The use-case policy the request runs under: counts its tokens, may hide its energy.
    policy: Option<Arc<crate::policy::Active>>,
}

/// Submits `job.n` sequences per prompt. Choice `p * n + j` is prompt `p`'s `j`-th sample, seeded
/// with `seed + j` so the choices differ yet each is reproducible. The whole request takes one
/// place in `admission` (429 when it is full), however many sequences it has. `tenant` keys the
/// prefix cache.
pub fn submit(
    backend: &dyn Backend,
    metrics: Arc<Metrics>,
    admission: &Arc<Admission>,
    job: &Job,
    prompts: Vec<Vec<TokenId>>,
    tenant: Tenant,
) -> Result<Generation, ApiError> {
    crate::logit_bias::check_vocab(&job.params.logit_bias, backend.n_vocab())?;
    let slot = admission.try_take().ok_or(ApiError::QueueFull)?;
    let (tx, rx) = mpsc::unbounded_channel();
    let n = job.n;
    let n_ctx = backend.n_ctx();
    let mut index = 0;
    for prompt in prompts {
        for j in 0..n {
            let mut params = job.params.clone();
            params.sampling.seed = params.sampling.seed.map(|s| s.wrapping_add(j as u64));
            params.max_tokens = params.max_tokens.min(n_ctx);
            backend.submit(GenRequest { prompt: prompt.clone(), params, salt: tenant.0 }, ChoiceSink::new(index, tx.clone()))?;
            index += 1;
        }
    }
    Ok(Generation {
        rx,
        choices: (0..index).map(|_| ChoiceState { last: None, done: false, started: false, stop: None }).collect(),
        open: index,
        n_per_prompt: n.max(1),
        started: Instant::now(),
        metrics,
        usage: ApiUsage { energy: backend.energy_method().map(|method| crate::openai::common::Energy { microjoules: 0, method }), ..ApiUsage::default() },
        slot: Some(slot),
        unstarted: index,
        trace: crate::gen_trace::GenTrace::new(index),
        policy: None,
    })
}

impl Generation {
    /// Runs the generation under `policy` (if any): its tokens count toward the policy's daily
    /// limit, and `usage.energy` is left out where the policy hides energy.
    pub fn under(mut self, policy: Option<Arc<crate::policy::Active>>) -> Self {
        if policy.as_ref().is_some_and(|p| !p.show_energy()) {
            self.usage.energy = None;
        }
        self.policy = policy;
        self
    }

    pub fn n_choices(&self) -> usize {
        self.choices.len()
    }

    /// Usage over the finished choices: each prompt counted once, completions summed (OpenAI's
    /// accounting for `n > 1`).
    pub fn usage(&self) -> ApiUsage {
        self.usage
    }

    /// The stop string (`stop` / `stop_sequences`) that ended choice `index`, once it is done.
    pub fn stop_sequence(&self, index: usize) -> Option<&str> {
        self.choices.get(index)?.stop.as_deref()
    }

    fn add_usage(&mut self, index: usize, u: Usage) {
        self.usage.completion_tokens += u.completion_tokens;
        if let Some(p) = &self.policy {
            p.record(u.completion_tokens as u64);
        }
        if let Some(e) = self.usage.energy.as_mut() {
            e.microjoules += u.energy_uj;
        }
        self.metrics.energy_uj.fetch_add(u.energy_uj, Ordering::Relaxed);
        if index.is_multiple_of(self.n_per_prompt) {
            self.usage.prompt_tokens += u.prompt_tokens;
            self.usage.prompt_tokens_details.cached_tokens += u.cached_tokens;
        }
        self.usage.total_tokens = self.usage.prompt_tokens + self.usage.completion_tokens;
        self.metrics.prompt_tokens.fetch_add(u.prompt_tokens as u64, Ordering::Relaxed);
        self.metrics.cached_tokens.fetch_add(u.cached_tokens as u64, Ordering::Relaxed);
    }

    /// The next event of any choice.
    pub async fn next(&mut self) -> Step {
        loop {
            if self.open == 0 {
                return Step::Finished;
            }
            let Some((index, event)) = self.rx.recv().await else {
                return Step::Failed("the engine stopped before the answer was complete".into());
            };
            let Some(c) = self.choices.get_mut(index) else { continue };
            if c.done {
                continue;
            }
            if !c.started {
                c.started = true;
                self.unstarted -= 1;
                if self.unstarted == 0 {
                    self.slot = None;
                }
            }
            match event {
                Event::Progress(p) => self.trace.progress(index, p),
                Event::Token(t) => {
                    let now = Instant::now();
                    if c.last.is_none() {
                        self.trace.first_token(index);
                    }
                    match c.last {
                        None => self.metrics.ttft.observe(now - self.started),
                        Some(prev) => self.metrics.itl.observe(now - prev),
                    }
                    c.last = Some(now);
                    self.metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
                    return Step::Token(index, t);
                }
                Event::Done { finish, usage, tail, stop } => {
                    c.done = true;
                    c.stop = stop;
                    self.open -= 1;
                    self.trace.done(index, &usage, finish);
                    self.add_usage(index, usage);
                    return Step::Done { index, finish, tail };
                }
                Event::Error(e) => {
                    tracing::error!(error = ?e, "generation failed");
                    return Step::Failed(e);
                }
            }
        }
    }
}

/// Chat's log-prob entry for a generated token, when log-probs were requested.
pub fn logprob_entry(backend: &dyn Backend, t: &TokenOut) -> Option<LogprobEntry> {
    let logprob = t.logprob?;
    let bytes = backend.token_bytes(t.id);
    Some(LogprobEntry {
        token: String::from_utf8_lossy(&bytes).into_owned(),
        logprob,
        top_logprobs: t
            .top
            .iter()
            .map(|a| {
                let bytes = backend.token_bytes(a.id);
                TopLogprob { token: String::from_utf8_lossy(&bytes).into_owned(), logprob: a.logprob, bytes }
            })
            .collect(),
        bytes,
    })
}

/// A response id like OpenAI's (`chatcmpl-` + 24 hex digits): unique per process run, not secret.
pub fn response_id(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    let a = h.finish();
    h.write_u64(a);
    format!("{prefix}-{a:016x}{:08x}", h.finish() as u32)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
