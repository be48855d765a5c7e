//! The statistics in the machine-readable outputs: fields added to the
//! sweep JSON and columns appended to the sweep CSV (ARCHITECTURE.md's
//! output contract).

use serde_json::{json, Map, Value};

use crate::patching::metrics::METRICS;
use crate::patching::output::nest;
use crate::patching::SweepResult;

use super::stats::{Summary, SweepStats};

fn num(x: f32) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn summary(s: &Summary) -> Value {
    json!({
        "mean": num(s.mean), "std": num(s.std), "sem": num(s.sem),
        "ci_low": num(s.ci_low), "ci_high": num(s.ci_high),
        "sign_agreement": num(s.sign_agreement),
    })
}

/// Adds `n_pairs`, `stats`, `baseline_stats`, `dataset_normalized` and
/// `flagged_pairs` to a sweep's JSON object.
pub fn attach_json(v: &mut Value, r: &SweepResult, s: &SweepStats) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    let shape = &r.shape;
    let mut stats = Map::new();
    for m in METRICS {
        let Some(ms) = s.metrics.get(*m) else {
            continue;
        };
        stats.insert(
            m.to_string(),
            json!({
                "mean": nest(&ms.mean, shape),
                "std": nest(&ms.std, shape),
                "sem": nest(&ms.sem, shape),
                "ci_low": nest(&ms.ci_low, shape),
                "ci_high": nest(&ms.ci_high, shape),
                "sign_agreement": nest(&ms.sign_agreement, shape),
            }),
        );
    }
    let mut base = Map::new();
    for m in METRICS {
        if let Some((c, k)) = s.baselines.get(*m) {
            base.insert(
                m.to_string(),
                json!({"clean": summary(c), "corrupted": summary(k)}),
            );
        }
    }
    let mut dn = Map::new();
    for (m, cells) in &s.dataset_normalized {
        let f = |g: fn(&super::stats::Interval) -> f32| {
            nest(&cells.iter().map(g).collect::<Vec<f32>>(), shape)
        };
        dn.insert(
            m.clone(),
            json!({"value": f(|i| i.value), "ci_low": f(|i| i.low), "ci_high": f(|i| i.high)}),
        );
    }
    obj.insert("n_pairs".into(), json!(s.n_pairs));
    obj.insert(
        "stats_about".into(),
        json!({
            "resamples": s.options.resamples,
            "seed": s.options.seed,
            "interval": "95% percentile bootstrap of the mean over pairs",
            "normalization": "`metrics` normalise by the dataset-mean baselines (TransformerLens); \
                              `stats` and `per_pair` normalise each pair by its own baselines; \
                              `dataset_normalized` is the former with its interval",
        }),
    );
    obj.insert("stats".into(), Value::Object(stats));
    obj.insert("dataset_normalized".into(), Value::Object(dn));
    obj.insert("baseline_stats".into(), Value::Object(base));
    obj.insert("flagged_pairs".into(), json!(s.flagged));
}

/// The sweep CSV with, per metric, `_std`, `_sem`, `_ci_low`, `_ci_high`
/// and `_sign_agreement` columns appended (rows are cells in order).
pub fn attach_csv(csv: &str, s: &SweepStats) -> String {
    let mut out = String::with_capacity(csv.len() * 2);
    for (i, line) in csv.lines().enumerate() {
        out.push_str(line);
        for m in METRICS {
            let Some(ms) = s.metrics.get(*m) else {
                continue;
            };
            if i == 0 {
                for col in ["std", "sem", "ci_low", "ci_high", "sign_agreement"] {
                    out.push_str(&format!(",{m}_{col}"));
                }
                continue;
            }
            let c = i - 1;
            for col in [
                &ms.std,
                &ms.sem,
                &ms.ci_low,
                &ms.ci_high,
                &ms.sign_agreement,
            ] {
                let x = col.get(c).copied().unwrap_or(f32::NAN);
                out.push(',');
                if x.is_finite() {
                    out.push_str(&x.to_string());
                }
            }
        }
        out.push('\n');
    }
    out
}
