//! The demo model's files, compiled into the binary.
//!
//! `assets/demo/` is an ordinary Hugging Face GPT-2 directory (written by
//! `patchbench train-demo`); its three files are embedded with
//! `include_bytes!` and loaded by the ordinary loader from memory
//! ([`hf::load_bytes`](super::hf::load_bytes)), with the same checks as a
//! directory on disk, so the `demo` source works offline and loads in
//! milliseconds. The model layer needs nothing from the demo module (which
//! trains and exports these files) to load them.

use super::hf::HfBytes;

/// `assets/demo/config.json`.
pub const CONFIG_JSON: &[u8] = include_bytes!("../../assets/demo/config.json");
/// `assets/demo/model.safetensors` (GPT-2 names, f32).
pub const WEIGHTS: &[u8] = include_bytes!("../../assets/demo/model.safetensors");
/// `assets/demo/tokenizer.json`.
pub const TOKENIZER_JSON: &[u8] = include_bytes!("../../assets/demo/tokenizer.json");

/// The embedded demo model as a Hugging Face directory in memory.
pub const DEMO: HfBytes<'static> = HfBytes {
    config_json: CONFIG_JSON,
    safetensors: WEIGHTS,
    tokenizer_json: TOKENIZER_JSON,
    origin: "the embedded demo model",
};
