//! `daehwa`: a self-hosted conversational AI. This binary wires the command line to the engine;
//! `anyhow` lives only here.

mod cli;
mod models;

use std::process::ExitCode;


fn main() -> ExitCode {
    // Logs go to stderr; `DAEHWA_LOG=debug` (tracing's env-filter syntax) shows more.
    let filter = tracing_subscriber::EnvFilter::try_from_env("DAEHWA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,server=info,daehwa=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let matches = <cli::Cli as clap::CommandFactory>::command().get_matches();
    let mut args = <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // `daehwa serve --models-dir DIR` serves every model in DIR; the environment variable only
    // says where models live.
    args.models_dir_on_command_line = matches.value_source("models_dir") == Some(clap::parser::ValueSource::CommandLine);
    match cli::dispatch(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line on stderr, the chain of causes joined; exit code 2 for every failure.
            let msg = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
    }
}
