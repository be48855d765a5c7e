//! DESIGN.md's layering, checked: model/ -> patching/ -> data/ -> session/ ->
//! app/ -> tui/ (cli on top); lower layers never name higher ones, model/ needs
//! nothing from the demo's training code, only the TUI draws (no
//! ratatui/crossterm below app/) and the TUI never touches tensors.
//!
//! The check reads the source: every `crate::` path outside comments
//! (including each item of a `crate::{a, b}` group) and every mention of a
//! forbidden external crate.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Source with `//` comments removed (string literals may keep a `//`; the
/// code checked here has none that matter).
fn code_of(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level crate modules a piece of code names through `crate::`.
fn crate_modules(code: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Items at depth 0 of the group.
            let mut depth = 0;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        out.push(ident(&group[j..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest));
        }
    }
    out
}

fn src(layer: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(layer),
        &mut v,
    );
    assert!(!v.is_empty(), "src/{layer} has no Rust files");
    v
}

fn forbid_modules(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let mut bad = Vec::new();
    for p in src(layer) {
        for m in crate_modules(&code_of(&p)) {
            if forbidden.contains(&m.as_str()) {
                bad.push(format!("{} imports crate::{m}", p.display()));
            }
        }
    }
    bad
}

fn forbid_words(layer: &str, words: &[&str]) -> Vec<String> {
    let mut bad = Vec::new();
    for p in src(layer) {
        let code = code_of(&p);
        for w in words {
            if code.contains(w) {
                bad.push(format!("{} uses {w}", p.display()));
            }
        }
    }
    bad
}

#[test]
fn the_group_parser_sees_every_item() {
    let m = crate_modules("use crate::{model::X, demo::{a, b}, util};\nlet x = crate::app::f();");
    assert_eq!(m, ["model", "demo", "util", "app"]);
}

#[test]
fn layers_point_one_way() {
    let mut bad = Vec::new();
    bad.extend(forbid_modules(
        "model",
        &[
            "demo", "patching", "data", "session", "app", "tui", "cli", "analysis", "circuits",
        ],
    ));
    bad.extend(forbid_modules(
        "patching",
        &["demo", "data", "session", "app", "tui", "cli", "circuits"],
    ));
    bad.extend(forbid_modules(
        "circuits",
        &["demo", "session", "app", "tui", "cli", "analysis"],
    ));
    // data/ draws on the demo's word lists for its generators; the demo
    // needs nothing from data/ or above.
    bad.extend(forbid_modules(
        "data",
        &["session", "app", "tui", "cli", "analysis", "circuits"],
    ));
    bad.extend(forbid_modules(
        "demo",
        &["data", "session", "app", "tui", "cli"],
    ));
    bad.extend(forbid_modules("session", &["app", "tui", "cli"]));
    bad.extend(forbid_modules(
        "util",
        &[
            "model", "patching", "data", "session", "app", "tui", "cli", "demo",
        ],
    ));
    assert!(
        bad.is_empty(),
        "imports against the layering:\n{}",
        bad.join("\n")
    );
}

#[test]
fn only_the_interface_layers_draw_and_the_tui_never_touches_tensors() {
    let mut bad = Vec::new();
    for layer in ["model", "patching", "circuits", "data", "session", "util"] {
        bad.extend(forbid_words(
            layer,
            &["ratatui", "crossterm", "tui_textarea"],
        ));
    }
    bad.extend(forbid_words("tui", &["candle"]));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
