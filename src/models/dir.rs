//! The models directory: one `<name>.gguf` file per pulled model, nothing else kept there
//! (pulls in progress use hidden `.pull-*` entries that are removed when they end).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Where pulled models live.
#[derive(Clone, Debug)]
pub struct ModelsDir {
    pub root: PathBuf,
}

impl ModelsDir {
    /// `--models-dir` flag, else env `DAEHWA_MODELS_DIR`, else `$XDG_DATA_HOME/daehwa/models`,
    /// else `~/.local/share/daehwa/models`. The directory is created only when a model is
    /// pulled into it.
    pub fn resolve(flag: Option<&Path>) -> anyhow::Result<Self> {
        Self::resolve_with(flag, |k| std::env::var_os(k))
    }

    /// [`Self::resolve`] over an injected environment (tests must not mutate the process's).
    pub(crate) fn resolve_with(flag: Option<&Path>, env: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<Self> {
        // Empty variables count as unset, as the XDG base-directory spec asks.
        let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let root = if let Some(f) = flag {
            f.to_path_buf()
        } else if let Some(d) = var("DAEHWA_MODELS_DIR") {
            d
        } else if let Some(d) = var("XDG_DATA_HOME").filter(|d| d.is_absolute()) {
            d.join("daehwa/models")
        } else if let Some(h) = var("HOME") {
            h.join(".local/share/daehwa/models")
        } else {
            bail!("cannot find a models directory: set --models-dir, DAEHWA_MODELS_DIR or HOME");
        };
        Ok(ModelsDir { root })
    }

    /// The file of the model called `name` (which may not exist): `<name>.gguf`, or the first
    /// part of a split model `<name>-00001-of-0000N.gguf`.
    pub fn model_path(&self, name: &str) -> PathBuf {
        let single = self.root.join(format!("{name}.gguf"));
        if single.is_file() {
            return single;
        }
        self.split_first(name).unwrap_or(single)
    }

    /// `<name>-00001-of-0000N.gguf` in the directory, if there is one.
    fn split_first(&self, name: &str) -> Option<PathBuf> {
        let want = format!("{name}-00001-of-");
        std::fs::read_dir(&self.root).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&want))
                && gguf::split_prefix(p).is_some_and(|(_, k, _)| k == 0)
                && p.is_file()
        })
    }

    /// Every file of the model `name`: its parts (all of a split model's, as its manifest or
    /// its name says) and its source manifest, where it has one. Missing files are left out.
    pub fn model_files(&self, name: &str) -> Vec<PathBuf> {
        let mut files = match hub::Manifest::read(&self.root, name) {
            Some(m) => m.file_paths(&self.root),
            None => {
                let first = self.model_path(name);
                match gguf::split_prefix(&first) {
                    Some((prefix, _, n)) => (0..n).map(|k| gguf::split_part_path(&prefix, k, n)).collect(),
                    None => vec![first],
                }
            }
        };
        files.push(hub::Manifest::path(&self.root, name));
        files.retain(|p| p.is_file());
        files
    }

    /// Names of the pulled models (`*.gguf` files), sorted. A missing directory has none.
    pub fn pulled(&self) -> anyhow::Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.root.display())),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", self.root.display()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(stem) = name.strip_suffix(".gguf") {
                // A split model is listed once, by its first part's prefix.
                let stem = match gguf::split_prefix(&entry.path()) {
                    Some((_, 0, _)) => &stem[..stem.len() - 15],
                    Some(_) => continue,
                    None => stem,
                };
                if valid_name(stem) && entry.path().is_file() {
                    names.push(stem.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    pub(crate) fn create(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.root).with_context(|| format!("cannot create {}", self.root.display()))
    }
}

/// A model name is a plain file stem: letters, digits, `.`, `_`, `-`, not starting with `.`
/// (so a name can never climb out of the models directory or hide as a temp file).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// A file or directory removed on drop unless [`TempPath::keep`] is called: a failed or
/// interrupted pull leaves nothing behind.
pub(crate) struct TempPath {
    path: Option<PathBuf>,
}

impl TempPath {
    pub(crate) fn new(path: PathBuf) -> Self {
        TempPath { path: Some(path) }
    }
    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().expect("invariant: path present until kept")
    }
    /// Stops the removal (after the path was renamed into place).
    pub(crate) fn keep(mut self) {
        self.path = None;
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            // Best effort: nothing useful to do when cleanup itself fails.
            let _ = if p.is_dir() { std::fs::remove_dir_all(p) } else { std::fs::remove_file(p) };
        }
    }
}

/// A hidden, unique sibling name under `root` for work in progress.
pub(crate) fn temp_name(root: &Path, what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    root.join(format!(".pull-{what}-{}-{n}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn resolve_follows_flag_env_xdg_home_order() {
        let all = [("DAEHWA_MODELS_DIR", "/m"), ("XDG_DATA_HOME", "/x"), ("HOME", "/h")];
        let r = |flag: Option<&str>, vars: &[(&str, &str)]| {
            ModelsDir::resolve_with(flag.map(Path::new), env(vars)).map(|d| d.root)
        };
        assert_eq!(r(Some("/f"), &all).expect("flag"), PathBuf::from("/f"));
        assert_eq!(r(None, &all).expect("env"), PathBuf::from("/m"));
        assert_eq!(r(None, &all[1..]).expect("xdg"), PathBuf::from("/x/daehwa/models"));
        assert_eq!(r(None, &all[2..]).expect("home"), PathBuf::from("/h/.local/share/daehwa/models"));
        // Empty and relative XDG values are ignored.
        let odd = [("DAEHWA_MODELS_DIR", ""), ("XDG_DATA_HOME", "rel"), ("HOME", "/h")];
        assert_eq!(r(None, &odd).expect("home"), PathBuf::from("/h/.local/share/daehwa/models"));
        let e = r(None, &[]).expect_err("nothing to go on");
        assert!(e.to_string().contains("--models-dir"), "{e}");
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        for ok in ["smollm2", "gemma3-270m", "My_Model.v2"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "../x", "a/b", "a b", "..", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn pulled_lists_gguf_files_only_and_temp_paths_clean_up() {
        let root = crate::models::test_dir("dir");
        let d = ModelsDir { root: root.join("missing") };
        assert!(d.pulled().expect("missing dir is empty").is_empty());
        let d = ModelsDir { root: root.clone() };
        for f in ["b.gguf", "a.gguf", "notes.txt", ".pull-x.gguf"] {
            std::fs::write(root.join(f), b"x").expect("write");
        }
        std::fs::create_dir(root.join("dir.gguf")).expect("mkdir");
        assert_eq!(d.pulled().expect("lists"), ["a", "b"]);
        assert_eq!(d.model_path("a"), root.join("a.gguf"));

        let t = TempPath::new(temp_name(&root, "t"));
        std::fs::create_dir(t.path()).expect("mkdir");
        std::fs::write(t.path().join("f"), b"x").expect("write");
        let p = t.path().to_path_buf();
        drop(t);
        assert!(!p.exists(), "dropped temp dirs are removed");
        let t = TempPath::new(temp_name(&root, "k"));
        std::fs::write(t.path(), b"x").expect("write");
        let p = t.path().to_path_buf();
        t.keep();
        assert!(p.exists(), "kept temp paths stay");
        std::fs::remove_dir_all(&root).expect("cleanup");
    }
}
