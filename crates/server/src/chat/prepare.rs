//! From a [`ChatInput`] to what a generation needs: the prompt tokens, the compiled grammar and
//! the output parser's configuration. Rendering, tokenizing and compiling are CPU work, done on
//! the blocking pool under the tokenizer permits ([`crate::prompt_limits`]).

use std::sync::Arc;

use super::family::{Family, ModelTraits};
use super::parser::ParserConfig;
use super::{grammar, render, ChatInput, ToolChoice};
use crate::backend::{Backend, ChatMessage, Grammar, GrammarError, PromptError, TokenId};
use crate::error::ApiError;
use crate::prompt_limits;
use crate::validate::JobInput;

/// A conversation ready to generate from.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub prompt: Vec<TokenId>,
    /// The grammar every choice's output must match (`None`: free text).
    pub grammar: Option<Grammar>,
    /// How to read the output ([`super::OutputParser::new`] per choice).
    pub parser: ParserConfig,
    pub traits: ModelTraits,
}

/// Whether the prompt ends inside an opened `<think>` (templates that start the reasoning in the
/// generation prompt): read from the last tokens' text.
fn prompt_opens_think(backend: &dyn Backend, prompt: &[TokenId]) -> bool {
    let tail: Vec<u8> = prompt[prompt.len().saturating_sub(6)..].iter().flat_map(|&t| backend.token_bytes(t)).collect();
    String::from_utf8_lossy(&tail).trim_end().ends_with("<think>")
}

fn grammar_error(e: GrammarError, param: &str) -> ApiError {
    match e {
        GrammarError::Unsupported(m) => ApiError::param(param, format!("`{param}` cannot be used for constrained decoding: {m}")),
        GrammarError::Unavailable => ApiError::param(param, format!("`{param}` needs constrained decoding, which this server's backend cannot do")),
    }
}

/// Renders, tokenizes and compiles for `input` on `backend`. Errors name the OpenAI chat
/// parameter at fault (`messages`, `tools`, `response_format`).
pub async fn prepare(backend: &Arc<dyn Backend>, input: ChatInput) -> Result<Prepared, ApiError> {
    // The cheap bound first: a conversation longer in bytes than the context can hold.
    let bytes_in = JobInput::Chat(
        input.turns.iter().map(|t| ChatMessage { role: String::new(), content: t.content.clone() }).collect(),
    );
    prompt_limits::check_bytes(backend.as_ref(), &bytes_in)?;
    let _permit = prompt_limits::tokenize_permit().await?;
    let b = backend.clone();
    let n_ctx = backend.n_ctx();
    tokio::task::spawn_blocking(move || prepare_blocking(b.as_ref(), &input, n_ctx))
        .await
        .map_err(|e| ApiError::Internal(format!("chat prepare task: {e}")))?
}

/// [`prepare`]'s work, on the calling thread (call it on the blocking pool).
pub fn prepare_blocking(backend: &dyn Backend, input: &ChatInput, n_ctx: usize) -> Result<Prepared, ApiError> {
    let traits = ModelTraits::from_template(backend.chat_template_source().as_deref());
    let max = n_ctx.saturating_sub(1);
    let too_long = |e: PromptError| match e {
        PromptError::TooLong { at_least, .. } => ApiError::ContextLengthExceededAtLeast { at_least, n_ctx },
        PromptError::Invalid(m) => ApiError::param("messages", m),
    };
    let tools_on = !input.active_tools().is_empty();
    // The grammar first: a schema the library cannot handle is the more useful error.
    let family = if traits.template_tools { traits.family } else { Family::Generic };
    // Harmony output is read by its channels, tool calls included; only a harmony template that
    // cannot render tools falls back to the generic envelope when tools are on.
    let family = if traits.family == Family::Harmony && !tools_on { Family::Harmony } else { family };
    let grammar = match grammar::answer_grammar(input, family) {
        None => None,
        Some(spec) => {
            let param = if tools_on { "tools" } else { "response_format" };
            Some(backend.compile_grammar(&spec).map_err(|e| grammar_error(e, param))?)
        }
    };
    let prompt = if !render::uses_tools(input) && input.turns.iter().all(|t| t.reasoning.is_none()) {
        let msgs: Vec<ChatMessage> =
            input.turns.iter().map(|t| ChatMessage { role: t.role.as_str().to_string(), content: t.content.clone() }).collect();
        backend.chat_prompt(&msgs, max).map_err(too_long)?
    } else if traits.template_tools {
        let tools = render::template_tools(input);
        backend.chat_prompt_json(&render::template_messages(&input.turns), tools.as_ref(), max).map_err(too_long)?
    } else {
        backend.chat_prompt(&render::generic_messages(input), max).map_err(too_long)?
    };
    if prompt.is_empty() {
        return Err(ApiError::param("messages", "the prompt has no tokens"));
    }
    if prompt.len() >= n_ctx {
        return Err(ApiError::ContextLengthExceeded { n_prompt: prompt.len(), n_ctx });
    }
    let parser = ParserConfig {
        family,
        tools: tools_on,
        reasoning: traits.reasoning,
        in_reasoning: traits.reasoning && prompt_opens_think(backend, &prompt),
        single_call: !input.parallel_tool_calls || matches!(input.tool_choice, ToolChoice::Function(_)),
    };
    Ok(Prepared { prompt, grammar, parser, traits })
}
