//! Parse, don't validate: raw OpenAI requests become a [`Job`] whose fields are in range and
//! whose errors name the offending parameter. Everything after this trusts a `Job`.

use crate::backend::{ChatMessage, GenSpec, SamplingSpec};
use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::openai::chat::{ChatCompletionRequest, MessageContent};
use crate::openai::common::{StopParam, StreamOptions, Unsupported};
use crate::openai::completions::{CompletionRequest, PromptParam};

/// OpenAI allows at most four stop sequences.
pub const MAX_STOP: usize = 4;
/// OpenAI's limit for `top_logprobs`.
pub const MAX_TOP_LOGPROBS: usize = 20;
/// Longest stop sequence in bytes: the engine holds back text that may start one and matches
/// every stop at every token, so their length bounds per-token work and held-back text.
pub const MAX_STOP_BYTES: usize = 512;

/// A validated generation request.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// The model id to report back.
    pub model: String,
    pub input: JobInput,
    /// `max_tokens` is the request's limit, or `usize::MAX` for "until the context is full".
    pub params: GenSpec,
    /// Choices per prompt.
    pub n: usize,
    pub stream: bool,
    pub include_usage: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum JobInput {
    Chat(Vec<ChatMessage>),
    /// Completion prompts, each either text or token ids.
    Prompts(Vec<PromptInput>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum PromptInput {
    Text(String),
    Tokens(Vec<u32>),
}

impl Job {
    /// The choice count of the response.
    pub fn n_choices(&self) -> usize {
        match &self.input {
            JobInput::Chat(_) => self.n,
            JobInput::Prompts(p) => p.len() * self.n,
        }
    }
}

fn float(param: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<Option<f32>, ApiError> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && (lo..=hi).contains(&x) => Ok(Some(x as f32)),
        Some(x) => Err(ApiError::param(param, format!("`{param}` must be between {lo} and {hi}, got {x}"))),
    }
}

fn int(param: &str, v: Option<i64>, lo: i64, hi: i64) -> Result<Option<usize>, ApiError> {
    match v {
        None => Ok(None),
        // Every range here starts at 0 or above, so an in-range value converts.
        Some(x) if (lo..=hi).contains(&x) && x >= 0 => Ok(usize::try_from(x).ok()),
        Some(x) => Err(ApiError::param(param, format!("`{param}` must be between {lo} and {hi}, got {x}"))),
    }
}

fn stops(v: Option<StopParam>) -> Result<Vec<String>, ApiError> {
    let list = match v {
        None => Vec::new(),
        Some(StopParam::One(s)) => vec![s],
        Some(StopParam::Many(v)) => v,
    };
    if list.len() > MAX_STOP {
        return Err(ApiError::param("stop", format!("`stop` takes at most {MAX_STOP} sequences, got {}", list.len())));
    }
    if let Some(long) = list.iter().find(|s| s.len() > MAX_STOP_BYTES) {
        return Err(ApiError::param(
            "stop",
            format!("a `stop` sequence has at most {MAX_STOP_BYTES} bytes, got one of {}", long.len()),
        ));
    }
    // An empty stop string would match everywhere; OpenAI ignores it.
    Ok(list.into_iter().filter(|s| !s.is_empty()).collect())
}

/// An OpenAI parameter this server does not implement: fine when absent (or `null`) or at its
/// no-op value, else a 400 naming it (never silently ignored).
fn unsupported(param: &str, v: &Unsupported, noop: fn(&serde_json::Value) -> bool) -> Result<(), ApiError> {
    match v {
        Some(x) if !noop(x) => Err(ApiError::param(
            param,
            format!("`{param}` is not supported by this server (leave it out or send null)"),
        )),
        _ => Ok(()),
    }
}

fn never(_: &serde_json::Value) -> bool {
    false
}

fn empty_list(v: &serde_json::Value) -> bool {
    v.as_array().is_some_and(Vec::is_empty)
}

/// `"none"` or `"auto"`: no tool (function) is called when none is given.
fn no_tool_choice(v: &serde_json::Value) -> bool {
    matches!(v.as_str(), Some("none" | "auto"))
}

fn text_format(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|m| m.len() == 1 && m.get("type").and_then(|t| t.as_str()) == Some("text"))
}

fn text_only(v: &serde_json::Value) -> bool {
    v.as_array().is_some_and(|a| a.iter().all(|m| m.as_str() == Some("text")) && !a.is_empty())
}

/// The chat request's unimplemented parameters.
fn chat_unsupported(req: &ChatCompletionRequest) -> Result<(), ApiError> {
    // `tools`, `tool_choice` and `response_format` are read by the chat core
    // (`crate::chat::request`), which takes them out of the request before this runs; any left
    // here come from a caller that does not use them, so only their no-op values pass.
    unsupported("tools", &req.tools, empty_list)?;
    unsupported("tool_choice", &req.tool_choice, no_tool_choice)?;
    unsupported("functions", &req.functions, empty_list)?;
    unsupported("function_call", &req.function_call, no_tool_choice)?;
    unsupported("response_format", &req.response_format, text_format)?;
    unsupported("modalities", &req.modalities, text_only)?;
    unsupported("audio", &req.audio, never)?;
    unsupported("prediction", &req.prediction, never)?;
    unsupported("reasoning_effort", &req.reasoning_effort, never)?;
    unsupported("verbosity", &req.verbosity, never)?;
    unsupported("web_search_options", &req.web_search_options, never)?;
    for (i, m) in req.messages.iter().enumerate() {
        unsupported(&format!("messages[{i}].function_call"), &m.function_call, never)?;
        unsupported(&format!("messages[{i}].refusal"), &m.refusal, never)?;
        unsupported(&format!("messages[{i}].audio"), &m.audio, never)?;
    }
    Ok(())
}

/// Sampling fields common to both endpoints.
struct RawSampling {
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<i64>,
    min_p: Option<f64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
    repeat_penalty: Option<f64>,
    seed: Option<i64>,
}

fn sampling(r: RawSampling) -> Result<SamplingSpec, ApiError> {
    Ok(SamplingSpec {
        temperature: float("temperature", r.temperature, 0.0, 2.0)?,
        top_p: float("top_p", r.top_p, 0.0, 1.0)?,
        top_k: int("top_k", r.top_k, 0, 1 << 20)?,
        min_p: float("min_p", r.min_p, 0.0, 1.0)?,
        presence_penalty: float("presence_penalty", r.presence_penalty, -2.0, 2.0)?,
        frequency_penalty: float("frequency_penalty", r.frequency_penalty, -2.0, 2.0)?,
        repeat_penalty: float("repeat_penalty", r.repeat_penalty, 0.0, 10.0)?,
        // OpenAI's seed is a signed 64-bit integer; any value is a valid seed.
        seed: r.seed.map(|s| s as u64),
    })
}

/// `temperature`, `top_p` and `top_k` checked as in chat completions (the other chat-shaped APIs
/// take only these).
pub fn basic_sampling(temperature: Option<f64>, top_p: Option<f64>, top_k: Option<i64>) -> Result<SamplingSpec, ApiError> {
    sampling(RawSampling { temperature, top_p, top_k, min_p: None, presence_penalty: None, frequency_penalty: None, repeat_penalty: None, seed: None })
}

fn include_usage(stream: bool, opts: Option<StreamOptions>) -> Result<bool, ApiError> {
    match opts.and_then(|o| o.include_usage) {
        Some(_) if !stream => {
            Err(ApiError::param("stream_options", "`stream_options` is only allowed when `stream` is true"))
        }
        v => Ok(v.unwrap_or(false)),
    }
}

fn messages(raw: Vec<crate::openai::chat::RawMessage>) -> Result<Vec<ChatMessage>, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::param("messages", "`messages` must hold at least one message"));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                // Tool results: the chat core checks and renders them (`crate::chat::request`).
                "tool" => "tool",
                other => {
                    return Err(ApiError::param(
                        format!("messages[{i}].role"),
                        format!("unsupported role `{other}` (expected system, developer, user or assistant)"),
                    ))
                }
            };
            let content = match m.content {
                Some(MessageContent::Text(s)) => s,
                Some(MessageContent::Parts(parts)) => {
                    let mut texts = Vec::with_capacity(parts.len());
                    for (j, p) in parts.into_iter().enumerate() {
                        match (p.kind.as_str(), p.text) {
                            ("text", Some(t)) => texts.push(t),
                            ("text", None) => {
                                return Err(ApiError::param(
                                    format!("messages[{i}].content[{j}].text"),
                                    "a text part needs `text`",
                                ))
                            }
                            (kind, _) => {
                                return Err(ApiError::param(
                                    format!("messages[{i}].content[{j}].type"),
                                    format!("unsupported content part type `{kind}` (this model reads text only)"),
                                ))
                            }
                        }
                    }
                    // llama.cpp joins typed text parts with newlines for templates that expect strings.
                    texts.join("\n")
                }
                None if role == "assistant" => String::new(),
                None => {
                    return Err(ApiError::param(format!("messages[{i}].content"), "a message needs `content`"))
                }
            };
            Ok(ChatMessage { role: role.to_string(), content })
        })
        .collect()
}

/// Validates a chat request against the served model.
pub fn chat(req: ChatCompletionRequest, cfg: &ServeConfig) -> Result<Job, ApiError> {
    let model = cfg.resolve_model(req.model.as_deref())?;
    chat_unsupported(&req)?;
    let stream = req.stream.unwrap_or(false);
    let include_usage = include_usage(stream, req.stream_options)?;
    let max_tokens = match (req.max_completion_tokens, req.max_tokens) {
        (Some(v), _) => int("max_completion_tokens", Some(v), 1, i64::MAX)?,
        (None, v) => int("max_tokens", v, 1, i64::MAX)?,
    };
    let top_logprobs = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
        (true, k) => Some(int("top_logprobs", k, 0, MAX_TOP_LOGPROBS as i64)?.unwrap_or(0)),
        (false, Some(_)) => {
            return Err(ApiError::param("top_logprobs", "`logprobs` must be true when `top_logprobs` is set"))
        }
        (false, None) => None,
    };
    let n = int("n", req.n, 1, cfg.max_n as i64)?.unwrap_or(1);
    let params = GenSpec {
        sampling: sampling(RawSampling {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            min_p: req.min_p,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            repeat_penalty: req.repeat_penalty,
            seed: req.seed,
        })?,
        max_tokens: max_tokens.unwrap_or(usize::MAX),
        stop: stops(req.stop)?,
        top_logprobs,
        ignore_eos: req.ignore_eos.unwrap_or(false),
        grammar: None,
        logit_bias: crate::logit_bias::parse(&req.logit_bias)?,
    };
    let input = JobInput::Chat(messages(req.messages)?);
    Ok(Job { model, input, params, n, stream, include_usage })
}

/// Validates a completion request; `n_vocab` bounds token-id prompts.
pub fn completion(req: CompletionRequest, cfg: &ServeConfig, n_vocab: usize) -> Result<Job, ApiError> {
    let model = cfg.resolve_model(req.model.as_deref())?;
    if req.echo == Some(true) {
        return Err(ApiError::param("echo", "`echo` is not supported"));
    }
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::param("suffix", "`suffix` is not supported"));
    }
    let logit_bias = crate::logit_bias::parse(&req.logit_bias)?;
    crate::logit_bias::check_vocab(&logit_bias, n_vocab)?;
    let stream = req.stream.unwrap_or(false);
    let include_usage = include_usage(stream, req.stream_options)?;
    let prompts = match req.prompt {
        PromptParam::Text(s) => vec![PromptInput::Text(s)],
        PromptParam::Texts(v) => v.into_iter().map(PromptInput::Text).collect(),
        PromptParam::Tokens(t) => vec![PromptInput::Tokens(t)],
        PromptParam::TokenLists(v) => v.into_iter().map(PromptInput::Tokens).collect(),
    };
    if prompts.is_empty() {
        return Err(ApiError::param("prompt", "`prompt` must not be an empty list"));
    }
    for (i, p) in prompts.iter().enumerate() {
        match p {
            PromptInput::Text(s) if s.is_empty() => {
                return Err(ApiError::param("prompt", format!("prompt {i} is empty")));
            }
            PromptInput::Tokens(t) if t.is_empty() => {
                return Err(ApiError::param("prompt", format!("prompt {i} has no tokens")));
            }
            PromptInput::Tokens(t) => {
                if let Some(bad) = t.iter().find(|&&id| id as usize >= n_vocab) {
                    return Err(ApiError::param(
                        "prompt",
                        format!("token id {bad} in prompt {i} is outside the vocabulary (0..{n_vocab})"),
                    ));
                }
            }
            PromptInput::Text(_) => {}
        }
    }
    let n = int("n", req.n, 1, cfg.max_n as i64)?.unwrap_or(1);
    // `best_of` > `n` would generate more and return the best: only the no-op value passes.
    if req.best_of.is_some_and(|b| b != n as i64) {
        return Err(ApiError::param("best_of", "`best_of` is not supported by this server (other than equal to `n`)"));
    }
    if prompts.len() * n > cfg.max_choices() {
        return Err(ApiError::param("prompt", format!("at most {} choices per request", cfg.max_choices())));
    }
    let params = GenSpec {
        sampling: sampling(RawSampling {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            min_p: req.min_p,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            repeat_penalty: req.repeat_penalty,
            seed: req.seed,
        })?,
        // OpenAI's completions default.
        max_tokens: int("max_tokens", req.max_tokens, 1, i64::MAX)?.unwrap_or(16),
        stop: stops(req.stop)?,
        top_logprobs: int("logprobs", req.logprobs, 0, MAX_TOP_LOGPROBS as i64)?,
        ignore_eos: req.ignore_eos.unwrap_or(false),
        grammar: None,
        logit_bias,
    };
    Ok(Job { model, input: JobInput::Prompts(prompts), params, n, stream, include_usage })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> ChatCompletionRequest {
        serde_json::from_value(v).expect("well-formed")
    }

    fn err_param(r: Result<Job, ApiError>) -> Option<String> {
        match r {
            Err(ApiError::InvalidParam { param, .. }) => param,
            other => panic!("expected an invalid parameter, got {other:?}"),
        }
    }

    #[test]
    fn chat_defaults_and_parts() {
        let cfg = ServeConfig::new("m");
        let j = chat(
            req(serde_json::json!({"messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null},
            ], "stop": "x", "seed": -1, "logprobs": true})),
            &cfg,
        )
        .expect("valid");
        assert_eq!(j.model, "m");
        assert_eq!(
            j.input,
            JobInput::Chat(vec![
                ChatMessage { role: "system".into(), content: "be brief".into() },
                ChatMessage { role: "user".into(), content: "a\nb".into() },
                ChatMessage { role: "assistant".into(), content: String::new() },
            ])
        );
        assert_eq!(j.params.stop, vec!["x".to_string()]);
        assert_eq!(j.params.sampling.seed, Some(u64::MAX));
        assert_eq!(j.params.top_logprobs, Some(0));
        assert_eq!(j.params.max_tokens, usize::MAX);
        assert_eq!((j.n, j.stream, j.include_usage), (1, false, false));
    }

    #[test]
    fn chat_errors_name_their_parameter() {
        let cfg = ServeConfig::new("m");
        let m = serde_json::json!([{"role": "user", "content": "hi"}]);
        let cases = [
            (serde_json::json!({"messages": m, "temperature": 2.5}), "temperature"),
            (serde_json::json!({"messages": m, "top_p": -0.1}), "top_p"),
            (serde_json::json!({"messages": m, "n": 0}), "n"),
            (serde_json::json!({"messages": m, "n": 17}), "n"),
            (serde_json::json!({"messages": m, "max_tokens": 0}), "max_tokens"),
            (serde_json::json!({"messages": m, "max_completion_tokens": -3}), "max_completion_tokens"),
            (serde_json::json!({"messages": m, "stop": ["a", "b", "c", "d", "e"]}), "stop"),
            (serde_json::json!({"messages": m, "stop": "x".repeat(MAX_STOP_BYTES + 1)}), "stop"),
            (serde_json::json!({"messages": m, "tools": [{"type": "function", "function": {"name": "f"}}]}), "tools"),
            (serde_json::json!({"messages": m, "tool_choice": "required"}), "tool_choice"),
            (serde_json::json!({"messages": m, "response_format": {"type": "json_object"}}), "response_format"),
            (serde_json::json!({"messages": m, "reasoning_effort": "high"}), "reasoning_effort"),
            (serde_json::json!({"messages": [{"role": "assistant", "content": null, "function_call": {"name": "c"}}]}), "messages[0].function_call"),
            (serde_json::json!({"messages": m, "presence_penalty": 3}), "presence_penalty"),
            (serde_json::json!({"messages": m, "frequency_penalty": -2.01}), "frequency_penalty"),
            (serde_json::json!({"messages": m, "top_logprobs": 2}), "top_logprobs"),
            (serde_json::json!({"messages": m, "logprobs": true, "top_logprobs": 21}), "top_logprobs"),
            (serde_json::json!({"messages": m, "stream_options": {"include_usage": true}}), "stream_options"),
            (serde_json::json!({"messages": []}), "messages"),
            (serde_json::json!({"messages": [{"role": "critic", "content": "x"}]}), "messages[0].role"),
            (serde_json::json!({"messages": [{"role": "user"}]}), "messages[0].content"),
            (
                serde_json::json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0].content[0].type",
            ),
        ];
        for (body, param) in cases {
            assert_eq!(err_param(chat(req(body.clone()), &cfg)).as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn unsupported_parameters_pass_at_their_no_op_values() {
        let cfg = ServeConfig::new("m");
        let j = chat(
            req(serde_json::json!({"messages": [{"role": "user", "content": "x", "tool_calls": []}],
                "tools": [], "tool_choice": "none", "response_format": {"type": "text"}, "logit_bias": {},
                "modalities": ["text"], "audio": null, "user": "u", "metadata": {"k": "v"}, "store": false,
                "parallel_tool_calls": true, "stop": "y".repeat(MAX_STOP_BYTES)})),
            &cfg,
        )
        .expect("no-op values pass");
        assert_eq!(j.params.stop.len(), 1);
        let parse = |v: serde_json::Value| serde_json::from_value::<CompletionRequest>(v).expect("well-formed");
        assert!(completion(parse(serde_json::json!({"prompt": "x", "logit_bias": {}, "best_of": 2, "n": 2})), &cfg, 100).is_ok());
        for (body, param) in [
            (serde_json::json!({"prompt": "x", "logit_bias": {"100": 5}}), "logit_bias"),
            (serde_json::json!({"prompt": "x", "logit_bias": {"1": 500}}), "logit_bias"),
            (serde_json::json!({"prompt": "x", "best_of": 3}), "best_of"),
        ] {
            assert_eq!(err_param(completion(parse(body.clone()), &cfg, 100)).as_deref(), Some(param), "{body}");
        }
    }

    #[test]
    fn unknown_model_is_not_found() {
        let cfg = ServeConfig::new("m");
        let r = chat(req(serde_json::json!({"model": "gpt-4", "messages": [{"role": "user", "content": "x"}]})), &cfg);
        assert_eq!(r, Err(ApiError::ModelNotFound("gpt-4".into())));
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let cfg = ServeConfig::new("m");
        let j = chat(
            req(serde_json::json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "max_completion_tokens": 7})),
            &cfg,
        )
        .expect("valid");
        assert_eq!(j.params.max_tokens, 7);
    }

    #[test]
    fn completion_prompts_and_limits() {
        let cfg = ServeConfig::new("m");
        let parse = |v: serde_json::Value| serde_json::from_value::<CompletionRequest>(v).expect("well-formed");
        let j = completion(parse(serde_json::json!({"prompt": ["a", "b"], "n": 2, "logprobs": 3})), &cfg, 100)
            .expect("valid");
        assert_eq!(j.n_choices(), 4);
        assert_eq!(j.params.max_tokens, 16);
        assert_eq!(j.params.top_logprobs, Some(3));
        let j = completion(parse(serde_json::json!({"prompt": [1, 2, 3]})), &cfg, 100).expect("valid");
        assert_eq!(j.input, JobInput::Prompts(vec![PromptInput::Tokens(vec![1, 2, 3])]));
        for (body, param) in [
            (serde_json::json!({"prompt": [1, 200]}), "prompt"),
            (serde_json::json!({"prompt": ""}), "prompt"),
            (serde_json::json!({"prompt": []}), "prompt"),
            (serde_json::json!({"prompt": "x", "echo": true}), "echo"),
            (serde_json::json!({"prompt": "x", "logprobs": 21}), "logprobs"),
        ] {
            let r = completion(parse(body.clone()), &cfg, 100);
            assert_eq!(err_param(r).as_deref(), Some(param), "{body}");
        }
    }
}
