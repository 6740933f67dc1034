//! Unicode helpers shared by the tokenizers: the codepoint classes that llama.cpp's hand-written
//! pre-tokenizers test (`\p{L}`, `\p{N}`, `\s`), and GPT-2's byte <-> printable-codepoint map.
//!
//! llama.cpp carries its own Unicode tables (`unicode-data.cpp`); we take the same general categories
//! from `regex-syntax`'s tables (the ones `fancy-regex` uses), so the hand-written splitters and the
//! regex-driven ones agree with each other on what a letter or a number is.

use std::sync::OnceLock;

/// `\p{L}`: a letter of any script.
pub const LETTER: u8 = 1;
/// `\p{N}`: a number of any script.
pub const NUMBER: u8 = 2;
/// `\s`: the Unicode White_Space property (llama.cpp's `is_whitespace`).
pub const WHITESPACE: u8 = 4;

const N_CODEPOINTS: usize = 0x11_0000;

/// One byte of class flags per codepoint (1.1 MB, built once, in about a millisecond).
fn table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = vec![0u8; N_CODEPOINTS];
        for (pattern, flag) in [(r"\p{L}", LETTER), (r"\p{N}", NUMBER), (r"\s", WHITESPACE)] {
            for (lo, hi) in class_ranges(pattern) {
                for cp in lo..=hi {
                    t[cp as usize] |= flag;
                }
            }
        }
        t
    })
}

/// The codepoint ranges of a one-class regex such as `\p{L}`, from regex-syntax's Unicode tables.
fn class_ranges(pattern: &str) -> Vec<(u32, u32)> {
    use regex_syntax::hir::{Class, HirKind};
    let hir = regex_syntax::Parser::new().parse(pattern).expect("invariant: built-in class pattern parses");
    match hir.kind() {
        HirKind::Class(Class::Unicode(cls)) => {
            cls.ranges().iter().map(|r| (r.start() as u32, r.end() as u32)).collect()
        }
        _ => unreachable!("invariant: {pattern} is a Unicode class"),
    }
}

/// The class flags of `c` (a combination of [`LETTER`], [`NUMBER`], [`WHITESPACE`]).
#[inline]
pub fn flags(c: char) -> u8 {
    table()[c as usize]
}

/// GPT-2's reversible byte -> codepoint map: printable Latin-1 bytes map to themselves, the other 68
/// bytes to U+0100.. in byte order, so that every byte is a visible character in the vocabulary.
pub fn byte_to_char_table() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        let cp = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        out[b as usize] = char::from_u32(cp).expect("invariant: codepoints below 0x200 are valid");
    }
    out
}

/// The inverse of [`byte_to_char_table`]: a codepoint below 0x144 -> its byte, if it is one of the 256.
pub fn char_to_byte(c: char) -> Option<u8> {
    static INV: OnceLock<Vec<i16>> = OnceLock::new();
    let inv = INV.get_or_init(|| {
        let mut inv = vec![-1i16; 0x200];
        for (b, c) in byte_to_char_table().iter().enumerate() {
            inv[*c as usize] = b as i16;
        }
        inv
    });
    let i = c as usize;
    if i < inv.len() && inv[i] >= 0 {
        Some(inv[i] as u8)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_match_unicode_categories() {
        assert_eq!(flags('a'), LETTER);
        assert_eq!(flags('한'), LETTER);
        assert_eq!(flags('7'), NUMBER);
        assert_eq!(flags('Ⅻ'), NUMBER); // Nl is \p{N}
        assert_eq!(flags(' '), WHITESPACE);
        assert_eq!(flags('\u{3000}'), WHITESPACE);
        assert_eq!(flags('\u{85}'), WHITESPACE);
        assert_eq!(flags('!'), 0);
        assert_eq!(flags('\u{301}'), 0); // a combining mark is \p{M}, not \p{L}
    }

    #[test]
    fn gpt2_byte_map_round_trips() {
        let t = byte_to_char_table();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'A' as usize], 'A');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(t[b as usize]), Some(b));
        }
        assert_eq!(char_to_byte('한'), None);
    }
}
