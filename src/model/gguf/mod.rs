//! GGUF files (llama.cpp's format): weights dequantised to floats, the
//! canonical config read from the file's metadata, and the tokenizer rebuilt
//! from it.
//!
//! One file per architecture (`general.architecture`) maps metadata to a
//! [`ModelConfig`] and GGUF tensor names to canonical ones ([`TensorMap`]);
//! everything shared lives beside them:
//! - `meta`: checked metadata access;
//! - `mapping`: what a mapping says (names, rows, layouts), never data;
//! - `tensors`: reading, dequantising and laying out the mapped tensors;
//! - `vocab`: the `tokenizer.ggml.*` keys.
//!
//! Adding an architecture is one file with an [`Architecture`] constant and
//! one line in [`ARCHITECTURES`].

mod gemma;
mod gpt2;
mod gptneox;
mod llama;
pub mod mapping;
pub mod meta;
mod qwen2;
pub mod tensors;
mod vocab;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::Device;

use super::config::ModelConfig;
use super::gguf_header::read_content;
use super::precision::WeightsMode;
use super::tokenizer::Tokenizer;
use super::weights::CanonicalWeights;
use super::ModelError;
use crate::util::fs::open_regular;
pub use mapping::{Layout, Mapped, TensorMap};
use meta::Meta;
use tensors::{ConfigTensors, FromFile, HeaderOnly};
use vocab::vocab_from_metadata;

pub struct GgufModel {
    pub config: ModelConfig,
    pub weights: CanonicalWeights,
    pub tokenizer: Tokenizer,
}

/// One `general.architecture`: how its metadata becomes a config and its
/// tensor names canonical ones.
pub struct Architecture {
    pub name: &'static str,
    /// The config from metadata; `data` reads the few small tensors a config
    /// needs (Llama 3.1's `rope_freqs`).
    pub config: fn(&Meta, &mut dyn ConfigTensors) -> Result<ModelConfig, ModelError>,
    pub tensors: fn(&Meta, &ModelConfig) -> Result<TensorMap, ModelError>,
}

/// Every architecture patchbench reads from GGUF.
pub const ARCHITECTURES: &[Architecture] = &[
    llama::ARCH,
    qwen2::ARCH,
    gemma::GEMMA,
    gemma::GEMMA2,
    gemma::GEMMA3,
    gpt2::ARCH,
    gptneox::ARCH,
];

/// The supported architectures' names, for messages.
pub fn supported() -> String {
    let names: Vec<&str> = ARCHITECTURES.iter().map(|a| a.name).collect();
    format!("{} (GGUF)", names.join(", "))
}

/// Reads a GGUF file into canonical config, weights and tokenizer.
pub fn load(path: &Path, device: &Device, mode: WeightsMode) -> Result<GgufModel, ModelError> {
    let (content, mut reader) = open(path)?;
    let m = Meta {
        content: &content,
        path,
    };
    let arch = architecture(&m)?;
    let config = read_config(arch, &m, &mut FromFile(&mut reader))?;
    let map = (arch.tensors)(&m, &config)?;
    let weights = tensors::read_weights(&m, &mut reader, &map, device, mode)?;
    let tokenizer = Tokenizer::from_gguf_vocab(vocab_from_metadata(&m)?)?;
    Ok(GgufModel {
        config,
        weights,
        tokenizer,
    })
}

/// Everything the header alone determines: the architecture check, the
/// canonical config, the tensor mapping and the tokenizer. The fuzzer drives
/// this after [`parse_bytes`](super::gguf_header::parse_bytes), so every
/// metadata path a hostile file can reach before tensor data is exercised.
pub fn config_and_tokenizer(
    content: &Content,
    path: &Path,
) -> Result<(ModelConfig, Tokenizer), ModelError> {
    let m = Meta { content, path };
    let arch = architecture(&m)?;
    let config = read_config(arch, &m, &mut HeaderOnly)?;
    (arch.tensors)(&m, &config)?;
    let tokenizer = Tokenizer::from_gguf_vocab(vocab_from_metadata(&m)?)?;
    Ok((config, tokenizer))
}

/// Opens the file (a regular file only: a FIFO or device is refused at once)
/// and parses its header with every size checked.
fn open(path: &Path) -> Result<(Content, BufReader<File>), ModelError> {
    let file = open_regular(path, "GGUF model file")?;
    let size = file.metadata().map_err(|e| ModelError::io(path, e))?.len();
    let mut reader = BufReader::new(file);
    let content = read_content(&mut reader, size).map_err(|source| ModelError::Gguf {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((content, reader))
}

/// The mapping for `general.architecture`, or an error naming it and the
/// supported ones.
fn architecture(m: &Meta) -> Result<&'static Architecture, ModelError> {
    let arch = m.opt_str("general.architecture").unwrap_or_default();
    ARCHITECTURES
        .iter()
        .find(|a| a.name == arch)
        .ok_or_else(|| ModelError::UnsupportedArchitecture {
            origin: m.origin(),
            arch,
            supported: supported(),
        })
}

fn read_config(
    arch: &Architecture,
    m: &Meta,
    data: &mut dyn ConfigTensors,
) -> Result<ModelConfig, ModelError> {
    let config = (arch.config)(m, data)?;
    config.validate().map_err(|e| m.bad(e))?;
    // Every block has tensors of its own, so a block count above the
    // file's tensor count is a corrupt header. Refused here, before the
    // tensor mapping loops over the blocks: with tiny widths a count of
    // millions passes the size checks (the fuzzer found one that looped
    // for minutes).
    let tensors = m.content.tensor_infos.len();
    if config.n_layers > tensors {
        return Err(m.bad(format!(
            "the block count is {} but the file holds only {tensors} tensors, and every \
             block has its own: the header is corrupt",
            config.n_layers
        )));
    }
    Ok(config)
}
