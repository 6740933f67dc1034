//! [`Engine`]: a loaded model with its tokenizer, chat template and thread pool.

use std::path::Path;
use std::sync::Arc;

use gguf::GgufFile;
use kernels::pool::ThreadPool;

use crate::constraint::{CompiledGrammar, ConstraintError, GrammarSource, Grammars};
use crate::model::{self, Model};
use crate::text::template::builtin::{BuiltinFormat, ChatFormat};
use crate::text::template::{ChatMessage, ChatTemplate};
use crate::text::content;
use crate::text::tokenizer::{EncodeOptions, Tokenizer};
use crate::{Error, Result, TokenId};

/// How to load a model.
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// Worker threads for the kernels (0 = one per core).
    pub threads: usize,
    /// Let control tokens spelled inside chat messages become control tokens (llama.cpp's
    /// behaviour). Off by default: only the chat template's own markers are control tokens.
    pub parse_special_in_messages: bool,
}

pub struct Engine {
    pub file: Arc<GgufFile>,
    pub model: Box<dyn Model>,
    pub tokenizer: Tokenizer,
    /// The model's chat template; `Err` holds why chat is unavailable (none in the file, or it
    /// does not compile) while raw completion still works.
    pub template: std::result::Result<ChatTemplate, String>,
    /// The built-in chat format in use when the file has no template of its own (`None` when the
    /// file's template is used, or when there is no chat format at all).
    pub builtin_chat: Option<BuiltinFormat>,
    pub pool: ThreadPool,
    /// See [`EngineConfig::parse_special_in_messages`].
    pub parse_special_in_messages: bool,
    /// The grammar compiler of this vocabulary, built on first use ([`Engine::grammars`]).
    grammars: std::sync::OnceLock<std::result::Result<Grammars, ConstraintError>>,
}

impl Engine {
    pub fn load(path: impl AsRef<Path>, cfg: &EngineConfig) -> Result<Self> {
        let file = Arc::new(GgufFile::open(path)?);
        let model = model::load(file.clone())?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        // A missing or broken template must not stop raw completion: keep the reason for chat.
        // Without a template in the file, a built-in format chosen from the metadata applies.
        let (template, builtin_chat) = match ChatFormat::from_gguf(&file) {
            Ok(Some(ChatFormat::File(t))) => (Ok(t), None),
            Ok(Some(ChatFormat::Builtin(b, t))) => (Ok(t), Some(b)),
            Ok(None) => (
                Err("this model has no chat template (tokenizer.chat_template) and no built-in chat format fits it \
                     (gemma, chatml); use raw completion"
                    .to_string()),
                None,
            ),
            Err(e) => (Err(e.to_string()), None),
        };
        // The template is code from the file: it must finish a short conversation within its
        // limits, or the model does not load.
        if let Ok(t) = &template {
            t.probe()?;
        }
        // Token ids index the embedding table: the vocabulary must fit in it.
        let n_vocab = model.hparams().n_vocab;
        if tokenizer.n_vocab() > n_vocab {
            return Err(Error::Model(format!(
                "the tokenizer has {} tokens but the model's vocabulary (token_embd) has {n_vocab}",
                tokenizer.n_vocab()
            )));
        }
        let threads = if cfg.threads == 0 { kernels::pool::default_threads() } else { cfg.threads };
        file.advise_will_need();
        Ok(Engine {
            file,
            model,
            tokenizer,
            template,
            builtin_chat,
            pool: ThreadPool::new(threads),
            parse_special_in_messages: cfg.parse_special_in_messages,
            grammars: std::sync::OnceLock::new(),
        })
    }

    /// The grammar compiler for constrained decoding (its token trie is built on the first call,
    /// tens of milliseconds: call it off the engine thread).
    pub fn grammars(&self) -> std::result::Result<&Grammars, ConstraintError> {
        self.grammars.get_or_init(|| Grammars::new(&self.tokenizer)).as_ref().map_err(Clone::clone)
    }

    /// Compiles a grammar for this model's vocabulary (see [`crate::constraint`]).
    pub fn compile_grammar(&self, src: &GrammarSource) -> std::result::Result<CompiledGrammar, ConstraintError> {
        self.grammars()?.compile(src)
    }

    /// Renders `messages` with the model's chat template (generation prompt added) and tokenizes
    /// the result the way llama.cpp does for a templated prompt (special tokens parsed, BOS only
    /// where the vocabulary adds it), except that the messages' contents are plain text: a control
    /// token spelled in a message stays text unless `parse_special_in_messages` is set.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<TokenId>> {
        self.chat_prompt_limited(messages, None)
    }

    /// [`chat_prompt`](Self::chat_prompt) that stops with [`Error::TooManyTokens`] as soon as the
    /// prompt has more than `max_tokens` tokens.
    pub fn chat_prompt_limited(&self, messages: &[ChatMessage], max_tokens: Option<usize>) -> Result<Vec<TokenId>> {
        let template = self.template.as_ref().map_err(|e| Error::NoChat(e.clone()))?;
        let text = template.render(messages, true)?;
        let plain = if self.parse_special_in_messages {
            Vec::new()
        } else {
            content::locate(&text, messages.iter().map(|m| m.content.as_str()), |c| {
                self.tokenizer.has_special_spelling(c)
            })?
        };
        let opts = EncodeOptions { add_special: true, parse_special: true, plain: &plain, max_tokens };
        Ok(self.tokenizer.encode_with(&text, &opts)?)
    }

    /// The chat template's Jinja source (the file's, or the built-in format's), when chat works.
    pub fn chat_template_source(&self) -> Option<&str> {
        self.template.as_ref().ok().map(ChatTemplate::source)
    }

    /// [`chat_prompt_limited`](Self::chat_prompt_limited) for Hugging Face-style JSON messages
    /// (with tool calls and tool results) and OpenAI `tools`, rendered by the template
    /// ([`ChatTemplate::render_json`]); the messages' `content` strings stay plain text.
    pub fn chat_prompt_json(
        &self,
        messages: &serde_json::Value,
        tools: Option<&serde_json::Value>,
        max_tokens: Option<usize>,
    ) -> Result<Vec<TokenId>> {
        let template = self.template.as_ref().map_err(|e| Error::NoChat(e.clone()))?;
        self.refuse_special_outside_content(messages, tools)?;
        let text = template.render_json(messages, tools, true)?;
        let contents: Vec<&str> = messages
            .as_array()
            .map(|a| a.iter().filter_map(|m| m.get("content").and_then(|c| c.as_str())).collect())
            .unwrap_or_default();
        let plain = if self.parse_special_in_messages {
            Vec::new()
        } else {
            content::locate(&text, contents, |c| self.tokenizer.has_special_spelling(c))?
        };
        let opts = EncodeOptions { add_special: true, parse_special: true, plain: &plain, max_tokens };
        Ok(self.tokenizer.encode_with(&text, &opts)?)
    }

    /// The message contents are kept plain text wherever the template puts them; every other
    /// string a client passes to the template (reasoning, tool calls, tool names and schemas)
    /// may not spell a special token at all, so no request can forge the template's markers.
    fn refuse_special_outside_content(&self, messages: &serde_json::Value, tools: Option<&serde_json::Value>) -> Result<()> {
        if self.parse_special_in_messages {
            return Ok(());
        }
        fn find<'a>(v: &'a serde_json::Value, spells: &dyn Fn(&str) -> bool) -> Option<&'a str> {
            match v {
                serde_json::Value::String(s) => spells(s).then_some(s.as_str()),
                serde_json::Value::Array(a) => a.iter().find_map(|x| find(x, spells)),
                serde_json::Value::Object(o) => o.iter().find_map(|(k, x)| if spells(k) { Some(k.as_str()) } else { find(x, spells) }),
                _ => None,
            }
        }
        let spells = |s: &str| self.tokenizer.has_special_spelling(s);
        for (i, m) in messages.as_array().into_iter().flatten().enumerate() {
            for (key, v) in m.as_object().into_iter().flatten() {
                if key == "content" || key == "role" {
                    continue;
                }
                if let Some(s) = find(v, &spells) {
                    return Err(Error::InvalidParam {
                        param: "messages",
                        message: format!("messages[{i}].{key} spells a special token of the model ({s:?}); only message contents may, and they stay plain text"),
                    });
                }
            }
        }
        if let Some(s) = tools.and_then(|t| find(t, &spells)) {
            return Err(Error::InvalidParam { param: "tools", message: format!("a tool definition spells a special token of the model ({s:?})") });
        }
        Ok(())
    }

    /// Tokenizes a raw prompt: special tokens written in it are recognized, BOS added where the
    /// GGUF's `add_bos_token` says so.
    pub fn raw_prompt(&self, text: &str) -> Vec<TokenId> {
        self.tokenizer.encode(text, true, true)
    }

    /// [`raw_prompt`](Self::raw_prompt) that stops with [`Error::TooManyTokens`] as soon as the
    /// prompt has more than `max_tokens` tokens (a text too long in bytes is refused at once).
    pub fn raw_prompt_limited(&self, text: &str, max_tokens: usize) -> Result<Vec<TokenId>> {
        let opts = EncodeOptions { add_special: true, parse_special: true, plain: &[], max_tokens: Some(max_tokens) };
        Ok(self.tokenizer.encode_with(text, &opts)?)
    }
}
