//! Data at rest kept private to the account that runs daehwa: the SQLite file, its `-wal` and
//! `-shm` are mode 0600 and a directory the store creates is 0700, so other local users cannot
//! read conversations or password hashes.
//!
//! SQLite creates its database file with mode 0644 (less the umask) and gives the WAL and SHM
//! files the mode of the database file, so the store creates the database file itself, 0600,
//! before SQLite opens it; an existing store opened again has all three tightened, with a log
//! line saying so. (Setting the process umask instead would change every file the process
//! writes, from any thread.)

use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

/// The mode of the store's files: read and write for the owner only.
pub const FILE_MODE: u32 = 0o600;
/// The mode of a directory the store creates, and of the data directory.
pub const DIR_MODE: u32 = 0o700;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Private { path: path.to_path_buf(), source }
}

/// Creates `dir` (and missing parents) with mode 0700 if it does not exist; an existing
/// directory is left as it is (see [`tighten_dir`] for the data directory).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, DIR_MODE);
    b.create(dir).map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })
}

/// Makes an existing directory 0700 if others may read or enter it (daehwa's data directory:
/// it holds the store). Returns the old mode when it changed it, and logs it.
pub fn tighten_dir(dir: &Path) -> Result<Option<u32>> {
    tighten(dir, DIR_MODE)
}

/// Removes the group's and others' permission bits of `path`, if it exists and has any.
fn tighten(path: &Path, mode: u32) -> Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(path)(e)),
        };
        let old = meta.permissions().mode() & 0o7777;
        if old & 0o077 == 0 {
            return Ok(None);
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_error(path))?;
        tracing::warn!(path = ?path, old = format!("{old:o}"), new = format!("{mode:o}"), "other local users could read this: permissions tightened");
        Ok(Some(old))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(None)
    }
}

/// The database file and the two files SQLite keeps beside it in WAL mode.
pub fn sqlite_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_os_string();
        s.push(suffix);
        PathBuf::from(s)
    };
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

/// Before SQLite opens `db`: creates its directory 0700 if missing, creates the file 0600 if
/// missing (SQLite gives the WAL and SHM the same mode), and tightens an existing file, WAL and
/// SHM to 0600.
pub fn prepare_sqlite_file(db: &Path) -> Result<()> {
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, FILE_MODE);
    match o.open(db) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_error(db)(e)),
    }
    secure_sqlite_files(db)
}

/// Tightens the database file, its WAL and its SHM to 0600 where they exist (and are looser).
pub fn secure_sqlite_files(db: &Path) -> Result<()> {
    for f in sqlite_files(db) {
        tighten(&f, FILE_MODE)?;
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_and_tightens_existing() {
        let root = std::env::temp_dir().join(format!("daehwa-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let db = root.join("a/b/daehwa.sqlite3");
        prepare_sqlite_file(&db).expect("prepare");
        assert_eq!(mode(&root.join("a")), 0o700);
        assert_eq!(mode(&root.join("a/b")), 0o700);
        assert_eq!(mode(&db), 0o600);

        let [_, wal, shm] = sqlite_files(&db);
        for f in [&db, &wal, &shm] {
            std::fs::write(f, b"").expect("write");
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        prepare_sqlite_file(&db).expect("again");
        for f in [&db, &wal, &shm] {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(tighten_dir(&root).expect("tighten"), Some(0o755));
        assert_eq!(mode(&root), 0o700);
        assert_eq!(tighten_dir(&root).expect("again"), None);
        std::fs::remove_dir_all(&root).ok();
    }
}
