//! Split models: llama.cpp's `gguf-split` layout, opened as one [`GgufFile`].
//!
//! A model split into `N` parts is `N` complete GGUF files named `PREFIX-0000K-of-0000N.gguf`
//! (`K` from 1). Each holds `split.no` (u16, from 0), `split.count` (u16) and
//! `split.tensors.count` (i32, the tensors of all parts); the first part holds all the model's
//! metadata, the others only the split keys; every part has its own tensor infos, and each
//! tensor's data offset is relative to its own file's data section. Opening any part opens the
//! whole model (the first part's metadata and every part's tensors); a missing part is
//! [`Error::MissingSplitPart`] naming the file.

use std::path::{Path, PathBuf};

use crate::{Error, GgufFile, Result};

/// The metadata keys of the split layout.
const KEY_NO: &str = "split.no";
const KEY_COUNT: &str = "split.count";
const KEY_TENSORS: &str = "split.tensors.count";

/// `PREFIX-0000K-of-0000N.gguf` for part `no` (from 0) of `count`, as llama.cpp's
/// `llama_split_path` names it.
pub fn split_part_path(prefix: &Path, no: u32, count: u32) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(format!("-{:05}-of-{:05}.gguf", no + 1, count));
    PathBuf::from(name)
}

/// The prefix, part number (from 0) and part count of a path named like a split part
/// (`x-00002-of-00003.gguf` => (`x`, 1, 3)); `None` for any other name.
pub fn split_prefix(path: &Path) -> Option<(PathBuf, u32, u32)> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".gguf")?;
    // "-KKKKK-of-NNNNN" is 15 bytes; the digits are exactly five each, as llama.cpp writes them.
    let cut = stem.len().checked_sub(15)?;
    let (prefix, tail) = (stem.get(..cut)?, stem.get(cut..)?);
    let tail = tail.strip_prefix('-')?;
    let (k, n) = tail.split_once("-of-")?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(k) || !digits(n) || prefix.is_empty() {
        return None;
    }
    let (k, n): (u32, u32) = (k.parse().ok()?, n.parse().ok()?);
    if k == 0 || k > n {
        return None;
    }
    Some((path.with_file_name(prefix), k - 1, n))
}

/// The (number, count) a part's `split.*` keys declare; `None` for an unsplit file.
fn split_keys(f: &GgufFile) -> Result<Option<(u32, u32)>> {
    let Some(count) = f.opt_u32(KEY_COUNT)? else { return Ok(None) };
    let no = f.opt_u32(KEY_NO)?.unwrap_or(0);
    if count <= 1 {
        return Ok(None);
    }
    if no >= count {
        return Err(Error::Corrupt(format!("{KEY_NO} is {no} but {KEY_COUNT} is {count}")));
    }
    Ok(Some((no, count)))
}

/// `file` as read from `path`, or, when it is a part of a split model, the whole model.
pub(crate) fn join_if_split(path: &Path, file: GgufFile) -> Result<GgufFile> {
    let Some((no, count)) = split_keys(&file)? else { return Ok(file) };
    let Some((prefix, name_no, name_count)) = split_prefix(path) else {
        return Err(Error::Corrupt(format!(
            "{} is part {} of a model split into {count} files, but its name does not end in \
             -{:05}-of-{count:05}.gguf, so the other parts cannot be found",
            path.display(),
            no + 1,
            no + 1
        )));
    };
    if (name_no, name_count) != (no, count) {
        return Err(Error::Corrupt(format!(
            "{} is named as part {} of {name_count} but its metadata says part {} of {count}",
            path.display(),
            name_no + 1,
            no + 1
        )));
    }
    let mut given = Some(file);
    let mut open = |k: u32| -> Result<GgufFile> {
        if k == no {
            if let Some(f) = given.take() {
                return Ok(f);
            }
        }
        let p = split_part_path(&prefix, k, count);
        let f = match GgufFile::open_part(&p) {
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::MissingSplitPart { path: p, no: k + 1, count });
            }
            r => r?,
        };
        match split_keys(&f)? {
            Some((fk, fc)) if (fk, fc) == (k, count) => Ok(f),
            got => Err(Error::Corrupt(format!(
                "{} should be part {} of {count} but its split metadata says {:?}",
                p.display(),
                k + 1,
                got.map(|(a, b)| format!("part {} of {b}", a + 1))
            ))),
        }
    };
    let mut whole = open(0)?;
    for k in 1..count {
        let part = open(k)?;
        whole.append_part(part)?;
    }
    if let Some(total) = whole.opt_u64(KEY_TENSORS)? {
        if total != whole.tensors().len() as u64 {
            return Err(Error::Corrupt(format!(
                "{KEY_TENSORS} is {total} but the {count} parts hold {} tensors",
                whole.tensors().len()
            )));
        }
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_round_trip() {
        let p = split_part_path(Path::new("/m/qwen3-8b-q4_k_m"), 1, 3);
        assert_eq!(p, PathBuf::from("/m/qwen3-8b-q4_k_m-00002-of-00003.gguf"));
        assert_eq!(split_prefix(&p), Some((PathBuf::from("/m/qwen3-8b-q4_k_m"), 1, 3)));
        for bad in ["x.gguf", "x-0001-of-00003.gguf", "x-00004-of-00003.gguf", "x-00000-of-00003.gguf", "-00001-of-00002.gguf", "x-00001-of-00002.bin"] {
            assert_eq!(split_prefix(Path::new(bad)), None, "{bad}");
        }
    }
}
