//! Provenance marks: a statistical watermark in sampling (Kirchenbauer et al. 2023, "A Watermark
//! for Large Language Models", the soft green-list scheme), keyed by a server secret so that
//! detection needs only the text and the key.
//!
//! At every step the previous token and the key pick a pseudo-random "green" subset of the
//! vocabulary holding a fraction [`GAMMA`] of it, and [`DELTA`] is added to the green tokens'
//! logits before the sampler's chain runs. Marked text therefore holds more green tokens than
//! chance; [`WatermarkKey::score`] counts them and returns the one-proportion z-score
//! `z = (green - γT) / sqrt(T γ (1 - γ))` over the `T` scored tokens.
//!
//! Choices (see the paper's §6 and the follow-up "On the Reliability of Watermarks", 2023):
//! - **γ = 0.25, δ = 2.0.** A small green list raises z for a given number of tokens (the
//!   paper's strongest-detection setting with δ = 2 costs a few points of perplexity); δ = 2 is
//!   its recommended middle ground between detectability and quality. Measured on the default
//!   model in README "Provenance" (bench/watermark).
//! - **Context width h = 1** (the previous token, "LeftHash"): the widest robustness to edits,
//!   since a substituted word invalidates only the pairs it touches.
//! - **The seed** of a context is the first 8 bytes of HMAC-SHA256(key, tag ‖ prev token), so
//!   the green lists cannot be recovered without the key; a token's membership is then one
//!   SplitMix64 finaliser of (seed, token) compared with γ·2^64: cheap enough to evaluate over
//!   the whole vocabulary every step (~50 µs for 49k tokens), which an HMAC per token would not
//!   be.
//! - **Repeated (context, token) pairs are scored once**, as the follow-up work recommends, so
//!   repetitive text cannot pile up green hits by repeating one marked pair.
//! - **Temperature 0** with marks on: the bias is added before the argmax, so greedy decoding
//!   stays deterministic and is marked wherever the best green token is within δ of the best
//!   token. Low-entropy greedy text carries a weaker mark than sampled text.

use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};

use crate::TokenId;

/// Fraction of the vocabulary that is green in each context.
pub const GAMMA: f64 = 0.25;
/// Added to every green token's logit before sampling.
pub const DELTA: f32 = 2.0;
/// The z-score above which a text is called marked unless the caller chooses another: the
/// 1%-false-positive threshold measured on human Korean and English text rounded up to a
/// conservative value (README "Provenance").
pub const DEFAULT_THRESHOLD: f64 = 4.0;
/// Domain separation of the HMAC input (a different scheme must never share seeds).
const TAG: &[u8] = b"daehwa-watermark-v1/h1";
/// Shortest accepted secret (bytes).
pub const MIN_KEY_BYTES: usize = 16;

type HmacSha256 = Hmac<sha2_11::Sha256>;

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading the watermark key {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the watermark key must hold at least {MIN_KEY_BYTES} bytes (after trimming whitespace), got {0}")]
    TooShort(usize),
}

/// The server secret the green lists derive from.
#[derive(Clone)]
pub struct WatermarkKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for WatermarkKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WatermarkKey(..)")
    }
}

/// The result of scoring a text.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Score {
    /// z-score of the green count against chance (0 when nothing could be scored).
    pub z: f64,
    /// Green tokens among the scored ones.
    pub green: usize,
    /// Distinct (previous token, token) pairs scored.
    pub scored: usize,
}

impl Score {
    /// Whether the text is called marked at `threshold`.
    pub fn marked(&self, threshold: f64) -> bool {
        self.scored > 0 && self.z >= threshold
    }
}

impl WatermarkKey {
    /// A key from secret bytes (ASCII whitespace around them is ignored, so a key file may end
    /// with a newline).
    pub fn new(secret: &[u8]) -> Result<Self, KeyError> {
        let s = secret.trim_ascii();
        if s.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(s.len()));
        }
        // HMAC takes keys of any length: this cannot fail.
        let mac = <HmacSha256 as KeyInit>::new_from_slice(s).map_err(|_| KeyError::TooShort(s.len()))?;
        Ok(WatermarkKey { mac })
    }

    /// Reads a key file (`--watermark-key-file`).
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let bytes = std::fs::read(path).map_err(|source| KeyError::Read { path: path.display().to_string(), source })?;
        Self::new(&bytes)
    }

    /// The green-list seed of a context (the previous token).
    fn seed(&self, prev: TokenId) -> u64 {
        let mut m = self.mac.clone();
        m.update(TAG);
        m.update(&prev.to_le_bytes());
        let out = m.finalize().into_bytes();
        let mut b = [0u8; 8];
        b.copy_from_slice(&out[..8]);
        u64::from_le_bytes(b)
    }

    /// Whether `tok` is green after `prev`.
    pub fn is_green(&self, prev: TokenId, tok: TokenId) -> bool {
        green(self.seed(prev), tok)
    }

    /// Adds [`DELTA`] to the green tokens' logits for the context `prev`.
    pub fn bias(&self, prev: TokenId, logits: &mut [f32]) {
        let seed = self.seed(prev);
        for (id, l) in logits.iter_mut().enumerate() {
            if green(seed, id as TokenId) {
                *l += DELTA;
            }
        }
    }

    /// Scores a token sequence: every distinct (previous, token) pair counts once; the first
    /// token (no known context) is not scored.
    pub fn score(&self, tokens: &[TokenId]) -> Score {
        let mut seen = std::collections::HashSet::new();
        let (mut green_n, mut scored) = (0usize, 0usize);
        for w in tokens.windows(2) {
            if !seen.insert((w[0], w[1])) {
                continue;
            }
            scored += 1;
            if self.is_green(w[0], w[1]) {
                green_n += 1;
            }
        }
        Score { z: z_score(green_n, scored), green: green_n, scored }
    }
}

/// The one-proportion z-test of `green` hits in `scored` trials at rate [`GAMMA`].
pub fn z_score(green: usize, scored: usize) -> f64 {
    if scored == 0 {
        return 0.0;
    }
    let t = scored as f64;
    (green as f64 - GAMMA * t) / (t * GAMMA * (1.0 - GAMMA)).sqrt()
}

/// SplitMix64's finaliser of (seed, token) below γ·2^64.
fn green(seed: u64, tok: TokenId) -> bool {
    let mut x = seed ^ (tok as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x as f64) < GAMMA * 18_446_744_073_709_551_616.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> WatermarkKey {
        WatermarkKey::new(s.as_bytes()).unwrap()
    }

    #[test]
    fn green_fraction_is_gamma() {
        let k = key("0123456789abcdef-test");
        for prev in [0u32, 1, 7, 49151] {
            let n = (0..49152u32).filter(|&t| k.is_green(prev, t)).count();
            let f = n as f64 / 49152.0;
            assert!((f - GAMMA).abs() < 0.01, "prev {prev}: fraction {f}");
        }
    }

    #[test]
    fn keys_differ_and_short_keys_are_refused() {
        let (a, b) = (key("0123456789abcdef-a"), key("0123456789abcdef-b"));
        let same = (0..10_000u32).filter(|&t| a.is_green(5, t) == b.is_green(5, t)).count();
        // Independent lists agree on γ² + (1-γ)² = 62.5% of tokens.
        assert!((5_900..6_600).contains(&same), "{same}");
        assert!(matches!(WatermarkKey::new(b"  short\n"), Err(KeyError::TooShort(5))));
    }

    #[test]
    fn repeated_pairs_score_once_and_random_text_is_not_flagged() {
        let k = key("0123456789abcdef-test");
        // A green pair repeated 500 times is one scored pair.
        let t = (0..1000u32).find(|&t| k.is_green(3, t) && k.is_green(t, 3)).unwrap();
        let rep: Vec<u32> = (0..1000).map(|i| if i % 2 == 0 { 3 } else { t }).collect();
        assert_eq!(k.score(&rep).scored, 2);
        // Pseudo-random token streams: z stays near 0.
        let mut x = 12345u64;
        let toks: Vec<u32> = (0..5000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 33) % 49152) as u32
            })
            .collect();
        let s = k.score(&toks);
        assert!(s.z.abs() < 4.0, "{s:?}");
    }

    #[test]
    fn biased_sampling_is_detected() {
        let k = key("0123456789abcdef-test");
        // Flat logits: with the bias a green token has e^2 times the weight of a red one, so
        // P(green) = 0.25 e² / (0.25 e² + 0.75) ≈ 0.71.
        let mut x = 99u64;
        let mut toks = vec![1u32];
        let mut logits = vec![0f32; 1000];
        for _ in 0..200 {
            logits.iter_mut().for_each(|l| *l = 0.0);
            k.bias(*toks.last().unwrap(), &mut logits);
            let w: Vec<f64> = logits.iter().map(|&l| (l as f64).exp()).collect();
            let total: f64 = w.iter().sum();
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut r = (x >> 11) as f64 / (1u64 << 53) as f64 * total;
            let mut pick = 0;
            for (i, wi) in w.iter().enumerate() {
                r -= wi;
                if r <= 0.0 {
                    pick = i;
                    break;
                }
            }
            toks.push(pick as u32);
        }
        let s = k.score(&toks);
        assert!(s.marked(DEFAULT_THRESHOLD), "{s:?}");
        assert!(!key("another-key-0123456789").score(&toks).marked(DEFAULT_THRESHOLD));
    }
}
