//! Results stored before the multi-answer metric existed. With one answer
//! and one wrong per pair, `multi_logit_diff` (logsumexp of the answers'
//! logits minus logsumexp of the wrongs') is exactly `logit_diff`, so such
//! a result gets it filled in on load instead of turning stale: the
//! sessions under `sessions/` and users' own keep their results. A session
//! whose dataset may list further answers (any by-path dataset, an inline
//! one with `answers` or `wrongs`) is left alone: its results load stale
//! without the metric, as results missing any other metric do.

use crate::patching::metrics::{id, MetricId, LOGIT_DIFF};
use crate::patching::SweepResult;

use super::model::Session;

const MULTI: &str = "multi_logit_diff";
const MULTI_ID: MetricId = id(MULTI);

/// Fills `multi_logit_diff` into every stored result of `s` that lacks it,
/// when the session's pairs have one answer and one wrong each.
pub(crate) fn fill_multi_answer(s: &mut Session) {
    let may_list = match &s.dataset {
        None => false,
        Some(d) if d.path.is_none() => d
            .pairs
            .iter()
            .any(|p| !p.answers.is_empty() || !p.wrongs.is_empty()),
        Some(_) => true,
    };
    if may_list {
        return;
    }
    for e in &mut s.sweeps {
        if let Some(r) = &mut e.result {
            fill(&mut r.result);
        }
    }
}

fn fill(r: &mut SweepResult) {
    if r.metrics.contains_key(MULTI) {
        return;
    }
    let Some(ld) = r.metrics.get(LOGIT_DIFF.def().name).cloned() else {
        return;
    };
    r.metrics.insert(MULTI.into(), ld);
    for p in &mut r.per_pair {
        if let Some(v) = p.get(LOGIT_DIFF.def().name).cloned() {
            p.insert(MULTI.into(), v);
        }
    }
    for b in std::iter::once(&mut r.baselines).chain(r.pair_baselines.iter_mut()) {
        b.clean[MULTI_ID] = b.clean[LOGIT_DIFF];
        b.corrupted[MULTI_ID] = b.corrupted[LOGIT_DIFF];
    }
}
