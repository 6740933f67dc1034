//! The engine thread's health: its state for `/health` and the fault-injection hook the tests of
//! panic isolation use.
//!
//! A panic inside a step (forward pass, sampling, a sink) is caught on the engine thread: the
//! sequences of that step get an error event and are retired (their KV blocks released) and the
//! engine goes on. The cache state is trusted after such a panic because nothing a failed step
//! writes becomes shared: K/V blocks enter the prefix cache only when a step commits, after the
//! forward pass, and the blocks a step writes belong to its own sequences, which are freed. A
//! panic outside any step's sequences (while planning) fails every live sequence and starts
//! the scheduler and the KV bookkeeping afresh. The state is `degraded` for a while after a panic,
//! and `dead` when the thread is gone.

use std::time::{Duration, Instant};

use crate::TokenId;

/// How long after a caught panic the engine reports itself degraded.
pub const DEGRADED_FOR: Duration = Duration::from_secs(60);

/// What the engine can do now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineState {
    /// The model is still loading (the server may listen before).
    Loading,
    /// Serving.
    #[default]
    Ok,
    /// Serving, but a step panicked recently (its requests failed).
    Degraded,
    /// Shutting down: no new requests.
    Stopping,
    /// The engine thread is gone: nothing can be served.
    Dead,
}

impl EngineState {
    /// Whether requests can be served in this state.
    pub fn can_serve(self) -> bool {
        matches!(self, EngineState::Ok | EngineState::Degraded)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EngineState::Loading => "loading",
            EngineState::Ok => "ok",
            EngineState::Degraded => "degraded",
            EngineState::Stopping => "stopping",
            EngineState::Dead => "dead",
        }
    }
}

/// The state with its reason (`None` when ok).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub state: EngineState,
    pub reason: Option<String>,
}

/// The last caught panic.
#[derive(Clone, Debug)]
pub(super) struct LastPanic {
    pub at: Instant,
    pub message: String,
}

/// A fault the engine thread injects into itself, for tests of panic isolation only: settable
/// from code ([`super::RunnerConfig::fault`]), never from the command line.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Panic inside the step that runs a sequence holding this token (prompt or generated).
    PanicOnToken(TokenId),
    /// Let the engine thread die (a panic outside any step) when a prompt holds this token.
    KillOnToken(TokenId),
}

/// The text of a panic payload.
pub(super) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
