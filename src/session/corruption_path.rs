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
//!
//! The untyped tree has no locations, so the line and column the parser
//! gave (the start of the spec) are moved to the bad field by [`locate`],
//! which walks the text again with serde_yaml's own deserialiser and
//! stops, with an error, at the field's value: serde_yaml marks that error
//! with the position it reached, which is exactly where the field is.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_yaml::{Mapping, Value};

use crate::patching::Corruption;

use super::diagnose::from_serde;
use super::error::Problem;

/// If `p` is a problem at `sweeps[N].spec` caused by that spec's
/// `corruption`, points it at the corruption field that is bad, with that
/// field's own message and its line and column in `text` (the session
/// text `tree` was parsed from).
pub(crate) fn refine(p: &mut Problem, tree: &Value, text: &str) {
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
    let mut path = vec![Step::Key("sweeps"), Step::Index(i), Step::Key("spec")];
    path.push(Step::Key("corruption"));
    if let Some(key) = &sub {
        path.push(Step::Key(key));
    }
    if let Some((line, column)) = locate(text, &path) {
        p.line = Some(line);
        p.column = Some(column);
    }
    p.field = match sub {
        Some(key) => format!("{}.corruption.{key}", p.field),
        None => format!("{}.corruption", p.field),
    };
    p.message = inner.message;
    p.hint = inner.hint;
}

/// One step of a path from the document root: a mapping key or a
/// sequence index.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The message of the error that [`locate`] stops with.
const FOUND: &str = "patchbench: the field is here";

/// The 1-based line and column of the value at `path` in the YAML `text`,
/// if the path exists there.
fn locate(text: &str, path: &[Step<'_>]) -> Option<(usize, usize)> {
    let e = Probe(path)
        .deserialize(serde_yaml::Deserializer::from_str(text))
        .err()?;
    let loc = e.location()?;
    e.to_string()
        .contains(FOUND)
        .then(|| (loc.line(), loc.column()))
}

/// Follows the rest of a path; at its end, fails with [`FOUND`].
struct Probe<'p, 'a>(&'p [Step<'a>]);

impl<'de> DeserializeSeed<'de> for Probe<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match self.0.first() {
            None => d.deserialize_any(self),
            Some(Step::Key(_)) => d.deserialize_map(self),
            Some(Step::Index(_)) => d.deserialize_seq(self),
        }
    }
}

impl<'de> Visitor<'de> for Probe<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the path to a field")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (want, rest) = match self.0.split_first() {
            None => return Err(de::Error::custom(FOUND)),
            Some((&Step::Key(want), rest)) => (want, rest),
            Some(_) => return Ok(()),
        };
        while let Some(key) = map.next_key::<Value>()? {
            if key.as_str() == Some(want) {
                return map.next_value_seed(Probe(rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (want, rest) = match self.0.split_first() {
            None => return Err(de::Error::custom(FOUND)),
            Some((&Step::Index(want), rest)) => (want, rest),
            Some(_) => return Ok(()),
        };
        for _ in 0..want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        seq.next_element_seed(Probe(rest)).map(|_| ())
    }
    // Any other value ends the path (or is not what the path needs).
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.end()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.end()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.end()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.end()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.end()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.end()
    }
}

impl Probe<'_, '_> {
    fn end<E: de::Error>(self) -> Result<(), E> {
        if self.0.is_empty() {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
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
        refine(&mut p, &tree, &text);
        p
    }

    /// The parser reports a bad corruption at the start of its spec; the
    /// problem points at the bad field instead.
    #[test]
    fn the_location_is_the_bad_field() {
        let text = "sweeps:\n- spec:\n    target: resid_pre\n  notes: x\n- spec:\n    \
                    target: resid_pre\n    corruption:\n      kind: gaussian\n      \
                    samples: 4\n      scale: 1e400\n";
        let tree: Value = serde_yaml::from_str(text).unwrap();
        let mut p = Problem::error("sweeps[1].spec", "from the typed parse").at(6, 5);
        refine(&mut p, &tree, text);
        assert_eq!(p.field, "sweeps[1].spec.corruption.scale");
        assert_eq!((p.line, p.column), (Some(10), Some(14)), "{p:?}");

        // A flow mapping, and a bad kind: the corruption's own position.
        let p = refined("{kind: noise}");
        assert_eq!((p.line, p.column), (Some(3), Some(24)), "{p:?}");
        let mut p = Problem::error("sweeps[0].spec", "x");
        let text = "sweeps:\n- spec: {corruption: {kind: gaussian, bogus: 1}}\n";
        refine(&mut p, &serde_yaml::from_str(text).unwrap(), text);
        assert_eq!((p.line, p.column), (Some(2), Some(22)), "{p:?}");
    }

    #[test]
    fn a_path_that_is_not_there_has_no_location() {
        let text = "sweeps:\n- spec: {target: x}\n";
        let path = [Step::Key("sweeps"), Step::Index(3), Step::Key("spec")];
        assert_eq!(locate(text, &path), None);
        assert_eq!(locate(text, &[Step::Key("nope")]), None);
        assert_eq!(locate("- [", &[Step::Key("sweeps")]), None);
        let path = [Step::Key("sweeps"), Step::Index(0), Step::Key("spec")];
        assert_eq!(locate(text, &path), Some((2, 9)));
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
