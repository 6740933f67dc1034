//! `daehwa chat`: an interactive conversation in the terminal.
//!
//! Each turn re-renders the whole conversation with the chat template; the session reuses the KV
//! of the earlier turns (their tokens are a prefix of the new prompt), so only the new message is
//! computed. Ctrl-C stops the answer being written, not the program.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use engine::text::template::ChatMessage;
use engine::{FinishReason, GenParams, Session};

use super::sampling::SamplingArgs;
use super::ModelArgs;
use crate::models::ModelsDir;

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The system message to start with
    #[arg(long)]
    pub system: Option<String>,
}

const HELP: &str = "/system TEXT  set the system message (starts over)\n/reset        forget the conversation\n/exit         quit (or Ctrl-D)\nCtrl-C stops an answer.";

pub fn chat(a: ChatArgs, dir: &ModelsDir) -> anyhow::Result<()> {
    let engine = a.model.load(dir, a.sampling.ctx)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let generating = Arc::new(AtomicBool::new(false));
    {
        let (i, g) = (interrupted.clone(), generating.clone());
        ctrlc::set_handler(move || {
            if g.load(Ordering::SeqCst) {
                i.store(true, Ordering::SeqCst);
            } else {
                eprint!("\n(/exit or Ctrl-D quits)\n> ");
            }
        })?;
    }
    let mut session = Session::new(&engine, a.sampling.n_ctx(&engine));
    let mut system = a.system.clone();
    let mut history: Vec<ChatMessage> = Vec::new();
    let params = GenParams {
        sampling: a.sampling.params(),
        max_tokens: a.sampling.max_tokens,
        stop: a.sampling.stop.clone(),
        top_logprobs: None,
        ignore_eos: false,
        watermark: a.sampling.watermark()?,
        ..GenParams::default()
    };
    let name = engine.file.opt_str("general.name").ok().flatten().unwrap_or("model").to_string();
    eprintln!("daehwa chat with {name}. /help for commands.");
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        eprint!("> ");
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            eprintln!();
            return Ok(());
        }
        let input = line.trim_end_matches(['\n', '\r']);
        if input.trim().is_empty() {
            continue;
        }
        match input.split_once(' ').map_or((input, ""), |(c, r)| (c, r)) {
            ("/exit" | "/quit", _) => return Ok(()),
            ("/help", _) => {
                eprintln!("{HELP}");
                continue;
            }
            ("/reset", _) => {
                history.clear();
                session.reset();
                eprintln!("(conversation cleared)");
                continue;
            }
            ("/system", rest) => {
                system = if rest.trim().is_empty() { None } else { Some(rest.to_string()) };
                history.clear();
                session.reset();
                eprintln!("(system message set; conversation cleared)");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage { role: "user".into(), content: input.to_string() });
        let mut msgs = Vec::with_capacity(history.len() + 1);
        if let Some(s) = &system {
            msgs.push(ChatMessage { role: "system".into(), content: s.clone() });
        }
        msgs.extend(history.iter().cloned());
        let prompt = match engine.chat_prompt(&msgs) {
            Ok(p) => p,
            Err(e) => {
                history.pop();
                eprintln!("error: {e}");
                continue;
            }
        };
        interrupted.store(false, Ordering::SeqCst);
        generating.store(true, Ordering::SeqCst);
        let stdout = std::io::stdout();
        let result = session.generate(&prompt, &params, |t| {
            let mut o = stdout.lock();
            let _ = o.write_all(t.text.as_bytes());
            let _ = o.flush();
            !interrupted.load(Ordering::SeqCst)
        });
        generating.store(false, Ordering::SeqCst);
        match result {
            Ok(g) => {
                let mut o = stdout.lock();
                o.write_all(g.tail.as_bytes())?;
                o.write_all(b"\n")?;
                o.flush()?;
                if g.finish == FinishReason::Cancelled {
                    eprintln!("(stopped)");
                }
                history.push(ChatMessage { role: "assistant".into(), content: g.text });
            }
            Err(e) => {
                history.pop();
                eprintln!("error: {e}");
            }
        }
    }
}
