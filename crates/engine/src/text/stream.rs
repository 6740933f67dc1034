//! Streaming detokenization: token ids in, complete UTF-8 text out.
//!
//! A byte-level token can end in the middle of a character (a Hangul syllable is three bytes, often
//! split over two tokens). The decoder keeps the incomplete tail until a later token completes it, and
//! turns bytes into U+FFFD only once they can no longer become valid UTF-8 (or at [`finish`]).
//! Pieces are concatenated exactly as `token_to_piece` renders them, like llama-server's streaming.
//!
//! [`finish`]: StreamDecoder::finish

use super::tokenizer::{TokenId, Tokenizer};

#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    special: bool,
    pending: Vec<u8>,
}

impl StreamDecoder {
    /// `special`: render control tokens' text (as `token_to_piece(id, special)`).
    pub fn new(special: bool) -> Self {
        StreamDecoder { special, pending: Vec::new() }
    }

    /// Adds a token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: TokenId) -> String {
        self.pending.extend_from_slice(&tok.token_to_piece(id, self.special));
        self.drain_complete()
    }

    /// Flushes what is left; bytes that never completed a character become U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// Bytes held back, waiting for the rest of a character.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn drain_complete(&mut self) -> String {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).expect("invariant: prefix is valid UTF-8"));
                    match e.error_len() {
                        // An invalid sequence: it can never complete.
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &after[n..];
                        }
                        // A truncated sequence at the end: wait for more bytes.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let start = self.pending.len() - keep;
        self.pending.drain(..start);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(bytes: &[&[u8]]) -> Vec<String> {
        let mut d = StreamDecoder::new(false);
        let mut outs = Vec::new();
        for b in bytes {
            d.pending.extend_from_slice(b);
            outs.push(d.drain_complete());
        }
        outs.push(d.finish());
        outs
    }

    #[test]
    fn holds_incomplete_characters() {
        // "안" = EC 95 88
        assert_eq!(drain(&[b"a\xEC", b"\x95", b"\x88b"]), ["a", "", "안b", ""]);
    }

    #[test]
    fn invalid_bytes_become_replacement_only_when_final() {
        assert_eq!(drain(&[b"\xFFx", b"\xEC\x95"]), ["\u{FFFD}x", "", "\u{FFFD}"]);
        // A lead byte followed by a non-continuation can never complete.
        assert_eq!(drain(&[b"\xEC", b"A"]), ["", "\u{FFFD}A", ""]);
    }
}
