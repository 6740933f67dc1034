//! Backups of the SQLite store: a consistent copy taken while servers keep writing, and a restore
//! that refuses to swap the file under a process that has it open.
//!
//! The copy is SQLite's `VACUUM INTO`: it reads the whole database inside one read transaction
//! (so it sees one committed state, never half of a write) and writes a compact, self-contained
//! file (no WAL beside it). Writers are not blocked in WAL mode. `VACUUM INTO` rather than the
//! page-by-page backup API (`sqlite3_backup_step`): sqlx exposes no handle to it, and a backup
//! that steps while another connection writes restarts from scratch on every write, which under a
//! steady write load may never finish; `VACUUM INTO` finishes in one pass whatever the load.
//!
//! Every process with the store open holds a shared `flock` on `<file>-lock` ([`InUse`]); a
//! restore takes it exclusively, so it fails while a server (or `daehwa user`) runs, and a server
//! cannot start in the middle of a restore.
//!
//! PostgreSQL stores are backed up with PostgreSQL's own tools ([`postgres_commands`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};

use crate::{Backend, Result, Store, StoreError};

/// What a backup file holds (counted in the copy itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSummary {
    pub users: i64,
    pub conversations: i64,
    pub messages: i64,
    /// The newest schema migration applied in the file.
    pub schema_version: i64,
    pub bytes: u64,
}

/// A shared lock on `<db>-lock` held while a store is open (see the module docs).
#[derive(Debug, Clone)]
pub struct InUse(#[allow(dead_code)] Arc<File>);

fn with_suffix(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Private { path: path.to_path_buf(), source }
}

/// Opens (creating it 0600) the lock file of the SQLite store `db`.
fn lock_file(db: &Path) -> Result<(PathBuf, File)> {
    let path = with_suffix(db, "-lock");
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let f = o.open(&path).map_err(io(&path))?;
    Ok((path, f))
}

impl InUse {
    /// Marks the SQLite store `db` as open by this process; fails while a restore runs.
    pub fn hold(db: &Path) -> Result<InUse> {
        let (path, f) = lock_file(db)?;
        match f.try_lock_shared() {
            Ok(()) => Ok(InUse(Arc::new(f))),
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Invalid(format!(
                "{} is being restored (`daehwa restore` holds {}); start again when it is done",
                db.display(),
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
        }
    }
}

/// The commands that back up and restore a PostgreSQL store (`url` as given to `--database`).
pub fn postgres_commands(url: &str, file: &Path) -> (String, String) {
    let f = file.display();
    (
        format!("pg_dump --format=custom --no-owner --file '{f}' --dbname '{url}'"),
        format!("pg_restore --clean --if-exists --no-owner --single-transaction --dbname '{url}' '{f}'"),
    )
}

impl Store {
    /// Writes a consistent copy of the SQLite store to `dest` (which must not exist) while other
    /// connections and processes keep writing, and returns what the copy holds. The copy is
    /// written to `<dest>.partial` (mode 0600: it holds password hashes) and renamed into place,
    /// so `dest` is never a half-written file.
    pub async fn backup_to(&self, dest: &Path) -> Result<BackupSummary> {
        let Backend::Sqlite(pool) = &self.backend else {
            return Err(StoreError::Invalid(
                "daehwa backup copies SQLite stores; back up PostgreSQL with pg_dump".to_string(),
            ));
        };
        if dest.exists() {
            return Err(StoreError::Conflict(format!("{} exists; choose a new file", dest.display())));
        }
        let partial = with_suffix(dest, ".partial");
        let _ = std::fs::remove_file(&partial);
        {
            // VACUUM INTO accepts an existing empty file: created here so its mode is 0600.
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
            o.open(&partial).map_err(io(&partial))?;
        }
        let target = partial
            .to_str()
            .ok_or_else(|| StoreError::Invalid(format!("{} is not UTF-8", partial.display())))?
            .to_string();
        let copied = sqlx::query("VACUUM INTO ?1").bind(target).execute(pool).await;
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
        File::open(&partial).and_then(|f| f.sync_all()).map_err(io(&partial))?;
        let summary = match inspect_sqlite(&partial).await {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        std::fs::rename(&partial, dest).map_err(io(dest))?;
        sync_dir(dest);
        Ok(summary)
    }
}

/// Opens a single connection to the SQLite file `path` (never creating it).
async fn open_one(path: &Path, read_only: bool) -> Result<sqlx::SqliteConnection> {
    let c = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .read_only(read_only)
        // Never wait for another process's lock: "in use" is the answer.
        .busy_timeout(Duration::ZERO)
        // (sqlx leaves the file's journal mode alone unless asked.)
        .connect()
        .await?;
    Ok(c)
}

/// Checks that `path` is an intact daehwa SQLite store no newer than this binary (SQLite's
/// `integrity_check`, the schema's migration table) and counts what it holds.
pub async fn inspect_sqlite(path: &Path) -> Result<BackupSummary> {
    let bytes = std::fs::metadata(path).map_err(io(path))?.len();
    let mut c = open_one(path, true).await?;
    let check: String = sqlx::query_scalar("PRAGMA integrity_check").fetch_one(&mut c).await?;
    if check != "ok" {
        return Err(StoreError::Corrupt(format!("{}: integrity check: {check}", path.display())));
    }
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('_sqlx_migrations', 'users', 'conversations', 'messages')",
    )
    .fetch_one(&mut c)
    .await?;
    if tables != 4 {
        return Err(StoreError::Invalid(format!("{} is a SQLite file but not a daehwa store", path.display())));
    }
    let schema_version: i64 =
        sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success").fetch_one(&mut c).await?;
    let newest = crate::SQLITE_MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    if schema_version > newest {
        return Err(StoreError::Invalid(format!(
            "{} has schema version {schema_version}, newer than this daehwa's {newest}: restore it with the daehwa that wrote it",
            path.display()
        )));
    }
    let row = sqlx::query(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM conversations), (SELECT count(*) FROM messages)",
    )
    .fetch_one(&mut c)
    .await?;
    let summary = BackupSummary { users: row.try_get(0)?, conversations: row.try_get(1)?, messages: row.try_get(2)?, schema_version, bytes };
    c.close().await?;
    Ok(summary)
}

fn sync_dir(file: &Path) {
    // Best effort: the rename is durable once the directory is synced (not possible everywhere).
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Replaces the SQLite store `db` with the backup `backup` (checked first with
/// [`inspect_sqlite`]). Refuses while any process has `db` open. The replaced store is kept as
/// `<db>.before-restore` (made self-contained first: its WAL is checkpointed into it). Run
/// [`Store::connect`] afterwards to bring an older backup's schema up to date.
pub async fn restore_sqlite(backup: &Path, db: &Path) -> Result<BackupSummary> {
    let summary = inspect_sqlite(backup).await?;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::private::create_private_dir(dir)?;
    }
    let (lock_path, lock) = lock_file(db)?;
    let in_use = || {
        StoreError::Invalid(format!(
            "{} is in use by a running daehwa (serve or user): stop it first (`{}` is locked)",
            db.display(),
            lock_path.display()
        ))
    };
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Err(in_use()),
        Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
    }
    if db.exists() {
        // SQLite lets only the last connection leave WAL mode: this fails while any process
        // (an older daehwa without the lock file, the sqlite3 shell) has the file open, and on
        // success folds the WAL into the file, so the file alone is the whole old store.
        let mut c = open_one(db, false).await.map_err(|_| in_use())?;
        let mode: std::result::Result<String, _> = sqlx::query_scalar("PRAGMA journal_mode = DELETE").fetch_one(&mut c).await;
        let _ = c.close().await;
        if !matches!(mode.as_deref(), Ok("delete")) {
            return Err(in_use());
        }
        let before = with_suffix(db, ".before-restore");
        std::fs::rename(db, &before).map_err(io(&before))?;
    }
    for leftover in [with_suffix(db, "-wal"), with_suffix(db, "-shm")] {
        match std::fs::remove_file(&leftover) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&leftover)(e)),
        }
    }
    let incoming = with_suffix(db, ".restoring");
    let _ = std::fs::remove_file(&incoming);
    {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        let mut out = o.open(&incoming).map_err(io(&incoming))?;
        let mut src = File::open(backup).map_err(io(backup))?;
        std::io::copy(&mut src, &mut out).map_err(io(&incoming))?;
        out.sync_all().map_err(io(&incoming))?;
    }
    std::fs::rename(&incoming, db).map_err(io(db))?;
    sync_dir(db);
    drop(lock);
    Ok(summary)
}
