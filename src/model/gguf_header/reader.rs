//! The byte-level reader under the GGUF header parser: fixed-width
//! integers, counts, strings, metadata values and tensor-table entries, each
//! checked against the bytes that remain before anything is allocated for
//! it. The parser in the parent module decides what the values mean.

use std::io::Read;

use candle_core::quantized::gguf_file::{TensorInfo, Value, VersionedMagic};
use candle_core::quantized::GgmlDType;

use super::GgufError;

/// ggml tensors have at most four dimensions.
const MAX_DIMS: u32 = 4;
/// Arrays of arrays occur; deeper nesting does not in real files.
const MAX_DEPTH: usize = 3;
/// Metadata values held in memory. A 262k-token vocabulary with scores,
/// types and merges is about 1.3 million; each value takes ~32 bytes, so
/// this caps the metadata at ~256 MiB whatever the file claims.
const MAX_VALUES: u64 = 1 << 23;
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

/// ggml's name for a type code candle cannot dequantise, for the message.
fn ggml_type_name(code: u32) -> &'static str {
    const NAMES: [&str; 40] = [
        "F32",
        "F16",
        "Q4_0",
        "Q4_1",
        "Q4_2",
        "Q4_3",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q8_1",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "Q8_K",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ2_S",
        "IQ4_XS",
        "I8",
        "I16",
        "I32",
        "I64",
        "F64",
        "IQ1_M",
        "BF16",
        "Q4_0_4_4",
        "Q4_0_4_8",
        "Q4_0_8_8",
        "TQ1_0",
        "TQ2_0",
        "IQ4_NL_4_4",
        "IQ4_NL_4_8",
        "IQ4_NL_8_8",
        "MXFP4",
    ];
    NAMES.get(code as usize).copied().unwrap_or("unknown")
}

/// The types [`ggml_dtype`] accepts, for the message.
const SUPPORTED_TYPES: &str =
    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K";

/// A cursor over the header bytes that knows how many remain.
pub(super) struct Reader<R> {
    inner: R,
    /// Bytes consumed so far: the offset every error names.
    pub(super) pos: u64,
    size: u64,
    /// Version 1 files use 32-bit counts and lengths.
    pub(super) v1: bool,
    /// Metadata values read so far, against [`MAX_VALUES`].
    values: u64,
}

impl<R: Read> Reader<R> {
    pub(super) fn new(inner: R, size: u64) -> Self {
        Reader {
            inner,
            pos: 0,
            size,
            v1: false,
            values: 0,
        }
    }
    pub(super) fn bad(&self, message: String) -> GgufError {
        self.bad_at(self.pos, message)
    }
    pub(super) fn bad_at(&self, offset: u64, message: String) -> GgufError {
        GgufError::Malformed { offset, message }
    }
    /// Fails unless `n` more bytes exist.
    pub(super) fn need(&self, n: u128, what: &str) -> Result<(), GgufError> {
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
    pub(super) fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    /// A count or length: 32 bits in version 1, 64 after.
    pub(super) fn len(&mut self, what: &str) -> Result<u64, GgufError> {
        if self.v1 {
            Ok(self.u32(what)? as u64)
        } else {
            self.u64(what)
        }
    }
    pub(super) fn magic(&mut self) -> Result<VersionedMagic, GgufError> {
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
    pub(super) fn string(&mut self, what: &str) -> Result<String, GgufError> {
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
    pub(super) fn value(&mut self, ty: u32, depth: usize, key: &str) -> Result<Value, GgufError> {
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
    pub(super) fn tensor_info(&mut self) -> Result<(String, TensorInfo, u64), GgufError> {
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
        let dtype = ggml_dtype(code).ok_or_else(|| {
            self.bad(format!(
                "tensor {name:?} has ggml type {code} ({}), which patchbench cannot \
                     dequantise (supported: {SUPPORTED_TYPES}); re-quantise the model to one \
                     of those (llama.cpp's llama-quantize)",
                ggml_type_name(code)
            ))
        })?;
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
