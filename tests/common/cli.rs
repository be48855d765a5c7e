//! Running the `patchbench` binary from integration tests.

use std::path::Path;
use std::process::{Command, Output};

/// `patchbench ARGS`, waited for.
pub fn patchbench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(args)
        .output()
        .unwrap()
}

/// `out`, after asserting that it succeeded (`what` names the command in
/// the failure, with its stderr).
pub fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The stderr of `out`, after asserting that the command was refused.
pub fn refused(out: Output) -> String {
    assert!(!out.status.success(), "expected a refusal");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as an argument.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// JSON output without its `timing`, which no two runs share.
pub fn without_timing(text: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_str(text).unwrap();
    v.as_object_mut().unwrap().remove("timing");
    v
}

/// A short pair on the demo model, as CLI arguments (few positions: fast
/// forwards).
pub const DEMO_PAIR: [&str; 8] = [
    "--clean",
    "john gave a drink to",
    "--corrupted",
    "mary gave a drink to",
    "--answer",
    "mary",
    "--wrong",
    "john",
];
