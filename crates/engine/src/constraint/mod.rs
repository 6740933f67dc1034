//! Constrained decoding: a per-sequence token mask, from a grammar, applied to the logits before
//! sampling, so the output always matches a JSON schema (`response_format`) or a tool-call
//! grammar.
//!
//! The grammar engine is `llguidance` (the library llama.cpp and mistral.rs use), not a
//! hand-written compiler: it compiles JSON schemas and Lark grammars (which may embed JSON schemas
//! with `%json{...}`) against the model's vocabulary and computes the set of allowed tokens per
//! step in tens of microseconds.
//!
//! ```text
//!  Grammars (one per model: the vocabulary as a token trie)
//!     └─ compile(GrammarSource) ─▶ CompiledGrammar (shared by a request's choices)
//!           └─ SeqConstraint (one per sequence: a matcher; its next mask is computed on a
//!              worker thread while the batched forward pass runs, see `worker`)
//! ```

mod seq;
mod vocab;
mod worker;

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::{ParserFactory, TokenParser};

use crate::text::tokenizer::Tokenizer;

pub use seq::{SeqConstraint, Step};

/// What a sequence's output must match.
#[derive(Clone, Debug, PartialEq)]
pub enum GrammarSource {
    /// Any JSON object.
    JsonObject,
    /// JSON valid against this JSON Schema. `strict` is recorded for the caller; the schema is
    /// always enforced in full (a keyword the library cannot enforce is an error, never ignored).
    JsonSchema { schema: serde_json::Value, strict: bool },
    /// llguidance's Lark dialect (`%json{...}` embeds a JSON schema).
    Lark(String),
}

/// Why a grammar cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// The schema or grammar is invalid or uses something llguidance cannot enforce.
    #[error("{0}")]
    Unsupported(String),
    /// The vocabulary could not be prepared for constrained decoding.
    #[error("constrained decoding is not available for this model: {0}")]
    Unavailable(String),
}

/// The JSON layout generated JSON uses unless a schema says otherwise (`x-guidance`): one space
/// after `,` and `:`, no other whitespace. Flexible whitespace lets a small model emit newlines
/// forever inside an otherwise valid object.
fn json_layout() -> serde_json::Value {
    serde_json::json!({"whitespace_flexible": false, "item_separator": ", ", "key_separator": ": "})
}

fn with_layout(mut schema: serde_json::Value) -> serde_json::Value {
    cap_fraction_digits(&mut schema, 0);
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(json_layout);
    }
    schema
}

/// JSON numbers have no length limit, and a sampled model can write fraction digits until the
/// token budget ends (seen: 400 digits), leaving invalid JSON. Like llama.cpp's JSON grammars
/// (at most 16 fraction digits), generated non-integer numbers get at most 6 fraction digits:
/// `multipleOf: 0.000001` on every `number` schema without its own `multipleOf`. Every number it
/// allows is still valid against the original schema.
fn cap_fraction_digits(v: &mut serde_json::Value, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        serde_json::Value::Object(map) => {
            let is_number = match map.get("type") {
                Some(serde_json::Value::String(t)) => t == "number",
                Some(serde_json::Value::Array(ts)) => ts.iter().any(|t| t == "number"),
                _ => false,
            };
            if is_number && !map.contains_key("multipleOf") {
                map.insert("multipleOf".into(), serde_json::json!(0.000001));
            }
            for (k, child) in map.iter_mut() {
                // Literal values are data, not schemas.
                if k != "enum" && k != "const" && k != "default" && k != "examples" {
                    cap_fraction_digits(child, depth + 1);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|c| cap_fraction_digits(c, depth + 1)),
        _ => {}
    }
}

impl GrammarSource {
    fn top_level(&self) -> Result<TopLevelGrammar, ConstraintError> {
        Ok(match self {
            GrammarSource::JsonObject => TopLevelGrammar::from_json_schema(with_layout(serde_json::json!({"type": "object"}))),
            GrammarSource::JsonSchema { schema, .. } => {
                if !(schema.is_object() || schema.is_boolean()) {
                    return Err(ConstraintError::Unsupported("a JSON schema is an object (or a boolean)".into()));
                }
                TopLevelGrammar::from_json_schema(with_layout(schema.clone()))
            }
            GrammarSource::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
        })
    }
}

/// One model's grammar compiler: its vocabulary as llguidance's token trie, built once.
pub struct Grammars {
    factory: Arc<ParserFactory>,
    /// End-of-generation ids beside the one llguidance knows as EOS: allowed whenever it is.
    eog: Vec<u32>,
    eos: u32,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammars").field("eos", &self.eos).field("eog", &self.eog).finish()
    }
}

impl Grammars {
    /// Builds the token trie of `tok`'s vocabulary (tens of milliseconds for 150k tokens).
    pub fn new(tok: &Tokenizer) -> Result<Self, ConstraintError> {
        let env = vocab::env(tok).map_err(ConstraintError::Unavailable)?;
        let eos = env.tok_trie().eos_token();
        // llguidance's default limits bound compile and per-step work (lexer states, items per
        // step, grammar size), so a hostile schema fails to compile instead of running long.
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| ConstraintError::Unavailable(e.to_string()))?;
        factory.quiet();
        Ok(Grammars { factory: Arc::new(factory), eog: tok.eog_ids(), eos })
    }

    /// Compiles `src`. CPU-heavy for large schemas (milliseconds): call it off the engine thread.
    pub fn compile(&self, src: &GrammarSource) -> Result<CompiledGrammar, ConstraintError> {
        let grammar = src.top_level()?;
        let parser = self.factory.create_parser(grammar).map_err(|e| ConstraintError::Unsupported(clean(&e.to_string())))?;
        // A grammar that is wrong in a way only the first step shows (an empty language, a
        // lexer error) fails here rather than in the middle of a request.
        let mut probe = llguidance::Matcher::new(Ok(parser.deep_clone()));
        probe.compute_mask().map_err(|e| ConstraintError::Unsupported(clean(&e.to_string())))?;
        Ok(CompiledGrammar(Arc::new(CompiledInner { parser, eog: self.eog.clone(), eos: self.eos })))
    }
}

/// llguidance's messages sometimes end in a newline or carry a long backtrace-like tail: one line.
fn clean(msg: &str) -> String {
    let first = msg.trim().lines().next().unwrap_or("the grammar is invalid").trim();
    first.chars().take(500).collect()
}

pub(crate) struct CompiledInner {
    pub parser: TokenParser,
    pub eog: Vec<u32>,
    pub eos: u32,
}

/// A compiled grammar: cheap to clone, shared by every choice of a request; each sequence gets its
/// own [`SeqConstraint`].
#[derive(Clone)]
pub struct CompiledGrammar(pub(crate) Arc<CompiledInner>);

impl std::fmt::Debug for CompiledGrammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CompiledGrammar(..)")
    }
}

impl CompiledGrammar {
    /// A fresh matcher for one sequence; its first mask starts computing at once.
    pub fn start(&self) -> SeqConstraint {
        SeqConstraint::start(self.0.clone())
    }
}
