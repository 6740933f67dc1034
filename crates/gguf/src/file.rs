//! [`GgufFile`]: the parsed header over the mapped (or owned) bytes.

use std::collections::HashMap;
use std::path::Path;

use crate::reader::Reader;
use crate::types::GgmlType;
use crate::value::{Array, Value};
use crate::{Error, Result, DEFAULT_ALIGNMENT, MAGIC};

/// Memory one `HashMap<String, usize>` entry may take, for bounding reservations: the entry,
/// its control byte, and the spare slots of the load factor and power-of-two rounding.
const HASH_ENTRY_COST: usize = 2 * (std::mem::size_of::<(String, usize)>() + 1);

/// Real files have tens of metadata keys and at most a few thousand tensors: reserving more
/// than this up front only serves lying counts (growth past it is amortised as usual).
const MAX_RESERVE: usize = 1024;

/// ggml tensors have at most four dimensions.
pub const MAX_DIMS: usize = 4;

/// One tensor's description. `dims` are in ggml order: `dims[0]` is the contiguous
/// (row) dimension, so a weight `W` of shape (n_out, n_in) has `dims == [n_in, n_out]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the tensor data in the file.
    pub offset: u64,
    /// Size of the tensor data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Length of one row (`dims[0]`).
    pub fn row_len(&self) -> usize {
        self.dims.first().copied().unwrap_or(1) as usize
    }
    /// Number of rows (product of `dims[1..]`).
    pub fn n_rows(&self) -> usize {
        self.dims.iter().skip(1).product::<u64>() as usize
    }
}

pub(crate) enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file. Tensor data stays in the mapping; metadata is parsed eagerly.
///
/// A model split by llama.cpp's `gguf-split` (`x-00001-of-00003.gguf`, ...) opens as one
/// `GgufFile` (see `split.rs`): the metadata is the first part's, the tensors are all parts'
/// and each tensor's `offset` lies in a virtual address space where part `k`'s bytes start at
/// `parts[k].0`; [`GgufFile::slice`] and [`GgufFile::tensor_data`] resolve it to the right part.
pub struct GgufFile {
    storage: Storage,
    /// The second and later parts of a split model with their virtual base offsets (ascending,
    /// each at or past the end of the one before); empty for a single file.
    parts: Vec<(u64, Storage)>,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("n_kv", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps and parses the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the mapping is read-only; a file truncated by another process while mapped
        // would fault, which is the documented hazard of every mmap-based model loader.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let file = Self::parse(Storage::Mapped(map))?;
        crate::split::join_if_split(path, file)
    }

    /// Maps and parses one file, never following a split (each part of a split model alone).
    pub(crate) fn open_part(path: &Path) -> Result<Self> {
        let io = |source| Error::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: as in `open`.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::parse(Storage::Mapped(map))
    }

    /// Adds the tensors of `part` (the next part of a split model) after all bytes seen so far.
    pub(crate) fn append_part(&mut self, part: GgufFile) -> Result<()> {
        let end = self.parts.last().map_or(self.storage.bytes().len() as u64, |(b, s)| b + s.bytes().len() as u64);
        let base = align_up(end, 1 << 12).ok_or_else(|| Error::Corrupt("split parts overflow".into()))?;
        for mut t in part.tensors {
            if self.tensor_index.contains_key(&t.name) {
                return Err(Error::Corrupt(format!("tensor `{}` is in more than one part of the split model", t.name)));
            }
            t.offset += base;
            self.tensor_index.insert(t.name.clone(), self.tensors.len());
            self.tensors.push(t);
        }
        self.parts.push((base, part.storage));
        Ok(())
    }

    /// How many files this model was read from (1 unless split).
    pub fn n_parts(&self) -> usize {
        1 + self.parts.len()
    }

    /// The bytes of all the files this model was read from.
    pub fn total_bytes(&self) -> u64 {
        std::iter::once(&self.storage).chain(self.parts.iter().map(|(_, s)| s)).map(|s| s.bytes().len() as u64).sum()
    }

    /// Parses a GGUF image held in memory (tests, generated files).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::parse(Storage::Owned(bytes))
    }

    fn parse(storage: Storage) -> Result<Self> {
        let buf = storage.bytes();
        let mut r = Reader::new(buf);
        let magic: [u8; 4] = {
            let b = r.bytes(4, "magic").map_err(|_| {
                let mut m = [0u8; 4];
                m[..buf.len().min(4)].copy_from_slice(&buf[..buf.len().min(4)]);
                Error::BadMagic(m)
            })?;
            [b[0], b[1], b[2], b[3]]
        };
        if magic != MAGIC {
            return Err(Error::BadMagic(magic));
        }
        let version = r.u32("version")?;
        if version != 2 && version != 3 {
            return Err(Error::UnsupportedVersion(version));
        }
        // A tensor info is at least 8 (name len) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
        let n_tensors = r.count(version, 24, "tensor count")?;
        // A key/value pair is at least 8 (key len) + 4 (type) + 1 byte.
        let n_kv = r.count(version, 13, "metadata count")?;

        // Reservations are bounded by the bytes left (see `Reader::capacity`): a lying count
        // fails when its items run out, having reserved no more than the file could back.
        let mut metadata = Vec::with_capacity(r.capacity(n_kv, std::mem::size_of::<(String, Value)>()).min(MAX_RESERVE));
        let mut key_index = HashMap::with_capacity(r.capacity(n_kv, HASH_ENTRY_COST).min(MAX_RESERVE));
        for i in 0..n_kv {
            let key = r.string(version, &format!("metadata key #{i}"))?;
            let ty = r.value_type(&key)?;
            let value = r.value(version, ty, &key)?;
            if key_index.insert(key.clone(), metadata.len()).is_some() {
                return Err(Error::Corrupt(format!("duplicate metadata key `{key}`")));
            }
            metadata.push((key, value));
        }

        let alignment = match key_index.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(&i) => match metadata[i].1.as_integer() {
                Some(a) if a > 0 && (a as u64).is_power_of_two() && a <= 1 << 20 => a as u64,
                _ => {
                    return Err(Error::Corrupt(format!(
                        "general.alignment must be a power of two, got {:?}",
                        metadata[i].1
                    )))
                }
            },
        };

        // Pass 1: read each tensor info and check everything that does not depend on where
        // the data section starts (it starts after the last info). `offset` holds the
        // relative offset until pass 2.
        let mut tensors = Vec::with_capacity(r.capacity(n_tensors, std::mem::size_of::<TensorInfo>()).min(MAX_RESERVE));
        let mut tensor_index = HashMap::with_capacity(r.capacity(n_tensors, HASH_ENTRY_COST).min(MAX_RESERVE));
        for i in 0..n_tensors {
            let name = r.string(version, &format!("tensor #{i} name"))?;
            let n_dims = r.u32(&name)? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(Error::Corrupt(format!("tensor `{name}` has {n_dims} dimensions (1..={MAX_DIMS} allowed)")));
            }
            let mut dims = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                dims.push(r.u64(&name)?);
            }
            let code = r.u32(&name)?;
            let ggml_type = GgmlType::from_code(code).map_err(|_| {
                Error::Corrupt(format!("tensor `{name}` has unknown ggml type code {code}"))
            })?;
            let rel = r.u64(&name)?;
            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n < (1u64 << 62))
                .ok_or_else(|| Error::Corrupt(format!("tensor `{name}` shape {dims:?} overflows")))?;
            if dims[0] % ggml_type.block_size() as u64 != 0 {
                return Err(Error::Corrupt(format!(
                    "tensor `{name}`: row length {} is not a multiple of the {ggml_type} block size {}",
                    dims[0],
                    ggml_type.block_size()
                )));
            }
            let n_bytes = ggml_type
                .row_bytes(n_elements)
                .ok_or_else(|| Error::Corrupt(format!("tensor `{name}` size overflows")))?;
            if rel % alignment != 0 {
                return Err(Error::Corrupt(format!(
                    "tensor `{name}` data offset {rel} is not a multiple of the alignment {alignment}"
                )));
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(Error::Corrupt(format!("duplicate tensor name `{name}`")));
            }
            tensors.push(TensorInfo { name, dims, ggml_type, offset: rel, n_bytes });
        }

        let data_offset = align_up(r.pos() as u64, alignment)
            .ok_or_else(|| Error::Corrupt("data offset overflows".into()))?;
        let file_len = buf.len() as u64;
        if data_offset > file_len && n_tensors > 0 {
            // The file ends inside the padding between the tensor infos and the data.
            return Err(Error::Truncated {
                what: format!("the padding before the tensor data section at {data_offset}"),
                offset: r.pos() as u64,
                needed: data_offset - r.pos() as u64,
                len: file_len,
            });
        }

        // Pass 2: make offsets absolute and check that each tensor lies inside the file.
        for t in &mut tensors {
            let offset = data_offset
                .checked_add(t.offset)
                .ok_or_else(|| Error::Corrupt(format!("tensor `{}` offset overflows", t.name)))?;
            if offset.checked_add(t.n_bytes).is_none_or(|e| e > file_len) {
                return Err(Error::Truncated {
                    what: format!("tensor `{}` data", t.name),
                    offset,
                    needed: t.n_bytes,
                    len: file_len,
                });
            }
            t.offset = offset;
        }

        Ok(GgufFile { storage, parts: Vec::new(), version, alignment, data_offset, metadata, key_index, tensors, tensor_index })
    }

    pub fn version(&self) -> u32 {
        self.version
    }
    pub fn alignment(&self) -> u64 {
        self.alignment
    }
    /// Absolute offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }
    /// The whole file (the first part of a split model; tensor bytes through [`Self::slice`]).
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }
    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }
    /// The tensor info or a `MissingTensor` error.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name).ok_or_else(|| Error::MissingTensor(name.to_string()))
    }
    /// The bytes of one tensor (bounds were checked at parse time).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        self.slice(info.offset, info.n_bytes as usize)
    }

    /// `len` bytes at the (virtual, see the type's docs) `offset` of a tensor's data: a range
    /// inside one [`TensorInfo`]'s data, whose bounds were checked at parse time.
    pub fn slice(&self, offset: u64, len: usize) -> &[u8] {
        let (base, bytes) = match self.parts.iter().rposition(|(b, _)| *b <= offset) {
            None => (0, self.storage.bytes()),
            Some(i) => (self.parts[i].0, self.parts[i].1.bytes()),
        };
        let start = (offset - base) as usize;
        &bytes[start..start + len]
    }

    /// Drops this process's pages of the whole 4 KiB pages inside `len` bytes at the (virtual)
    /// `offset` from the mapping (`madvise(MADV_DONTNEED)`), for a tensor whose bytes were
    /// copied into another layout: they stop counting in the resident set. The mapping is
    /// read-only and file-backed, so the bytes stay valid: a later read faults them back in from
    /// the file. Returns the bytes released (0 for a file read into memory, which must keep
    /// them, or a range shorter than a page).
    pub fn release_pages(&self, offset: u64, len: usize) -> usize {
        const PAGE: usize = 4096;
        let (base, storage) = match self.parts.iter().rposition(|(b, _)| *b <= offset) {
            None => (0, &self.storage),
            Some(i) => (self.parts[i].0, &self.parts[i].1),
        };
        let Storage::Mapped(m) = storage else { return 0 };
        let start = (offset - base) as usize;
        let end = (start + len).min(m.len());
        // The mapping starts on a page boundary: offsets within it align like addresses.
        let (first, last) = (start.next_multiple_of(PAGE), end / PAGE * PAGE);
        if last <= first {
            return 0;
        }
        // SAFETY: MADV_DONTNEED on a private, read-only, file-backed mapping only drops
        // pages: no byte of it ever changes (nothing can have written them), so every slice
        // handed out stays valid and reads the same bytes, faulted back in from the file.
        match unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, last - first) } {
            Ok(()) => last - first,
            Err(_) => 0,
        }
    }

    /// Hints the kernel that the whole tensor section will be read soon and sequentially.
    pub fn advise_will_need(&self) {
        for s in std::iter::once(&self.storage).chain(self.parts.iter().map(|(_, s)| s)) {
            if let Storage::Mapped(m) = s {
                let _ = m.advise(memmap2::Advice::WillNeed);
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| Error::MissingKey(key.to_string()))
    }

    fn wrong(key: &str, expected: &'static str, v: &Value) -> Error {
        Error::WrongType { key: key.to_string(), expected, found: v.type_name() }
    }

    /// Any integer type whose value fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let v = self.require(key)?;
        v.as_integer().and_then(|i| u32::try_from(i).ok()).ok_or_else(|| Self::wrong(key, "u32", v))
    }
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        self.get(key).map(|_| self.get_u32(key)).transpose()
    }
    /// Any integer type whose value fits in u64.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_integer().and_then(|i| u64::try_from(i).ok()).ok_or_else(|| Self::wrong(key, "u64", v))
    }
    pub fn opt_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key).map(|_| self.get_u64(key)).transpose()
    }
    /// Any numeric type, as f32.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f64().map(|f| f as f32).ok_or_else(|| Self::wrong(key, "f32", v))
    }
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        self.get(key).map(|_| self.get_f32(key)).transpose()
    }
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| Self::wrong(key, "bool", v))
    }
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key).map(|_| self.get_bool(key)).transpose()
    }
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "string", v))
    }
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        self.get(key).map(|_| self.get_str(key)).transpose()
    }
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| Self::wrong(key, "array", v))
    }
    pub fn get_str_array(&self, key: &str) -> Result<&[String]> {
        match self.get_array(key)? {
            Array::String(v) => Ok(v),
            a => Err(Error::WrongType { key: key.into(), expected: "array of string", found: a.type_name() }),
        }
    }
    pub fn get_f32_array(&self, key: &str) -> Result<&[f32]> {
        match self.get_array(key)? {
            Array::F32(v) => Ok(v),
            a => Err(Error::WrongType { key: key.into(), expected: "array of f32", found: a.type_name() }),
        }
    }
    /// Integer arrays of any element type, widened to i64 (token types, per-layer head counts).
    pub fn get_int_array(&self, key: &str) -> Result<Vec<i64>> {
        let a = self.get_array(key)?;
        let bad = || Error::WrongType { key: key.into(), expected: "array of integers", found: a.type_name() };
        Ok(match a {
            Array::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Array::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Array::U16(v) => v.iter().map(|&x| x as i64).collect(),
            Array::I16(v) => v.iter().map(|&x| x as i64).collect(),
            Array::U32(v) => v.iter().map(|&x| x as i64).collect(),
            Array::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Array::I64(v) => v.clone(),
            Array::U64(v) => v.iter().map(|&x| i64::try_from(x).map_err(|_| bad())).collect::<Result<_>>()?,
            _ => return Err(bad()),
        })
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}
