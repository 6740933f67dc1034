//! Free disk space, checked before a pull starts.

use std::path::Path;

/// Bytes available to an unprivileged user on the file system holding `dir` (or its nearest
/// existing ancestor). `DAEHWA_TEST_FREE_BYTES` overrides the answer (tests of the refusal:
/// nobody can fill a real disk in a test).
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    if let Some(v) = std::env::var("DAEHWA_TEST_FREE_BYTES").ok().and_then(|v| v.parse().ok()) {
        return Ok(v);
    }
    let mut p = dir;
    while !p.exists() {
        match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => p = parent,
            _ => {
                p = Path::new(".");
                break;
            }
        }
    }
    statvfs_free(p)
}

#[cfg(unix)]
fn statvfs_free(p: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a zeroed out-parameter statvfs fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(not(unix))]
fn statvfs_free(_: &Path) -> std::io::Result<u64> {
    Ok(u64::MAX)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_temp_dir_has_some_free_space() {
        if std::env::var_os("DAEHWA_TEST_FREE_BYTES").is_some() {
            eprintln!("skipped: DAEHWA_TEST_FREE_BYTES overrides the answer");
            return;
        }
        let free = super::free_bytes(&std::env::temp_dir().join("no/such/dir")).expect("statvfs");
        assert!(free > 0);
    }
}
