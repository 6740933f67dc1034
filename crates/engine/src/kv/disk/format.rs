//! The on-disk form of one KV block: a self-describing, checksummed file.
//!
//! A block file is never trusted: [`decode`] checks everything it carries against what the
//! reader expects (the model's identity, the cache geometry, the block's prefix hash and the
//! whole token prefix it was computed from) and the CRC-32 of the bytes, and any difference
//! makes it a miss. Layout (little-endian):
//!
//! ```text
//!   "DHKVBLK1"        8   magic and format version
//!   model id         32   ModelId (see identity.rs)
//!   prefix hash      16   BlockHash of the block (the chain over every block before it)
//!   block size        4   token positions in the block
//!   n_layer           4   layers whose K/V the payload holds
//!   kv_dim            4   K (and V) values per position and layer
//!   dtype             4   1 = f16
//!   n_tokens          4   tokens of the whole prefix up to the block's end
//!   tokens      4 * n_tokens
//!   payload    2 * n_layer * block_size * kv_dim * 2: per layer, K rows then V rows (f16 bits)
//!   crc32             4   of every byte before it
//! ```
//!
//! Storing the whole prefix (not only the block's own tokens) costs 4 bytes per token against
//! the payload's `4 * n_layer * kv_dim` (23 KiB per token for SmolLM2), and lets the reader
//! compare tokens instead of trusting the hash chain.

use half::f16;

use super::identity::ModelId;
use crate::kv::paged::BlockHash;
use crate::TokenId;

const MAGIC: &[u8; 8] = b"DHKVBLK1";
/// The only payload type: the paged cache's f16.
const DTYPE_F16: u32 = 1;
const FIXED: usize = 8 + 32 + 16 + 4 * 5;

/// The cache geometry a block file must match.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub block_size: usize,
    pub n_layer: usize,
    pub kv_dim: usize,
}

impl Geometry {
    /// f16 values of one block's payload (K and V of every layer).
    pub fn payload_len(&self) -> usize {
        2 * self.n_layer * self.block_size * self.kv_dim
    }
    /// Bytes of a block file whose prefix has `n_tokens` tokens.
    pub fn file_len(&self, n_tokens: usize) -> usize {
        FIXED + 4 * n_tokens + 2 * self.payload_len() + 4
    }
}

/// Why a block file was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0} bytes is not the length of a block file of this prefix")]
    Length(usize),
    #[error("not a daehwa KV block file (magic)")]
    Magic,
    #[error("written for another model")]
    Model,
    #[error("another prefix hash")]
    Hash,
    #[error("another cache geometry or type")]
    Geometry,
    #[error("another token prefix")]
    Tokens,
    #[error("checksum mismatch")]
    Checksum,
}

/// The file bytes of a block: `payload` holds [`Geometry::payload_len`] values.
pub fn encode(model: &ModelId, hash: BlockHash, geo: Geometry, tokens: &[TokenId], payload: &[f16], out: &mut Vec<u8>) {
    debug_assert_eq!(payload.len(), geo.payload_len());
    out.clear();
    out.reserve(geo.file_len(tokens.len()));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&model.0);
    out.extend_from_slice(&hash.0.to_le_bytes());
    for v in [geo.block_size, geo.n_layer, geo.kv_dim, DTYPE_F16 as usize, tokens.len()] {
        out.extend_from_slice(&(v as u32).to_le_bytes());
    }
    for t in tokens {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for v in payload {
        out.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Checks `bytes` against what the reader expects (`tokens`: the whole prefix up to the block's
/// end) and writes the block's values into `payload` ([`Geometry::payload_len`] of them).
pub fn decode(bytes: &[u8], model: &ModelId, hash: BlockHash, geo: Geometry, tokens: &[TokenId], payload: &mut [f16]) -> Result<(), Refused> {
    if bytes.len() != geo.file_len(tokens.len()) || payload.len() != geo.payload_len() {
        return Err(Refused::Length(bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return Err(Refused::Magic);
    }
    if bytes[8..40] != model.0 {
        return Err(Refused::Model);
    }
    let mut h = [0u8; 16];
    h.copy_from_slice(&bytes[40..56]);
    if u128::from_le_bytes(h) != hash.0 {
        return Err(Refused::Hash);
    }
    let dims: Vec<u32> = (0..5).map(|i| u32_at(bytes, 56 + 4 * i)).collect();
    let want = [geo.block_size, geo.n_layer, geo.kv_dim, DTYPE_F16 as usize, tokens.len()];
    if dims.iter().zip(want).any(|(&a, b)| a as usize != b) {
        return Err(Refused::Geometry);
    }
    let body = bytes.len() - 4;
    if crc32fast::hash(&bytes[..body]) != u32_at(bytes, body) {
        return Err(Refused::Checksum);
    }
    let toks = &bytes[FIXED..FIXED + 4 * tokens.len()];
    if toks.chunks_exact(4).zip(tokens).any(|(b, &t)| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) != t) {
        return Err(Refused::Tokens);
    }
    let data = &bytes[FIXED + 4 * tokens.len()..body];
    for (d, b) in payload.iter_mut().zip(data.chunks_exact(2)) {
        *d = f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (ModelId, BlockHash, Geometry, Vec<TokenId>, Vec<f16>) {
        let geo = Geometry { block_size: 4, n_layer: 3, kv_dim: 5 };
        let tokens: Vec<TokenId> = (0..8).map(|i| 100 + i).collect();
        let payload: Vec<f16> = (0..geo.payload_len()).map(|i| f16::from_f32(i as f32 * 0.25 - 7.0)).collect();
        (ModelId([7; 32]), BlockHash::chain(None, &tokens[..4]), geo, tokens, payload)
    }

    #[test]
    fn a_block_round_trips() {
        let (m, h, geo, tokens, payload) = setup();
        let mut bytes = Vec::new();
        encode(&m, h, geo, &tokens, &payload, &mut bytes);
        assert_eq!(bytes.len(), geo.file_len(tokens.len()));
        let mut back = vec![f16::ZERO; geo.payload_len()];
        decode(&bytes, &m, h, geo, &tokens, &mut back).expect("valid");
        assert_eq!(back, payload);
    }

    #[test]
    fn every_flipped_byte_and_every_mismatch_is_refused() {
        let (m, h, geo, tokens, payload) = setup();
        let mut bytes = Vec::new();
        encode(&m, h, geo, &tokens, &payload, &mut bytes);
        let mut out = vec![f16::ZERO; geo.payload_len()];
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad, &m, h, geo, &tokens, &mut out).is_err(), "flipped byte {i} accepted");
        }
        assert_eq!(decode(&bytes[..bytes.len() - 1], &m, h, geo, &tokens, &mut out), Err(Refused::Length(bytes.len() - 1)));
        assert!(matches!(decode(&[], &m, h, geo, &tokens, &mut out), Err(Refused::Length(0))));
        assert_eq!(decode(&bytes, &ModelId([8; 32]), h, geo, &tokens, &mut out), Err(Refused::Model));
        assert_eq!(decode(&bytes, &m, BlockHash(h.0 ^ 1), geo, &tokens, &mut out), Err(Refused::Hash));
        let mut other = tokens.clone();
        other[1] += 1;
        assert_eq!(decode(&bytes, &m, h, geo, &other, &mut out), Err(Refused::Tokens));
        let wide = Geometry { kv_dim: 4, n_layer: 3, block_size: 5 };
        let mut out2 = vec![f16::ZERO; wide.payload_len()];
        assert_eq!(wide.payload_len(), geo.payload_len());
        assert_eq!(decode(&bytes, &m, h, wide, &tokens, &mut out2), Err(Refused::Geometry));
    }
}
