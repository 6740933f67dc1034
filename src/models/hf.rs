//! `daehwa pull hf:ORG/REPO[:QUANT]` and `-m hf:...`: the hub crate's pull with a progress bar.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use hub::{HfSpec, Hub, Progress};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::dir::ModelsDir;
use super::human_size;

/// A bar on stderr per file (drawn only when stderr is a terminal), and status lines.
struct Bar {
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for Bar {
    fn begin(&self, file: &str, total: u64, done: u64) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(file.to_string());
        bar.set_position(done);
        bar.enable_steady_tick(Duration::from_millis(200));
        if done > 0 {
            eprintln!("resuming {file} at {} of {}", human_size(done), human_size(total));
        }
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
    }
    fn advance(&self, n: u64) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            b.inc(n);
        }
    }
    fn end(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b.finish_and_clear();
        }
    }
    fn message(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
}

/// Pulls `spec` (`hf:...`) into the models directory and returns the model's (first) file.
pub fn pull(spec: &str, dir: &ModelsDir, quiet: bool) -> anyhow::Result<PathBuf> {
    let spec = HfSpec::parse(spec)?;
    let hub = Hub::from_env();
    let progress = Bar { quiet, bar: Mutex::new(None) };
    let pulled = hub::pull(&hub, &spec, &dir.root, &progress).with_context(|| format!("cannot pull {spec}"))?;
    if !quiet {
        let size: u64 = pulled.manifest.files.iter().map(|f| f.size).sum();
        let verb = if pulled.already { "is already pulled" } else { "pulled (sha256 verified)" };
        eprintln!("{} {verb}: {} ({}, {} file{}) as `{}`", pulled.manifest.source, pulled.path.display(), human_size(size), pulled.manifest.files.len(), if pulled.manifest.files.len() == 1 { "" } else { "s" }, pulled.name);
    }
    Ok(pulled.path)
}

/// `-m hf:...`: the model pulled earlier from that repository (and quant), else pulled now.
pub fn resolve(spec: &str, dir: &ModelsDir) -> anyhow::Result<PathBuf> {
    let parsed = HfSpec::parse(spec)?;
    if let Some(p) = hub::find_pulled(&dir.root, &parsed) {
        return Ok(p.path);
    }
    eprintln!("model {spec} is not pulled yet; pulling it into {}", dir.root.display());
    pull(spec, dir, false)
}
