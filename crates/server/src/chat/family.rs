//! What a model's chat template says about tools and reasoning, read from its Jinja source.
//!
//! - [`Family::Hermes`]: `<tool_call>{"name": .., "arguments": ..}</tool_call>` (Qwen 2.5 / 3,
//!   Hermes 2 Pro / 3, EXAONE 4, which use the same tags).
//! - [`Family::Llama3`]: a bare JSON object `{"name": .., "parameters": ..}`, optionally after
//!   `<|python_tag|>` (Llama 3.1 / 3.2 / 3.3).
//! - [`Family::Generic`]: the template knows no tools (SmolLM2, Gemma 3): tools are described in
//!   the system turn and the answer is a JSON envelope, `{"tool_calls": [...]}` or
//!   `{"response": "..."}`, constrained by a grammar so it always parses (llama.cpp's fallback).

/// How a model writes tool calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Hermes,
    Llama3,
    Generic,
    /// OpenAI's harmony channels (gpt-oss): `<|channel|>analysis<|message|>...<|end|>` is the
    /// reasoning, `final` the answer, a message addressed `to=functions.NAME` a tool call
    /// (`harmony.rs`); the template renders the tools as a TypeScript namespace.
    Harmony,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Hermes => "hermes",
            Family::Llama3 => "llama3",
            Family::Generic => "generic",
            Family::Harmony => "harmony",
        }
    }
}

/// What the chat core needs to know about a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelTraits {
    /// The tool-call format; [`Family::Generic`] when the template cannot render tools.
    pub family: Family,
    /// The template renders `tools` itself (HF's `tools` context variable).
    pub template_tools: bool,
    /// The model may think in `<think>...</think>` before answering.
    pub reasoning: bool,
}

impl ModelTraits {
    /// A model without a template (or one we cannot read): generic tools, no reasoning.
    pub const GENERIC: ModelTraits = ModelTraits { family: Family::Generic, template_tools: false, reasoning: false };

    /// Reads the traits off a chat template's source.
    pub fn from_template(source: Option<&str>) -> ModelTraits {
        let Some(src) = source else { return ModelTraits::GENERIC };
        if src.contains("<|channel|>") && src.contains("<|message|>") {
            // A harmony template that cannot render tools still has its channels read; its
            // tools then use the generic envelope (prepare.rs).
            return ModelTraits { family: Family::Harmony, template_tools: src.contains("tools"), reasoning: true };
        }
        let uses_tools = src.contains("tools");
        let family = if uses_tools && src.contains("<tool_call>") {
            Family::Hermes
        } else if uses_tools && (src.contains("<|python_tag|>") || src.contains("\"parameters\"") || src.contains("Environment: ipython")) {
            Family::Llama3
        } else {
            Family::Generic
        };
        ModelTraits { family, template_tools: family != Family::Generic, reasoning: src.contains("<think>") || src.contains("</think>") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_from_template_sources() {
        let qwen = "{%- if tools %}<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools> <tool_call>{% endif %}";
        assert_eq!(ModelTraits::from_template(Some(qwen)).family, Family::Hermes);
        let qwen3 = "{%- if tools %}<tool_call>{% endif %}{% if '</think>' in content %}{% endif %}";
        let t = ModelTraits::from_template(Some(qwen3));
        assert_eq!((t.family, t.template_tools, t.reasoning), (Family::Hermes, true, true));
        let llama = "{%- if tools is not none %}Environment: ipython{% endif %}<|python_tag|>";
        assert_eq!(ModelTraits::from_template(Some(llama)).family, Family::Llama3);
        let chatml = "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}";
        assert_eq!(ModelTraits::from_template(Some(chatml)), ModelTraits::GENERIC);
        assert_eq!(ModelTraits::from_template(None), ModelTraits::GENERIC);
        let gpt_oss = "{{- \"<|start|>assistant<|channel|>final<|message|>\" + message.content + \"<|end|>\" }}{% if tools %}functions{% endif %}";
        let t = ModelTraits::from_template(Some(gpt_oss));
        assert_eq!((t.family, t.template_tools, t.reasoning), (Family::Harmony, true, true));
        let no_tools = "{{- \"<|start|>assistant<|channel|>final<|message|>\" + message.content + \"<|end|>\" }}";
        let t = ModelTraits::from_template(Some(no_tools));
        assert_eq!((t.family, t.template_tools, t.reasoning), (Family::Harmony, false, true));
    }
}
