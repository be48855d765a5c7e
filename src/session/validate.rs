//! The semantic checks serde cannot express: indices in range, stored
//! results whose arrays match their shape, UI state that points at
//! something.
//!
//! Semantic checks never stop at the first problem. Errors make a session
//! unusable; UI state is repaired in place (clamped) and reported as a
//! warning, because a stale cursor is no reason to refuse a session.
//!
//! Stored results may hold other metrics than this build's registry: a
//! session written by a build with more metrics has them dropped with a
//! warning; one written by a build with fewer loads, and its results are
//! stale (`results::staleness`), so they are recomputed, not refused.

use std::collections::{BTreeMap, BTreeSet};

use crate::patching::{Corruption, SpecError, METRICS};
use crate::util::text::quote;

use super::error::Problem;
use super::model::{Session, StoredResult, SweepEntry};

/// Every semantic problem of a parsed session; UI state is clamped in place.
pub(crate) fn semantics(s: &mut Session) -> Vec<Problem> {
    let mut out = Vec::new();
    if s.model.source.trim().is_empty() {
        out.push(Problem::error("model.source", "is empty").hint(
            "name the model: `demo`, a hub id such as `gpt2`, a model directory or a .gguf file",
        ));
    }
    if s.prompts.is_empty() {
        out.push(
            Problem::error("prompts", "a session needs at least one prompt pair").hint(
                "add `- {clean: ..., corrupted: ..., answer: ..., wrong: ...}` under `prompts:`",
            ),
        );
    }
    for (i, p) in s.prompts.iter().enumerate() {
        let f = |name: &str| format!("prompts[{i}].{name}");
        if p.clean.trim().is_empty() {
            out.push(Problem::error(f("clean"), "the clean prompt is empty"));
        }
        if p.answer.is_empty() {
            out.push(
                Problem::error(f("answer"), "is empty")
                    .hint("give the clean run's answer token, e.g. ' Paris'"),
            );
        }
        if p.wrong.is_empty() {
            out.push(
                Problem::error(f("wrong"), "is empty")
                    .hint("give the competing answer token, e.g. ' Rome'"),
            );
        }
        if !p.answer.is_empty() && p.answer == p.wrong {
            out.push(
                Problem::error(
                    f("wrong"),
                    format!(
                        "is the same as the answer {}, so the logit difference is always 0",
                        quote(&p.answer, 60)
                    ),
                )
                .hint("use the corrupted run's answer as `wrong`"),
            );
        }
    }
    for (i, e) in s.sweeps.iter().enumerate() {
        sweep(&format!("sweeps[{i}]"), e, s, &mut out);
    }
    for (i, e) in s.sweeps.iter_mut().enumerate() {
        if let Some(r) = &mut e.result {
            drop_unknown_metrics(&format!("sweeps[{i}].result.result"), r, &mut out);
        }
    }
    for (i, e) in s.circuits.iter().enumerate() {
        let f = |name: &str| format!("circuits[{i}].{name}");
        if !METRICS.contains(&e.spec.metric.as_str()) {
            out.push(
                Problem::error(
                    f("spec.metric"),
                    format!("unknown metric {}", quote(&e.spec.metric, 60)),
                )
                .hint(format!("rank edges by one of: {}", METRICS.join(", "))),
            );
        }
        if e.spec.ig_steps == 0 {
            out.push(Problem::error(f("spec.ig_steps"), "must be at least 1"));
        }
    }
    ui(s, &mut out);
    out
}

fn sweep(field: &str, e: &SweepEntry, s: &Session, out: &mut Vec<Problem>) {
    if s.dataset.is_some() {
        // The sweeps run over the dataset, whose pairs (and count) are
        // checked when it is read; only the spec is checked here.
        if let Err(err) = e.spec.validate() {
            out.push(spec_problem(field, &err));
        }
        if let Some(r) = &e.result {
            result(&format!("{field}.result"), r, out);
        }
        return;
    }
    let n = s.prompts.len();
    if let Some(pairs) = &e.pairs {
        if pairs.is_empty() {
            out.push(
                Problem::error(format!("{field}.pairs"), "is an empty list")
                    .hint("list prompt pair indices (0-based), or omit `pairs` to use every pair"),
            );
        }
        let mut seen = BTreeSet::new();
        for (j, &k) in pairs.iter().enumerate() {
            if k >= n {
                out.push(
                    Problem::error(
                        format!("{field}.pairs[{j}]"),
                        format!("prompt pair {k} does not exist (the session has {n} pair{}, numbered from 0)", plural(n)),
                    )
                    .hint(format!("use an index from 0 to {}", n.saturating_sub(1))),
                );
            } else if !seen.insert(k) {
                out.push(Problem::error(
                    format!("{field}.pairs[{j}]"),
                    format!("prompt pair {k} is listed twice"),
                ));
            }
        }
    }
    let spec = &e.spec;
    if matches!(spec.corruption, Corruption::Prompt) {
        let used: Vec<usize> = match &e.pairs {
            Some(p) => p.iter().copied().filter(|&k| k < n).collect(),
            None => (0..n).collect(),
        };
        for k in used
            .into_iter()
            .filter(|&k| s.prompts[k].corrupted.is_none())
        {
            out.push(
                Problem::error(
                    format!("{field}.spec.corruption"),
                    format!("kind `prompt` patches between clean and corrupted prompts, but prompt pair {k} has no `corrupted` prompt"),
                )
                .hint(format!("add `corrupted:` to prompts[{k}], or use `kind: gaussian` (noise on the clean prompt)")),
            );
        }
    }
    if let Err(e) = spec.validate() {
        out.push(spec_problem(field, &e));
    }
    if let Some(r) = &e.result {
        result(&format!("{field}.result"), r, out);
    }
}

/// A refusal of [`crate::patching::SweepSpec::validate`], worded for the
/// session file: the field path and the value to write there.
fn spec_problem(field: &str, e: &SpecError) -> Problem {
    let at = |f: &str| format!("{field}.spec.{f}");
    match e {
        SpecError::ZeroSamples => Problem::error(
            at("corruption.samples"),
            "is 0, but metrics are averaged over at least one noise draw",
        )
        .hint("write `samples: 10` (ROME's choice)"),
        SpecError::TooManySamples { samples, max } => Problem::error(
            at("corruption.samples"),
            format!(
                "is {samples}, more than the {max} one sweep allows \
                 (every sample repeats all base and patched runs)"
            ),
        )
        .hint(format!("write `samples:` with at most {max}; ROME uses 10")),
        SpecError::BadNoiseScale { scale } => Problem::error(
            at("corruption.scale"),
            format!("must be a positive number, found {scale}"),
        )
        .hint("omit it for 3 x the standard deviation of the embeddings"),
        SpecError::ZeroWindow { .. } => Problem::error(at("window"), "must be at least 1 layer")
            .hint("write `window: 10` (ROME's choice; clipped to the model's layers)"),
        other => Problem::error(format!("{field}.spec"), other.to_string()),
    }
}

/// A stored result must be internally consistent to be drawn at all.
fn result(field: &str, r: &StoredResult, out: &mut Vec<Problem>) {
    if !axes_fit_tokens(field, r, out) {
        return;
    }
    let res = &r.result;
    let mut err = |f: &str, m: String| {
        out.push(
            Problem::error(format!("{field}{f}"), m)
                .hint("the stored result is damaged; delete the `result:` block and rerun the sweep (`patchbench sweep --session FILE --write`)"),
        )
    };
    if res.axes.len() != res.shape.len() {
        err(
            ".result.shape",
            format!(
                "has {} dimensions but `axes` names {}",
                res.shape.len(),
                res.axes.len()
            ),
        );
    }
    let cells = res
        .shape
        .iter()
        .try_fold(1usize, |acc, &n| acc.checked_mul(n))
        .filter(|&c| c <= 1 << 28);
    let Some(cells) = cells else {
        err(
            ".result.shape",
            format!("{:?} is impossibly large", res.shape),
        );
        return;
    };
    // Missing metrics make the result stale, not damaged; unknown ones
    // are dropped (`drop_unknown_metrics`), whatever their length.
    let mut metric_set = |f: &str, m: &BTreeMap<String, Vec<f32>>| {
        for (name, v) in m.iter().filter(|(k, _)| METRICS.contains(&k.as_str())) {
            if v.len() != cells {
                err(
                    &format!("{f}.{name}"),
                    format!(
                        "has {} values but the shape {:?} has {cells} cells",
                        v.len(),
                        res.shape
                    ),
                );
            }
        }
    };
    metric_set(".result.metrics", &res.metrics);
    for (i, m) in res.per_pair.iter().enumerate() {
        metric_set(&format!(".result.per_pair[{i}]"), m);
    }
    if res.per_pair.len() != res.pair_baselines.len() {
        err(
            ".result.pair_baselines",
            format!(
                "has {} entries but `per_pair` has {}",
                res.pair_baselines.len(),
                res.per_pair.len()
            ),
        );
    }
    for (name, t) in [
        ("clean_tokens", &r.clean_tokens),
        ("corrupted_tokens", &r.corrupted_tokens),
    ] {
        if t.ids.len() != t.strings.len() {
            err(
                &format!(".{name}"),
                format!("has {} ids but {} strings", t.ids.len(), t.strings.len()),
            );
        }
    }
    let first_axis = res.axes.first().map(String::as_str);
    if let (Some("component"), Some(&n)) = (first_axis, res.shape.first()) {
        if res.components.len() != n {
            err(
                ".result.components",
                format!(
                    "names {} components but the shape has {n}",
                    res.components.len()
                ),
            );
        }
    }
}

/// The axis names a sweep result may have (see `patching/plan.rs`).
const AXES: [&str; 6] = ["layer", "pos", "head", "kv_head", "dest_pos", "component"];

/// Every axis is one patchbench writes and has at least one cell, and the
/// position axes are as long as
/// the stored prompt: a result that does not match its own tokens would be
/// drawn against the wrong words. False when the shape is unusable (the
/// per-metric checks would only repeat the problem).
fn axes_fit_tokens(field: &str, r: &StoredResult, out: &mut Vec<Problem>) -> bool {
    let res = &r.result;
    let hint = "the stored result is damaged; delete the `result:` block and rerun the sweep \
                (`patchbench sweep --session FILE --write`)";
    let axis = |i: usize| res.axes.get(i).map(String::as_str).unwrap_or("?");
    if let Some(i) = res.axes.iter().position(|a| !AXES.contains(&a.as_str())) {
        out.push(
            Problem::error(
                format!("{field}.result.axes[{i}]"),
                format!(
                    "`{}` is not an axis patchbench writes; axes are {}",
                    quote_axis(axis(i)),
                    AXES.join(", ")
                ),
            )
            .hint(hint),
        );
        return false;
    }
    if let Some(i) = res.shape.iter().position(|&n| n == 0) {
        out.push(
            Problem::error(
                format!("{field}.result.shape"),
                format!(
                    "{:?} has a zero-length axis `{}`; a sweep has at least one cell on every axis",
                    res.shape,
                    quote_axis(axis(i))
                ),
            )
            .hint(hint),
        );
        return false;
    }
    // A labelled sweep's position axis runs over its labels, not tokens.
    let n_tokens = r.clean_tokens.ids.len();
    let (n_pos, what) = match res.position_labels.len() {
        0 => (n_tokens, "tokens in `clean_tokens`"),
        n => (n, "`position_labels`"),
    };
    let mut ok = true;
    for (i, &n) in res.shape.iter().enumerate() {
        if matches!(axis(i), "pos" | "dest_pos") && n != n_pos {
            out.push(
                Problem::error(
                    format!("{field}.result.shape"),
                    format!(
                        "axis `{}` has {n} positions but there are {n_pos} {what}",
                        axis(i)
                    ),
                )
                .hint(hint),
            );
            ok = false;
        }
    }
    let n_corrupted = r.corrupted_tokens.ids.len();
    if n_corrupted != n_tokens {
        out.push(
            Problem::error(
                format!("{field}.corrupted_tokens"),
                format!(
                    "has {n_corrupted} tokens but `clean_tokens` has {n_tokens}; \
                     clean and corrupted prompts are patched position by position"
                ),
            )
            .hint(hint),
        );
    }
    ok
}

/// An axis name from the file, safe to quote.
fn quote_axis(name: &str) -> String {
    crate::util::text::clip(&crate::util::text::one_line(name), 40).into_owned()
}

/// Drops the metrics of `r` this build does not know, with one warning per
/// name (not per prompt pair).
fn drop_unknown_metrics(field: &str, r: &mut StoredResult, out: &mut Vec<Problem>) {
    let res = &mut r.result;
    let mut unknown = BTreeSet::new();
    for m in std::iter::once(&mut res.metrics).chain(res.per_pair.iter_mut()) {
        m.retain(|k, _| {
            let known = METRICS.contains(&k.as_str());
            if !known {
                unknown.insert(k.clone());
            }
            known
        });
    }
    for name in unknown {
        out.push(
            Problem::warning(
                format!("{field}.metrics"),
                format!(
                    "metric `{}` is not one this build of patchbench knows; it was dropped (metrics are {})",
                    quote_axis(&name),
                    METRICS.join(", ")
                ),
            )
            .hint("the file keeps it until this build saves the session"),
        );
    }
}

fn ui(s: &mut Session, out: &mut Vec<Problem>) {
    let n_sweeps = s.sweeps.len();
    let ui = &mut s.ui;
    if ui.selected_sweep >= n_sweeps.max(1) {
        let to = n_sweeps.saturating_sub(1);
        out.push(Problem::warning(
            "ui.selected_sweep",
            format!(
                "{} is out of range ({n_sweeps} sweep{}); reset to {to}",
                ui.selected_sweep,
                plural(n_sweeps)
            ),
        ));
        ui.selected_sweep = to;
    }
    let n_pairs = s.prompts.len();
    if ui.selected_pair >= n_pairs.max(1) {
        let to = n_pairs.saturating_sub(1);
        out.push(Problem::warning(
            "ui.selected_pair",
            format!(
                "{} is out of range ({n_pairs} prompt pair{}); reset to {to}",
                ui.selected_pair,
                plural(n_pairs)
            ),
        ));
        ui.selected_pair = to;
    }
    if !METRICS.contains(&ui.metric.as_str()) {
        let to = super::model::UiState::default().metric;
        out.push(Problem::warning(
            "ui.metric",
            format!(
                "unknown metric {:?}; reset to {to} (metrics are {})",
                ui.metric,
                METRICS.join(", ")
            ),
        ));
        ui.metric = to;
    }
    let shape = s
        .sweeps
        .get(ui.selected_sweep)
        .and_then(|e| e.result.as_ref())
        .map(|r| r.result.shape.clone());
    if let Some(shape) = shape {
        if ui.cell.is_empty() {
            return;
        }
        if ui.cell.len() != shape.len() {
            out.push(Problem::warning(
                "ui.cell",
                format!("{:?} has {} indices but the selected sweep's result has {} axes; reset to the first cell", ui.cell, ui.cell.len(), shape.len()),
            ));
            ui.cell = vec![0; shape.len()];
        } else if ui.cell.iter().zip(&shape).any(|(i, n)| i >= n) {
            let clamped: Vec<usize> = ui
                .cell
                .iter()
                .zip(&shape)
                .map(|(i, n)| (*i).min(n.saturating_sub(1)))
                .collect();
            out.push(Problem::warning(
                "ui.cell",
                format!(
                    "{:?} is outside the result's shape {shape:?}; clamped to {clamped:?}",
                    ui.cell
                ),
            ));
            ui.cell = clamped;
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
