//! The record kept next to a pulled model: where it came from and which files are its parts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::HubError;

/// `<models dir>/<name>` + this is the manifest of model `name`.
pub const MANIFEST_SUFFIX: &str = ".source.json";

/// One file of a pulled model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Its path in the repository.
    pub repo_path: String,
    /// Its file name in the models directory.
    pub file: String,
    pub size: u64,
    pub sha256: Option<String>,
}

/// `<name>.source.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `hf:ORG/REPO:QUANT` (the quantization actually pulled).
    pub source: String,
    pub endpoint: String,
    pub repo: String,
    pub revision: String,
    pub quant: String,
    /// The parts in order (one unless split).
    pub files: Vec<ManifestFile>,
    /// Seconds since the Unix epoch.
    pub pulled_at: u64,
}

impl Manifest {
    pub fn path(root: &Path, name: &str) -> PathBuf {
        root.join(format!("{name}{MANIFEST_SUFFIX}"))
    }

    /// The manifest of model `name`, if it has one (models imported by path do not).
    pub fn read(root: &Path, name: &str) -> Option<Manifest> {
        let text = std::fs::read(Self::path(root, name)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes it atomically (a temp file renamed into place).
    pub fn write(&self, root: &Path, name: &str) -> Result<(), HubError> {
        let path = Self::path(root, name);
        let tmp = root.join(format!(".{name}{MANIFEST_SUFFIX}.tmp"));
        let json = serde_json::to_vec_pretty(self).map_err(|e| HubError::Io { path: path.clone(), source: e.into() })?;
        std::fs::write(&tmp, json).map_err(HubError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(HubError::io(&path))
    }

    /// The parts' paths in the models directory.
    pub fn file_paths(&self, root: &Path) -> Vec<PathBuf> {
        self.files.iter().map(|f| root.join(&f.file)).collect()
    }
}
