//! The vocabulary read from `tokenizer.ggml.*`: token texts, scores and attributes, the special ids,
//! the end-of-generation set and the cache of specially-matched tokens, following
//! `llama_vocab::impl::load` in llama.cpp (including its text-based auto-detection of EOT/FIM tokens).

use std::collections::{HashMap, HashSet};

use super::TokenizerError;

/// Token attributes (llama.cpp's `llama_token_attr` bits).
pub mod attr {
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

/// `tokenizer.ggml.token_type` values -> attributes.
fn attr_of_type(t: i64) -> u32 {
    match t {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => 0, // undefined
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `gpt2`: byte-level BPE with merges.
    Bpe,
    /// `llama`: SentencePiece-style pieces with scores and byte fallback.
    Spm,
}

pub struct Vocab {
    pub kind: Kind,
    pub texts: Vec<String>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u32>,
    pub token_to_id: HashMap<String, u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub unk: Option<u32>,
    pub eog: HashSet<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    pub add_space_prefix: bool,
    pub clean_spaces: bool,
    /// CONTROL, USER_DEFINED and UNKNOWN tokens, longest text first: matched in raw text before
    /// tokenizing (`cache_special_tokens`).
    pub special_cache: Vec<u32>,
}

/// Per-model-type defaults that `load` starts from before the GGUF keys override them.
pub struct Defaults {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unk: Option<u32>,
    pub add_bos: bool,
    pub add_space_prefix: bool,
    pub clean_spaces: bool,
}

fn err(msg: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid(msg.into())
}

fn opt_id(f: &gguf::GgufFile, key: &str) -> Result<Option<u32>, TokenizerError> {
    f.opt_u32(key).map_err(|e| err(e.to_string()))
}

fn opt_bool(f: &gguf::GgufFile, key: &str) -> Result<Option<bool>, TokenizerError> {
    f.opt_bool(key).map_err(|e| err(e.to_string()))
}

const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
    "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
const FIM_PRE_TEXTS: &[&str] =
    &["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"];
const FIM_SUF_TEXTS: &[&str] =
    &["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"];
const FIM_MID_TEXTS: &[&str] =
    &["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"];
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
    "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
];

impl Vocab {
    pub fn load(f: &gguf::GgufFile, kind: Kind, d: Defaults) -> Result<Self, TokenizerError> {
        let raw = f.get_str_array("tokenizer.ggml.tokens").map_err(|e| err(e.to_string()))?;
        let n = raw.len();
        let scores: Vec<f32> = match f.get("tokenizer.ggml.scores") {
            None => vec![0.0; n],
            Some(_) => match f.get_f32_array("tokenizer.ggml.scores") {
                Ok(s) => s.to_vec(),
                Err(_) => f
                    .get_int_array("tokenizer.ggml.scores")
                    .map_err(|e| err(e.to_string()))?
                    .into_iter()
                    .map(|x| x as f32)
                    .collect(),
            },
        };
        if scores.len() < n {
            return Err(err(format!("{} scores for {n} tokens", scores.len())));
        }
        let mut attrs: Vec<u32> = match f.get("tokenizer.ggml.token_type") {
            None => vec![attr::NORMAL; n],
            Some(_) => {
                let t = f.get_int_array("tokenizer.ggml.token_type").map_err(|e| err(e.to_string()))?;
                if t.len() < n {
                    return Err(err(format!("{} token types for {n} tokens", t.len())));
                }
                t[..n].iter().map(|&t| attr_of_type(t)).collect()
            }
        };
        let mut texts = Vec::with_capacity(n);
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, w) in raw.iter().enumerate() {
            let w = if w.is_empty() { format!("[EMPTY_{i}]") } else { w.clone() };
            if let Some(prev) = token_to_id.insert(w.clone(), i as u32) {
                return Err(err(format!("duplicate token in vocabulary: {w:?} has ids {prev} and {i}")));
            }
            texts.push(w);
        }
        let in_range = |id: Option<u32>| id.filter(|&i| (i as usize) < n);
        let mut bos = in_range(d.bos);
        let mut eos = in_range(d.eos);
        let mut unk = in_range(d.unk);
        let mut eot = None;
        let mut eom = None;
        let (mut fim_pad, mut fim_rep, mut fim_sep) = (None, None, None);
        let (mut fim_pre, mut fim_suf, mut fim_mid) = (None, None, None);
        let keyed: [(&str, &mut Option<u32>); 11] = [
            ("tokenizer.ggml.bos_token_id", &mut bos),
            ("tokenizer.ggml.eos_token_id", &mut eos),
            ("tokenizer.ggml.eot_token_id", &mut eot),
            ("tokenizer.ggml.eom_token_id", &mut eom),
            ("tokenizer.ggml.unknown_token_id", &mut unk),
            ("tokenizer.ggml.fim_pad_token_id", &mut fim_pad),
            ("tokenizer.ggml.fim_rep_token_id", &mut fim_rep),
            ("tokenizer.ggml.fim_sep_token_id", &mut fim_sep),
            ("tokenizer.ggml.fim_pre_token_id", &mut fim_pre),
            ("tokenizer.ggml.fim_suf_token_id", &mut fim_suf),
            ("tokenizer.ggml.fim_mid_token_id", &mut fim_mid),
        ];
        for (key, slot) in keyed {
            // An out-of-range id in the file keeps the default, as in llama.cpp.
            if let Some(id) = in_range(opt_id(f, key)?) {
                *slot = Some(id);
            }
        }
        // Deprecated spellings, read after the current ones as llama.cpp does.
        for (key, slot) in [
            ("tokenizer.ggml.prefix_token_id", &mut fim_pre),
            ("tokenizer.ggml.suffix_token_id", &mut fim_suf),
            ("tokenizer.ggml.middle_token_id", &mut fim_mid),
        ] {
            if let Some(id) = in_range(opt_id(f, key)?) {
                *slot = Some(id);
            }
        }
        let add_bos = opt_bool(f, "tokenizer.ggml.add_bos_token")?.unwrap_or(d.add_bos);
        let add_eos = opt_bool(f, "tokenizer.ggml.add_eos_token")?.unwrap_or(false);
        let add_space_prefix = opt_bool(f, "tokenizer.ggml.add_space_prefix")?.unwrap_or(d.add_space_prefix);
        if add_bos && bos.is_none() {
            return Err(err("tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set"));
        }
        if add_eos && eos.is_none() {
            return Err(err("tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set"));
        }

        // Auto-detect EOT / EOM / FIM tokens by their text; such tokens are forced to CONTROL.
        fn force_control(id: u32, attrs: &mut [u32]) {
            attrs[id as usize] |= attr::CONTROL;
        }
        for (id, t) in texts.iter().enumerate() {
            let id = id as u32;
            let t = t.as_str();
            for (slot, list) in [
                (&mut eot, EOT_TEXTS),
                (&mut eom, &["<|eom_id|>"][..]),
                (&mut fim_pre, FIM_PRE_TEXTS),
                (&mut fim_suf, FIM_SUF_TEXTS),
                (&mut fim_mid, FIM_MID_TEXTS),
                (&mut fim_pad, FIM_PAD_TEXTS),
                (&mut fim_rep, FIM_REP_TEXTS),
                (&mut fim_sep, FIM_SEP_TEXTS),
            ] {
                if slot.is_none() && list.contains(&t) {
                    *slot = Some(id);
                    force_control(id, &mut attrs);
                }
            }
        }
        // Control tokens named "unused" are unused.
        for (id, t) in texts.iter().enumerate() {
            if attrs[id] & attr::CONTROL != 0 && t.contains("unused") {
                attrs[id] |= attr::UNUSED;
            }
        }

        // The end-of-generation set.
        let mut eog: HashSet<u32> = [fim_pad, fim_rep, fim_sep].into_iter().flatten().collect();
        for (id, t) in texts.iter().enumerate() {
            if EOG_TEXTS.contains(&t.as_str()) {
                eog.insert(id as u32);
                force_control(id as u32, &mut attrs);
            }
        }
        // gpt-oss: these are always rendered.
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(&id) = token_to_id.get(t) {
                attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        // o200k_harmony / solar-open: "<|end|>" ends a message, not the generation.
        let has = |eog: &HashSet<u32>, t: &str| token_to_id.get(t).is_some_and(|id| eog.contains(id));
        if (has(&eog, "<|return|>") && has(&eog, "<|call|>") && has(&eog, "<|end|>"))
            || (has(&eog, "<|calls|>") && has(&eog, "<|flush|>") && has(&eog, "<|end|>"))
        {
            let id = token_to_id["<|end|>"];
            eog.remove(&id);
            attrs[id as usize] = attr::USER_DEFINED;
        }
        // Gemma 4 / PaddleOCR: "</s>" is not an end of generation when "<|tool_response>" is one.
        if has(&eog, "<|tool_response>") && has(&eog, "</s>") {
            let id = token_to_id["</s>"];
            eog.remove(&id);
            attrs[id as usize] = attr::NORMAL;
        }

        let mut special_cache: Vec<u32> = (0..n as u32)
            .filter(|&id| attrs[id as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
            .collect();
        special_cache.sort_by_key(|&id| std::cmp::Reverse(texts[id as usize].len()));

        // Per-model strip attributes (llama.cpp sets them by model name; GGUF does not carry them).
        let name = f.opt_str("general.name").ok().flatten().unwrap_or("").to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &id in &special_cache {
                attrs[id as usize] |= attr::RSTRIP;
            }
            for (t, on) in [("</s>", true), ("<unk>", false), ("<s>", false), ("<|endoftext|>", false)] {
                if let Some(&id) = token_to_id.get(t) {
                    let a = &mut attrs[id as usize];
                    *a = if on { *a | attr::RSTRIP } else { *a & !attr::RSTRIP };
                }
            }
        }

        Ok(Vocab {
            kind,
            texts,
            scores,
            attrs,
            token_to_id,
            bos,
            eos,
            eot,
            unk,
            eog,
            add_bos,
            add_eos,
            add_space_prefix,
            clean_spaces: d.clean_spaces,
            special_cache,
        })
    }
}
