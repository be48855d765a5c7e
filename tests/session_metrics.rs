//! Sessions written by builds with other metrics than this one still load.
//! A metric this build does not know is dropped with a warning naming it;
//! a result without one of this build's metrics loads stale (shown and
//! exported as missing cells, never a panic), and `sweep --session
//! --rerun-stale` recomputes it.

mod session_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use patchbench::patching::METRICS;
use patchbench::session::{self, results, Session, Staleness};
use serde_yaml::{Mapping, Value};
use session_support::{repo, session_with_result};

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Applies `f` to every metric map of sweep `i`'s stored result: the
/// metrics, each pair's, both baselines and each pair's baselines.
fn edit_metric_maps(tree: &mut Value, i: usize, f: &mut dyn FnMut(&mut Mapping)) -> usize {
    let r = &mut tree["sweeps"][i]["result"]["result"];
    let mut n = 0;
    let mut each = |v: &mut Value| {
        if let Value::Mapping(m) = v {
            f(m);
            n += 1;
        }
    };
    each(&mut r["metrics"]);
    each(&mut r["baselines"]["clean"]);
    each(&mut r["baselines"]["corrupted"]);
    for key in ["per_pair", "pair_baselines"] {
        if let Value::Sequence(items) = &mut r[key] {
            for item in items {
                if key == "per_pair" {
                    each(item);
                } else {
                    each(&mut item["clean"]);
                    each(&mut item["corrupted"]);
                }
            }
        }
    }
    n
}

/// `s` with its first result edited by `f`, written to `dir`.
fn write_edited(dir: &Path, s: &Session, f: &mut dyn FnMut(&mut Mapping)) -> PathBuf {
    let mut tree = serde_yaml::to_value(s).unwrap();
    assert_eq!(edit_metric_maps(&mut tree, 0, f), 6);
    let p = dir.join("s.yaml");
    std::fs::write(&p, serde_yaml::to_string(&tree).unwrap()).unwrap();
    p
}

#[test]
fn a_session_with_a_metric_this_build_lacks_loads_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = session_with_result(&[3, 5], 7);
    let file = write_edited(dir.path(), &s, &mut |m| {
        let v = m["logit_diff"].clone();
        m.insert("logit_margin".into(), v);
    });
    let loaded = session::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = loaded.warnings[0].message.clone();
    assert!(w.contains("`logit_margin`") && w.contains("dropped"), "{w}");
    // Everything else is as stored, and the result is current.
    assert!(session_support::same(&loaded.session, &s));
    let fp = "00000000deadbeef";
    assert_eq!(results::stale_results(&loaded.session, Some(fp)), vec![]);

    // `check` reports the warning; `export` writes this build's metrics.
    let f = file.to_str().unwrap();
    let out = bin(&["check", f]);
    assert!(
        text(&out.stdout).contains("logit_margin"),
        "{}",
        text(&out.stdout)
    );
    let out = bin(&["export", f, "--sweep", "0", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&String> = v["metrics"].as_object().unwrap().keys().collect();
    let mut want: Vec<&str> = METRICS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want);
    assert!(v["baselines"]["clean"].get("logit_margin").is_none());
}

#[test]
fn a_session_without_one_of_this_builds_metrics_loads_stale() {
    let dir = tempfile::tempdir().unwrap();
    let s = session_with_result(&[3, 5], 11);
    let file = write_edited(dir.path(), &s, &mut |m| {
        assert!(m.remove("kl").is_some());
    });
    let loaded = session::load(&file).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let back = &loaded.session;
    let fp = "00000000deadbeef";
    let stale = results::stale_results(back, Some(fp));
    assert_eq!(
        stale,
        vec![(0, Staleness::MetricsMissing(vec!["kl".into()]))]
    );
    assert!(stale[0].1.to_string().contains("without the metric kl"));
    let r = &back.sweeps[0].result.as_ref().unwrap().result;
    let old = &s.sweeps[0].result.as_ref().unwrap().result;
    assert!(r.baselines.clean.get("kl").unwrap().is_nan());
    assert_eq!(
        r.baselines.clean.get("rank"),
        old.baselines.clean.get("rank")
    );

    let f = file.to_str().unwrap();
    let out = bin(&["export", f, "--sweep", "0", "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kl = v["metrics"]["kl"].as_array().unwrap();
    assert_eq!(kl.len(), 3);
    assert!(kl
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .all(|x| x.is_null()));
    assert!(v["baselines"]["clean"]["kl"].is_null());
    let out = bin(&["export", f, "--sweep", "0", "--format", "csv"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    assert!(csv.starts_with(&format!("layer,pos,{}\n", METRICS.join(","))));
    // The SVG of the missing metric is refused with the way to get it.
    let svg = dir.path().join("kl.svg");
    let out = bin(&[
        "export",
        f,
        "--sweep",
        "0",
        "--format",
        "svg",
        "--metric",
        "kl",
        "--out",
        svg.to_str().unwrap(),
    ]);
    let err = text(&out.stderr);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    assert!(
        err.contains("no values of metric \"kl\"") && err.contains("--rerun-stale"),
        "{err}"
    );
}

#[test]
fn rerun_stale_recomputes_a_result_stored_without_a_metric() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = repo("tests/fixtures/gpt2-tiny");
    let file = dir.path().join("ioi.yaml");
    let yaml = format!(
        "version: 1\nmodel:\n  source: {}\nprompts:\n\
         - clean: When Mary and John went to the store, John gave a drink to\n  \
         corrupted: When Mary and John went to the store, Mary gave a drink to\n  \
         answer: ' Mary'\n  wrong: ' John'\nsweeps:\n- spec: {{target: resid_pre}}\n",
        fixture.display()
    );
    std::fs::write(&file, yaml).unwrap();
    let f = file.to_str().unwrap();
    let out = bin(&["sweep", "--session", f, "--write"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let full = session::load(&file).unwrap().session;
    write_edited(dir.path(), &full, &mut |m| {
        m.remove("prob");
    });
    std::fs::rename(dir.path().join("s.yaml"), &file).unwrap();

    // Without --rerun-stale the stale result is named, not rerun.
    let out = bin(&["sweep", "--session", f, "--write"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("stored without the metric prob"),
        "{}",
        text(&out.stderr)
    );
    let out = bin(&["sweep", "--session", f, "--write", "--rerun-stale"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = session::load(&file).unwrap().session;
    assert_eq!(results::stale_results(&again, None), vec![]);
    let (a, b) = (
        &again.sweeps[0].result.as_ref().unwrap().result,
        &full.sweeps[0].result.as_ref().unwrap().result,
    );
    session_support::assert_same_metrics(a, b, 0.0, "recomputed");
    assert_eq!(a.baselines.clean.get("prob"), b.baselines.clean.get("prob"));
}

/// A result stored before `multi_logit_diff` existed: with one answer and
/// one wrong per pair the metric is the logit difference, so it is filled
/// in on load and the result stays current; when the session's dataset
/// lists further answers it cannot be, and the result loads stale.
#[test]
fn a_result_from_before_the_multi_answer_metric_gets_it_from_the_logit_difference() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = session_with_result(&[3, 5], 13);
    // An old build wrote no multi_logit_diff anywhere.
    let file = write_edited(dir.path(), &s, &mut |m| {
        assert!(m.remove("multi_logit_diff").is_some());
    });
    let loaded = session::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let fp = "00000000deadbeef";
    assert_eq!(results::stale_results(&loaded.session, Some(fp)), vec![]);
    let r = &loaded.session.sweeps[0].result.as_ref().unwrap().result;
    assert_eq!(
        r.metrics["multi_logit_diff"].len(),
        r.metrics["logit_diff"].len()
    );
    for (a, b) in r.metrics["multi_logit_diff"]
        .iter()
        .zip(&r.metrics["logit_diff"])
    {
        assert_eq!(a.to_bits(), b.to_bits());
    }
    for p in &r.per_pair {
        assert_eq!(p["multi_logit_diff"].len(), p["logit_diff"].len());
    }
    assert_eq!(
        r.baselines.corrupted.get("multi_logit_diff"),
        r.baselines.corrupted.get("logit_diff")
    );

    // An inline dataset whose pairs list further answers: stale.
    let pair = patchbench::data::DatasetPair {
        id: None,
        clean: "a b".into(),
        corrupted: "a c".into(),
        answer: "d".into(),
        wrong: "e".into(),
        answers: vec!["f".into()],
        wrongs: vec![],
        labels: Default::default(),
    };
    let ds = patchbench::data::Dataset::from_pairs(vec![pair]);
    s.dataset = Some(patchbench::session::dataset::DatasetRef::of(&ds, None));
    let file = write_edited(dir.path(), &s, &mut |m| {
        m.remove("multi_logit_diff");
    });
    let loaded = session::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let stale = results::stale_results(&loaded.session, Some(fp));
    assert!(
        stale
            .iter()
            .any(|(_, why)| *why == Staleness::MetricsMissing(vec!["multi_logit_diff".into()])),
        "{stale:?}"
    );
}
