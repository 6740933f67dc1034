//! The keyed fingerprint of an answer's text, stored with every answer so an admin can match an
//! exact or lightly edited copy back to its conversation ([`store::Store::match_answers`]).
//!
//! The text is normalised first: Unicode NFKC (full-width letters, compatibility jamo and the
//! like fold to their plain forms; precomposed Hangul stays whole), lower case, every character
//! that is not a letter or digit (punctuation, symbols, whitespace) a word break. The exact hash
//! is HMAC-SHA256 of the normalised words joined by one space. The shingles are the overlapping
//! runs of [`SHINGLE_WORDS`] words, each HMAC-keyed to an `i64`; the sketch keeps the
//! [`store::MAX_SHINGLES`] smallest (a bottom-k MinHash), so long answers stay bounded while
//! a copy with about one word in ten changed keeps most of its shingles.
//!
//! The key is the server secret (the watermark key when one is configured), so the stored hashes
//! say nothing to someone who only has the database.

use hmac::{Hmac, KeyInit, Mac};
use unicode_normalization::UnicodeNormalization;

type HmacSha256 = Hmac<sha2_11::Sha256>;

/// Words per shingle.
pub const SHINGLE_WORDS: usize = 3;

/// An answer's fingerprint: what [`store::Store::set_answer_fingerprint`] keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Hex HMAC of the normalised text.
    pub exact: String,
    /// Keyed shingle hashes, ascending, at most [`store::MAX_SHINGLES`].
    pub shingles: Vec<i64>,
}

/// The text's normalised words (see the module documentation).
pub fn normalised_words(text: &str) -> Vec<String> {
    let folded: String = text.nfkc().flat_map(char::to_lowercase).collect();
    folded
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn mac(key: &[u8], domain: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(domain);
    m.update(data);
    m.finalize().into_bytes().into()
}

/// The keyed fingerprint of a text.
pub fn fingerprint(key: &[u8], text: &str) -> Fingerprint {
    let words = normalised_words(text);
    let joined = words.join(" ");
    let exact = mac(key, b"daehwa-answer-exact\0", joined.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let mut shingles: Vec<i64> = if words.len() < SHINGLE_WORDS {
        if words.is_empty() { Vec::new() } else { vec![shingle_hash(key, &joined)] }
    } else {
        words.windows(SHINGLE_WORDS).map(|w| shingle_hash(key, &w.join(" "))).collect()
    };
    shingles.sort_unstable();
    shingles.dedup();
    shingles.truncate(store::MAX_SHINGLES);
    Fingerprint { exact, shingles }
}

fn shingle_hash(key: &[u8], shingle: &str) -> i64 {
    let h = mac(key, b"daehwa-answer-shingle\0", shingle.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    i64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"test key";

    fn jaccard(a: &[i64], b: &[i64]) -> f64 {
        let common = a.iter().filter(|h| b.contains(h)).count() as f64;
        common / ((a.len() + b.len()) as f64 - common)
    }

    #[test]
    fn normalisation_folds_width_case_punctuation_and_keeps_hangul() {
        assert_eq!(normalised_words("Ｈｅｌｌｏ,   WORLD!!\n안녕하세요… 세계."), ["hello", "world", "안녕하세요", "세계"]);
        // Decomposed jamo compose back to the same syllables.
        let decomposed: String = "한국어".nfd().collect();
        assert_eq!(fingerprint(KEY, &decomposed), fingerprint(KEY, "한국어"));
        assert_eq!(fingerprint(KEY, "A  b, c!").exact, fingerprint(KEY, "a b c").exact);
    }

    #[test]
    fn keyed_and_bounded() {
        let text = "the quick brown fox jumps over the lazy dog";
        assert_ne!(fingerprint(KEY, text), fingerprint(b"other key", text));
        let long: String = (0..2000).map(|i| format!("w{i} ")).collect();
        assert_eq!(fingerprint(KEY, &long).shingles.len(), store::MAX_SHINGLES);
        assert!(fingerprint(KEY, "").shingles.is_empty());
        assert_eq!(fingerprint(KEY, "짧은 답").shingles.len(), 1);
    }

    #[test]
    fn ten_percent_edit_keeps_most_shingles() {
        let words: Vec<String> = (0..100).map(|i| format!("word{i}")).collect();
        let mut edited = words.clone();
        for i in (5..100).step_by(10) {
            edited[i] = format!("changed{i}");
        }
        let a = fingerprint(KEY, &words.join(" "));
        let b = fingerprint(KEY, &edited.join(" "));
        assert_ne!(a.exact, b.exact);
        let j = jaccard(&a.shingles, &b.shingles);
        assert!(j > 0.4, "{j}");
        let unrelated: Vec<String> = (0..100).map(|i| format!("other{i}")).collect();
        assert_eq!(jaccard(&a.shingles, &fingerprint(KEY, &unrelated.join(" ")).shingles), 0.0);
    }
}
