//! Turning a [`TensorMap`] into canonical weights: each GGUF tensor is read
//! and dequantised once (every type candle can dequantise), checked finite,
//! cut to its rows, un-permuted and transposed as its [`Layout`] says.
//!
//! [`materialise`] is the one place a GGUF tensor becomes a float weight.
//! With `--weights quantized` whole projection matrices (not a fused
//! QKV's row slices, not the unembedding, which direct logit attribution
//! reads by column) stay in their blocks (`quantized.rs` undoes the Q/K
//! permutation on whole rows of blocks). Either way tensors are read and
//! converted one at a time, so the file's weights are never held twice.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;

use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Tensor};

use super::mapping::{Layout, Mapped, TensorMap};
use super::meta::Meta;
use crate::model::precision::WeightsMode;
use crate::model::quantized::{is_block_quantized, unpermute_heads};
use crate::model::weights::{check_finite, CanonicalWeights};
use crate::model::ModelError;

/// Reads every mapped tensor. A GGUF tensor the mapping neither maps nor
/// consumed is an error: a mapping that forgets one would otherwise load a
/// different model than the file holds.
pub fn read_weights(
    m: &Meta,
    reader: &mut BufReader<File>,
    map: &TensorMap,
    device: &Device,
    mode: WeightsMode,
) -> Result<CanonicalWeights, ModelError> {
    let dtype = mode.dtype();
    // Missing before unused: a renamed tensor is reported by the name the
    // mapping wanted.
    if let Some(e) = map.entries.iter().find(|e| !m.has_tensor(&e.gguf)) {
        return Err(m.missing(&e.gguf));
    }
    let used: HashSet<&str> = map
        .entries
        .iter()
        .map(|e| e.gguf.as_str())
        .chain(map.consumed.iter().map(String::as_str))
        .collect();
    let mut unused: Vec<String> = m
        .content
        .tensor_infos
        .keys()
        .filter(|k| !used.contains(k.as_str()))
        .cloned()
        .collect();
    if !unused.is_empty() {
        unused.sort();
        return Err(ModelError::UnusedTensors {
            origin: m.origin(),
            names: unused,
        });
    }
    let mut w = CanonicalWeights::new(m.origin());
    // Fused QKV entries follow each other: read their tensor once.
    let mut last: Option<(String, Tensor)> = None;
    for entry in &map.entries {
        let whole_matrix = entry.rows.is_none()
            && entry.layout != Layout::AsIs
            && entry.canonical != "unembed.W_U";
        if mode.is_quantized() && whole_matrix {
            let (q, t) = read(m, reader, &entry.gguf, device)?;
            if is_block_quantized(q.dtype()) {
                drop(t);
                let q = match entry.layout {
                    Layout::LinearUnpermuted { heads } => {
                        unpermute_heads(&q, heads).map_err(|e| corrupt(m, &entry.gguf, e))?
                    }
                    _ => q,
                };
                w.insert_quantized(entry.canonical.clone(), q);
            } else {
                w.insert(entry.canonical.clone(), materialise(entry, &t, dtype)?);
            }
            continue;
        }
        let whole = match &last {
            Some((name, t)) if *name == entry.gguf => t.clone(),
            _ => {
                let t = dequantised(m, reader, &entry.gguf, device)?;
                last = Some((entry.gguf.clone(), t.clone()));
                t
            }
        };
        if let Some((start, len)) = entry.rows {
            let rows = whole.dims().first().copied().unwrap_or(0);
            if start + len > rows {
                return Err(m.bad(format!(
                    "{} has {rows} rows; {} needs rows {start}..{}",
                    entry.gguf,
                    entry.canonical,
                    start + len
                )));
            }
        }
        w.insert(entry.canonical.clone(), materialise(entry, &whole, dtype)?);
    }
    Ok(w)
}

/// Candle could not read tensor `name`; its error stays the source.
fn corrupt(m: &Meta, name: &str, source: candle_core::Error) -> ModelError {
    ModelError::TensorRead {
        path: m.path.to_path_buf(),
        tensor: name.to_owned(),
        source: Box::new(source),
    }
}

/// One GGUF tensor as stored and dequantised to f32 on `device`, refused if
/// it holds NaN or infinity (named by its GGUF name).
fn read(
    m: &Meta,
    reader: &mut BufReader<File>,
    name: &str,
    device: &Device,
) -> Result<(QTensor, Tensor), ModelError> {
    if !m.has_tensor(name) {
        return Err(m.missing(name));
    }
    let q = m
        .content
        .tensor(reader, name, device)
        .map_err(|e| corrupt(m, name, e))?;
    let t = q.dequantize(device).map_err(|e| corrupt(m, name, e))?;
    check_finite(name, &t, &m.origin())?;
    Ok((q, t))
}

/// One GGUF tensor dequantised to f32 on `device`, refused if it holds NaN
/// or infinity (named by its GGUF name).
pub fn dequantised(
    m: &Meta,
    reader: &mut BufReader<File>,
    name: &str,
    device: &Device,
) -> Result<Tensor, ModelError> {
    Ok(read(m, reader, name, device)?.1)
}

/// The canonical tensor one entry describes, from its whole GGUF tensor.
pub fn materialise(entry: &Mapped, whole: &Tensor, dtype: DType) -> Result<Tensor, ModelError> {
    let t = match entry.rows {
        Some((start, len)) => whole.narrow(0, start, len)?,
        None => whole.clone(),
    };
    let t = match entry.layout {
        Layout::AsIs => t.contiguous()?,
        Layout::Linear => t.t()?.contiguous()?,
        Layout::LinearUnpermuted { heads } => unpermute(&t, heads)?.t()?.contiguous()?,
    };
    Ok(t.to_dtype(dtype)?)
}

/// Undoes llama.cpp's `permute` of Q/K rows (`[out, in]`):
/// GGUF rows are `(head, pair, half)`; Hugging Face's are `(head, half, pair)`.
fn unpermute(w: &Tensor, n_heads: usize) -> Result<Tensor, ModelError> {
    let (out, inp) = w.dims2()?;
    // n_heads was checked positive; a row count it does not divide is a
    // shape error from reshape below.
    let d_head = out / n_heads;
    Ok(w.reshape((n_heads, d_head / 2, 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))?)
}

/// Small tensors a config is read from (Llama 3.1's `rope_freqs`), as f32.
pub trait ConfigTensors {
    fn f32s(&mut self, m: &Meta, name: &str) -> Result<Vec<f32>, ModelError>;
}

/// Reads them from the file.
pub struct FromFile<'r>(pub &'r mut BufReader<File>);

impl ConfigTensors for FromFile<'_> {
    fn f32s(&mut self, m: &Meta, name: &str) -> Result<Vec<f32>, ModelError> {
        Ok(dequantised(m, self.0, name, &Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }
}

/// For checking a header alone (the fuzzer): the tensor's element count
/// from its declared shape, every value 1.
pub struct HeaderOnly;

impl ConfigTensors for HeaderOnly {
    fn f32s(&mut self, m: &Meta, name: &str) -> Result<Vec<f32>, ModelError> {
        let dims = m.tensor_dims(name).ok_or_else(|| m.missing(name))?;
        let n =
            crate::util::mem::check_elements(name, dims, 4).map_err(|e| m.bad(e.to_string()))?;
        Ok(vec![1.0; n])
    }
}
