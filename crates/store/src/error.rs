//! The store's error type.

/// Everything a store call can fail with.
///
/// `NotFound` is deliberately returned both for rows that do not exist and for rows owned by
/// another user, so a caller (and an HTTP client behind it) cannot probe other users' ids.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist or belongs to someone else.
    #[error("not found")]
    NotFound,
    /// A unique value is taken (a username, an API key hash, a session token).
    #[error("already exists: {0}")]
    Conflict(String),
    /// The acting user may not do this (not an admin, or an admin acting on themself).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The request itself is malformed (empty username, a message that is not streaming, ...).
    #[error("invalid: {0}")]
    Invalid(String),
    /// `Store::connect` got a URL with a scheme it does not serve.
    #[error("unsupported database url {0:?}: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DB")]
    BadUrl(String),
    /// A row holds a value the schema's CHECK constraints should have made impossible.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The driver failed (connection, I/O, SQL).
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// Applying the embedded migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Creating the SQLite file's directory failed.
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Creating the SQLite file or making it private (mode 0600) failed.
    #[error("cannot secure {path}: {source}")]
    Private {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // Unique violations are a user-facing condition (a taken username), not a driver failure.
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return StoreError::Conflict(db.message().to_string());
            }
        }
        StoreError::Database(e)
    }
}

/// Shorthand for results of store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
