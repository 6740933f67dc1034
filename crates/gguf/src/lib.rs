//! The GGUF file format: header, typed metadata, tensor infos and memory-mapped tensor data.
//!
//! Every read is bounds-checked against the file: a corrupt or truncated file is an [`Error`]
//! naming the problem, never a panic, and no allocation is ever larger than the file itself
//! (counts are checked against the bytes that remain before anything is reserved).
//!
//! ```no_run
//! let file = gguf::GgufFile::open("model.gguf")?;
//! let arch = file.get_str("general.architecture")?;
//! let n_layer = file.get_u32(&format!("{arch}.block_count"))?;
//! for t in file.tensors() {
//!     println!("{} {:?} {}", t.name, t.dims, t.ggml_type);
//! }
//! # Ok::<(), gguf::Error>(())
//! ```

mod error;
mod file;
mod ftype;
mod reader;
mod split;
mod types;
mod value;
mod writer;

pub use error::{Error, Result};
pub use file::{GgufFile, TensorInfo};
pub use ftype::ftype_name;
pub use split::{split_part_path, split_prefix};
pub use types::GgmlType;
pub use value::{Array, Value, ValueType};
pub use writer::GgufWriter;

/// `GGUF` in little-endian byte order.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Default alignment of the tensor data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
