//! One file into `<dest>.partial`: ranged requests on several connections, resumable, verified.
//!
//! The file is cut into ranges of [`HubOptions::chunk_bytes`]; worker threads (at most
//! [`HubOptions::connections`]) take ranges in turn and write what they receive at its offset in
//! the preallocated `.partial` file. How far each range got is kept in `<dest>.partial.state`
//! (a 16-byte header, the file size and the range size, then one little-endian u64 per range,
//! updated after the data it counts was written), so an interrupted pull, in this process (a
//! dropped connection is retried from where it stopped) or a later one (`daehwa pull` again),
//! asks only for the bytes it lacks. When all ranges are complete the whole file is hashed and
//! compared with the hub's sha256: a mismatch deletes the partial file and its state.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::{Hub, HubError, Progress};

/// `<dest>.partial` and `<dest>.partial.state`.
pub(crate) fn partial_paths(dest: &Path) -> (PathBuf, PathBuf) {
    let mut p = dest.as_os_str().to_owned();
    p.push(".partial");
    let partial = PathBuf::from(p);
    let mut s = partial.as_os_str().to_owned();
    s.push(".state");
    (partial, PathBuf::from(s))
}

/// Bytes of `dest` already downloaded by an earlier, interrupted pull (0 if none or if its
/// state does not fit a file of `size` bytes cut in `chunk`-byte ranges).
pub(crate) fn already_done(dest: &Path, size: u64, chunk: u64) -> u64 {
    let (_, state) = partial_paths(dest);
    read_state(&state, size, chunk).map_or(0, |d| d.iter().sum())
}

fn n_chunks(size: u64, chunk: u64) -> usize {
    size.div_ceil(chunk).max(1) as usize
}

fn read_state(path: &Path, size: u64, chunk: u64) -> Option<Vec<u64>> {
    let bytes = std::fs::read(path).ok()?;
    let n = n_chunks(size, chunk);
    if bytes.len() != 16 + 8 * n {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
    if word(0) != size || word(1) != chunk {
        return None;
    }
    let done: Vec<u64> = (0..n).map(|i| word(2 + i)).collect();
    let fits = done.iter().enumerate().all(|(i, &d)| d <= chunk_len(i, size, chunk));
    fits.then_some(done)
}

fn chunk_len(i: usize, size: u64, chunk: u64) -> u64 {
    let start = i as u64 * chunk;
    chunk.min(size.saturating_sub(start))
}

/// Downloads `url` (`size` bytes, sha256 `sha256` when the hub gave one) into
/// `<dest>.partial`, resuming an earlier attempt, and returns the partial file's path once
/// complete and verified (the caller renames it into place). On a network failure the partial
/// file and its state stay for the next attempt (unless nothing was received); on a checksum
/// mismatch both are deleted.
pub fn download(
    hub: &Hub,
    repo: &str,
    url: &str,
    dest: &Path,
    size: u64,
    sha256: Option<&str>,
    progress: &dyn Progress,
) -> Result<PathBuf, HubError> {
    let chunk = hub.options.chunk_bytes.max(1);
    let (partial, state_path) = partial_paths(dest);
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let n = n_chunks(size, chunk);
    let mut done = match (read_state(&state_path, size, chunk), partial.is_file()) {
        (Some(d), true) => d,
        _ => vec![0; n],
    };
    let file = OpenOptions::new().create(true).write(true).read(true).truncate(false).open(&partial).map_err(HubError::io(&partial))?;
    if done.iter().all(|&d| d == 0) {
        file.set_len(0).map_err(HubError::io(&partial))?;
    }
    file.set_len(size).map_err(HubError::io(&partial))?;
    let state = OpenOptions::new().create(true).write(true).truncate(false).open(&state_path).map_err(HubError::io(&state_path))?;
    let mut header = Vec::with_capacity(16 + 8 * n);
    header.extend_from_slice(&size.to_le_bytes());
    header.extend_from_slice(&chunk.to_le_bytes());
    for d in &done {
        header.extend_from_slice(&d.to_le_bytes());
    }
    state.set_len(header.len() as u64).map_err(HubError::io(&state_path))?;
    state.write_all_at(&header, 0).map_err(HubError::io(&state_path))?;

    let already: u64 = done.iter().sum();
    progress.begin(&name, size, already);
    let todo: Vec<usize> = (0..n).filter(|&i| done[i] < chunk_len(i, size, chunk)).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error: Mutex<Option<HubError>> = Mutex::new(None);
    let done_cell: Vec<Mutex<u64>> = done.drain(..).map(Mutex::new).collect();
    let workers = hub.options.connections.clamp(1, 16).min(todo.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = todo.get(k) else { break };
                    let r = fetch_chunk(hub, repo, url, &file, &state, i, size, chunk, &done_cell[i], &stop, progress);
                    if let Err(e) = r {
                        stop.store(true, Ordering::Relaxed);
                        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        slot.get_or_insert(e);
                        break;
                    }
                }
            });
        }
    });
    let received: u64 = done_cell.iter().map(|d| *d.lock().unwrap_or_else(|p| p.into_inner())).sum();
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        progress.end();
        drop(file);
        if received == 0 {
            let _ = std::fs::remove_file(&partial);
            let _ = std::fs::remove_file(&state_path);
        }
        return Err(e);
    }
    file.sync_all().map_err(HubError::io(&partial))?;
    drop(file);
    progress.end();
    if let Some(expected) = sha256 {
        let got = sha256_file(&partial)?;
        if !got.eq_ignore_ascii_case(expected) {
            let _ = std::fs::remove_file(&partial);
            let _ = std::fs::remove_file(&state_path);
            return Err(HubError::Checksum { file: name, expected: expected.to_string(), got });
        }
    }
    Ok(partial)
}

/// Removes the state of a finished download (after its partial file was renamed into place).
pub(crate) fn finish(dest: &Path) {
    let (_, state) = partial_paths(dest);
    let _ = std::fs::remove_file(state);
}

/// Fetches what range `i` still lacks, retrying network errors from where each attempt stopped.
#[allow(clippy::too_many_arguments)]
fn fetch_chunk(
    hub: &Hub,
    repo: &str,
    url: &str,
    file: &File,
    state: &File,
    i: usize,
    size: u64,
    chunk: u64,
    done: &Mutex<u64>,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> Result<(), HubError> {
    let start = i as u64 * chunk;
    let len = chunk_len(i, size, chunk);
    let mut attempt = 0;
    loop {
        let got = *done.lock().unwrap_or_else(|p| p.into_inner());
        if got >= len || stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        match fetch_range(hub, repo, url, file, state, i, start + got, start + len, done, progress) {
            Ok(()) => continue,
            Err(e @ HubError::Network { .. }) if attempt < hub.options.retries => {
                attempt += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(250 * u64::from(attempt)));
            }
            Err(e) => return Err(e),
        }
    }
}

/// One request for bytes `[from, to)`, written as they arrive; returns when the body ends.
#[allow(clippy::too_many_arguments)]
fn fetch_range(
    hub: &Hub,
    repo: &str,
    url: &str,
    file: &File,
    state: &File,
    i: usize,
    from: u64,
    to: u64,
    done: &Mutex<u64>,
    progress: &dyn Progress,
) -> Result<(), HubError> {
    let mut resp = hub.get(url, &[("Range", format!("bytes={from}-{}", to - 1))])?;
    let status = resp.status().as_u16();
    if status != 206 {
        if !resp.status().is_success() {
            return Err(hub.status_error(repo, url, &resp));
        }
        return Err(HubError::Protocol { url: url.to_string(), reason: format!("asked for a byte range, got HTTP {status} (the server must support Range requests)") });
    }
    let mut reader = resp.body_mut().with_config().limit(to - from).reader();
    let mut buf = vec![0u8; 256 << 10];
    let mut pos = from;
    let mut since_state = 0u64;
    // Records how far the range got (after the bytes it counts were written).
    let save = |d: u64| state.write_all_at(&d.to_le_bytes(), 16 + 8 * i as u64).map_err(HubError::io("the partial state file"));
    while pos < to {
        let want = ((to - pos) as usize).min(buf.len());
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => Err(format!("the connection closed at byte {pos} of a range ending at {to}")),
            Ok(n) => Ok(n),
            Err(e) => Err(e.to_string()),
        };
        let n = match n {
            Ok(n) => n,
            Err(reason) => {
                // Keep what arrived for the retry or the next pull.
                save(*done.lock().unwrap_or_else(|p| p.into_inner()))?;
                return Err(HubError::Network { url: url.to_string(), reason });
            }
        };
        file.write_all_at(&buf[..n], pos).map_err(HubError::io("the partial file"))?;
        pos += n as u64;
        since_state += n as u64;
        let mut d = done.lock().unwrap_or_else(|p| p.into_inner());
        *d += n as u64;
        if since_state >= 1 << 20 || pos == to {
            since_state = 0;
            save(*d)?;
        }
        drop(d);
        progress.advance(n as u64);
    }
    Ok(())
}

/// Lower-case hex sha256 of a file.
pub(crate) fn sha256_file(path: &Path) -> Result<String, HubError> {
    let mut f = File::open(path).map_err(HubError::io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(HubError::io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
