//! The KV cache, kept outside the (stateless) model. Models write and read it only through
//! [`KvStore`], so the same forward pass runs on the contiguous single-conversation cache
//! ([`KvCache`]) and on the paged cache of the server.

mod contiguous;
pub mod disk;
pub mod paged;

pub use contiguous::KvCache;
pub use kernels::attention::KvChunk;

/// Where a forward pass keeps and finds K/V rows.
pub trait KvStore: Sync {
    /// Positions available to one sequence (`pos < n_ctx`).
    fn n_ctx(&self) -> usize;
    /// Valid sequence indices are `0..n_seq`.
    fn n_seq(&self) -> usize;
    /// Stores the K and V rows (f32, `kv_dim` each) of position `pos` of `seq` at layer `il`.
    fn write(&mut self, il: usize, seq: usize, pos: usize, k: &[f32], v: &[f32]);
    /// Calls `f` with the chunks holding positions `start..end` of `seq` at layer `il`, in order.
    /// A callback (rather than a returned list) lets paged stores build the chunk list in reused
    /// scratch without allocating per call.
    fn with_chunks(&self, il: usize, seq: usize, start: usize, end: usize, f: &mut dyn FnMut(&[KvChunk<'_>]));
}
