//! Quantized projection matrices (`--weights quantized`): keeping a GGUF
//! matrix in its blocks, reordering its rows without dequantising, and
//! quantizing generated weights one matrix at a time.
//!
//! A ggml matrix `[d_out, d_in]` is quantized row by row in blocks along
//! `d_in`, so each row is a run of whole blocks: permuting rows (undoing
//! llama.cpp's Q/K permutation) is a permutation of byte runs, exact.

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Result as CResult, Tensor};

/// The ggml type `random:` presets are quantized to: 4.5 bits a weight, the
/// common llama.cpp choice for 7B models.
pub const RANDOM_QUANT: GgmlDType = GgmlDType::Q4_0;

/// True for ggml types held as blocks (float types are dequantised: a
/// QMatMul over them would only dequantise on every call).
pub fn is_block_quantized(t: GgmlDType) -> bool {
    !matches!(t, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

/// Reorders the rows of a quantized `[rows, cols]` matrix: row `r` of the
/// result is row `source(r)` of `q`.
pub fn permute_rows(q: &QTensor, source: impl Fn(usize) -> usize) -> CResult<QTensor> {
    let (rows, cols) = q.shape().dims2()?;
    let dtype = q.dtype();
    if cols % dtype.block_size() != 0 {
        candle_core::bail!(
            "a {dtype:?} matrix with rows of {cols} values is not whole blocks of {}",
            dtype.block_size()
        );
    }
    let row_bytes = cols / dtype.block_size() * dtype.type_size();
    let data = q.data()?;
    if data.len() != rows * row_bytes {
        candle_core::bail!(
            "quantized matrix holds {} bytes, expected {rows} rows of {row_bytes}",
            data.len()
        );
    }
    let mut out = Vec::with_capacity(data.len());
    for r in 0..rows {
        let s = source(r);
        out.extend_from_slice(&data[s * row_bytes..(s + 1) * row_bytes]);
    }
    let storage = QStorage::from_data(std::borrow::Cow::Owned(out), &q.device(), dtype)?;
    QTensor::new(storage, (rows, cols))
}

/// Undoes llama.cpp's permutation of Q/K rows on a quantized matrix (see
/// `gguf.rs`): GGUF rows are `(head, pair, half)`, Hugging Face's
/// `(head, half, pair)`.
pub fn unpermute_heads(q: &QTensor, n_heads: usize) -> CResult<QTensor> {
    let (rows, _) = q.shape().dims2()?;
    if n_heads == 0 || rows % n_heads != 0 || (rows / n_heads) % 2 != 0 {
        candle_core::bail!("cannot split {rows} rows into {n_heads} rotary heads");
    }
    let d_head = rows / n_heads;
    let half = d_head / 2;
    permute_rows(q, |r| {
        let (h, i) = (r / d_head, r % d_head);
        let (which, pair) = (i / half, i % half);
        h * d_head + pair * 2 + which
    })
}

/// Quantizes a canonical `[d_in, d_out]` float matrix to ggml layout
/// `[d_out, d_in]`; the float copy is dropped on return.
pub fn quantize_canonical(w: &Tensor, dtype: GgmlDType, device: &Device) -> CResult<QTensor> {
    let t = w.t()?.contiguous()?;
    QTensor::quantize_onto(&t, dtype, device)
}
