//! The paged KV cache of the server: fixed-size blocks shared between sequences with the same
//! prefix ([`BlockPool`]), layers grouped by attention type so that sliding-window layers keep
//! only the blocks their window can see ([`KvLayout`]), per-sequence block tables
//! ([`KvManager`]), and the block data the model reads and writes through them
//! ([`PagedBuffers`], [`PagedKv`]).

mod block_pool;
mod group;
mod layout;
mod manager;
mod store;

pub use block_pool::{BlockHash, BlockId, BlockPool, PoolStats};
pub use layout::{max_blocks_touched, window_footprint, GroupSpec, GroupStats, KvLayout, Sizing};
pub use manager::{AdmitError, Admitted, KvManager, TooLarge};
pub use store::{PagedBuffers, PagedKv};

/// Token positions per block (vLLM's default too): small enough that a partly filled last block
/// wastes little, large enough that block tables and chunk lists stay short.
pub const DEFAULT_BLOCK_SIZE: usize = 16;
