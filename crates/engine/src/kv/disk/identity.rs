//! [`ModelId`]: which model (and which K/V computation) a block file belongs to.
//!
//! A full SHA-256 of the model file would be the exact identity, but it reads the whole file
//! at every start (seconds for a 4 GB model), and the hub does not keep one for files given by
//! path. Instead the id is the SHA-256 of what makes two files compute different K/V:
//!
//! - the GGUF header up to the tensor data (metadata, tensor names, types, shapes, offsets),
//! - the total size of the file (all parts of a split model),
//! - 256 bytes at the start and in the middle of every tensor's data (a fine-tune with the same
//!   metadata and shapes differs there: every weight moves in training),
//! - the cache format (f16 K/V) and the engine's version (a fixed bug in the K/V computation
//!   must not be served from an older run's files).
//!
//! It reads a few hundred KiB whatever the model's size. A collision would need two files equal
//! in all of that; block files also carry their whole token prefix, checked on every read.

use gguf::GgufFile;
use sha2::{Digest, Sha256};

/// The SHA-256 of a model's identifying bytes (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModelId(pub [u8; 32]);

impl ModelId {
    pub fn of(file: &GgufFile) -> ModelId {
        let mut h = Sha256::new();
        h.update(b"daehwa kv f16 ");
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        let header = file.data_offset().min(file.bytes().len() as u64) as usize;
        h.update(&file.bytes()[..header]);
        h.update(file.total_bytes().to_le_bytes());
        for t in file.tensors() {
            let n = t.n_bytes as usize;
            let take = n.min(256);
            h.update(file.slice(t.offset, take));
            let mid = (n / 2).min(n - take);
            h.update(file.slice(t.offset + mid as u64, take));
        }
        ModelId(h.finalize().into())
    }

    /// Lower-case hex, the name of the model's directory in the disk tier.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}
