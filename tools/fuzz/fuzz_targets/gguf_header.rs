//! The GGUF header and metadata: the bounds-checked parser, then everything
//! the loader derives from the metadata alone (config and tokenizer).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use patchbench::model::{gguf, gguf_header};

fuzz_target!(|data: &[u8]| {
    if let Ok(content) = gguf_header::parse_bytes(data) {
        let _ = gguf::config_and_tokenizer(&content, Path::new("fuzz.gguf"));
    }
});
