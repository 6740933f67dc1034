//! Use-case policies at the door (issue 17 item 3): the one place that finds the policy a
//! request runs under ([`resolve`]) and checks the request against it ([`Active::admit`]),
//! before anything reaches the engine.
//!
//! Who a request is comes from the key check ([`Who`], put into the request's extensions by
//! `require_key`; the web routes build it from the signed-in user). The store decides the
//! precedence ([`store::Store::policy_for`]): a personal API key's own policy, else its owner's,
//! else the default policy. A request outside its policy gets a 403 naming the policy (a model
//! not allowed, more tokens per answer than allowed) or a 429 naming it (the day's tokens used
//! up). A request without `max_tokens` gets the policy's limit (and never more than what is
//! left of the day). The policy's system prompt is put first, as a system message.

use std::sync::Arc;

use store::{Policy, PolicySubject, Store};

use crate::error::ApiError;
use crate::AppState;

/// Who a request is, for policies: its subjects, most specific first, and the key its daily
/// tokens are counted under.
#[derive(Clone, Debug)]
pub struct Who {
    pub subjects: Vec<PolicySubject>,
    pub usage_key: String,
}

impl Who {
    /// One of the server's `--api-key`s.
    pub fn server_key(key: &str) -> Who {
        let s = PolicySubject::ServerKey(PolicySubject::server_key_label(key));
        Who { usage_key: s.to_string(), subjects: vec![s] }
    }

    /// An account, through a personal API key (`key`) or a web session (`None`).
    pub fn user(user: store::UserId, key: Option<store::ApiKeyId>) -> Who {
        let mut subjects: Vec<PolicySubject> = key.map(PolicySubject::ApiKey).into_iter().collect();
        subjects.push(PolicySubject::User(user));
        Who { usage_key: PolicySubject::User(user).to_string(), subjects }
    }

    /// Anyone, on an open server (only the default policy can apply).
    pub fn anyone() -> Who {
        Who { subjects: Vec::new(), usage_key: "anyone".into() }
    }
}

/// Put on a response whose policy hides provenance marks: the mark header is left off.
#[derive(Clone, Copy, Debug)]
pub struct HideMark;

impl HideMark {
    /// `resp`, with [`HideMark`] on it when `hide` (the request's policy hides marks).
    pub fn on(hide: bool, mut resp: axum::response::Response) -> axum::response::Response {
        if hide {
            resp.extensions_mut().insert(HideMark);
        }
        resp
    }
}

/// The policy a request runs under, with what is needed to count its tokens.
#[derive(Debug)]
pub struct Active {
    pub policy: Policy,
    usage_key: String,
    store: Store,
}

/// The policy `who` runs under (`None` without a store, or when no policy applies).
pub async fn resolve(st: &AppState, who: Option<&Who>) -> Result<Option<Arc<Active>>, ApiError> {
    resolve_in(st.accounts.as_ref().map(|a| &a.store), who).await
}

/// [`resolve`] with the store in hand (the web routes' state has no `AppState`).
pub async fn resolve_in(store: Option<&Store>, who: Option<&Who>) -> Result<Option<Arc<Active>>, ApiError> {
    let Some(store) = store else { return Ok(None) };
    let anyone = Who::anyone();
    let who = who.unwrap_or(&anyone);
    let policy = store.policy_for(&who.subjects).await.map_err(|e| ApiError::Internal(format!("finding the policy: {e}")))?;
    Ok(policy.map(|policy| Arc::new(Active { policy, usage_key: who.usage_key.clone(), store: store.clone() })))
}

/// A request refused by a policy: 403 for one outside it, 429 when its day's tokens are spent.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Refusal {
    #[error("the policy \"{policy}\" does not allow the model \"{model}\" (allowed: {allowed})")]
    Model { policy: String, model: String, allowed: String },
    #[error("the policy \"{policy}\" allows at most {limit} tokens per answer; this request asks for {asked}")]
    AnswerTokens { policy: String, limit: u32, asked: usize },
    #[error("the policy \"{policy}\" puts a system prompt first, which a prompt of token ids cannot carry: send the prompt as text")]
    TokenPrompt { policy: String },
    #[error("the policy \"{policy}\" allows {limit} tokens per day, and today's are used up; try again tomorrow (UTC)")]
    DayTokens { policy: String, limit: u32 },
}

impl Refusal {
    /// 403, or 429 for the daily limit.
    pub fn status(&self) -> axum::http::StatusCode {
        match self {
            Refusal::DayTokens { .. } => axum::http::StatusCode::TOO_MANY_REQUESTS,
            _ => axum::http::StatusCode::FORBIDDEN,
        }
    }
}

impl Active {
    /// The name shown to users.
    pub fn name(&self) -> &str {
        &self.policy.spec.name
    }

    /// The system prompt to put first, if the policy has one.
    pub fn system_prompt(&self) -> Option<&str> {
        self.policy.spec.system_prompt.as_deref().filter(|s| !s.is_empty())
    }

    pub fn show_energy(&self) -> bool {
        self.policy.spec.show_energy
    }

    pub fn show_marks(&self) -> bool {
        self.policy.spec.show_marks
    }

    /// Checks `model` and the answer's token limit (`usize::MAX`: the request set none) against
    /// the policy, and lowers `max_tokens` to the policy's limit and to what is left of the day.
    pub async fn admit(&self, model: &str, max_tokens: &mut usize) -> Result<(), ApiError> {
        let spec = &self.policy.spec;
        let name = || spec.name.clone();
        if !self.policy.allows_model(model) {
            return Err(Refusal::Model { policy: name(), model: model.to_string(), allowed: spec.allowed_models.join(", ") }.into());
        }
        if let Some(limit) = spec.max_tokens_per_answer {
            let limit_usize = limit as usize;
            if *max_tokens == usize::MAX {
                *max_tokens = limit_usize;
            } else if *max_tokens > limit_usize {
                return Err(Refusal::AnswerTokens { policy: name(), limit, asked: *max_tokens }.into());
            }
        }
        if let Some(limit) = spec.max_tokens_per_day {
            let used = self.store.policy_tokens_today(&self.usage_key).await.map_err(|e| ApiError::Internal(format!("reading today's tokens: {e}")))?;
            let left = u64::from(limit).saturating_sub(used);
            if left == 0 {
                return Err(Refusal::DayTokens { policy: name(), limit }.into());
            }
            *max_tokens = (*max_tokens).min(usize::try_from(left).unwrap_or(usize::MAX));
        }
        Ok(())
    }

    /// `/v1/completions`: puts the system prompt (and a blank line) before each text prompt;
    /// a prompt of token ids cannot carry it and is refused.
    pub fn admit_prompts(&self, input: &mut crate::validate::JobInput) -> Result<(), ApiError> {
        let (Some(system), crate::validate::JobInput::Prompts(prompts)) = (self.system_prompt(), input) else { return Ok(()) };
        for p in prompts.iter_mut() {
            match p {
                crate::validate::PromptInput::Text(t) => *t = format!("{system}\n\n{t}"),
                crate::validate::PromptInput::Tokens(_) => return Err(Refusal::TokenPrompt { policy: self.name().to_string() }.into()),
            }
        }
        Ok(())
    }

    /// Counts `tokens` generated under the policy toward today's limit (in the background: the
    /// answer is already out).
    pub fn record(&self, tokens: u64) {
        if tokens == 0 || self.policy.spec.max_tokens_per_day.is_none() {
            return;
        }
        let (store, key) = (self.store.clone(), self.usage_key.clone());
        tokio::spawn(async move {
            if let Err(e) = store.add_policy_tokens(&key, tokens).await {
                tracing::error!(error = %e, "counting a policy's tokens");
            }
        });
    }
}
