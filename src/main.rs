//! `daehwa`: a self-hosted conversational AI. This binary wires the command line to the engine;
//! `anyhow` lives only here.

mod cli;
mod logging;
mod models;

use std::process::ExitCode;


fn main() -> ExitCode {
    let matches = <cli::Cli as clap::CommandFactory>::command().get_matches();
    let mut args = <cli::Cli as clap::FromArgMatches>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Logs go to stderr (text or JSON lines); `DAEHWA_LOG=debug` (tracing's env-filter syntax)
    // shows more; spans go to an OTLP collector too with --otlp-endpoint.
    let _logging = match logging::init(args.log_format, args.otlp_endpoint.as_deref()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
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
