//! The conversation store: users, sessions, API keys, conversations and messages.
//!
//! One interface ([`Store`], also exported as [`ConversationStore`]) over two backends chosen
//! by the URL given to [`Store::connect`]:
//!
//! * `sqlite://PATH` (the embedded default: a file in the data directory), opened in WAL mode
//!   with foreign keys on, so readers never block the writer and a process killed mid-write
//!   leaves the last committed state;
//! * `postgres://...`, so several `daehwa serve` replicas can share one store.
//!
//! Both backends run the same SQL text (`$1`-style parameters work on both through sqlx); only
//! the schema DDL differs, in `migrations/sqlite` and `migrations/postgres`, embedded in the
//! binary and applied by `connect`.
//!
//! Every call that touches user data takes the acting user's id and filters by it in SQL, so
//! another user's rows are never returned, renamed or deleted: they answer
//! [`StoreError::NotFound`], exactly like rows that do not exist.
//!
//! Messages are one row each, linked by `parent_id` into a tree (edits and regenerations make
//! branches; [`tree`] has the helpers the UI's `< 1/2 >` navigation needs). Answers are saved
//! as they stream ([`Store::append_to_message`]) and closed by [`Store::finish_message`];
//! `connect` marks answers left `streaming` by a dead process `incomplete`.

pub mod backup;
mod conversations;
mod energy;
mod error;
mod fingerprints;
mod import;
mod messages;
mod policies;
pub mod private;
mod responses;
mod rows;
pub mod tree;
mod types;
mod users;

use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use error::{Result, StoreError};
pub use fingerprints::{AnswerMatch, MAX_SHINGLES};
pub use import::{ImportConversation, ImportMessage, IMPORT_BATCH};
pub use policies::{Policy, PolicyAudit, PolicySpec, PolicySubject, MAX_POLICY_NAME_CHARS};
pub use responses::{ResponseOwner, StoredResponse};
pub use types::{
    ApiKey, ApiKeyId, Conversation, ConversationId, ConversationPatch, EnergyDay, Message, MessageFinish,
    MessageId, MessageStatus, NewConversation, NewMessage, PolicyId, Role, SearchHit, User,
    UserCredentials, UserId,
};

/// The name the issue uses for the store.
pub type ConversationStore = Store;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a PostgreSQL message may sit `streaming` without a write before `connect` takes
/// it for the leftover of a dead replica. Live streams append far more often than this; a
/// shorter grace would let one replica's restart cut another replica's live answer.
pub const POSTGRES_STREAM_GRACE: Duration = Duration::from_secs(120);

/// The database behind a [`Store`].
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to whichever pool the store has. The body is compiled once
/// per backend, so the same query text gets each driver's types.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite($pool) => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// The conversation store. Cheap to clone (it holds a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) backend: Backend,
    /// SQLite: the shared lock that tells `daehwa restore` the file is open ([`backup::InUse`]).
    pub(crate) _in_use: Option<backup::InUse>,
}

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

impl Store {
    /// Opens the store named by `url`, applies pending migrations, and marks messages that a
    /// dead process left `streaming` as `incomplete` (on PostgreSQL only those idle longer than
    /// [`POSTGRES_STREAM_GRACE`], since another replica may be streaming them).
    ///
    /// `sqlite://PATH` (or `sqlite:PATH`, or a bare path) opens or creates a SQLite file,
    /// creating its directory; `postgres://` / `postgresql://` connect to PostgreSQL.
    pub async fn connect(url: &str) -> Result<Store> {
        let store = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            Store {
                backend: Backend::Postgres(pool),
                _in_use: None,
            }
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .or_else(|| (!url.contains("://")).then_some(url))
        {
            Self::open_sqlite(Path::new(path)).await?
        } else {
            return Err(StoreError::BadUrl(url.to_string()));
        };
        let grace = match store.kind() {
            BackendKind::Sqlite => Duration::ZERO,
            BackendKind::Postgres => POSTGRES_STREAM_GRACE,
        };
        let grace_ms = i64::try_from(grace.as_millis()).expect("invariant: grace fits i64");
        store.recover_interrupted(now_ms() - grace_ms).await?;
        Ok(store)
    }

    /// Opens or creates the SQLite store at `path` and applies migrations (without the
    /// recovery pass of [`Store::connect`]).
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        // Private before SQLite touches it: a missing directory 0700, the file 0600 (the WAL
        // and SHM take the file's mode), an existing store's files tightened.
        let in_memory = path.as_os_str() == ":memory:";
        if !in_memory {
            private::prepare_sqlite_file(path)?;
        }
        let in_use = if in_memory { None } else { Some(backup::InUse::hold(path)?) };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a commit survives the process being killed (the WAL is in
            // the OS's hands); only a power cut can lose the newest commits, never corrupt.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        SQLITE_MIGRATIONS.run(&pool).await?;
        if !in_memory {
            // The WAL and SHM exist now; a filesystem that ignored the file's mode for them
            // (or an older daehwa that made them) is corrected here.
            private::secure_sqlite_files(path)?;
        }
        Ok(Store {
            backend: Backend::Sqlite(pool),
            _in_use: in_use,
        })
    }

    /// The URL of the default store file inside a data directory
    /// (`<data_dir>/daehwa.sqlite3`).
    pub fn default_sqlite_url(data_dir: &Path) -> String {
        format!("sqlite://{}", data_dir.join("daehwa.sqlite3").display())
    }

    /// Which database this store runs on.
    pub fn kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Closes every pooled connection (waits for checked-out ones to come back).
    pub async fn close(&self) {
        with_pool!(self, pool => pool.close().await)
    }

    /// Checks the database: `PRAGMA integrity_check` on SQLite, a round trip on PostgreSQL.
    /// Returns the problems found (empty when healthy).
    pub async fn check_integrity(&self) -> Result<Vec<String>> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
                    .fetch_all(pool)
                    .await?;
                Ok(rows.into_iter().map(|(s,)| s).filter(|s| s != "ok").collect())
            }
            Backend::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
                Ok(Vec::new())
            }
        }
    }
}

/// The current time as Unix milliseconds (the store's time unit).
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The hash under which a session token or API key is stored: lowercase hex SHA-256.
///
/// These secrets are long random strings, so a fast hash suffices (a slow password hash would
/// only slow every request); the database never holds a usable secret.
pub fn token_hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
