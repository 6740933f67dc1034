//! `daehwa tokenize`: ids and pieces of a text, like llama-tokenize.

use super::ModelArgs;
use crate::models::ModelsDir;

#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Print {"ids": [...], "pieces": [...]}
    #[arg(long)]
    pub json: bool,
    /// Add BOS/EOS where the model asks for them
    #[arg(long)]
    pub add_special: bool,
    /// Treat special-token text (e.g. <|im_start|>) as plain text
    #[arg(long)]
    pub no_parse_special: bool,
    /// The text
    pub text: String,
}

pub fn tokenize(a: TokenizeArgs, dir: &ModelsDir) -> anyhow::Result<()> {
    let path = crate::models::resolve_model(a.model.model.as_deref(), dir)?;
    let file = gguf::GgufFile::open(&path)?;
    let tok = engine::text::tokenizer::Tokenizer::from_gguf(&file)?;
    let ids = tok.encode(&a.text, a.add_special, !a.no_parse_special);
    let pieces: Vec<String> = ids.iter().map(|&id| String::from_utf8_lossy(&tok.token_to_piece(id, true)).into_owned()).collect();
    if a.json {
        println!("{}", serde_json::json!({ "ids": ids, "pieces": pieces }));
    } else {
        for (id, p) in ids.iter().zip(&pieces) {
            println!("{id:>7} -> {p:?}");
        }
    }
    Ok(())
}
