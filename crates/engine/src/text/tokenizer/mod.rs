//! Tokenizers read from GGUF metadata, matching llama.cpp token for token: byte-level BPE
//! (`tokenizer.ggml.model = gpt2`, with the pre-tokenizer named by `tokenizer.ggml.pre`) and
//! SentencePiece-style BPE (`llama`). Special tokens written in the text are matched first
//! (`tokenizer_st_partition`), then each stretch of plain text is tokenized on its own.

mod bpe;
mod pretokenize;
mod spm;
mod unicode;
mod vocab;

use std::ops::Range;

pub use crate::TokenId;

use bpe::Bpe;
use pretokenize::PreTokenizer;
use vocab::{attr, Defaults, Kind, Vocab};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer: {0}")]
    Invalid(String),
}

enum Model {
    Bpe { bpe: Bpe, pre: PreTokenizer },
    Spm { byte_tokens: Box<[Option<u32>; 256]> },
}

/// A model's tokenizer. Immutable after loading; share it by reference across threads.
pub struct Tokenizer {
    vocab: Vocab,
    model: Model,
    /// The longest piece any token stands for, in bytes of input text (at least 4, one character):
    /// a text of `n` bytes has at least `n / max_piece` tokens.
    max_piece: usize,
    /// Whether some special token eats the whitespace around it (LSTRIP/RSTRIP): then the bound
    /// above does not hold.
    strips: bool,
}

/// How [`Tokenizer::encode_with`] tokenizes.
#[derive(Clone, Copy, Debug, Default)]
pub struct EncodeOptions<'a> {
    /// Add BOS/EOS as the model's metadata says.
    pub add_special: bool,
    /// Control tokens written in the text become their ids (user-defined tokens always do).
    pub parse_special: bool,
    /// Byte ranges of the text (sorted, not overlapping) in which no special token (control or
    /// user-defined) is matched, even with `parse_special`: the contents of chat messages, so a
    /// special token's spelling typed in a message stays text.
    pub plain: &'a [Range<usize>],
    /// Stop with [`TooManyTokens`] as soon as more than this many tokens come out.
    pub max_tokens: Option<usize>,
}

/// The text has more tokens than the limit it was tokenized under (tokenizing stopped early).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the text has at least {at_least} tokens, more than the limit of {limit}")]
pub struct TooManyTokens {
    pub limit: usize,
    pub at_least: usize,
}

/// A piece of the input after special-token matching.
enum Frag {
    Text(usize, usize),
    Token(u32),
}

impl Tokenizer {
    /// Reads `tokenizer.ggml.*`. Unknown tokenizer models or pre-tokenizers are errors naming the
    /// supported ones.
    pub fn from_gguf(f: &gguf::GgufFile) -> Result<Self, TokenizerError> {
        let model = f.get_str("tokenizer.ggml.model").map_err(|e| TokenizerError::Invalid(e.to_string()))?;
        match model {
            "gpt2" => {
                let pre_name = f.opt_str("tokenizer.ggml.pre").map_err(|e| TokenizerError::Invalid(e.to_string()))?;
                let pre_name = pre_name.unwrap_or("");
                let cfg = pretokenize::pre_config(pre_name).ok_or_else(|| {
                    TokenizerError::Invalid(format!(
                        "unknown pre-tokenizer `{pre_name}` (tokenizer.ggml.pre); supported: {}",
                        pretokenize::SUPPORTED.join(", ")
                    ))
                })?;
                let defaults = Defaults {
                    bos: if cfg.no_bos { None } else { Some(11) },
                    eos: Some(11),
                    unk: None,
                    add_bos: cfg.add_bos,
                    add_space_prefix: false,
                    clean_spaces: cfg.clean_spaces,
                };
                let mut vocab = Vocab::load(f, Kind::Bpe, defaults)?;
                if cfg.no_bos && f.get("tokenizer.ggml.bos_token_id").is_none() {
                    vocab.bos = None;
                }
                let merges = f.get_str_array("tokenizer.ggml.merges").map_err(|e| TokenizerError::Invalid(e.to_string()))?;
                let bpe = Bpe::new(&vocab.token_to_id, vocab.texts.len() as u32, merges, cfg.ignore_merges);
                let pre = PreTokenizer::new(cfg.regexes).map_err(TokenizerError::Invalid)?;
                Ok(Tokenizer::new(vocab, Model::Bpe { bpe, pre }))
            }
            "llama" => {
                let defaults = Defaults {
                    bos: Some(1),
                    eos: Some(2),
                    unk: Some(0),
                    add_bos: true,
                    add_space_prefix: true,
                    clean_spaces: false,
                };
                let vocab = Vocab::load(f, Kind::Spm, defaults)?;
                let mut byte_tokens = Box::new([None; 256]);
                for (b, slot) in byte_tokens.iter_mut().enumerate() {
                    let hex = format!("<0x{b:02X}>");
                    *slot = vocab.token_to_id.get(&hex).copied().or_else(|| {
                        char::from_u32(b as u32)
                            .filter(|_| b < 0x80)
                            .and_then(|c| vocab.token_to_id.get(&c.to_string()).copied())
                    });
                }
                Ok(Tokenizer::new(vocab, Model::Spm { byte_tokens }))
            }
            other => Err(TokenizerError::Invalid(format!(
                "unsupported tokenizer model `{other}` (tokenizer.ggml.model); supported: gpt2, llama"
            ))),
        }
    }

    fn new(vocab: Vocab, model: Model) -> Self {
        let mut t = Tokenizer { vocab, model, max_piece: 4, strips: false };
        t.max_piece = (0..t.vocab.texts.len() as u32).map(|id| t.token_to_piece(id, true).len()).max().unwrap_or(0).max(4);
        t.strips = t.vocab.special_cache.iter().any(|&id| t.vocab.attrs[id as usize] & (attr::LSTRIP | attr::RSTRIP) != 0);
        t
    }

    /// Like llama.cpp's `llama_tokenize(text, add_special, parse_special)`: with `add_special` the
    /// model's BOS/EOS are added as its metadata says; with `parse_special` control tokens written
    /// in the text become their ids (user-defined tokens always do).
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<TokenId> {
        let opts = EncodeOptions { add_special, parse_special, ..EncodeOptions::default() };
        // Without a token limit tokenizing cannot fail.
        self.encode_with(text, &opts).unwrap_or_default()
    }

    /// [`encode`](Self::encode) with plain-text ranges and a token limit. With a limit the work is
    /// bounded by it: a text too long in bytes to fit is refused before any matching, and
    /// tokenizing stops as soon as the limit is passed.
    pub fn encode_with(&self, text: &str, opts: &EncodeOptions<'_>) -> Result<Vec<TokenId>, TooManyTokens> {
        let v = &self.vocab;
        let bos = usize::from(opts.add_special && v.add_bos && v.bos.is_some());
        if let Some(limit) = opts.max_tokens {
            if !self.strips {
                let at_least = text.len().div_ceil(self.max_piece) + bos;
                if at_least > limit {
                    return Err(TooManyTokens { limit, at_least });
                }
            }
        }
        let over = |out: &Vec<TokenId>| match opts.max_tokens {
            Some(limit) if out.len() > limit => Err(TooManyTokens { limit, at_least: out.len() }),
            _ => Ok(()),
        };
        let frags = self.partition(text, opts.parse_special, opts.plain);
        let mut out = Vec::with_capacity(text.len().min(opts.max_tokens.unwrap_or(usize::MAX)) / 3 + 2);
        if opts.add_special && v.add_bos {
            out.extend(v.bos);
        }
        match &self.model {
            Model::Bpe { bpe, pre } => {
                for frag in &frags {
                    match *frag {
                        Frag::Token(id) => out.push(id),
                        Frag::Text(a, b) => {
                            for word in pre.split(&text[a..b]) {
                                bpe.encode_word(word, &v.texts, &v.token_to_id, &mut out);
                                over(&out)?;
                            }
                        }
                    }
                    over(&out)?;
                }
            }
            Model::Spm { byte_tokens } => {
                let sv = spm::SpmVocab { token_to_id: &v.token_to_id, scores: &v.scores, byte_tokens };
                // The first text fragment and each one after a special token get the space prefix.
                let mut prev_special = true;
                let mut buf = String::new();
                for frag in &frags {
                    match *frag {
                        Frag::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                        Frag::Text(a, b) => {
                            buf.clear();
                            if v.add_space_prefix && prev_special {
                                buf.push(' ');
                            }
                            buf.push_str(&text[a..b]);
                            let escaped = buf.replace(' ', "\u{2581}");
                            spm::encode(&escaped, &sv, &mut out);
                            prev_special = false;
                        }
                    }
                    over(&out)?;
                }
            }
        }
        if opts.add_special && v.add_eos {
            out.extend(v.eos);
        }
        over(&out)?;
        Ok(out)
    }

    /// Splits `text` at special tokens, longest token first, each token over all remaining text
    /// (`tokenizer_st_partition`). Control and unknown tokens only match with `parse_special`; no
    /// special token matches where the match overlaps one of the `plain` ranges.
    fn partition(&self, text: &str, parse_special: bool, plain: &[Range<usize>]) -> Vec<Frag> {
        let v = &self.vocab;
        let bytes = text.as_bytes();
        let mut frags = if text.is_empty() { Vec::new() } else { vec![Frag::Text(0, text.len())] };
        for &id in &v.special_cache {
            let a = v.attrs[id as usize];
            let control = a & (attr::CONTROL | attr::UNKNOWN) != 0;
            if !parse_special && control {
                continue;
            }
            // Inside message contents no special token is recognised: not the control tokens,
            // and not the user-defined ones that llama.cpp always parses (gpt-oss's
            // `<|start|>`, `<|message|>`, `<|end|>` are such; typed by a user they would forge
            // harmony turns).
            let shielded = !plain.is_empty();
            let tok = v.texts[id as usize].as_bytes();
            let finder = memchr::memmem::Finder::new(tok);
            // Cheap pre-check: most special tokens occur nowhere.
            if !frags.iter().any(|f| matches!(*f, Frag::Text(s, e) if finder.find(&bytes[s..e]).is_some())) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for frag in frags {
                let Frag::Text(start, end) = frag else {
                    next.push(frag);
                    continue;
                };
                let (mut base, stop) = (start, end);
                // Where the next search starts: past `base` when a match inside plain text was skipped.
                let mut from = base;
                loop {
                    let Some(rel) = finder.find(&bytes[from..stop]) else {
                        if stop > base {
                            next.push(Frag::Text(base, stop));
                        }
                        break;
                    };
                    let m = from + rel;
                    if shielded && overlaps(plain, m, m + tok.len()) {
                        from = m + 1;
                        continue;
                    }
                    let mut left_end = m;
                    if a & attr::LSTRIP != 0 {
                        while left_end > base && is_c_space(bytes[left_end - 1]) {
                            left_end -= 1;
                        }
                    }
                    if left_end > base {
                        next.push(Frag::Text(base, left_end));
                    }
                    next.push(Frag::Token(id));
                    base = m + tok.len();
                    if a & attr::RSTRIP != 0 {
                        while base < stop && is_c_space(bytes[base]) {
                            base += 1;
                        }
                    }
                    from = base;
                    if base >= stop {
                        break;
                    }
                }
            }
            frags = next;
        }
        frags
    }

    /// Whether the spelling of any special token (control, user-defined or unknown) occurs in
    /// `text`: what the chat prompt keeps as plain text when it is in a message.
    pub fn has_special_spelling(&self, text: &str) -> bool {
        let v = &self.vocab;
        v.special_cache.iter().any(|&id| memchr::memmem::find(text.as_bytes(), v.texts[id as usize].as_bytes()).is_some())
    }

    /// Whether the spelling of a control token (or of the unknown token) occurs in `text`: what
    /// `parse_special` would turn into ids.
    pub fn has_control_spelling(&self, text: &str) -> bool {
        let v = &self.vocab;
        v.special_cache.iter().any(|&id| {
            v.attrs[id as usize] & (attr::CONTROL | attr::UNKNOWN) != 0
                && memchr::memmem::find(text.as_bytes(), v.texts[id as usize].as_bytes()).is_some()
        })
    }

    /// The bytes a token stands for, like `llama_token_to_piece(id, lstrip=0, special)`: control and
    /// unknown tokens render their text only when `special` is true; byte tokens are one raw byte.
    pub fn token_to_piece(&self, id: TokenId, special: bool) -> Vec<u8> {
        let v = &self.vocab;
        let Some(&a) = v.attrs.get(id as usize) else { return Vec::new() };
        if !special && a & (attr::UNKNOWN | attr::CONTROL) != 0 {
            return Vec::new();
        }
        let text = &v.texts[id as usize];
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            return text.as_bytes().to_vec();
        }
        if a & attr::NORMAL != 0 {
            return match v.kind {
                Kind::Spm => text.replace('\u{2581}', " ").into_bytes(),
                Kind::Bpe => decode_byte_level(text),
            };
        }
        if a & attr::BYTE != 0 {
            // "<0xXX>"
            return text.get(3..5).and_then(|h| u8::from_str_radix(h, 16).ok()).map(|b| vec![b]).unwrap_or_default();
        }
        Vec::new()
    }

    /// Like `llama_detokenize(ids, remove_special=false, unparse_special=special)`, as lossy UTF-8.
    pub fn decode(&self, ids: &[TokenId], special: bool) -> String {
        let mut out = Vec::with_capacity(ids.len() * 4);
        // SPM's space prefix is removed from the first token.
        let mut remove_space = self.vocab.add_space_prefix;
        for &id in ids {
            let piece = self.token_to_piece(id, special);
            let skip = usize::from(remove_space && piece.first() == Some(&b' '));
            out.extend_from_slice(&piece[skip..]);
            remove_space = false;
        }
        if self.vocab.clean_spaces {
            clean_spaces(&mut out);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The raw vocabulary string of a token (GPT-2 byte characters / U+2581 spaces as stored).
    pub fn token_text(&self, id: TokenId) -> &str {
        self.vocab.texts.get(id as usize).map_or("", String::as_str)
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.texts.len()
    }
    pub fn bos(&self) -> Option<TokenId> {
        self.vocab.bos
    }
    pub fn eos(&self) -> Option<TokenId> {
        self.vocab.eos
    }
    /// The end-of-turn token (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`...), if the vocabulary has one.
    pub fn eot(&self) -> Option<TokenId> {
        self.vocab.eot
    }
    pub fn unk(&self) -> Option<TokenId> {
        self.vocab.unk
    }
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }
    /// End of generation: EOS, EOT, EOM and the tokens llama.cpp recognizes by text.
    pub fn is_eog(&self, id: TokenId) -> bool {
        self.vocab.eog.contains(&id)
    }
    /// All end-of-generation ids, sorted.
    pub fn eog_ids(&self) -> Vec<TokenId> {
        let mut v: Vec<_> = self.vocab.eog.iter().copied().collect();
        v.sort_unstable();
        v
    }
    pub fn is_control(&self, id: TokenId) -> bool {
        self.vocab.attrs.get(id as usize).is_some_and(|a| a & attr::CONTROL != 0)
    }
    pub fn token_id(&self, text: &str) -> Option<TokenId> {
        self.vocab.token_to_id.get(text).copied()
    }
}

/// Whether `a..b` overlaps one of `ranges` (sorted, not overlapping).
fn overlaps(ranges: &[Range<usize>], a: usize, b: usize) -> bool {
    let i = ranges.partition_point(|r| r.end <= a);
    ranges.get(i).is_some_and(|r| r.start < b)
}

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// A byte-level BPE token's text -> its bytes (`llama_decode_text`).
fn decode_byte_level(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match unicode::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                // llama.cpp's marker for a character outside the byte map.
                let mut buf = [0u8; 4];
                out.extend_from_slice(b"[UNK_BYTE_0x");
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// llama.cpp's `clean_spaces` passes over detokenized text, in place and with its exact indexing:
/// " ?" " !" " ." " ," lose the space; " ' " loses both spaces; " 's" " 'm" " 're" " 've" lose the space.
fn clean_spaces(t: &mut Vec<u8>) {
    // Pass 1: space before ?!.,
    let n = t.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        t[total] = x;
        total += 1;
    }
    t.truncate(total);
    // Pass 2: a lone apostrophe between spaces.
    let n = t.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = t[i];
        if x == b'\'' && i + 1 < n && t[i - 1] == b' ' && t[i + 1] == b' ' {
            total -= 1;
            i += 1;
            t[i] = 0;
        }
        t[total] = x;
        total += 1;
        i += 1;
    }
    t.truncate(total);
    // Pass 3: contractions.
    let n = t.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = t[i];
        if t[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = t[i + 1];
            if matches!(x1, b's' | b'm') {
                total -= 1;
            } else if !matches!(x1, b't' | b'd') && i + 2 < n {
                let x2 = t[i + 2];
                if matches!((x1, x2), (b'r', b'e') | (b'v', b'e')) {
                    total -= 1;
                }
            }
        }
        t[total] = x;
        total += 1;
    }
    t.truncate(total);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_spaces(&mut v);
        String::from_utf8(v).expect("utf8")
    }

    #[test]
    fn clean_spaces_like_llama_cpp() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("it 's he 're I 'd"), "it's he're I 'd");
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(clean(""), "");
    }

    #[test]
    fn byte_level_decoding() {
        assert_eq!(decode_byte_level("Ġhello"), b" hello");
        assert_eq!(decode_byte_level("ĊĊ"), b"\n\n");
    }
}
