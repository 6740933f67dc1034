//! The engine's error type: each part has its own error enum, gathered here.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] gguf::Error),
    #[error(transparent)]
    Kernel(#[from] kernels::Error),
    #[error(transparent)]
    Tokenizer(#[from] crate::text::tokenizer::TokenizerError),
    #[error(transparent)]
    Template(#[from] crate::text::template::TemplateError),
    #[error(transparent)]
    TooManyTokens(#[from] crate::text::tokenizer::TooManyTokens),
    #[error(transparent)]
    Unlocated(#[from] crate::text::content::Unlocated),
    #[error("unsupported architecture `{arch}` (supported: {supported})")]
    UnsupportedArchitecture { arch: String, supported: String },
    #[error("chat is unavailable: {0}")]
    NoChat(String),
    #[error("model: {0}")]
    Model(String),
    #[error("the prompt has {n_prompt} tokens but the context holds {n_ctx}")]
    PromptTooLong { n_prompt: usize, n_ctx: usize },
    #[error("constrained decoding: {0}")]
    Grammar(String),
    #[error("invalid parameter `{param}`: {message}")]
    InvalidParam { param: &'static str, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
