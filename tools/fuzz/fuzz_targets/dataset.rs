//! The dataset readers (JSONL and CSV, field checks, labels) on arbitrary
//! text, through their public entry point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patchbench::data::{parse, Format};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse(text, Format::Jsonl, "fuzz.jsonl");
        let _ = parse(text, Format::Csv, "fuzz.csv");
    }
});
