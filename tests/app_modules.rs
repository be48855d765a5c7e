//! The modules of `app/` and `tui/` import each other without cycles:
//! `update` dispatches to `panes` and `replies`, and what those share
//! lives below them (`transitions`, `saving`), so a change to one
//! transition cannot ripple round a loop. The check reads the source: each
//! file's `super::NAME` and `crate::app::NAME` / `crate::tui::NAME` paths
//! (a pane file's `crate::tui::NAME` counts as an edge from `panes`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Identifiers that follow `prefix` in `code` (comments dropped).
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        let name: String = code[i + prefix.len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn code_of(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .take_while(|l| !l.contains("#[cfg(test)]"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Module → the sibling modules it imports, for the layer `dir`
/// (`src/app` or `src/tui`); files in a sub-folder count as that folder's
/// module.
fn graph(dir: &str, layer: &str) -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut add = |module: String, code: &str, is_sub: bool| {
        let mut deps = names_after(code, &format!("crate::{layer}::"));
        if !is_sub {
            deps.extend(names_after(code, "super::"));
        }
        deps.remove(&module);
        let modules_only: BTreeSet<String> = deps
            .into_iter()
            .filter(|d| d.chars().next().is_some_and(|c| c.is_lowercase()))
            .collect();
        g.entry(module).or_default().extend(modules_only);
    };
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            for f in rust_files_under(&p) {
                add(stem.clone(), &code_of(&f), true);
            }
        } else if p.extension().is_some_and(|x| x == "rs") && stem != "mod" {
            add(stem, &code_of(&p), false);
        }
    }
    g
}

/// Every `.rs` file under `dir`, at any depth (a pane may keep its parts
/// in a folder of its own, e.g. `panes/heatmap/`).
fn rust_files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files_under(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// A cycle through `start`, if there is one.
fn cycle_from(g: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in g.get(&node).into_iter().flatten() {
            if next == start {
                let mut p = path.clone();
                p.push(start.to_string());
                return Some(p);
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

fn assert_acyclic(dir: &str, layer: &str) {
    let g = graph(dir, layer);
    assert!(g.len() > 5, "{dir}: read {} modules", g.len());
    for m in g.keys() {
        if let Some(c) = cycle_from(&g, m) {
            panic!(
                "{dir}: modules import each other in a cycle: {}",
                c.join(" -> ")
            );
        }
    }
}

#[test]
fn app_modules_import_each_other_without_cycles() {
    assert_acyclic("src/app", "app");
    let g = graph("src/app", "app");
    assert!(g["update"].contains("panes") && g["update"].contains("replies"));
}

#[test]
fn tui_modules_import_each_other_without_cycles() {
    assert_acyclic("src/tui", "tui");
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(cycle_from(&g, "a").unwrap(), ["a", "b", "c", "a"]);
    g.get_mut("c").unwrap().clear();
    assert_eq!(cycle_from(&g, "a"), None);
}
