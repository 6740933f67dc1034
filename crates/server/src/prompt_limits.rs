//! Bounds on a prompt before and around tokenization, shared by `/v1` and the web UI's message
//! route (both tokenize through [`crate::generation::tokenize`]):
//!
//! - [`check_bytes`]: a prompt longer in bytes than the context can possibly hold is rejected at
//!   once, without tokenizing it. Every token stands for at most [`Backend::max_token_bytes`]
//!   bytes, so a text of `b` bytes has at least `b / max_token_bytes` tokens; more bytes than
//!   `n_ctx x max_token_bytes` cannot fit (a 15 MiB prompt used to be tokenized in full, 10 s and
//!   +900 MB, only to be refused).
//! - [`tokenize_permit`]: at most [`max_tokenizations`] prompts are tokenized at once (on the
//!   blocking pool); later requests wait for a permit, up to [`PERMIT_WAIT`], then get 429.

use std::sync::LazyLock;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::backend::Backend;
use crate::error::ApiError;
use crate::validate::{JobInput, PromptInput};

/// How long a request waits for a tokenization permit before it is turned away (429).
pub const PERMIT_WAIT: Duration = Duration::from_secs(30);

/// Concurrent tokenizations: the core count (at least 1, at most 16). Tokenizing is CPU work;
/// more at once only adds memory (each holds its text and token list) and latency.
pub fn max_tokenizations() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 16)
}

static TOKENIZERS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(max_tokenizations()));

/// Waits for a tokenization permit (bounded: 429 after [`PERMIT_WAIT`]).
pub async fn tokenize_permit() -> Result<SemaphorePermit<'static>, ApiError> {
    match tokio::time::timeout(PERMIT_WAIT, TOKENIZERS.acquire()).await {
        Ok(Ok(p)) => Ok(p),
        // The semaphore is never closed; a timeout means the tokenizers are saturated.
        Ok(Err(_)) | Err(_) => Err(ApiError::QueueFull),
    }
}

/// The most bytes a prompt of `n_ctx` tokens can have.
pub fn max_prompt_bytes(backend: &dyn Backend) -> usize {
    backend
        .n_ctx()
        .saturating_mul(backend.max_token_bytes().max(1))
}

/// Rejects, before any tokenization, a prompt that cannot fit in the context: the sum of a chat's
/// message contents, or any one completion prompt, longer in bytes than [`max_prompt_bytes`].
pub fn check_bytes(backend: &dyn Backend, input: &JobInput) -> Result<(), ApiError> {
    let limit = max_prompt_bytes(backend);
    let n_ctx = backend.n_ctx();
    let too_long = |n_bytes: usize| ApiError::PromptTooManyBytes { n_bytes, n_ctx };
    match input {
        JobInput::Chat(msgs) => {
            let n_bytes = msgs
                .iter()
                .fold(0usize, |acc, m| acc.saturating_add(m.content.len()));
            if n_bytes > limit {
                return Err(too_long(n_bytes));
            }
        }
        JobInput::Prompts(ps) => {
            for p in ps {
                if let PromptInput::Text(s) = p {
                    if s.len() > limit {
                        return Err(too_long(s.len()));
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ChatMessage, ChoiceSink, GenRequest, PromptError, Stats, SubmitError, TokenId};

    struct B;
    impl Backend for B {
        fn n_ctx(&self) -> usize {
            10
        }
        fn n_vocab(&self) -> usize {
            300
        }
        fn max_token_bytes(&self) -> usize {
            3
        }
        fn chat_prompt(&self, _: &[ChatMessage], _: usize) -> Result<Vec<TokenId>, PromptError> {
            unreachable!("never tokenized")
        }
        fn raw_prompt(&self, _: &str, _: usize) -> Result<Vec<TokenId>, PromptError> {
            unreachable!("never tokenized")
        }
        fn token_bytes(&self, _: TokenId) -> Vec<u8> {
            Vec::new()
        }
        fn submit(&self, _: GenRequest, _: ChoiceSink) -> Result<(), SubmitError> {
            Ok(())
        }
        fn stats(&self) -> Stats {
            Stats::default()
        }
        fn shutdown(&self, _: Duration) {}
    }

    #[test]
    fn bytes_beyond_context_times_longest_token_are_refused() {
        let msg = |n: usize| ChatMessage {
            role: "user".into(),
            content: "x".repeat(n),
        };
        assert!(check_bytes(&B, &JobInput::Chat(vec![msg(15), msg(15)])).is_ok());
        let e = check_bytes(&B, &JobInput::Chat(vec![msg(15), msg(16)])).expect_err("31 > 30");
        assert_eq!(
            e.body().error.code.as_deref(),
            Some("context_length_exceeded")
        );
        assert!(e.to_string().contains("31 bytes"), "{e}");
        let p = |n: usize| PromptInput::Text("y".repeat(n));
        assert!(check_bytes(
            &B,
            &JobInput::Prompts(vec![p(30), p(30), PromptInput::Tokens(vec![1; 99])])
        )
        .is_ok());
        assert!(check_bytes(&B, &JobInput::Prompts(vec![p(1), p(31)])).is_err());
    }
}
