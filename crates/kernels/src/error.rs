#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported tensor type {0} (supported: {1})")]
    UnsupportedType(gguf::GgmlType, &'static str),
    #[error("shape mismatch: {0}")]
    Shape(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
