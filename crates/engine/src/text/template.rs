//! (helper E fills this in)
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template: {0}")]
    Invalid(String),
}
