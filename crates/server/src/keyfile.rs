//! Secret key files the server makes for itself in its data directory (the tenants' KV-cache
//! salt key, the answer-fingerprint key): 32 random bytes from the OS, written whole under a
//! temporary name with mode 0600 and synced, then renamed, so a crash never leaves half a key.

use std::io::Write;
use std::path::Path;

/// Bytes in a new key.
pub const KEY_BYTES: usize = 32;

/// Makes a new random key at `path` (replacing what is there) and returns it.
pub fn create(path: &Path) -> std::io::Result<[u8; KEY_BYTES]> {
    let mut key = [0u8; KEY_BYTES];
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(format!("the operating system's random number generator failed: {e}")))?;
    let tmp = path.with_extension("tmp");
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, store::private::FILE_MODE);
    let mut f = o.open(&tmp)?;
    f.write_all(&key)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(key)
}
