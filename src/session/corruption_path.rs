//! Precise field paths for problems inside a sweep's `corruption`.
//!
//! `Corruption` is an internally tagged enum (`kind: gaussian`), which serde
//! deserialises by buffering the mapping first; an error inside it then
//! carries only the path of the enclosing spec (`sweeps[3].spec`), not
//! `sweeps[3].spec.corruption.scale`. When a parse problem points at a
//! spec, [`refine`] finds the field in the untyped tree: it parses the
//! corruption alone, then each of its fields alone beside its `kind` (every
//! field but `kind` has a default, so a mapping of the kind and one field
//! fails only if that field is bad). No field types are repeated here, so
//! a field added to `Corruption` is covered without a change.

use serde_yaml::{Mapping, Value};

use crate::patching::Corruption;

use super::diagnose::from_serde;
use super::error::Problem;

/// If `p` is a problem at `sweeps[N].spec` caused by that spec's
/// `corruption`, points it at the corruption field that is bad, with that
/// field's own message (keeping the location the parser gave).
pub(crate) fn refine(p: &mut Problem, tree: &Value) {
    let Some(i) = spec_index(&p.field) else {
        return;
    };
    let Some(corruption) = tree
        .get("sweeps")
        .and_then(|s| s.get(i))
        .and_then(|e| e.get("spec"))
        .and_then(|s| s.get("corruption"))
    else {
        return;
    };
    let Some((sub, e)) = first_bad_field(corruption) else {
        return;
    };
    let inner = from_serde(&e, "", false);
    p.field = match sub {
        Some(key) => format!("{}.corruption.{key}", p.field),
        None => format!("{}.corruption", p.field),
    };
    p.message = inner.message;
    p.hint = inner.hint;
}

/// `N` of a field path `sweeps[N].spec`.
fn spec_index(field: &str) -> Option<usize> {
    field
        .strip_prefix("sweeps[")?
        .strip_suffix("].spec")?
        .parse()
        .ok()
}

/// The corruption's first bad field (`None`: the corruption as a whole,
/// e.g. an unknown field or kind) and its error; `None` if it parses.
fn first_bad_field(v: &Value) -> Option<(Option<String>, serde_yaml::Error)> {
    let whole = serde_yaml::from_value::<Corruption>(v.clone()).err()?;
    let Some(map) = v.as_mapping() else {
        return Some((None, whole));
    };
    let kind_key = Value::String("kind".into());
    let mut alone = Mapping::new();
    if let Some(kind) = map.get(&kind_key) {
        alone.insert(kind_key.clone(), kind.clone());
    }
    if let Err(e) = serde_yaml::from_value::<Corruption>(Value::Mapping(alone.clone())) {
        return Some((Some("kind".into()), e));
    }
    for (key, value) in map.iter().filter(|(k, _)| **k != kind_key) {
        let Some(name) = key.as_str() else { continue };
        let mut one = alone.clone();
        one.insert(key.clone(), value.clone());
        if let Err(e) = serde_yaml::from_value::<Corruption>(Value::Mapping(one)) {
            // An unknown field is named in the message; it is not a path.
            if !e.to_string().starts_with("unknown field") {
                return Some((Some(name.to_string()), e));
            }
        }
    }
    Some((None, whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refined(corruption: &str) -> Problem {
        let text = format!("sweeps:\n- spec:\n    corruption: {corruption}\n");
        let tree: Value = serde_yaml::from_str(&text).unwrap();
        let mut p = Problem::error("sweeps[0].spec", "from the typed parse");
        refine(&mut p, &tree);
        p
    }

    #[test]
    fn a_bad_field_is_named() {
        let p = refined("{kind: gaussian, samples: 10, scale: 1e400}");
        assert_eq!(p.field, "sweeps[0].spec.corruption.scale");
        assert!(p.message.contains("1e400"), "{}", p.message);
        let p = refined("{kind: gaussian, samples: -1}");
        assert_eq!(p.field, "sweeps[0].spec.corruption.samples");
        let p = refined("{kind: zero, positions: [-1]}");
        assert_eq!(p.field, "sweeps[0].spec.corruption.positions");
        let p = refined("{kind: noise}");
        assert_eq!(p.field, "sweeps[0].spec.corruption.kind");
    }

    #[test]
    fn an_unknown_field_is_reported_at_the_corruption() {
        let p = refined("{kind: gaussian, bogus: 1}");
        assert_eq!(p.field, "sweeps[0].spec.corruption");
        assert!(p.message.contains("bogus"), "{}", p.message);
    }

    #[test]
    fn a_problem_elsewhere_is_left_alone() {
        let p = refined("{kind: gaussian, samples: 10}");
        assert_eq!(p.field, "sweeps[0].spec");
        assert_eq!(p.message, "from the typed parse");
    }
}
