//! Drives the real binary in tmux through the whole workbench path (see
//! `scripts/e2e-tmux.sh`): start, wait for the model, run a sweep, see the
//! heatmap, move the cursor, drill into a head, save, quit, reopen and see
//! the same heatmap without recomputing. The script installs tmux when it
//! is missing; this test never skips.

use std::process::Command;

#[test]
fn workbench_end_to_end_in_tmux() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/e2e-tmux.sh"))
        .current_dir(root)
        .env("PATCHBENCH_BIN", env!("CARGO_BIN_EXE_patchbench"))
        .output()
        .expect("running bash scripts/e2e-tmux.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "end-to-end script failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("e2e: all steps passed"), "{stdout}");
}
