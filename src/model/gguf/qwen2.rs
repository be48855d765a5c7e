//! `general.architecture = qwen2`: Llama-shaped with q/k/v biases. Unlike
//! `llama`, llama.cpp's converter leaves Q/K rows in Hugging Face's order
//! (llama.cpp runs qwen2 with NeoX-style rotary), so nothing is un-permuted.

use super::llama::{llama_like_config, llama_like_tensors};
use super::Architecture;

pub const ARCH: Architecture = Architecture {
    name: "qwen2",
    config: |m, data| llama_like_config(m, data, "qwen2"),
    tensors: |m, config| Ok(llama_like_tensors(m, config, false)),
};
