//! Byte-level BPE merging of one pre-tokenized word (llama.cpp's `llm_tokenizer_bpe_session`).
//!
//! llama.cpp keys merge ranks by strings; we intern every string a merge can produce into an id (the
//! vocabulary's ids first, then ids past the vocabulary for merge results that are not tokens), so
//! the inner loop hashes `(u32, u32)` pairs instead of building strings. The merge order is the same:
//! lowest rank first, ties broken by the leftmost position.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::unicode::byte_to_char_table;

/// Merge tables of a byte-level BPE vocabulary.
pub struct Bpe {
    /// (left, right) -> (rank, merged symbol).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// The symbol of each raw byte (its GPT-2 character).
    byte_sym: Box<[u32; 256]>,
    /// Interned strings that are not tokens; symbol `n_vocab + i` is `extra[i]`.
    extra: Vec<String>,
    n_vocab: u32,
    /// A word that is a token as a whole is emitted without merging (Llama 3, Tekken).
    ignore_merges: bool,
}

struct Interner<'a> {
    token_to_id: &'a HashMap<String, u32>,
    n_vocab: u32,
    extra: Vec<String>,
    extra_ids: HashMap<String, u32>,
}

impl Interner<'_> {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.token_to_id.get(s) {
            return id;
        }
        if let Some(&id) = self.extra_ids.get(s) {
            return id;
        }
        let id = self.n_vocab + self.extra.len() as u32;
        self.extra.push(s.to_string());
        self.extra_ids.insert(s.to_string(), id);
        id
    }
}

#[derive(Clone, Copy)]
struct Sym {
    id: u32,
    prev: usize,
    next: usize,
    alive: bool,
}

const NONE: usize = usize::MAX;

impl Bpe {
    /// `merges` are `tokenizer.ggml.merges` entries, "left right", in rank order.
    pub fn new(token_to_id: &HashMap<String, u32>, n_vocab: u32, merges: &[String], ignore_merges: bool) -> Self {
        let mut int = Interner { token_to_id, n_vocab, extra: Vec::new(), extra_ids: HashMap::new() };
        let chars = byte_to_char_table();
        let mut byte_sym = Box::new([0u32; 256]);
        let mut buf = [0u8; 4];
        for (b, c) in chars.iter().enumerate() {
            byte_sym[b] = int.id(c.encode_utf8(&mut buf));
        }
        let mut table = HashMap::with_capacity(merges.len());
        let mut joined = String::new();
        for (rank, m) in merges.iter().enumerate() {
            // Split at the first space after the first byte, as llama.cpp does (`find(' ', 1)`).
            // (A space is ASCII, so the byte position found is a char boundary.)
            let Some(pos) = m.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else { continue };
            let (l, r) = (&m[..pos], &m[pos + 1..]);
            let (lid, rid) = (int.id(l), int.id(r));
            joined.clear();
            joined.push_str(l);
            joined.push_str(r);
            let merged = int.id(&joined);
            // The first occurrence of a pair keeps its rank (`emplace`).
            table.entry((lid, rid)).or_insert((rank as u32, merged));
        }
        Bpe { merges: table, byte_sym, extra: int.extra, n_vocab, ignore_merges }
    }

    fn text<'a>(&'a self, id: u32, tokens: &'a [String]) -> &'a str {
        if id < self.n_vocab {
            &tokens[id as usize]
        } else {
            &self.extra[(id - self.n_vocab) as usize]
        }
    }

    /// Appends the tokens of one pre-tokenized word (raw UTF-8; byte-encoded here).
    pub fn encode_word(&self, word: &str, tokens: &[String], token_to_id: &HashMap<String, u32>, out: &mut Vec<u32>) {
        let bytes = word.as_bytes();
        if bytes.is_empty() {
            return;
        }
        if self.ignore_merges {
            let chars = byte_to_char_table();
            let encoded: String = bytes.iter().map(|&b| chars[b as usize]).collect();
            if let Some(&id) = token_to_id.get(&encoded) {
                out.push(id);
                return;
            }
        }
        let n = bytes.len();
        let mut syms: Vec<Sym> = (0..n)
            .map(|i| Sym {
                id: self.byte_sym[bytes[i] as usize],
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
                alive: true,
            })
            .collect();
        // Min-heap on (rank, left position); the pair's ids detect stale entries.
        let mut heap = BinaryHeap::new();
        let push = |heap: &mut BinaryHeap<_>, syms: &[Sym], l: usize, r: usize| {
            if l == NONE || r == NONE {
                return;
            }
            let (a, b) = (syms[l].id, syms[r].id);
            if let Some(&(rank, _)) = self.merges.get(&(a, b)) {
                heap.push(Reverse((rank, l, r, a, b)));
            }
        };
        for i in 1..n {
            push(&mut heap, &syms, i - 1, i);
        }
        while let Some(Reverse((_, l, r, a, b))) = heap.pop() {
            if !syms[l].alive || !syms[r].alive || syms[l].id != a || syms[r].id != b {
                continue;
            }
            let (_, merged) = self.merges[&(a, b)];
            let next = syms[r].next;
            syms[l].id = merged;
            syms[l].next = next;
            syms[r].alive = false;
            if next != NONE {
                syms[next].prev = l;
            }
            let prev = syms[l].prev;
            push(&mut heap, &syms, prev, l);
            push(&mut heap, &syms, l, next);
        }
        let mut i = 0;
        while i != NONE {
            let id = syms[i].id;
            if id < self.n_vocab {
                out.push(id);
            } else {
                // A merge produced a string that is not a token: fall back to its single-byte pieces
                // that are tokens (llama.cpp looks each byte of the encoded string up on its own).
                let text = self.text(id, tokens);
                for b in text.bytes() {
                    if let Some(&t) = b.is_ascii().then(|| token_to_id.get(&(b as char).to_string())).flatten() {
                        out.push(t);
                    }
                }
            }
            i = syms[i].next;
        }
    }
}
