//! `daehwa backup FILE` and `daehwa restore FILE`: a consistent copy of the SQLite store taken
//! while `daehwa serve` keeps writing, and putting one back (refused while a daehwa has the store
//! open). PostgreSQL stores: the commands print the `pg_dump` / `pg_restore` lines to run.

use std::path::PathBuf;

use anyhow::{bail, Context};
use server::store::backup::{self, BackupSummary};
use server::store::Store;

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The backup file to write (must not exist)
    pub file: PathBuf,
    /// The conversation store (as for `daehwa serve`) [default: sqlite in the data directory]
    #[arg(long, env = "DAEHWA_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Where daehwa keeps its data [default: $XDG_DATA_HOME/daehwa or ~/.local/share/daehwa]
    #[arg(long, env = "DAEHWA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// A file written by `daehwa backup`
    pub file: PathBuf,
    /// Only check the file (integrity, schema) and say what it holds
    #[arg(long)]
    pub check: bool,
    /// The conversation store to replace [default: sqlite in the data directory]
    #[arg(long, env = "DAEHWA_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Where daehwa keeps its data [default: $XDG_DATA_HOME/daehwa or ~/.local/share/daehwa]
    #[arg(long, env = "DAEHWA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

fn describe(s: &BackupSummary) -> String {
    format!(
        "{} account(s), {} conversation(s), {} message(s); schema {}; {} bytes",
        s.users, s.conversations, s.messages, s.schema_version, s.bytes
    )
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    Some(PathBuf::from(url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url)))
}

pub fn backup(a: BackupArgs) -> anyhow::Result<()> {
    let url = super::store_url(a.database.as_deref(), a.data_dir.as_deref())?;
    if sqlite_path(&url).is_none() {
        let (dump, _) = backup::postgres_commands(&url, &a.file);
        bail!("daehwa backup copies SQLite stores; back up this PostgreSQL store with:\n  {dump}");
    }
    let file = a.file.clone();
    super::block_on(async move {
        let store = Store::connect(&url).await.with_context(|| format!("opening the conversation store {}", super::describe_store(&url)))?;
        let r = store.backup_to(&file).await.with_context(|| format!("backing up to {}", file.display()));
        store.close().await;
        let s = r?;
        println!("backed up {} to {}: {}", super::describe_store(&url), file.display(), describe(&s));
        Ok::<(), anyhow::Error>(())
    })?
}

pub fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    let url = super::store_url(a.database.as_deref(), a.data_dir.as_deref())?;
    let file = a.file.clone();
    if a.check {
        let s = super::block_on(async move { backup::inspect_sqlite(&file).await })?
            .with_context(|| format!("checking {}", a.file.display()))?;
        println!("{}: {}", a.file.display(), describe(&s));
        return Ok(());
    }
    let Some(db) = sqlite_path(&url) else {
        let (_, restore) = backup::postgres_commands(&url, &a.file);
        bail!("daehwa restore replaces SQLite stores; restore a pg_dump file into this PostgreSQL store with:\n  {restore}");
    };
    super::secure_data_dir(a.database.as_deref(), a.data_dir.as_deref())?;
    super::block_on(async move {
        let s = backup::restore_sqlite(&file, &db).await.with_context(|| format!("restoring {} into {}", file.display(), db.display()))?;
        // Brings an older backup's schema up to date (and checks the result opens).
        let store = Store::connect(&url).await.with_context(|| format!("opening the restored store {}", db.display()))?;
        store.close().await;
        println!("restored {} into {}: {}", file.display(), db.display(), describe(&s));
        if std::path::Path::new(&format!("{}.before-restore", db.display())).exists() {
            println!("the replaced store is kept as {}.before-restore", db.display());
        }
        Ok::<(), anyhow::Error>(())
    })?
}
