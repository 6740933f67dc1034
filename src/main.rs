//! `daehwa`: a self-hosted conversational AI. This binary wires the command line to the engine;
//! `anyhow` lives only here.

mod cli;
mod models;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
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
