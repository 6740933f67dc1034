//! SentencePiece-style BPE over scored pieces (llama.cpp's `llm_tokenizer_spm_session`), used by the
//! `llama` tokenizer model (Llama 1/2, Mistral, Gemma).
//!
//! The text (spaces already escaped to U+2581) starts as one symbol per character; the adjacent pair
//! whose concatenation is the highest-scoring vocabulary entry is merged first (ties: leftmost), until
//! no pair is a token. Characters that never became tokens fall back to `<0xXX>` byte tokens.
//! Setup is just the vocabulary hash map, so a 262k-entry vocabulary loads in milliseconds.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

struct Sym {
    start: usize,
    len: usize,
    prev: usize,
    next: usize,
}

const NONE: usize = usize::MAX;

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the smaller left position.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score.total_cmp(&other.score).then_with(|| other.left.cmp(&self.left))
    }
}

/// What the SPM merge loop needs from the vocabulary.
pub struct SpmVocab<'a> {
    pub token_to_id: &'a HashMap<String, u32>,
    pub scores: &'a [f32],
    /// The token of each byte for the fallback: `<0xXX>`, else the byte as a one-character token.
    pub byte_tokens: &'a [Option<u32>; 256],
}

/// Appends the tokens of `text` (already whitespace-escaped) to `out`.
pub fn encode(text: &str, v: &SpmVocab<'_>, out: &mut Vec<u32>) {
    let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
    for (i, (start, c)) in text.char_indices().enumerate() {
        let len = c.len_utf8();
        syms.push(Sym {
            start,
            len,
            prev: if i == 0 { NONE } else { i - 1 },
            next: if start + len == text.len() { NONE } else { i + 1 },
        });
    }
    if syms.is_empty() {
        return;
    }
    let mut heap = BinaryHeap::new();
    let try_add = |heap: &mut BinaryHeap<Bigram>, syms: &[Sym], l: usize, r: usize| {
        if l == NONE || r == NONE {
            return;
        }
        let (a, b) = (&syms[l], &syms[r]);
        let piece = &text[a.start..a.start + a.len + b.len];
        if let Some(&id) = v.token_to_id.get(piece) {
            let score = v.scores.get(id as usize).copied().unwrap_or(0.0);
            heap.push(Bigram { score, left: l, right: r, size: piece.len() });
        }
    };
    for i in 1..syms.len() {
        try_add(&mut heap, &syms, i - 1, i);
    }
    while let Some(bg) = heap.pop() {
        let (l, r) = (bg.left, bg.right);
        // Skip pairs whose symbols have changed since the pair was queued.
        if syms[l].len == 0 || syms[r].len == 0 || syms[l].len + syms[r].len != bg.size {
            continue;
        }
        syms[l].len += syms[r].len;
        syms[r].len = 0;
        let next = syms[r].next;
        syms[l].next = next;
        if next != NONE {
            syms[next].prev = l;
        }
        let prev = syms[l].prev;
        try_add(&mut heap, &syms, prev, l);
        try_add(&mut heap, &syms, l, next);
    }
    let mut i = 0;
    while i != NONE {
        let s = &syms[i];
        let piece = &text[s.start..s.start + s.len];
        match v.token_to_id.get(piece) {
            Some(&id) => out.push(id),
            None => {
                // Merged symbols are always tokens, so this is a single character outside the
                // vocabulary: byte fallback.
                for b in piece.bytes() {
                    if let Some(id) = v.byte_tokens[b as usize] {
                        out.push(id);
                    }
                }
            }
        }
        i = s.next;
    }
}
