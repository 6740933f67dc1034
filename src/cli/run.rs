//! `daehwa run`: one prompt in, the answer streamed out.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use engine::text::template::ChatMessage;
use engine::{GenParams, Session};

use super::sampling::SamplingArgs;
use super::ModelArgs;
use crate::models::ModelsDir;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A system message placed before the prompt
    #[arg(long)]
    pub system: Option<String>,
    /// Read an OpenAI-style JSON array of messages from FILE instead of PROMPT
    #[arg(long, value_name = "FILE", conflicts_with_all = ["prompt", "system", "raw"])]
    pub messages: Option<PathBuf>,
    /// Send PROMPT to the model as is, without the chat template (special tokens written in it are
    /// recognized; BOS is added where the model asks for it)
    #[arg(long)]
    pub raw: bool,
    /// Print one JSON object: text, generated token ids, prompt token ids, finish reason, log-probs
    #[arg(long)]
    pub json: bool,
    /// With --json: log-probs of each chosen token and of N alternatives
    #[arg(long, value_name = "N")]
    pub top_logprobs: Option<usize>,
    /// The prompt
    #[arg(required_unless_present = "messages")]
    pub prompt: Option<String>,
}

#[derive(serde::Serialize)]
struct JsonTop {
    id: u32,
    logprob: f32,
}

#[derive(serde::Serialize)]
struct JsonLogprob {
    id: u32,
    logprob: f32,
    top: Vec<JsonTop>,
}

#[derive(serde::Serialize)]
struct JsonOut<'a> {
    text: &'a str,
    tokens: Vec<u32>,
    prompt_tokens: &'a [u32],
    finish_reason: engine::FinishReason,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<Vec<JsonLogprob>>,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
}

pub fn read_messages(path: &PathBuf) -> anyhow::Result<Vec<ChatMessage>> {
    let raw = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&raw).with_context(|| format!("{} is not a JSON array of {{\"role\", \"content\"}} messages", path.display()))
}

pub fn run(a: RunArgs, dir: &ModelsDir) -> anyhow::Result<()> {
    let messages = match &a.messages {
        Some(p) => Some(read_messages(p)?),
        None => None,
    };
    let engine = a.model.load(dir, a.sampling.ctx)?;
    let prompt_text = a.prompt.clone().unwrap_or_default();
    let prompt = if a.raw {
        engine.raw_prompt(&prompt_text)
    } else {
        let msgs = messages.unwrap_or_else(|| {
            let mut m = Vec::new();
            if let Some(s) = &a.system {
                m.push(ChatMessage { role: "system".into(), content: s.clone() });
            }
            m.push(ChatMessage { role: "user".into(), content: prompt_text.clone() });
            m
        });
        engine.chat_prompt(&msgs)?
    };
    let params = GenParams {
        sampling: a.sampling.params(),
        max_tokens: a.sampling.max_tokens,
        stop: a.sampling.stop.clone(),
        top_logprobs: if a.json { a.top_logprobs } else { None },
        ignore_eos: false,
        watermark: a.sampling.watermark()?,
        ..GenParams::default()
    };
    let mut session = Session::new(&engine, a.sampling.n_ctx(&engine));
    let stdout = std::io::stdout();
    let json = a.json;
    let g = session.generate(&prompt, &params, |t| {
        if !json {
            let mut o = stdout.lock();
            let _ = o.write_all(t.text.as_bytes());
            let _ = o.flush();
        }
        true
    })?;
    if json {
        let out = JsonOut {
            text: &g.text,
            tokens: g.tokens.iter().map(|t| t.id).collect(),
            prompt_tokens: &prompt,
            finish_reason: g.finish,
            logprobs: a.top_logprobs.map(|_| {
                g.tokens
                    .iter()
                    .map(|t| JsonLogprob {
                        id: t.id,
                        logprob: t.logprob.unwrap_or(0.0),
                        top: t.top.iter().map(|x| JsonTop { id: x.id, logprob: x.logprob }).collect(),
                    })
                    .collect()
            }),
            prefill_tokens_per_s: rate(g.prompt_tokens - g.cached_tokens, g.prefill_time),
            decode_tokens_per_s: rate(g.tokens.len().saturating_sub(1), g.decode_time),
        };
        println!("{}", serde_json::to_string(&out)?);
    } else {
        let mut o = stdout.lock();
        o.write_all(g.tail.as_bytes())?;
        o.write_all(b"\n")?;
    }
    Ok(())
}

pub fn rate(n: usize, d: std::time::Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}
