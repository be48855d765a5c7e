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
//! paged in as tensors are copied, and each tensor's pages are released
//! (`MADV_DONTNEED`) once it is converted, so the process never holds the
//! file's weights twice: mapped pages count towards resident memory until
//! released, so without the release the peak would be the whole file plus
//! the converted weights.

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
    tensors_releasing(st, path, device, dtype, into, None)
}

/// [`tensors`], releasing each tensor's pages of `map` once it is copied.
fn tensors_releasing(
    st: &SafeTensors<'_>,
    path: &Path,
    device: &Device,
    dtype: DType,
    into: &mut RawWeights,
    map: Option<&memmap2::Mmap>,
) -> Result<(), ModelError> {
    let origin = path.display().to_string();
    for (name, view) in st.iter() {
        let what = format!("tensor {name:?}");
        check_elements(&what, view.shape(), view.dtype().bitsize().div_ceil(8)).map_err(
            |source| ModelError::TensorTooLarge {
                path: path.to_path_buf(),
                source,
            },
        )?;
        let t = view.load(device).map_err(|source| ModelError::TensorRead {
            path: path.to_path_buf(),
            tensor: name.to_string(),
            source: Box::new(source),
        })?;
        if let Some(map) = map {
            release(map, view.data());
        }
        check_finite(name, &t, &origin)?;
        let t = t.to_dtype(dtype)?;
        if into.insert(name.to_string(), t).is_some() {
            return Err(ModelError::DuplicateTensor {
                path: path.to_path_buf(),
                tensor: name.to_string(),
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
    // Reading front to back: let the kernel read ahead.
    let _ = map.advise(memmap2::Advice::Sequential);
    let st = check(&map, path)?;
    tensors_releasing(&st, path, device, dtype, into, Some(&map))
}

/// Drops the pages of `data` (a slice of `map`) from this process; they
/// stay in the page cache and a later touch reads them again.
fn release(map: &memmap2::Mmap, data: &[u8]) {
    let offset = data.as_ptr() as usize - map.as_ptr() as usize;
    // SAFETY: the mapping is a read-only, file-backed one, so discarding
    // its pages loses nothing (they are re-read from the file if touched),
    // and the tensor was already copied out. A failure only means the
    // pages stay resident until the map is dropped.
    let _ = unsafe {
        map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, data.len())
    };
}
