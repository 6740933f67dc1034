//! Text in and out: tokenizers, the streaming detokenizer, chat templates and stop strings.

pub mod content;
pub mod stop;
pub mod stream;
pub mod template;
pub mod tokenizer;
