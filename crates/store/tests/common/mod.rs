//! Test backends: a fresh SQLite file per test, and a fresh schema per test on a real
//! PostgreSQL server.
//!
//! PostgreSQL comes from `DAEHWA_TEST_POSTGRES_URL` (set by `.ci/run`); when that is set the
//! server must be reachable (a failure, not a skip). When it is unset, the local default
//! `postgres://daehwa:daehwa@127.0.0.1:5432/daehwa_test` is tried, and only if nothing answers
//! there are the PostgreSQL tests skipped, with a printed notice.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use store::Store;

const DEFAULT_POSTGRES_URL: &str = "postgres://daehwa:daehwa@127.0.0.1:5432/daehwa_test";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique to this process and call (tests share a PostgreSQL server).
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(&format!("daehwa-store-{name}")));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test database: the URL to (re)connect with, and what to clean up after.
pub struct TestDb {
    pub url: String,
    _dir: Option<TempDir>,
    pg_schema: Option<(String, String)>,
}

impl TestDb {
    /// A new SQLite file in a fresh temporary directory (not yet created: `connect` makes it).
    pub fn sqlite(name: &str) -> TestDb {
        let dir = TempDir::new(name);
        let url = format!("sqlite://{}", dir.0.join("nested/dir/store.sqlite3").display());
        TestDb { url, _dir: Some(dir), pg_schema: None }
    }

    /// A new empty schema on the test PostgreSQL server, or `None` (with a notice) when no
    /// server is configured or reachable.
    pub async fn postgres(name: &str) -> Option<TestDb> {
        let base = match std::env::var("DAEHWA_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => {
                if let Err(e) = ping(&url).await {
                    panic!("DAEHWA_TEST_POSTGRES_URL={url} is set but unreachable: {e}");
                }
                url
            }
            _ => match ping(DEFAULT_POSTGRES_URL).await {
                Ok(()) => DEFAULT_POSTGRES_URL.to_string(),
                Err(e) => {
                    skip(
                        &format!("PostgreSQL test {name}"),
                        &format!(
                            "DAEHWA_TEST_POSTGRES_URL is unset and {DEFAULT_POSTGRES_URL} is \
                             unreachable ({e}); scripts/test installs and starts a server when run as root"
                        ),
                    );
                    return None;
                }
            },
        };
        // Not the test name: identifiers longer than 63 bytes would be truncated.
        let schema = unique("t");
        admin_exec(&base, &format!("CREATE SCHEMA \"{schema}\"")).await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options[search_path]={schema}");
        Some(TestDb { url, _dir: None, pg_schema: Some((base, schema)) })
    }

    /// Drops the PostgreSQL schema (SQLite's directory goes with the drop).
    pub async fn cleanup(self) {
        if let Some((base, schema)) = &self.pg_schema {
            admin_exec(base, &format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
        }
    }

    pub async fn connect(&self) -> Store {
        Store::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.url))
    }
}

async fn ping(url: &str) -> Result<(), String> {
    use sqlx::Connection;
    let mut conn = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        sqlx::PgConnection::connect(url),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|e| e.to_string())?;
    sqlx::query("SELECT 1").execute(&mut conn).await.map_err(|e| e.to_string())?;
    let _ = conn.close().await;
    Ok(())
}

async fn admin_exec(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect to PostgreSQL");
    // Test-only DDL naming a schema this file generated itself.
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

/// Generates, for each named `async fn NAME(db: &TestDb)` in the calling file, a test
/// `sqlite::NAME` and a test `postgres::NAME` running it on that backend.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::common::TestDb::sqlite(stringify!($name));
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::common::TestDb::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

/// `test` cannot run here because of `why`: a failure under `DAEHWA_REQUIRE_ALL=1` (set by
/// `.ci/run`), a printed notice otherwise (straight to the stderr handle: the harness hides
/// `eprintln!` output of passing tests, and a skip must be visible).
pub fn skip(test: &str, why: &str) {
    assert!(
        std::env::var("DAEHWA_REQUIRE_ALL").as_deref() != Ok("1"),
        "{test} cannot run and DAEHWA_REQUIRE_ALL=1 makes that a failure: {why}"
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("NOTICE: {test} SKIPPED: {why}\n").as_bytes());
}
