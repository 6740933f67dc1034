use std::path::PathBuf;

/// Everything that can be wrong with a GGUF file or a metadata lookup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a GGUF file: bad magic {0:02x?} (expected \"GGUF\")")]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (supported: 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("truncated GGUF file: needed {needed} bytes at offset {offset} for {what}, but the file has {len} bytes")]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        len: u64,
    },
    #[error("corrupt GGUF file: {0}")]
    Corrupt(String),
    #[error("unknown ggml tensor type code {0}")]
    UnknownType(u32),
    #[error("metadata key `{0}` is missing")]
    MissingKey(String),
    #[error("metadata key `{key}` has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("tensor `{0}` is missing")]
    MissingTensor(String),
    #[error("part {no} of {count} of the split model is missing: {path}")]
    MissingSplitPart { path: PathBuf, no: u32, count: u32 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
