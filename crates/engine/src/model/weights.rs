//! Weight handles: byte ranges of the mapped GGUF checked once at load, turned into kernel views
//! at use. Keeping ranges (not slices) lets a model own its `Arc<GgufFile>` without self-references.

use std::sync::{Arc, OnceLock};

use gguf::{GgmlType, GgufFile};
use kernels::matmul::QMatrix;
use kernels::packed::PackedMatrix;

use crate::{Error, Result};

/// A 2-D weight `(n_rows, n_cols)` = (out features, in features); GGUF dims are `[n_cols, n_rows]`.
#[derive(Clone, Debug)]
pub struct Weight {
    pub ty: GgmlType,
    offset: usize,
    len: usize,
    pub n_rows: usize,
    pub n_cols: usize,
    /// The matrix repacked for the fast kernels, made on first use (so an embedding table that
    /// is only looked up is never packed) and shared by clones (a tied output matrix).
    packed: Arc<OnceLock<Option<PackedMatrix>>>,
}

impl Weight {
    /// Looks up `name`, checks its shape is `[n_cols, n_rows]` and that the kernels support its type.
    pub fn load(f: &GgufFile, name: &str, n_cols: usize, n_rows: usize) -> Result<Self> {
        let t = f.require_tensor(name)?;
        let dims: Vec<u64> = t.dims.to_vec();
        let ok = dims.len() <= 2 && dims[0] as usize == n_cols && t.n_rows() == n_rows;
        if !ok {
            return Err(Error::Model(format!(
                "tensor `{name}` has shape {dims:?}, expected [{n_cols}, {n_rows}]"
            )));
        }
        kernels::quant::kernel(t.ggml_type).map_err(|_| {
            Error::Model(format!(
                "tensor `{name}` has quant type {} which daehwa does not support (supported: {})",
                t.ggml_type,
                kernels::quant::weight_type_names()
            ))
        })?;
        Ok(Weight { ty: t.ggml_type, offset: t.offset as usize, len: t.n_bytes as usize, n_rows, n_cols, packed: Arc::default() })
    }

    pub fn bytes<'a>(&self, f: &'a GgufFile) -> &'a [u8] {
        // `offset` is the file's (virtual, for a split model) offset: `slice` finds the part.
        f.slice(self.offset as u64, self.len)
    }

    /// The kernel view, with the packed form attached when this type and CPU have one
    /// (packing happens here on the first call; results are bit-for-bit the same either way).
    pub fn matrix<'a>(&'a self, f: &'a GgufFile) -> QMatrix<'a> {
        let m = QMatrix { ty: self.ty, data: self.bytes(f), n_rows: self.n_rows, n_cols: self.n_cols, packed: None };
        let packed = self.packed.get_or_init(|| {
            let p = PackedMatrix::pack(&m);
            // The packed copy replaces the mapped bytes for every matmul: give their pages back
            // (an embedding lookup of a tied matrix faults in only the rows it reads).
            if p.is_some() {
                f.release_pages(self.offset as u64, self.len);
            }
            p
        });
        QMatrix { packed: packed.as_ref(), ..m }
    }

    /// Bytes of row `r` (an embedding lookup).
    pub fn row_bytes<'a>(&self, f: &'a GgufFile, r: usize) -> &'a [u8] {
        let rb = self.len / self.n_rows;
        &self.bytes(f)[r * rb..(r + 1) * rb]
    }
}

impl Weight {
    /// Rows `r0..r0 + n_rows` of the 2-D tensor `name` of `total_rows` rows: one part of a fused
    /// tensor (phi3's `attn_qkv` = Q, K, V rows; its double-width `ffn_up` = gate, up rows),
    /// without copying it.
    pub fn load_rows(f: &GgufFile, name: &str, n_cols: usize, total_rows: usize, r0: usize, n_rows: usize) -> Result<Self> {
        let w = Self::load(f, name, n_cols, total_rows)?;
        if r0 + n_rows > total_rows {
            return Err(Error::Model(format!("tensor `{name}`: rows {r0}..{} of {total_rows}", r0 + n_rows)));
        }
        let rb = w.len / total_rows;
        Ok(Weight { offset: w.offset + r0 * rb, len: n_rows * rb, n_rows, ..w })
    }
}

/// Loads a 1-D tensor of `n` elements as f32 (norm weights, biases).
pub fn load_vector(f: &GgufFile, name: &str, n: usize) -> Result<Vec<f32>> {
    let t = f.require_tensor(name)?;
    if t.n_elements() as usize != n {
        return Err(Error::Model(format!("tensor `{name}` has {} elements, expected {n}", t.n_elements())));
    }
    let mut out = vec![0f32; n];
    kernels::quant::dequantize_row(t.ggml_type, f.tensor_data(t), &mut out)?;
    Ok(out)
}

/// Like [`load_vector`] for tensors that may be absent (biases).
pub fn load_optional_vector(f: &GgufFile, name: &str, n: usize) -> Result<Option<Vec<f32>>> {
    match f.tensor(name) {
        None => Ok(None),
        Some(_) => load_vector(f, name, n).map(Some),
    }
}

impl Weight {
    /// The experts of a 3-D tensor `[n_cols, n_rows, n_expert]` (`blk.N.ffn_*_exps`), one 2-D
    /// view per expert: expert `x` is the contiguous `x`-th block of `n_rows` rows, so a token
    /// routed to it reads only those rows. Each view has its own packed form, made here, at load,
    /// for every expert, on several threads ([`pack_all`]).
    ///
    /// Packing them on first use instead (as the dense matrices are, in the first forward) put
    /// the packing of each expert into the first steps that chose it: with 128 experts a layer
    /// that went on for many requests, one expert matrix at a time on the engine's thread. On a
    /// Qwen3-30B-A3B-shaped file, 512-token prompts ran at 360-650 t/s over the first runs of a
    /// process against 850 once every expert had been used, and generation varied 60-110 t/s.
    pub fn load_experts(f: &GgufFile, name: &str, n_cols: usize, n_rows: usize, n_expert: usize) -> Result<Vec<Self>> {
        let t = f.require_tensor(name)?;
        let dims: Vec<u64> = t.dims.to_vec();
        if dims.len() != 3 || dims[0] as usize != n_cols || dims[1] as usize != n_rows || dims[2] as usize != n_expert {
            return Err(Error::Model(format!("tensor `{name}` has shape {dims:?}, expected [{n_cols}, {n_rows}, {n_expert}]")));
        }
        kernels::quant::kernel(t.ggml_type).map_err(|_| {
            Error::Model(format!(
                "tensor `{name}` has quant type {} which daehwa does not support (supported: {})",
                t.ggml_type,
                kernels::quant::supported_types().iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        let len = t.n_bytes as usize / n_expert;
        if len * n_expert != t.n_bytes as usize {
            return Err(Error::Model(format!("tensor `{name}`: {} bytes do not split into {n_expert} experts", t.n_bytes)));
        }
        let experts: Vec<Weight> = (0..n_expert)
            .map(|x| Weight {
                ty: t.ggml_type,
                offset: t.offset as usize + x * len,
                len,
                n_rows,
                n_cols,
                packed: Arc::default(),
            })
            .collect();
        pack_all(f, &experts);
        Ok(experts)
    }

    /// Whether the packed form has been made (and is used: the type and CPU have one).
    #[cfg(test)]
    pub fn is_packed(&self) -> bool {
        self.packed.get().is_some_and(|p| p.is_some())
    }
}

/// Makes the packed form of every weight in `ws` now, on [`kernels::packed::load_threads`]
/// threads taking weights in turn (each weight's packing and the release of its mapped pages as [`Weight::matrix`] does
/// them). For many small matrices (a layer's experts), which are each packed on one thread.
pub fn pack_all(f: &GgufFile, ws: &[Weight]) {
    if !ws.first().is_some_and(|w| kernels::packed::packs(w.ty)) {
        return;
    }
    let n = kernels::packed::load_threads().min(ws.len());
    std::thread::scope(|s| {
        for i in 0..n {
            let job = move || {
                for w in ws.iter().skip(i).step_by(n) {
                    let _ = w.matrix(f);
                }
            };
            if i + 1 == n {
                job();
            } else {
                s.spawn(job);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use gguf::{GgufWriter, Value};

    use super::*;

    /// Every expert of a 3-D tensor comes out of `load_experts` already packed where this CPU
    /// packs its type, and each packed view multiplies like the GGUF rows it came from.
    #[test]
    fn experts_are_packed_at_load() {
        let (n_cols, n_rows, n_expert) = (64usize, 8usize, 7usize);
        let ty = GgmlType::Q4_0;
        let blocks = n_cols / 32 * n_rows * n_expert;
        let mut data = Vec::with_capacity(blocks * 18);
        for b in 0..blocks {
            data.extend_from_slice(&half::f16::from_f32(0.01 * (b % 5 + 1) as f32).to_le_bytes());
            data.extend((0..16).map(|i| (b * 31 + i * 7) as u8));
        }
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("test".into()));
        w.add_tensor("blk.0.ffn_up_exps.weight", &[n_cols as u64, n_rows as u64, n_expert as u64], ty, data);
        let f = GgufFile::from_bytes(w.to_bytes()).expect("parse");
        let experts = Weight::load_experts(&f, "blk.0.ffn_up_exps.weight", n_cols, n_rows, n_expert).expect("experts");
        let packs = kernels::packed::packs(ty);
        assert!(experts.iter().all(|e| e.is_packed() == packs), "packed at load: {packs}");
        let x: Vec<f32> = (0..n_cols).map(|i| (i as f32 * 0.37).sin()).collect();
        let pool = kernels::pool::ThreadPool::new(1);
        for e in &experts {
            let m = e.matrix(&f);
            let unpacked = QMatrix { packed: None, ..m };
            let (mut a, mut b) = (vec![0f32; n_rows], vec![0f32; n_rows]);
            let mut mm = kernels::matmul::MatmulScratch::default();
            kernels::matmul::matmul(&pool, &m, &x, 1, &mut a, &mut mm).expect("packed matmul");
            kernels::matmul::matmul(&pool, &unpacked, &x, 1, &mut b, &mut mm).expect("row matmul");
            assert_eq!(a, b);
        }
    }
}
