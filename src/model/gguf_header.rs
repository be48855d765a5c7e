//! The GGUF header (metadata and tensor table), parsed defensively.
//!
//! Every count, length and offset in a GGUF header comes from the file, so
//! each is checked before it is used: lengths against the bytes that remain,
//! tensor shapes for overflow, every tensor's extent against the file size,
//! `general.alignment` for zero (which divided by zero in candle's reader),
//! and the number of metadata values against a cap, so a small hostile file
//! cannot make the parser allocate gigabytes. The result is candle's own
//! [`Content`], whose tensors candle can then read safely: nothing in it
//! points outside the file.
//!
//! The parser reads from any `Read` given the total size, so the fuzzer
//! (`tools/fuzz`) can drive it from memory through [`parse_bytes`].

use std::collections::HashMap;
use std::io::Read;

use candle_core::quantized::gguf_file::{Content, Value, VersionedMagic};

mod reader;
use reader::Reader;

/// Why a GGUF header was refused.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("at byte {offset}: {message}")]
    Malformed { offset: u64, message: String },
    #[error("{what} needs bytes up to {needed} but the file has only {size}; it is truncated or corrupt")]
    Truncated {
        what: String,
        needed: u128,
        size: u64,
    },
    #[error("reading byte {offset} failed: {source}")]
    Io {
        offset: u64,
        #[source]
        source: std::io::Error,
    },
}

/// llama.cpp's default when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;

/// Parses a whole GGUF file held in memory (the fuzzing entry point).
pub fn parse_bytes(bytes: &[u8]) -> Result<Content, GgufError> {
    read_content(bytes, bytes.len() as u64)
}

/// Reads the header of a GGUF file of `size` bytes from its start.
pub fn read_content<R: Read>(reader: R, size: u64) -> Result<Content, GgufError> {
    let mut r = Reader::new(reader, size);
    let magic = r.magic()?;
    r.v1 = matches!(magic, VersionedMagic::GgufV1);
    let n_tensors = r.len("the tensor count")?;
    let n_kv = r.len("the metadata count")?;
    // Each entry takes at least 13 (metadata) or 24 (tensor) bytes.
    r.need(
        (n_kv as u128) * 13 + (n_tensors as u128) * 24,
        &format!("{n_kv} metadata entries and {n_tensors} tensors"),
    )?;
    let mut metadata = HashMap::new();
    for _ in 0..n_kv {
        let at = r.pos;
        let key = r.string("a metadata key")?;
        let ty = r.u32("a value type")?;
        let value = r.value(ty, 0, &key)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(r.bad_at(at, format!("metadata key {key:?} appears twice")));
        }
    }
    let mut infos = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..n_tensors {
        let at = r.pos;
        let info = r.tensor_info()?;
        if !seen.insert(info.0.clone()) {
            return Err(r.bad_at(at, format!("tensor {:?} appears twice", info.0)));
        }
        infos.push(info);
    }
    let alignment = alignment(&metadata).map_err(|m| r.bad(m))?;
    let data_offset = r.pos.div_ceil(alignment) * alignment;
    let mut tensor_infos = HashMap::new();
    for (name, info, bytes) in infos {
        if info.offset % alignment != 0 {
            return Err(r.bad(format!(
                "tensor {name:?} starts at offset {}, which is not a multiple of the alignment {alignment}",
                info.offset
            )));
        }
        let end = data_offset as u128 + info.offset as u128 + bytes as u128;
        if end > size as u128 {
            return Err(GgufError::Truncated {
                what: format!("tensor {name:?} ({bytes} bytes)"),
                needed: end,
                size,
            });
        }
        tensor_infos.insert(name, info);
    }
    Ok(Content {
        magic,
        metadata,
        tensor_infos,
        tensor_data_offset: data_offset,
    })
}

/// `general.alignment`: a positive power of two (llama.cpp requires one).
fn alignment(metadata: &HashMap<String, Value>) -> Result<u64, String> {
    let Some(v) = metadata.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match integer(v) {
        Some(a) if a > 0 && (a as u64).is_power_of_two() => Ok(a as u64),
        Some(a) => Err(format!(
            "general.alignment is {a}; it must be a positive power of two (usually 32)"
        )),
        None => Err(format!("general.alignment is {v:?}, not an integer")),
    }
}

/// Any integer-typed GGUF value, widened.
pub fn integer(v: &Value) -> Option<i128> {
    Some(match v {
        Value::U8(x) => *x as i128,
        Value::I8(x) => *x as i128,
        Value::U16(x) => *x as i128,
        Value::I16(x) => *x as i128,
        Value::U32(x) => *x as i128,
        Value::I32(x) => *x as i128,
        Value::U64(x) => *x as i128,
        Value::I64(x) => *x as i128,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(n_tensors.to_le_bytes());
        b.extend(n_kv.to_le_bytes());
        b
    }

    fn kv_u32(b: &mut Vec<u8>, key: &str, v: u32) {
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key.as_bytes());
        b.extend(4u32.to_le_bytes());
        b.extend(v.to_le_bytes());
    }

    #[test]
    fn an_empty_file_with_a_valid_header_parses() {
        let c = parse_bytes(&header(0, 0)).unwrap();
        assert!(c.metadata.is_empty() && c.tensor_infos.is_empty());
    }

    #[test]
    fn alignment_zero_is_refused() {
        let mut b = header(0, 1);
        kv_u32(&mut b, "general.alignment", 0);
        let e = parse_bytes(&b).unwrap_err().to_string();
        assert!(e.contains("general.alignment is 0"), "{e}");
    }

    #[test]
    fn huge_counts_are_refused_before_allocating() {
        let e = parse_bytes(&header(u64::MAX, u64::MAX)).unwrap_err();
        assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
    }

    #[test]
    fn overflowing_shapes_are_refused() {
        let mut b = header(1, 0);
        b.extend(1u64.to_le_bytes());
        b.push(b'w');
        b.extend(2u32.to_le_bytes());
        b.extend((1u64 << 40).to_le_bytes());
        b.extend((1u64 << 40).to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        let e = parse_bytes(&b).unwrap_err().to_string();
        assert!(e.contains("overflowing shape"), "{e}");
    }
}
