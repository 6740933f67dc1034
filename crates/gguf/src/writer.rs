//! [`GgufWriter`]: builds GGUF images, for tests and generated tiny models.

use crate::types::GgmlType;
use crate::value::{Array, Value, ValueType};
use crate::{DEFAULT_ALIGNMENT, MAGIC};

/// Builds a GGUF (version 2 or 3) image in memory.
///
/// ```
/// use gguf::{GgufWriter, GgufFile, GgmlType, Value};
/// let mut w = GgufWriter::new();
/// w.add("general.architecture", Value::String("llama".into()));
/// w.add_tensor("x", &[4], GgmlType::F32, vec![0u8; 16]);
/// let f = GgufFile::from_bytes(w.to_bytes())?;
/// assert_eq!(f.get_str("general.architecture")?, "llama");
/// # Ok::<(), gguf::Error>(())
/// ```
pub struct GgufWriter {
    version: u32,
    alignment: u64,
    kv: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter { version: 3, alignment: DEFAULT_ALIGNMENT, kv: Vec::new(), tensors: Vec::new() }
    }

    pub fn version(&mut self, v: u32) -> &mut Self {
        self.version = v;
        self
    }

    /// Sets `general.alignment` (written as u32) and uses it for the data section.
    pub fn alignment(&mut self, a: u64) -> &mut Self {
        self.alignment = a;
        self.kv.retain(|(k, _)| k != "general.alignment");
        self.kv.push(("general.alignment".into(), Value::U32(a as u32)));
        self
    }

    pub fn add(&mut self, key: &str, value: Value) -> &mut Self {
        self.kv.push((key.to_string(), value));
        self
    }

    /// Adds a tensor; `dims` in ggml order (row length first).
    pub fn add_tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> &mut Self {
        self.tensors.push((name.to_string(), dims.to_vec(), ty, data));
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        for (k, v) in &self.kv {
            put_str(&mut out, k);
            out.extend_from_slice(&value_type(v).code().to_le_bytes());
            put_value(&mut out, v);
        }
        let a = self.alignment as usize;
        let mut rel = 0usize;
        let mut offsets = Vec::with_capacity(self.tensors.len());
        for (name, dims, ty, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.code().to_le_bytes());
            out.extend_from_slice(&(rel as u64).to_le_bytes());
            offsets.push(rel);
            rel = (rel + data.len()).div_ceil(a) * a;
        }
        let data_start = out.len().div_ceil(a) * a;
        out.resize(data_start, 0);
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            out.resize(data_start + off, 0);
            out.extend_from_slice(data);
        }
        out
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn value_type(v: &Value) -> ValueType {
    match v {
        Value::U8(_) => ValueType::U8,
        Value::I8(_) => ValueType::I8,
        Value::U16(_) => ValueType::U16,
        Value::I16(_) => ValueType::I16,
        Value::U32(_) => ValueType::U32,
        Value::I32(_) => ValueType::I32,
        Value::F32(_) => ValueType::F32,
        Value::Bool(_) => ValueType::Bool,
        Value::String(_) => ValueType::String,
        Value::U64(_) => ValueType::U64,
        Value::I64(_) => ValueType::I64,
        Value::F64(_) => ValueType::F64,
        Value::Array(_) => ValueType::Array,
    }
}

fn array_type(a: &Array) -> ValueType {
    match a {
        Array::U8(_) => ValueType::U8,
        Array::I8(_) => ValueType::I8,
        Array::U16(_) => ValueType::U16,
        Array::I16(_) => ValueType::I16,
        Array::U32(_) => ValueType::U32,
        Array::I32(_) => ValueType::I32,
        Array::F32(_) => ValueType::F32,
        Array::Bool(_) => ValueType::Bool,
        Array::String(_) => ValueType::String,
        Array::U64(_) => ValueType::U64,
        Array::I64(_) => ValueType::I64,
        Array::F64(_) => ValueType::F64,
        Array::Array(_) => ValueType::Array,
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Array(a) => put_array(out, a),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&array_type(a).code().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr, $f:expr) => {
            for x in $v {
                $f(out, x)
            }
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => each!(v, |o: &mut Vec<u8>, x: &i8| o.push(*x as u8)),
        Array::U16(v) => each!(v, |o: &mut Vec<u8>, x: &u16| o.extend_from_slice(&x.to_le_bytes())),
        Array::I16(v) => each!(v, |o: &mut Vec<u8>, x: &i16| o.extend_from_slice(&x.to_le_bytes())),
        Array::U32(v) => each!(v, |o: &mut Vec<u8>, x: &u32| o.extend_from_slice(&x.to_le_bytes())),
        Array::I32(v) => each!(v, |o: &mut Vec<u8>, x: &i32| o.extend_from_slice(&x.to_le_bytes())),
        Array::F32(v) => each!(v, |o: &mut Vec<u8>, x: &f32| o.extend_from_slice(&x.to_le_bytes())),
        Array::Bool(v) => each!(v, |o: &mut Vec<u8>, x: &bool| o.push(*x as u8)),
        Array::String(v) => each!(v, |o: &mut Vec<u8>, x: &String| put_str(o, x)),
        Array::U64(v) => each!(v, |o: &mut Vec<u8>, x: &u64| o.extend_from_slice(&x.to_le_bytes())),
        Array::I64(v) => each!(v, |o: &mut Vec<u8>, x: &i64| o.extend_from_slice(&x.to_le_bytes())),
        Array::F64(v) => each!(v, |o: &mut Vec<u8>, x: &f64| o.extend_from_slice(&x.to_le_bytes())),
        Array::Array(v) => each!(v, |o: &mut Vec<u8>, x: &Array| put_array(o, x)),
    }
}
