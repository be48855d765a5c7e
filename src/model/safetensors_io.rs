//! safetensors weight files, checked and memory-mapped.
//!
//! The header (an 8-byte length, then JSON naming every tensor's dtype,
//! shape and byte range) comes from the file, so it is validated with the
//! `safetensors` crate before any tensor is built: the header length is
//! capped, shapes are multiplied with overflow checks, every byte range must
//! lie inside the file and the ranges must cover it exactly. Only then are
//! tensors copied out of the mapping, each size checked against the memory
//! the process can hold and each value checked to be finite.
//!
//! Files are mapped (`memmap2`) rather than read: a multi-gigabyte shard is
//! paged in as tensors are copied, never held twice.

use std::path::Path;

use candle_core::safetensors::Load;
use candle_core::{DType, Device};
use safetensors::SafeTensors;

use super::families::RawWeights;
use super::weights::check_finite;
use super::ModelError;
use crate::util::fs::open_regular;
use crate::util::mem::check_elements;

/// Validates a whole safetensors file held in memory (or mapped): the entry
/// point the loader and the fuzzer share.
pub fn check<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>, ModelError> {
    SafeTensors::deserialize(bytes).map_err(|source| ModelError::Safetensors {
        path: path.to_path_buf(),
        source,
    })
}

/// Copies every tensor of a checked file into `into`, converted to `dtype`
/// and refused if non-finite. A name already present (from another shard)
/// is an error.
pub fn tensors(
    st: &SafeTensors<'_>,
    path: &Path,
    device: &Device,
    dtype: DType,
    into: &mut RawWeights,
) -> Result<(), ModelError> {
    let origin = path.display().to_string();
    for (name, view) in st.iter() {
        let what = format!("{origin}: tensor {name:?}");
        check_elements(&what, view.shape(), view.dtype().bitsize().div_ceil(8)).map_err(|e| {
            ModelError::CorruptWeights {
                path: path.to_path_buf(),
                message: e.to_string(),
            }
        })?;
        let t = view.load(device).map_err(|e| ModelError::CorruptWeights {
            path: path.to_path_buf(),
            message: format!("tensor {name:?}: {e}"),
        })?;
        check_finite(name, &t, &origin)?;
        let t = t.to_dtype(dtype)?;
        if into.insert(name.to_string(), t).is_some() {
            return Err(ModelError::CorruptWeights {
                path: path.to_path_buf(),
                message: format!("tensor {name:?} appears in more than one shard"),
            });
        }
    }
    Ok(())
}

/// Maps, checks and reads one safetensors file.
pub fn read_file(
    path: &Path,
    device: &Device,
    dtype: DType,
    into: &mut RawWeights,
) -> Result<(), ModelError> {
    let file = open_regular(path, "safetensors weights file")?;
    // SAFETY: the mapping is read-only and dropped before returning; every
    // tensor is copied out of it. Like every mmap-based loader, a file
    // truncated by another process while mapped would fault; that is the
    // accepted trade for not reading multi-gigabyte shards into memory twice.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
    let st = check(&map, path)?;
    tensors(&st, path, device, dtype, into)
}
