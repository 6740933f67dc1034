//! Our vocabulary as llguidance's tokenizer environment: every token's bytes in a trie, control
//! tokens spelled with llguidance's special-token marker (so grammars can name them, e.g.
//! `<tool_call>` in Qwen's vocabulary, but plain text never matches them).

use std::sync::Arc;

use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenizerEnv};

use crate::text::tokenizer::Tokenizer;

struct Env {
    trie: TokTrie,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// Greedy tokenization by the trie: llguidance uses it only to split forced text into tokens,
    /// which need not be canonical (`tokenize_is_canonical` says so).
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        self.trie.greedy_tokenize(s)
    }

    fn tokenize_is_canonical(&self) -> bool {
        false
    }
}

pub(super) fn env(tok: &Tokenizer) -> Result<TokEnv, String> {
    let n = tok.n_vocab();
    let n32 = u32::try_from(n).map_err(|_| "the vocabulary is too large".to_string())?;
    let eos = tok.eot().or(tok.eos()).or_else(|| tok.eog_ids().first().copied()).ok_or("the vocabulary has no end-of-generation token")?;
    let mut words = Vec::with_capacity(n);
    for id in 0..n32 {
        let piece = tok.token_to_piece(id, true);
        if tok.is_control(id) || tok.is_eog(id) {
            let mut w = Vec::with_capacity(piece.len() + 1);
            w.push(TokTrie::SPECIAL_TOKEN_MARKER);
            w.extend_from_slice(&piece);
            words.push(w);
        } else {
            words.push(piece);
        }
    }
    let info = TokRxInfo { vocab_size: n32, tok_eos: eos, tok_bos: tok.bos(), tok_pad: None, tok_unk: tok.unk(), tok_end_of_turn: tok.eot() };
    Ok(Arc::new(Env { trie: TokTrie::from(&info, &words) }))
}
