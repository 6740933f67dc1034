//! Built-in chat formats for GGUFs that carry no `tokenizer.chat_template` (base models such as
//! Gemma-3-270M, or files converted without one), chosen from the metadata the way llama.cpp
//! falls back on its own built-in formats (`llm_chat_apply_template`).
//!
//! Each format is written as a small Jinja program with the same output as llama.cpp's C++ for
//! that format, so it renders through the same [`ChatTemplate`] as a template from a file. Neither
//! prints `bos_token`: the tokenizer adds BOS to a templated prompt where the vocabulary asks for
//! it (as llama.cpp does), so printing it too would double it.
//!
//! Detection, in order (first match wins):
//! - **Gemma** (`<start_of_turn>user\n...<end_of_turn>\n`, assistant turns are `model`, a system
//!   message is merged into the next user turn): `general.architecture` starts with `gemma`, or the
//!   vocabulary has both `<start_of_turn>` and `<end_of_turn>`.
//! - **ChatML** (`<|im_start|>role\n...<|im_end|>\n`): the vocabulary has both `<|im_start|>` and
//!   `<|im_end|>` (Qwen, SmolLM, many fine-tunes).
//!
//! A file matching neither has no chat format: chat is unavailable with a clear error, raw
//! completion still works.

use gguf::GgufFile;

use super::{ChatTemplate, TemplateError};

/// A chat format daehwa knows without the file's help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuiltinFormat {
    Gemma,
    ChatMl,
}

/// llama.cpp's `LLM_CHAT_TEMPLATE_GEMMA`: system text (trimmed, several concatenated) goes before
/// the first non-model turn after it, followed by a blank line; every content is trimmed.
/// (`trim` here strips Unicode white space, llama.cpp's strips ASCII white space; they differ only
/// on contents starting or ending with e.g. U+3000.)
const GEMMA: &str = "{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}
{%- set ns.system = ns.system + (message['content'] | trim) -%}
{%- else -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{- '<start_of_turn>' + role + '\n' -}}
{%- if ns.system and role != 'model' -%}
{{- ns.system + '\n\n' -}}
{%- set ns.system = '' -%}
{%- endif -%}
{{- (message['content'] | trim) + '<end_of_turn>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<start_of_turn>model\n' -}}
{%- endif -%}";

/// llama.cpp's `LLM_CHAT_TEMPLATE_CHATML`: contents verbatim.
const CHATML: &str = "{%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- endif -%}";

impl BuiltinFormat {
    /// Short name: `gemma`, `chatml`.
    pub fn name(self) -> &'static str {
        match self {
            BuiltinFormat::Gemma => "gemma",
            BuiltinFormat::ChatMl => "chatml",
        }
    }

    /// How listings show it: `builtin:gemma`, `builtin:chatml`.
    pub fn label(self) -> String {
        format!("builtin:{}", self.name())
    }

    /// The Jinja source of the format.
    pub fn source(self) -> &'static str {
        match self {
            BuiltinFormat::Gemma => GEMMA,
            BuiltinFormat::ChatMl => CHATML,
        }
    }

    /// The format that fits a file's metadata (see the module docs), whether or not the file
    /// also has its own template. `None` when nothing fits.
    pub fn detect(f: &GgufFile) -> Option<Self> {
        let arch = f.opt_str("general.architecture").ok().flatten().unwrap_or("");
        let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap_or(&[]);
        let has = |a: &str, b: &str| {
            let (mut seen_a, mut seen_b) = (false, false);
            for t in tokens {
                seen_a |= t == a;
                seen_b |= t == b;
                if seen_a && seen_b {
                    return true;
                }
            }
            false
        };
        if arch.starts_with("gemma") || has("<start_of_turn>", "<end_of_turn>") {
            Some(BuiltinFormat::Gemma)
        } else if has("<|im_start|>", "<|im_end|>") {
            Some(BuiltinFormat::ChatMl)
        } else {
            None
        }
    }

    /// Compiles the format, with the file's BOS/EOS texts (unused by the formats themselves).
    pub fn template(self, bos_token: &str, eos_token: &str) -> Result<ChatTemplate, TemplateError> {
        ChatTemplate::new(self.source(), bos_token, eos_token)
    }
}

/// Where a model's chat format comes from.
#[derive(Debug)]
pub enum ChatFormat {
    /// The file's own `tokenizer.chat_template`.
    File(ChatTemplate),
    /// A built-in format, because the file has no template.
    Builtin(BuiltinFormat, ChatTemplate),
}

impl ChatFormat {
    /// The file's template if it has one, else the built-in format its metadata points to;
    /// `Ok(None)` when neither applies. A file template that does not compile is an error (it is
    /// not silently replaced by a built-in one).
    pub fn from_gguf(f: &GgufFile) -> Result<Option<Self>, TemplateError> {
        if let Some(t) = ChatTemplate::from_gguf(f)? {
            return Ok(Some(ChatFormat::File(t)));
        }
        let Some(b) = BuiltinFormat::detect(f) else {
            return Ok(None);
        };
        let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap_or(&[]);
        let text = |key: &str| {
            f.opt_u32(key).ok().flatten().and_then(|id| tokens.get(id as usize).cloned()).unwrap_or_default()
        };
        let t = b.template(&text("tokenizer.ggml.bos_token_id"), &text("tokenizer.ggml.eos_token_id"))?;
        Ok(Some(ChatFormat::Builtin(b, t)))
    }

    /// `file` or `builtin:<name>`, for listings and logs.
    pub fn label(&self) -> String {
        match self {
            ChatFormat::File(_) => "file".to_string(),
            ChatFormat::Builtin(b, _) => b.label(),
        }
    }

    pub fn template(&self) -> &ChatTemplate {
        match self {
            ChatFormat::File(t) | ChatFormat::Builtin(_, t) => t,
        }
    }

    pub fn into_template(self) -> ChatTemplate {
        match self {
            ChatFormat::File(t) | ChatFormat::Builtin(_, t) => t,
        }
    }
}

#[cfg(test)]
mod tests {
    use gguf::{Array, GgufWriter, Value};

    use super::*;
    use crate::text::template::ChatMessage;

    fn file(arch: &str, tokens: &[&str], template: Option<&str>) -> GgufFile {
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String(arch.into()));
        w.add("tokenizer.ggml.tokens", Value::Array(Array::String(tokens.iter().map(|t| t.to_string()).collect())));
        w.add("tokenizer.ggml.bos_token_id", Value::U32(0));
        w.add("tokenizer.ggml.eos_token_id", Value::U32(1));
        if let Some(t) = template {
            w.add("tokenizer.chat_template", Value::String(t.into()));
        }
        GgufFile::from_bytes(w.to_bytes()).expect("parse")
    }

    fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
        pairs.iter().map(|(r, c)| ChatMessage::new(*r, *c)).collect()
    }

    #[test]
    fn detection_follows_architecture_then_vocabulary() {
        let gemma_vocab = ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"];
        let chatml_vocab = ["<|im_start|>", "<|im_end|>", "a"];
        assert_eq!(BuiltinFormat::detect(&file("gemma3", &["<bos>", "<eos>"], None)), Some(BuiltinFormat::Gemma));
        assert_eq!(BuiltinFormat::detect(&file("llama", &gemma_vocab, None)), Some(BuiltinFormat::Gemma));
        assert_eq!(BuiltinFormat::detect(&file("qwen2", &chatml_vocab, None)), Some(BuiltinFormat::ChatMl));
        // One of a pair is not enough.
        assert_eq!(BuiltinFormat::detect(&file("llama", &["<s>", "<|im_start|>"], None)), None);
        assert_eq!(BuiltinFormat::detect(&file("llama", &["<s>", "</s>"], None)), None);
    }

    #[test]
    fn the_file_template_wins_and_no_format_is_none() {
        let f = file("gemma3", &["<bos>", "<eos>"], Some("{{ messages[0].content }}"));
        let c = ChatFormat::from_gguf(&f).expect("ok").expect("some");
        assert_eq!(c.label(), "file");
        assert_eq!(c.template().render(&msgs(&[("user", "hi")]), true).expect("render"), "hi");
        let c = ChatFormat::from_gguf(&file("gemma3", &["<bos>", "<eos>"], None)).expect("ok").expect("some");
        assert_eq!(c.label(), "builtin:gemma");
        assert_eq!(c.template().bos_token(), "<bos>");
        assert!(ChatFormat::from_gguf(&file("llama", &["<s>", "</s>"], None)).expect("ok").is_none());
        // A broken file template is an error, not silently replaced.
        assert!(ChatFormat::from_gguf(&file("gemma3", &["<bos>", "<eos>"], Some("{% for %}"))).is_err());
    }

    /// llama.cpp's `LLM_CHAT_TEMPLATE_GEMMA` output for the same messages (system merged into the
    /// next user turn, several system messages concatenated, contents trimmed, `model` role).
    #[test]
    fn gemma_renders_like_llama_cpp() {
        let t = BuiltinFormat::Gemma.template("<bos>", "<eos>").expect("compiles");
        let m = msgs(&[("system", " Be brief. "), ("user", " Hi\n"), ("assistant", "Hello!"), ("user", "Bye")]);
        assert_eq!(
            t.render(&m, true).expect("render"),
            "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
        let m = msgs(&[("system", "A"), ("system", "B"), ("assistant", "x"), ("user", "y")]);
        assert_eq!(
            t.render(&m, false).expect("render"),
            "<start_of_turn>model\nx<end_of_turn>\n<start_of_turn>user\nAB\n\ny<end_of_turn>\n"
        );
    }

    #[test]
    fn chatml_renders_like_llama_cpp() {
        let t = BuiltinFormat::ChatMl.template("", "").expect("compiles");
        let m = msgs(&[("system", "sys "), ("user", " hi")]);
        assert_eq!(
            t.render(&m, true).expect("render"),
            "<|im_start|>system\nsys <|im_end|>\n<|im_start|>user\n hi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(t.render(&m[..1], false).expect("render"), "<|im_start|>system\nsys <|im_end|>\n");
    }
}
