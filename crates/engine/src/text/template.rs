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
        let mut env = Environment::new();
        compat::apply(&mut env);
        let source = compat::patch_source(source);
        env.add_template_owned(TEMPLATE_NAME, source)
            .map_err(|e| TemplateError::Invalid(describe(&e)))?;
        Ok(Self {
            env,
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
        let unix = time::unix_seconds(now);
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::Invalid(describe(&e)))?;
        let ctx = context! {
            messages => minijinja::value::Serde(messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            // transformers passes `tools=None, documents=None` when there are none: defined, none.
            tools => (),
            documents => (),
            date_string => time::strftime("%d %b %Y", unix),
            __daehwa_now_unix => unix,
        };
        tmpl.render(ctx)
            .map_err(|e| match compat::raised_message(&e) {
                Some(msg) => TemplateError::Raised(msg),
                None => TemplateError::Render(describe(&e)),
            })
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
