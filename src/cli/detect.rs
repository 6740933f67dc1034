//! `daehwa detect`: is a text marked with this server's provenance watermark? Tokenizes it with
//! the model's tokenizer exactly as `POST /v1/provenance/detect` does and prints the z-score,
//! green count, tokens scored and verdict.

use std::path::PathBuf;

use anyhow::Context;

use super::ModelArgs;
use crate::models::ModelsDir;

#[derive(clap::Args, Debug)]
pub struct DetectArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The key file the server marks with (`daehwa serve --watermark-key-file`)
    #[arg(long, env = "DAEHWA_WATERMARK_KEY_FILE")]
    pub key_file: PathBuf,
    /// The z-score at which the text is called marked
    #[arg(long, default_value_t = engine::sample::watermark::DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Print {"z", "green", "scored", "verdict", "threshold"}
    #[arg(long)]
    pub json: bool,
    /// The text file to score (`-` reads standard input)
    pub file: PathBuf,
}

pub fn detect(a: DetectArgs, dir: &ModelsDir) -> anyhow::Result<()> {
    let key = engine::sample::watermark::WatermarkKey::from_file(&a.key_file)?;
    let text = if a.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&a.file).with_context(|| format!("reading {}", a.file.display()))?
    };
    let path = crate::models::resolve_model(a.model.model.as_deref(), dir)?;
    let file = gguf::GgufFile::open(&path)?;
    let tok = engine::text::tokenizer::Tokenizer::from_gguf(&file)?;
    // The server's tokenization of a raw text (Engine::raw_prompt_limited), so both agree.
    let ids = tok.encode(&text, true, true);
    let d = server::provenance::Detection::of(key.score(&ids), a.threshold);
    if a.json {
        println!("{}", serde_json::to_string(&d)?);
    } else {
        println!("z-score   {:.2}", d.z);
        println!("green     {} of {} scored tokens ({:.0}% expected by chance)", d.green, d.scored, engine::sample::watermark::GAMMA * 100.0);
        println!("verdict   {} (threshold z >= {})", d.verdict, d.threshold);
    }
    Ok(())
}
