use std::path::PathBuf;

/// Everything a pull can fail with; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("invalid model `{0}`: expected hf:ORG/REPO or hf:ORG/REPO:QUANT (e.g. hf:Qwen/Qwen3-8B-GGUF:Q4_K_M)")]
    BadSpec(String),
    #[error("repository {repo} was not found on {endpoint} (or it is private: set HF_TOKEN)")]
    RepoNotFound { repo: String, endpoint: String },
    #[error("repository {repo} is gated: accept its terms at {endpoint}/{repo} and set HF_TOKEN to an access token (the hub said {status}{detail})")]
    Gated { repo: String, endpoint: String, status: u16, detail: String },
    #[error("repository {repo} has no GGUF files (daehwa runs GGUF models; look for a repository named like {repo}-GGUF)")]
    NoGguf { repo: String },
    #[error("repository {repo} has no {quant} GGUF; available: {}", available.join(", "))]
    UnknownQuant { repo: String, quant: String, available: Vec<String> },
    #[error("network error talking to {url}: {reason}")]
    Network { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("unexpected answer from {url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("{file}: sha256 mismatch (the hub says {expected}, the download is {got}); the download was discarded, pull again")]
    Checksum { file: String, expected: String, got: String },
    #[error("not enough disk space in {dir}: the pull needs {need} more bytes but only {free} are free")]
    DiskSpace { dir: PathBuf, need: u64, free: u64 },
    #[error("a different model is already at {path} (remove it with `daehwa rm` first)")]
    Exists { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HubError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> HubError {
        let path = path.into();
        move |source| HubError::Io { path, source }
    }
}
