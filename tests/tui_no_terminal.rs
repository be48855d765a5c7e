//! Without a terminal (stdin or stdout redirected) the workbench says it
//! needs one and names the headless commands, with a non-zero exit and no
//! panic, before reading any file.

use std::process::{Command, Stdio};

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("running patchbench");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_workbench_without_a_terminal_names_the_headless_commands() {
    for args in [&[][..], &["open", "/nonexistent/session.yaml"][..]] {
        let (code, stderr) = run(args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("needs a terminal"), "{args:?}: {stderr}");
        assert!(stderr.contains("stdin and stdout are not one"), "{stderr}");
        for cmd in ["patchbench sweep", "patchbench check", "patchbench export"] {
            assert!(
                stderr.contains(cmd),
                "{args:?} should suggest {cmd}: {stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !stderr.contains('\u{1b}'),
            "no escape sequences left behind: {stderr:?}"
        );
    }
}
