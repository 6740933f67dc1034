//! Sampling flags shared by `run` and `chat`.

use engine::sample::SamplingParams;

#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy (always the most likely token)
    #[arg(long = "temp", alias = "temperature", default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep only the K most likely tokens (0 = off)
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches P (1 = off)
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than P x the most likely one (0 = off)
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalize repeating recent tokens (1 = off)
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at
    #[arg(long, default_value_t = 64)]
    pub repeat_last_n: usize,
    /// OpenAI presence penalty (-2..2)
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// OpenAI frequency penalty (-2..2)
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Random seed: the same seed gives the same answer
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when this text appears (repeatable); it is not printed
    #[arg(long)]
    pub stop: Vec<String>,
    /// Largest number of tokens to generate
    #[arg(short = 'n', long = "max-tokens", default_value_t = 512)]
    pub max_tokens: usize,
    /// Context size in tokens [default: the model's, at most 8192]
    #[arg(short = 'c', long = "ctx")]
    pub ctx: Option<usize>,
    /// Mark the answer with the provenance watermark keyed by this file (as `daehwa serve
    /// --watermark-key-file`)
    #[arg(long)]
    pub watermark_key_file: Option<std::path::PathBuf>,
}

impl SamplingArgs {
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
        }
    }

    pub fn n_ctx(&self, engine: &engine::Engine) -> usize {
        self.ctx.unwrap_or_else(|| engine.model.hparams().n_ctx_train.min(8192))
    }

    /// The provenance key of `--watermark-key-file`, if given.
    pub fn watermark(&self) -> anyhow::Result<Option<std::sync::Arc<engine::sample::watermark::WatermarkKey>>> {
        match &self.watermark_key_file {
            Some(p) => Ok(Some(std::sync::Arc::new(engine::sample::watermark::WatermarkKey::from_file(p)?))),
            None => Ok(None),
        }
    }
}
