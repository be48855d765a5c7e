//! The session loader on arbitrary bytes (UTF-8 check, BOM, YAML, schema,
//! semantic validation), through its public entry point.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = patchbench::session::io::parse_bytes(data, Path::new("fuzz.yaml"));
});
