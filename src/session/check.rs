//! `patchbench check`: every problem of a session file, not only the first.
//!
//! serde stops at the first error, so when the typed parse fails the file
//! is parsed again section by section (each prompt pair, each sweep, the
//! model, the UI state) from the untyped tree, and every section's error is
//! reported. Those later problems carry a field path but no line number
//! (the untyped tree has no positions); the first carries both.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::patching::PromptPair;

use super::corruption_path;
use super::diagnose::from_serde;
use super::error::{Problem, SessionError};
use super::io::{check_version, parse_tree, read_checked, strip_bom};
use super::model::{ModelRef, Session, SweepEntry, UiState};
use super::validate::semantics;

const TOP_LEVEL: &[&str] = &[
    "version",
    "model",
    "prepend_bos",
    "prompts",
    "notes",
    "ui",
    "sweeps",
    "circuits",
];

/// What `check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// Errors and warnings, in file order where known.
    pub problems: Vec<Problem>,
    /// The session as loaded (UI state repaired), when it has no errors.
    pub session: Option<Session>,
}

/// Checks the file at `path`; `Err` only when it cannot be read at all.
pub fn check_file(path: &Path) -> Result<CheckReport, SessionError> {
    let bytes = read_checked(path)?;
    Ok(check_bytes(&bytes, path))
}

pub fn check_bytes(bytes: &[u8], origin: &Path) -> CheckReport {
    let bytes = strip_bom(bytes);
    let fail = |problems| CheckReport {
        problems,
        session: None,
    };
    let text = match super::io::parse_bytes(bytes, origin) {
        Ok(loaded) => {
            return CheckReport {
                problems: loaded.warnings,
                session: Some(loaded.session),
            }
        }
        Err(e) => match std::str::from_utf8(bytes) {
            Ok(t) => t.to_string(),
            Err(_) => return fail(e.problems().to_vec()),
        },
    };
    let tree = match parse_tree(&text) {
        Ok(t) => t,
        Err(p) => return fail(vec![p]),
    };
    let mut problems = Vec::new();
    let version_ok = match check_version(&tree) {
        Ok(()) => true,
        Err(p) => {
            let newer = p.message.contains("newer");
            problems.push(p);
            if newer {
                // A newer format's fields are not ours to judge.
                return fail(problems);
            }
            false
        }
    };
    // Already reported, and better, by the version check.
    let about_version = |p: &Problem| p.field == "version" || p.message.contains("field `version`");
    match serde_yaml::from_str::<Session>(&text) {
        Ok(mut s) => {
            problems.extend(semantics(&mut s));
            let ok = !problems.iter().any(Problem::is_error);
            CheckReport {
                problems,
                session: ok.then_some(s),
            }
        }
        Err(e) => {
            let mut first = from_serde(&e, &text, false);
            corruption_path::refine(&mut first, &tree, &text);
            // A section's own parse stops at the same first error (without
            // the inner path), so the section holding it is not repeated.
            let covered = |p: &Problem| {
                let inside = first.field == p.field
                    || first.field.starts_with(&format!("{}.", p.field))
                    || first.field.starts_with(&format!("{}[", p.field));
                (inside && !p.field.is_empty()) || p.message == first.message
            };
            let rest: Vec<Problem> = sections(&tree)
                .into_iter()
                .filter(|p| !covered(p) && (version_ok || !about_version(p)))
                .map(|mut p| {
                    corruption_path::refine(&mut p, &tree, &text);
                    p
                })
                .collect();
            if version_ok || !about_version(&first) {
                problems.push(first);
            }
            problems.extend(rest);
            fail(problems)
        }
    }
}

/// Each section of the tree parsed on its own.
fn sections(tree: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(map) = tree.as_mapping() else {
        return out;
    };
    for k in map.keys() {
        let known = k.as_str().is_some_and(|k| TOP_LEVEL.contains(&k));
        if !known {
            let name = k
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{k:?}"));
            out.push(
                Problem::error(
                    "",
                    format!(
                        "unknown field `{name}`, expected one of {}",
                        TOP_LEVEL
                            .iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .hint("remove this field or correct its spelling"),
            );
        }
    }
    for required in ["model", "prompts"] {
        if map.get(required).is_none() {
            out.push(
                Problem::error("", format!("missing required field `{required}`")).hint(format!(
                    "add `{required}:` (see sessions/ for complete examples)"
                )),
            );
        }
    }
    section::<ModelRef>(map.get("model"), "model", &mut out);
    section::<Option<bool>>(map.get("prepend_bos"), "prepend_bos", &mut out);
    section::<String>(map.get("notes"), "notes", &mut out);
    section::<UiState>(map.get("ui"), "ui", &mut out);
    list::<PromptPair>(map.get("prompts"), "prompts", &mut out);
    list::<SweepEntry>(map.get("sweeps"), "sweeps", &mut out);
    list::<super::circuit::CircuitEntry>(map.get("circuits"), "circuits", &mut out);
    out
}

fn section<T: DeserializeOwned>(v: Option<&Value>, field: &str, out: &mut Vec<Problem>) {
    let Some(v) = v else { return };
    if let Err(e) = serde_yaml::from_value::<T>(v.clone()) {
        let mut p = from_serde(&e, "", false);
        p.field = join(field, &p.field);
        out.push(p);
    }
}

fn list<T: DeserializeOwned>(v: Option<&Value>, field: &str, out: &mut Vec<Problem>) {
    match v {
        None => {}
        Some(Value::Sequence(items)) => {
            for (i, item) in items.iter().enumerate() {
                section::<T>(Some(item), &format!("{field}[{i}]"), out);
            }
        }
        Some(_) => out.push(
            Problem::error(field, "must be a list (items starting with `- `)")
                .hint("see sessions/ for examples"),
        ),
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_string(),
        (true, _) => b.to_string(),
        _ if b.starts_with('[') => format!("{a}{b}"),
        _ => format!("{a}.{b}"),
    }
}
