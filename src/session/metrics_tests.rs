//! Sessions follow the metric registry: in test builds (seven metrics,
//! `answer_logit` the extra one) a result stores and reloads every metric,
//! and sessions written by builds with six — every file in `sessions/` —
//! still load, their results stale for the missing metric alone.

use std::path::Path;

use serde_yaml::Value;

use crate::patching::metrics_tests::{pair, sweep, tiny};
use crate::patching::{Method, SweepSpec, Target};

use super::model::{Session, SweepEntry};
use super::results::{staleness, store_result, Staleness};
use super::{load, parse_str, to_yaml};

/// A session holding one freshly computed `resid_pre` result.
fn computed() -> (Session, String) {
    let m = tiny();
    let (pairs, r) = sweep(&m, Method::Fast);
    let mut s = Session::new("tests/fixtures/gpt2-tiny", pair());
    s.model.fingerprint = Some(m.fingerprint.clone());
    s.sweeps.push(SweepEntry {
        spec: SweepSpec::new(Target::ResidPre),
        pairs: None,
        result: None,
    });
    s.sweeps[0].result = Some(store_result(&s, 0, &m, &pairs, r));
    (s, m.fingerprint)
}

/// Every metric map of the first stored result in a session tree.
fn metric_maps(tree: &mut Value) -> Vec<&mut serde_yaml::Mapping> {
    let r = &mut tree["sweeps"][0]["result"]["result"];
    let mut out = Vec::new();
    let Value::Mapping(r) = r else {
        panic!("no result")
    };
    for (k, v) in r.iter_mut() {
        match (k.as_str(), v) {
            (Some("metrics"), Value::Mapping(m)) => out.push(m),
            (Some("per_pair"), Value::Sequence(items)) => {
                out.extend(items.iter_mut().filter_map(Value::as_mapping_mut))
            }
            (Some("baselines"), Value::Mapping(b)) => {
                out.extend(b.values_mut().filter_map(Value::as_mapping_mut))
            }
            (Some("pair_baselines"), Value::Sequence(items)) => out.extend(
                items
                    .iter_mut()
                    .filter_map(Value::as_mapping_mut)
                    .flat_map(|b| b.values_mut().filter_map(Value::as_mapping_mut)),
            ),
            _ => {}
        }
    }
    out
}

#[test]
fn a_session_saves_and_reloads_a_metric_added_to_the_registry() {
    let (s, fp) = computed();
    let yaml = to_yaml(&s);
    assert!(yaml.contains("answer_logit:"), "{yaml}");
    let loaded = parse_str(&yaml, Path::new("t.yaml")).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let back = loaded.session;
    assert_eq!(
        serde_yaml::to_value(&back).unwrap(),
        serde_yaml::to_value(&s).unwrap()
    );
    let r = &back.sweeps[0].result.as_ref().unwrap().result;
    assert!(r.baselines.clean.get("answer_logit").unwrap().is_finite());
    assert_eq!(staleness(&back, &back.sweeps[0], Some(&fp)), None);
}

#[test]
fn a_session_without_a_known_metric_loads_with_its_result_stale() {
    let (s, fp) = computed();
    let mut tree = serde_yaml::to_value(&s).unwrap();
    let maps = metric_maps(&mut tree);
    assert_eq!(
        maps.len(),
        1 + 1 + 2 + 2,
        "metrics, per_pair, baselines, pair_baselines"
    );
    for m in maps {
        assert!(m.remove("answer_logit").is_some());
    }
    let yaml = serde_yaml::to_string(&tree).unwrap();
    let back = parse_str(&yaml, Path::new("t.yaml")).unwrap().session;
    let e = &back.sweeps[0];
    assert_eq!(
        staleness(&back, e, Some(&fp)),
        Some(Staleness::MetricsMissing(vec!["answer_logit".into()]))
    );
    // The other metrics are kept as stored; the missing one reads as NaN.
    let (old, new) = (&s.sweeps[0].result, &e.result);
    let (old, new) = (&old.as_ref().unwrap().result, &new.as_ref().unwrap().result);
    assert_eq!(old.metrics["kl"], new.metrics["kl"]);
    assert_eq!(
        old.baselines.clean.logit_diff(),
        new.baselines.clean.logit_diff()
    );
    assert!(new.baselines.clean.get("answer_logit").unwrap().is_nan());
}

#[test]
fn an_unknown_metric_is_dropped_with_a_warning() {
    let (s, fp) = computed();
    let mut tree = serde_yaml::to_value(&s).unwrap();
    for m in metric_maps(&mut tree) {
        let v = m.get("logit_diff").unwrap().clone();
        m.insert("logit_margin".into(), v);
    }
    let yaml = serde_yaml::to_string(&tree).unwrap();
    let loaded = parse_str(&yaml, Path::new("t.yaml")).unwrap();
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert!(
        w.message.contains("`logit_margin`") && w.message.contains("dropped"),
        "{w:?}"
    );
    assert_eq!(w.field, "sweeps[0].result.result.metrics");
    let back = loaded.session;
    assert!(!to_yaml(&back).contains("logit_margin"));
    assert_eq!(staleness(&back, &back.sweeps[0], Some(&fp)), None);
}

/// The shipped sessions were written by six-metric builds.
#[test]
fn every_shipped_session_loads_stale_only_for_the_test_builds_extra_metric() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions");
    let mut results = 0;
    for f in std::fs::read_dir(dir).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let loaded = load(&f).unwrap_or_else(|e| panic!("{e}"));
        assert!(loaded.warnings.is_empty(), "{f:?}: {:?}", loaded.warnings);
        let s = &loaded.session;
        for e in s.sweeps.iter().filter(|e| e.result.is_some()) {
            let fp = e.result.as_ref().unwrap().fingerprint.clone();
            assert_eq!(
                staleness(s, e, Some(&fp)),
                Some(Staleness::MetricsMissing(vec!["answer_logit".into()])),
                "{f:?}"
            );
            results += 1;
        }
    }
    assert!(results > 0, "sessions/ holds stored results");
}
