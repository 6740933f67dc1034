//! A whole pull: list the repository, choose the files, check the disk, download each part,
//! then move the parts into the models directory and record the source next to them.

use std::path::{Path, PathBuf};

use crate::download::{already_done, download, finish};
use crate::{select, HfSpec, Hub, HubError, Manifest, ManifestFile, MANIFEST_SUFFIX};

/// What a download reports as it goes (the binary draws a bar, the server keeps numbers).
pub trait Progress: Send + Sync {
    /// A file starts: its name, size, and bytes already there from an earlier attempt.
    fn begin(&self, file: &str, total: u64, done: u64);
    /// `n` more bytes arrived.
    fn advance(&self, n: u64);
    /// The file's transfer ended (verification follows).
    fn end(&self);
    /// A status line (`pulling X (Y bytes)`, `verifying`).
    fn message(&self, _msg: &str) {}
}

/// Reports nothing.
pub struct SilentProgress;

impl Progress for SilentProgress {
    fn begin(&self, _: &str, _: u64, _: u64) {}
    fn advance(&self, _: u64) {}
    fn end(&self) {}
}

/// A pulled model.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// Its name in the models directory (`daehwa list`, `-m NAME`).
    pub name: String,
    /// The first (or only) part: what a loader opens.
    pub path: PathBuf,
    pub manifest: Manifest,
    /// It was there already; nothing was downloaded.
    pub already: bool,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A model pulled earlier from `spec`'s repository (and quantization, if it names one), found
/// through the manifests in `root`, whose files are all present: `-m hf:...` uses it without
/// asking the hub.
pub fn find_pulled(root: &Path, spec: &HfSpec) -> Option<Pulled> {
    let entries = std::fs::read_dir(root).ok()?;
    let mut found: Vec<Pulled> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(MANIFEST_SUFFIX)).map(str::to_string))
        .filter(|name| !name.starts_with('.'))
        .filter_map(|name| Manifest::read(root, &name).map(|m| (name, m)))
        .filter(|(_, m)| {
            m.repo.eq_ignore_ascii_case(&spec.repo)
                && m.revision == spec.revision
                && spec.quant.as_ref().is_none_or(|q| q.eq_ignore_ascii_case(&m.quant))
                && m.file_paths(root).iter().all(|p| p.is_file())
        })
        .filter_map(|(name, m)| {
            let path = m.file_paths(root).into_iter().next()?;
            Some(Pulled { name, path, manifest: m, already: true })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found.into_iter().next()
}

/// Pulls `spec` into the models directory `root` (created if needed).
pub fn pull(hub: &Hub, spec: &HfSpec, root: &Path, progress: &dyn Progress) -> Result<Pulled, HubError> {
    let files = hub.list_files(&spec.repo, &spec.revision)?;
    let choice = select::select(&spec.repo, &files, spec.quant.as_deref())?;
    let name = choice.name();
    let source = format!("{}:{}", HfSpec { quant: None, ..spec.clone() }, choice.quant);
    let local = |f: &crate::RepoFile| f.path.rsplit('/').next().unwrap_or(&f.path).to_string();
    let manifest = Manifest {
        source,
        endpoint: hub.endpoint.clone(),
        repo: spec.repo.clone(),
        revision: spec.revision.clone(),
        quant: choice.quant.clone(),
        files: choice
            .files
            .iter()
            .map(|f| ManifestFile { repo_path: f.path.clone(), file: local(f), size: f.size, sha256: f.sha256.clone() })
            .collect(),
        pulled_at: now(),
    };
    let dests = manifest.file_paths(root);
    let first = dests.first().cloned().ok_or_else(|| HubError::NoGguf { repo: spec.repo.clone() })?;

    // Already pulled: the same source's files, all present with their sizes.
    if let Some(old) = Manifest::read(root, &name) {
        let same = old.repo.eq_ignore_ascii_case(&manifest.repo) && old.files == manifest.files;
        let present = dests.iter().zip(&manifest.files).all(|(p, f)| std::fs::metadata(p).is_ok_and(|m| m.len() == f.size));
        if same && present {
            return Ok(Pulled { name, path: first, manifest: old, already: true });
        }
    }
    for d in &dests {
        if d.exists() && Manifest::read(root, &name).is_none_or(|m| !m.repo.eq_ignore_ascii_case(&manifest.repo)) {
            return Err(HubError::Exists { path: d.clone() });
        }
    }

    std::fs::create_dir_all(root).map_err(HubError::io(root))?;
    let chunk = hub.options.chunk_bytes.max(1);
    let need: u64 = manifest.files.iter().zip(&dests).map(|(f, d)| f.size - already_done(d, f.size, chunk).min(f.size)).sum();
    let free = crate::free_bytes(root).map_err(HubError::io(root))?;
    if need > free {
        return Err(HubError::DiskSpace { dir: root.to_path_buf(), need, free });
    }
    progress.message(&format!("pulling {} ({}, {} file{}) from {}", manifest.source, name, manifest.files.len(), if manifest.files.len() == 1 { "" } else { "s" }, hub.endpoint));
    let mut partials = Vec::with_capacity(dests.len());
    for (f, d) in manifest.files.iter().zip(&dests) {
        let url = hub.resolve_url(&spec.repo, &spec.revision, &f.repo_path);
        partials.push(download(hub, &spec.repo, &url, d, f.size, f.sha256.as_deref(), progress)?);
    }
    // Every part is complete and verified: only now do they become a model.
    for (p, d) in partials.iter().zip(&dests) {
        std::fs::rename(p, d).map_err(HubError::io(d))?;
        finish(d);
    }
    manifest.write(root, &name)?;
    Ok(Pulled { name, path: first, manifest, already: false })
}
