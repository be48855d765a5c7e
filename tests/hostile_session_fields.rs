//! Hostile session fields, made at test time from the examples in
//! `sessions/`: every field removed in turn, every field given a value of
//! the wrong type, numbers that are negative, huge, NaN or infinite, and
//! strings with control characters or 100,000 characters.
//!
//! Each variant is written to a temporary directory and checked with
//! `patchbench check` through `hostile_support` (no panic, no abort, no
//! hang, no escape sequence, capped stderr, the file untouched). A variant
//! that breaks the session must be refused with a message naming the file
//! and the field; one that only drops an optional field must still pass.
//! Metric names are left to the metric registry's own tests: whether a
//! session without one loads is that registry's rule.

mod hostile_support;

use std::path::Path;

use serde_yaml::Value;

use hostile_support::{repo, run_all, Case};

/// One session of each shape: prompt corruption with results, Gaussian
/// noise (ROME) with results, and no results at all.
const EXAMPLES: [&str; 3] = ["ioi-demo.yaml", "facts-demo.yaml", "ioi-gpt2.yaml"];

/// Fields a session may leave out (defaults, or optional records).
const OPTIONAL: [&str; 16] = [
    "model.fingerprint",
    "notes",
    "ui",
    "ui.selected_sweep",
    "ui.cell",
    "ui.metric",
    "ui.selected_pair",
    "sweeps",
    "spec.direction",
    "spec.corruption",
    "spec.window",
    "result.inputs",
    "result.computed_at",
    "result.load_ms",
    "corruption.samples",
    "corruption.seed",
];

/// Removals that leave a valid session whose stored result no longer
/// matches its spec: `check` reports the result as stale.
const STALE: [&str; 1] = ["facts-demo.yaml:sweeps.3.spec.corruption"];

/// Containers of per-metric values: their children belong to the metric
/// registry's tests.
const METRIC_CONTAINERS: [&str; 4] = ["metrics", "per_pair", "baselines", "pair_baselines"];

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn load(name: &str) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(repo("sessions").join(name)).unwrap()).unwrap()
}

/// Every mapping key, descending into the first item of each list (and
/// into every sweep's spec, so each corruption kind is reached).
fn paths(v: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                let Some(k) = k.as_str() else { continue };
                at.push(Step::Key(k.to_string()));
                out.push(at.clone());
                if !METRIC_CONTAINERS.contains(&k) {
                    paths(child, at, out);
                }
                at.pop();
            }
        }
        Value::Sequence(items) => {
            let in_sweeps = matches!(at.last(), Some(Step::Key(k)) if k == "sweeps");
            for (i, item) in items.iter().enumerate() {
                if i > 0 && !in_sweeps {
                    break;
                }
                at.push(Step::Index(i));
                if i > 0 {
                    // Later sweeps: only their spec.
                    if let Some(spec) = item.get("spec") {
                        at.push(Step::Key("spec".into()));
                        out.push(at.clone());
                        paths(spec, at, out);
                        at.pop();
                    }
                } else {
                    paths(item, at, out);
                }
                at.pop();
            }
        }
        _ => {}
    }
}

fn get_mut<'a>(v: &'a mut Value, path: &[Step]) -> &'a mut Value {
    path.iter().fold(v, |v, s| match s {
        Step::Key(k) => v.get_mut(k.as_str()).unwrap(),
        Step::Index(i) => v.get_mut(*i).unwrap(),
    })
}

fn last_key(path: &[Step]) -> &str {
    match path.last() {
        Some(Step::Key(k)) => k,
        _ => unreachable!("paths end in a key"),
    }
}

/// `sweeps.0.spec.window`-style name, for file names and case names.
fn dotted(path: &[Step]) -> String {
    path.iter()
        .map(|s| match s {
            Step::Key(k) => k.clone(),
            Step::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The key and its parent key (`spec.window`, `model.fingerprint`), or the
/// key alone at the top level.
fn parent_and_key(path: &[Step]) -> String {
    let keys: Vec<&str> = path
        .iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Index(_) => None,
        })
        .collect();
    match keys.as_slice() {
        [k] => k.to_string(),
        [.., p, k] => format!("{p}.{k}"),
        [] => String::new(),
    }
}

fn remove(v: &mut Value, path: &[Step]) {
    let (last, parent) = path.split_last().unwrap();
    let Step::Key(k) = last else { unreachable!() };
    get_mut(v, parent)
        .as_mapping_mut()
        .unwrap()
        .remove(k.as_str());
}

/// A value of another YAML kind than `v`, or `None` for nulls and tags.
fn wrong_kind(v: &Value) -> Option<Value> {
    Some(match v {
        Value::String(_) => serde_yaml::from_str("[1, 2]").unwrap(),
        Value::Number(_) => Value::String("seven".into()),
        Value::Bool(_) => Value::String("maybe".into()),
        Value::Sequence(_) => Value::String("text".into()),
        Value::Mapping(_) => Value::Number(42.into()),
        _ => return None,
    })
}

fn write(dir: &Path, name: &str, v: &Value) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_yaml::to_string(v).unwrap()).unwrap();
    p
}

fn check(name: String, file: &Path, dir: &Path) -> Case {
    Case::new(name, ["check".as_ref(), file.as_os_str()]).untouched([dir])
}

#[test]
fn every_field_removed_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cases = vec![];
    for example in EXAMPLES {
        let original = load(example);
        let mut all = vec![];
        paths(&original, &mut vec![], &mut all);
        for path in all {
            let key = last_key(&path).to_string();
            if METRIC_CONTAINERS
                .iter()
                .any(|c| dotted(&path).contains(&format!("{c}.")))
                || (key == "result" && path.len() == 3)
            {
                // A sweep without a result is simply not run yet.
                if key == "result" {
                    let mut v = original.clone();
                    remove(&mut v, &path);
                    let f = write(d, &format!("rm-{example}-{}.yaml", dotted(&path)), &v);
                    cases.push(check(format!("rm-{example}-{}", dotted(&path)), &f, d).succeeds());
                }
                continue;
            }
            let mut v = original.clone();
            remove(&mut v, &path);
            let file_name = format!("rm-{example}-{}.yaml", dotted(&path));
            let f = write(d, &file_name, &v);
            let case = check(format!("rm-{example}-{}", dotted(&path)), &f, d);
            let optional = OPTIONAL
                .iter()
                .any(|o| parent_and_key(&path) == *o || *o == key && !o.contains('.'));
            let stale = STALE.contains(&format!("{example}:{}", dotted(&path)).as_str());
            cases.push(if stale {
                case.expect([file_name.as_str(), "stale", "--rerun-stale"])
            } else if optional {
                case.succeeds().expect(["ok"])
            } else {
                case.expect([file_name.as_str(), key.as_str()])
            });
        }
    }
    assert!(cases.len() > 100, "only {} cases", cases.len());
    run_all(cases);
}

#[test]
fn every_field_given_a_value_of_the_wrong_type() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cases = vec![];
    for example in EXAMPLES {
        let original = load(example);
        let mut all = vec![];
        paths(&original, &mut vec![], &mut all);
        for path in all {
            if METRIC_CONTAINERS
                .iter()
                .any(|c| dotted(&path).contains(&format!("{c}.")))
            {
                continue;
            }
            let mut v = original.clone();
            let slot = get_mut(&mut v, &path);
            let Some(bad) = wrong_kind(slot) else {
                continue;
            };
            *slot = bad;
            let file_name = format!("type-{example}-{}.yaml", dotted(&path));
            let f = write(d, &file_name, &v);
            let key = last_key(&path);
            cases.push(
                check(format!("type-{example}-{}", dotted(&path)), &f, d)
                    .expect([file_name.as_str(), key]),
            );
        }
    }
    assert!(cases.len() > 100, "only {} cases", cases.len());
    run_all(cases);
}
