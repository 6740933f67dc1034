//! Chat templates: the Hugging Face-style Jinja program stored in a GGUF (`tokenizer.chat_template`)
//! that turns a list of chat messages into the model's prompt text.
//!
//! We render with `minijinja`, set up to behave like transformers' `apply_chat_template`
//! (an `ImmutableSandboxedEnvironment` with `trim_blocks` and `lstrip_blocks`, `tojson`,
//! `raise_exception`, `strftime_now`). Every place where minijinja and Python's Jinja2 differ in a
//! way that real templates notice is patched in one function, [`compat::apply`], so the list of
//! deviations stays reviewable.
//!
//! ```
//! use engine::text::template::{ChatMessage, ChatTemplate};
//! let t = ChatTemplate::new(
//!     "{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}\n{% endfor %}\
//!      {% if add_generation_prompt %}<|assistant|>{% endif %}",
//!     "<s>",
//!     "</s>",
//! )?;
//! let out = t.render(&[ChatMessage::new("user", " hi ")], true)?;
//! assert_eq!(out, "<|user|>hi\n<|assistant|>");
//! # Ok::<(), engine::text::template::TemplateError>(())
//! ```

pub mod builtin;
mod compat;
mod json;
mod time;

use std::time::SystemTime;

use minijinja::{context, Environment, ErrorKind};

/// The name under which the template lives in its environment. It has no `.html`-like extension, so
/// minijinja never turns on HTML auto-escaping (transformers renders without escaping too).
const TEMPLATE_NAME: &str = "chat_template";

/// Instructions one render may execute (minijinja's fuel): real templates use a few hundred per
/// message, so this allows conversations of thousands of turns while a template that loops
/// forever (or over `range(100000)` twice nested) stops within about a hundred milliseconds.
pub const FUEL: u64 = 5_000_000;

/// The most bytes one render may produce: a fixed allowance plus a multiple of the messages'
/// own size (templates copy each message once, plus a little markup).
pub fn output_limit(messages: &[ChatMessage]) -> usize {
    let input: usize = messages.iter().map(|m| m.content.len() + m.role.len()).sum();
    (1 << 20) + 4 * input
}

/// Collects a render's output, failing once it passes its limit.
struct CappedOutput {
    buf: Vec<u8>,
    limit: usize,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + b.len() > self.limit {
            return Err(std::io::Error::other("the chat template's output is too large"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A context variable (not part of the HF contract) carrying the render time, so `strftime_now` and
/// `date_string` agree within one render and tests can pin the clock.
pub(crate) const NOW_VAR: &str = "__daehwa_now_unix";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template does not compile, or the GGUF metadata it needs is malformed.
    #[error("chat template: {0}")]
    Invalid(String),
    /// The template called `raise_exception(message)`: the messages break its rules (for example a
    /// template that requires alternating user/assistant turns).
    #[error("chat template rejected the messages: {0}")]
    Raised(String),
    /// Any other failure while rendering (a type error inside the template, ...).
    #[error("chat template failed to render: {0}")]
    Render(String),
    /// The render ran past its limits ([`FUEL`] instructions or [`output_limit`] bytes).
    #[error("chat template exceeded its limits: {0}")]
    Limit(String),
}

/// One chat turn, as an OpenAI-style `{role, content}` pair.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template together with the BOS/EOS texts it may print.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The Jinja source as given (before compatibility patches).
    source: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles a Hugging Face-style Jinja chat template. `bos_token`/`eos_token` are the token texts.
    /// A syntax error is reported here, not at the first render.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let source_text = source.to_owned();
        let mut env = Environment::new();
        compat::apply(&mut env);
        env.set_fuel(Some(FUEL));
        let source = compat::patch_source(source);
        env.add_template_owned(TEMPLATE_NAME, source)
            .map_err(|e| TemplateError::Invalid(describe(&e)))?;
        Ok(Self {
            env,
            source: source_text,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// From the GGUF: `tokenizer.chat_template`, with bos/eos texts taken from the vocabulary
    /// (`tokenizer.ggml.tokens[tokenizer.ggml.bos_token_id]`). `Ok(None)` when the file has no
    /// template. A missing BOS/EOS id gives an empty text, as llama.cpp does.
    pub fn from_gguf(f: &gguf::GgufFile) -> Result<Option<Self>, TemplateError> {
        let bad = |e: gguf::Error| TemplateError::Invalid(e.to_string());
        let Some(source) = f.opt_str("tokenizer.chat_template").map_err(bad)? else {
            return Ok(None);
        };
        let tokens = f.get_str_array("tokenizer.ggml.tokens").map_err(bad)?;
        let text_of = |key: &str| -> Result<String, TemplateError> {
            match f.opt_u32(key).map_err(bad)? {
                None => Ok(String::new()),
                Some(id) => tokens.get(id as usize).cloned().ok_or_else(|| {
                    TemplateError::Invalid(format!(
                        "{key} = {id} is outside the vocabulary ({} tokens)",
                        tokens.len()
                    ))
                }),
            }
        };
        let bos = text_of("tokenizer.ggml.bos_token_id")?;
        let eos = text_of("tokenizer.ggml.eos_token_id")?;
        Self::new(source, &bos, &eos).map(Some)
    }

    /// The template's Jinja source as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The BOS token text the template sees as `bos_token`.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// The EOS token text the template sees as `eos_token`.
    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Renders the prompt for `messages`; with `add_generation_prompt` the text ends with the
    /// opening of an assistant turn, ready for generation.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        self.render_at(messages, add_generation_prompt, SystemTime::now())
    }

    /// [`render`](Self::render) with a fixed clock for `strftime_now` and `date_string` (UTC).
    pub fn render_at(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        now: SystemTime,
    ) -> Result<String, TemplateError> {
        let limit = output_limit(messages);
        self.render_value(minijinja::value::Serde(messages).into(), minijinja::Value::from(()), limit, add_generation_prompt, now)
    }

    /// Renders Hugging Face-style JSON messages (an array of objects that may carry
    /// `tool_calls`, `tool_call_id`, `name`, `reasoning_content` besides `role` and `content`)
    /// with `tools` (OpenAI's tool definitions; `None`: the template sees `tools` as none), the
    /// way transformers' `apply_chat_template(messages, tools=tools)` does.
    pub fn render_json(
        &self,
        messages: &serde_json::Value,
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        self.render_json_at(messages, tools, add_generation_prompt, SystemTime::now())
    }

    /// [`render_json`](Self::render_json) with a fixed clock.
    pub fn render_json_at(
        &self,
        messages: &serde_json::Value,
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
        now: SystemTime,
    ) -> Result<String, TemplateError> {
        let size = messages.to_string().len() + tools.map_or(0, |t| t.to_string().len());
        let limit = (1 << 20) + 4 * size;
        // transformers passes `tools=None` when there are none: defined, none.
        let tools = tools.map_or(minijinja::Value::from(()), |t| minijinja::value::Serde(t).into());
        self.render_value(minijinja::value::Serde(messages).into(), tools, limit, add_generation_prompt, now)
    }

    fn render_value(
        &self,
        messages: minijinja::Value,
        tools: minijinja::Value,
        limit: usize,
        add_generation_prompt: bool,
        now: SystemTime,
    ) -> Result<String, TemplateError> {
        let unix = time::unix_seconds(now);
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::Invalid(describe(&e)))?;
        let ctx = context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            // transformers passes `tools=None, documents=None` when there are none: defined, none.
            tools => tools,
            documents => (),
            date_string => time::strftime("%d %b %Y", unix),
            __daehwa_now_unix => unix,
        };
        let mut out = CappedOutput { buf: Vec::new(), limit };
        tmpl.render_captured_to(ctx, &mut out).map_err(|e| match compat::raised_message(&e) {
            Some(msg) => TemplateError::Raised(msg),
            None if matches!(e.kind(), ErrorKind::OutOfFuel) => {
                TemplateError::Limit(format!("more than {FUEL} instructions"))
            }
            None if matches!(e.kind(), ErrorKind::WriteFailure) => {
                TemplateError::Limit(format!("more than {} bytes of output", out.limit))
            }
            None => TemplateError::Render(describe(&e)),
        })?;
        // Every write was a `str`, so the bytes are UTF-8.
        String::from_utf8(out.buf).map_err(|e| TemplateError::Render(e.to_string()))
    }

    /// Renders a short conversation (a system message, a user turn, an answer, a second user
    /// turn with the generation prompt) to prove at load that the template finishes within its
    /// limits. A template that rejects the system role is tried without it; a template that
    /// rejects both shapes is kept (its rules may admit other conversations), one that exceeds
    /// its limits is not.
    pub fn probe(&self) -> Result<(), TemplateError> {
        let turns = [
            ChatMessage::new("user", "Hello! What can you do?"),
            ChatMessage::new("assistant", "I can answer questions and help with writing."),
            ChatMessage::new("user", "Write a haiku about the sea."),
        ];
        let mut with_system = vec![ChatMessage::new("system", "You are a helpful assistant.")];
        with_system.extend(turns.iter().cloned());
        for msgs in [&with_system[..], &turns[..]] {
            match self.render(msgs, true) {
                Ok(_) => return Ok(()),
                Err(e @ TemplateError::Limit(_)) => return Err(e),
                Err(_) => {}
            }
        }
        Ok(())
    }
}

/// minijinja's `Display` for an error is short; add the cause chain and the location, which is what
/// a person fixing a template needs.
fn describe(e: &minijinja::Error) -> String {
    let mut s = e.to_string();
    if e.kind() == ErrorKind::SyntaxError {
        if let Some(line) = e.line() {
            if !s.contains("line") {
                s.push_str(&format!(" (line {line})"));
            }
        }
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
