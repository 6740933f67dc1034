//! A bounds-checked little-endian cursor over the file's bytes.

use crate::value::{Array, Value, ValueType};
use crate::{Error, Result};

/// Arrays nest at most this deep; real files never nest at all.
const MAX_ARRAY_DEPTH: usize = 4;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::Truncated {
                what: what.to_string(),
                offset: self.pos as u64,
                needed: n as u64,
                len: self.buf.len() as u64,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let b = self.bytes(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that must describe at least `min_bytes_each` bytes per item still in the file:
    /// this is what keeps a corrupt count from reserving more memory than the file holds.
    pub(crate) fn count(&mut self, version: u32, min_bytes_each: usize, what: &str) -> Result<usize> {
        let at = self.pos;
        let n = if version == 2 || version == 3 {
            self.u64(what)?
        } else {
            self.u32(what)? as u64
        };
        let need = n.checked_mul(min_bytes_each.max(1) as u64);
        match need {
            Some(need) if need <= self.remaining() as u64 => Ok(n as usize),
            _ => Err(Error::Corrupt(format!(
                "{what} at offset {at} is {n}, more than the {} bytes left in the file can hold",
                self.remaining()
            ))),
        }
    }

    /// How many items to reserve room for when a count says `n`, each item taking
    /// `bytes_each` bytes of memory: at most as many as the bytes left in the file could pay
    /// for one to one. A count passes [`Self::count`] when each item needs only a few file
    /// bytes (8 for an empty string) while it costs more in memory (24 for a `String`), so
    /// reserving the full count of a lying file would allocate several times the file; a
    /// `Vec` still grows past this capacity as real items are read.
    pub(crate) fn capacity(&self, n: usize, bytes_each: usize) -> usize {
        n.min(self.remaining() / bytes_each.max(1))
    }

    pub(crate) fn string(&mut self, version: u32, what: &str) -> Result<String> {
        let at = self.pos;
        let len = self.count(version, 1, what)?;
        let b = self.bytes(len, what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| Error::Corrupt(format!("{what} at offset {at} is not valid UTF-8")))
    }

    pub(crate) fn value_type(&mut self, what: &str) -> Result<ValueType> {
        let at = self.pos;
        let code = self.u32(what)?;
        ValueType::from_code(code)
            .ok_or_else(|| Error::Corrupt(format!("unknown metadata value type {code} at offset {at} ({what})")))
    }

    pub(crate) fn value(&mut self, version: u32, ty: ValueType, key: &str) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.u8(key)?),
            ValueType::I8 => Value::I8(self.u8(key)? as i8),
            ValueType::U16 => Value::U16(self.u16(key)?),
            ValueType::I16 => Value::I16(self.u16(key)? as i16),
            ValueType::U32 => Value::U32(self.u32(key)?),
            ValueType::I32 => Value::I32(self.u32(key)? as i32),
            ValueType::F32 => Value::F32(f32::from_bits(self.u32(key)?)),
            ValueType::U64 => Value::U64(self.u64(key)?),
            ValueType::I64 => Value::I64(self.u64(key)? as i64),
            ValueType::F64 => Value::F64(f64::from_bits(self.u64(key)?)),
            ValueType::Bool => Value::Bool(self.bool(key)?),
            ValueType::String => Value::String(self.string(version, key)?),
            ValueType::Array => Value::Array(self.array_value(version, key, 0)?),
        })
    }

    fn bool(&mut self, what: &str) -> Result<bool> {
        let at = self.pos;
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(Error::Corrupt(format!("{what}: bool at offset {at} has value {b}"))),
        }
    }

    fn array_value(&mut self, version: u32, key: &str, depth: usize) -> Result<Array> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(Error::Corrupt(format!("{key}: arrays nested deeper than {MAX_ARRAY_DEPTH}")));
        }
        let ty = self.value_type(key)?;
        // Strings take at least their length prefix; arrays at least a type and a count.
        let min_each = match ty {
            ValueType::String => if version == 1 { 4 } else { 8 },
            ValueType::Array => if version == 1 { 8 } else { 12 },
            t => t.scalar_size().unwrap_or(1),
        };
        let n = self.count(version, min_each, key)?;
        macro_rules! scalars {
            ($variant:ident, $read:expr) => {{
                let mut v = Vec::new();
                v.reserve_exact(self.capacity(n, elem_size(ty)));
                for _ in 0..n {
                    v.push($read(&mut *self)?);
                }
                Array::$variant(v)
            }};
        }
        Ok(match ty {
            ValueType::U8 => Array::U8(self.bytes(n, key)?.to_vec()),
            ValueType::I8 => Array::I8(self.bytes(n, key)?.iter().map(|&b| b as i8).collect()),
            ValueType::U16 => scalars!(U16, |r: &mut Self| r.u16(key)),
            ValueType::I16 => scalars!(I16, |r: &mut Self| r.u16(key).map(|v| v as i16)),
            ValueType::U32 => scalars!(U32, |r: &mut Self| r.u32(key)),
            ValueType::I32 => scalars!(I32, |r: &mut Self| r.u32(key).map(|v| v as i32)),
            ValueType::F32 => scalars!(F32, |r: &mut Self| r.u32(key).map(f32::from_bits)),
            ValueType::U64 => scalars!(U64, |r: &mut Self| r.u64(key)),
            ValueType::I64 => scalars!(I64, |r: &mut Self| r.u64(key).map(|v| v as i64)),
            ValueType::F64 => scalars!(F64, |r: &mut Self| r.u64(key).map(f64::from_bits)),
            ValueType::Bool => scalars!(Bool, |r: &mut Self| r.bool(key)),
            ValueType::String => scalars!(String, |r: &mut Self| r.string(version, key)),
            ValueType::Array => scalars!(Array, |r: &mut Self| r.array_value(version, key, depth + 1)),
        })
    }
}

/// In-memory size of one element of a typed [`Array`] of `ty`.
fn elem_size(ty: ValueType) -> usize {
    match ty {
        ValueType::String => std::mem::size_of::<String>(),
        ValueType::Array => std::mem::size_of::<Array>(),
        ValueType::Bool => std::mem::size_of::<bool>(),
        t => t.scalar_size().unwrap_or(1),
    }
}
