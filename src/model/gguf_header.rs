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

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
use candle_core::quantized::GgmlDType;

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

/// ggml tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays occur; deeper nesting does not in real files.
const MAX_DEPTH: usize = 3;
/// Metadata values held in memory. A 262k-token vocabulary with scores,
/// types and merges is about 1.3 million; each value takes ~32 bytes, so
/// this caps the metadata at ~256 MiB whatever the file claims.
const MAX_VALUES: u64 = 1 << 23;
/// llama.cpp's default when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;

/// Parses a whole GGUF file held in memory (the fuzzing entry point).
pub fn parse_bytes(bytes: &[u8]) -> Result<Content, GgufError> {
    read_content(bytes, bytes.len() as u64)
}

/// Reads the header of a GGUF file of `size` bytes from its start.
pub fn read_content<R: Read>(reader: R, size: u64) -> Result<Content, GgufError> {
    let mut r = Reader {
        inner: reader,
        pos: 0,
        size,
        v1: false,
        values: 0,
    };
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

fn ggml_dtype(code: u32) -> Option<GgmlDType> {
    Some(match code {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}

struct Reader<R> {
    inner: R,
    pos: u64,
    size: u64,
    v1: bool,
    values: u64,
}

impl<R: Read> Reader<R> {
    fn bad(&self, message: String) -> GgufError {
        self.bad_at(self.pos, message)
    }
    fn bad_at(&self, offset: u64, message: String) -> GgufError {
        GgufError::Malformed { offset, message }
    }
    /// Fails unless `n` more bytes exist.
    fn need(&self, n: u128, what: &str) -> Result<(), GgufError> {
        let needed = self.pos as u128 + n;
        if needed > self.size as u128 {
            return Err(GgufError::Truncated {
                what: what.to_string(),
                needed,
                size: self.size,
            });
        }
        Ok(())
    }
    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), GgufError> {
        self.need(buf.len() as u128, what)?;
        self.inner.read_exact(buf).map_err(|source| GgufError::Io {
            offset: self.pos,
            source,
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }
    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    /// A count or length: 32 bits in version 1, 64 after.
    fn len(&mut self, what: &str) -> Result<u64, GgufError> {
        if self.v1 {
            Ok(self.u32(what)? as u64)
        } else {
            self.u64(what)
        }
    }
    fn magic(&mut self) -> Result<VersionedMagic, GgufError> {
        let magic: [u8; 4] = self.array("the GGUF magic")?;
        if &magic != b"GGUF" {
            return Err(self.bad_at(
                0,
                format!("starts with {magic:02x?}, not \"GGUF\"; this is not a GGUF file"),
            ));
        }
        match self.u32("the GGUF version")? {
            1 => Ok(VersionedMagic::GgufV1),
            2 => Ok(VersionedMagic::GgufV2),
            3 => Ok(VersionedMagic::GgufV3),
            v => Err(self.bad_at(4, format!("GGUF version {v} is not supported (1 to 3 are)"))),
        }
    }
    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let n = self.len(what)?;
        self.need(n as u128, what)?;
        let mut buf = vec![0u8; n as usize];
        self.fill(&mut buf, what)?;
        // Writers sometimes NUL-terminate; GGUF strings are not.
        while buf.last() == Some(&0) {
            buf.pop();
        }
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }
    fn count_values(&mut self, n: u64, key: &str) -> Result<(), GgufError> {
        self.values = self.values.saturating_add(n);
        if self.values > MAX_VALUES {
            return Err(self.bad(format!(
                "the metadata holds more than {MAX_VALUES} values (at {key:?}); no real model has that many"
            )));
        }
        Ok(())
    }
    fn value(&mut self, ty: u32, depth: usize, key: &str) -> Result<Value, GgufError> {
        self.count_values(1, key)?;
        Ok(match ty {
            0 => Value::U8(self.array::<1>(key)?[0]),
            1 => Value::I8(self.array::<1>(key)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            4 => Value::U32(self.u32(key)?),
            5 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(self.bad(format!("{key:?}: {b} is not a boolean (0 or 1)"))),
            },
            8 => Value::String(self.string(key)?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(
                        self.bad(format!("{key:?}: arrays nested more than {MAX_DEPTH} deep"))
                    );
                }
                let elem = self.u32(key)?;
                let n = self.len(key)?;
                let min = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    10..=12 => 8,
                    8 => {
                        if self.v1 {
                            4
                        } else {
                            8
                        }
                    }
                    9 => {
                        if self.v1 {
                            8
                        } else {
                            12
                        }
                    }
                    t => return Err(self.bad(format!("{key:?}: unknown array element type {t}"))),
                };
                self.need(n as u128 * min, &format!("array {key:?} of {n} elements"))?;
                self.count_values(n, key)?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    // Counted above as a whole.
                    self.values -= 1;
                    items.push(self.value(elem, depth + 1, key)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(key)?),
            11 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            t => return Err(self.bad(format!("{key:?}: unknown value type {t}"))),
        })
    }
    /// One tensor table entry: its name, info and size in bytes.
    fn tensor_info(&mut self) -> Result<(String, TensorInfo, u64), GgufError> {
        let name = self.string("a tensor name")?;
        let n_dims = self.u32(&name)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(self.bad(format!(
                "tensor {name:?} has {n_dims} dimensions; ggml tensors have 1 to {MAX_DIMS}"
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.len(&name)?);
        }
        let code = self.u32(&name)?;
        let dtype = ggml_dtype(code)
            .ok_or_else(|| self.bad(format!("tensor {name:?} has unknown ggml type {code}")))?;
        let offset = self.u64(&name)?;
        let elems = dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|&n| n > 0 && n <= isize::MAX as u64)
            .ok_or_else(|| {
                self.bad(format!(
                    "tensor {name:?} has an empty or overflowing shape {dims:?}"
                ))
            })?;
        let block = dtype.block_size() as u64;
        if elems % block != 0 {
            return Err(self.bad(format!(
                "tensor {name:?} has {elems} elements, not a multiple of its {dtype:?} block of {block}"
            )));
        }
        let bytes = (elems / block)
            .checked_mul(dtype.type_size() as u64)
            .ok_or_else(|| self.bad(format!("tensor {name:?}: size overflows")))?;
        // ggml lists the fastest dimension first; candle the slowest.
        let shape: Vec<usize> = dims.iter().rev().map(|&d| d as usize).collect();
        let info = TensorInfo {
            ggml_dtype: dtype,
            shape: shape.into(),
            offset,
        };
        Ok((name, info, bytes))
    }
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
