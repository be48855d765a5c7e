//! One named query rather than a search: the exact change of one edge
//! (what the workbench's edge drill-down shows beside the estimate when the
//! search did not check that edge exactly), and path patching of one sender
//! into a set of receivers (`patchbench circuit --method path --sender S
//! --receivers R,...`).

use crate::model::Transformer;
use crate::patching::metrics::Metrics;
use crate::patching::PreparedPair;

use super::circuit::{derive, exact_scores, CircuitOptions};
use super::graph::Graph;
use super::path::{check_query, path_patch, PathQuery};
use super::progress::{Stage, Watch};
use super::runs::{self, CircuitSpecRuns};
use super::CircuitError;

/// Every metric's exact change when the edge `sender -> receiver` alone is
/// patched (averaged over `pairs`, normalised metrics derived from the
/// baselines), under `opts`' direction and corruption.
pub fn exact_edge(
    model: &Transformer,
    pairs: &[PreparedPair],
    opts: &CircuitOptions,
    sender: &str,
    receiver: &str,
) -> Result<Metrics, CircuitError> {
    exact_edge_at(model, pairs, opts, (sender, receiver), None)
}

/// [`exact_edge`] at one token position `at` (a position-aware edge), or
/// at every position (`None`).
pub fn exact_edge_at(
    model: &Transformer,
    pairs: &[PreparedPair],
    opts: &CircuitOptions,
    (sender, receiver): (&str, &str),
    at: Option<usize>,
) -> Result<Metrics, CircuitError> {
    if let Some(p) = at {
        if let Some(short) = pairs.iter().find(|q| q.n_pos() <= p) {
            return Err(CircuitError::Invalid(format!(
                "position {p} is past the end of a pair of {} tokens",
                short.n_pos()
            )));
        }
    }
    let graph = Graph::new(&model.cfg);
    let (Some(s), Some(r)) = (graph.find_sender(sender), graph.find_receiver(receiver)) else {
        return Err(CircuitError::Invalid(format!(
            "the model has no edge {sender} -> {receiver}"
        )));
    };
    if !graph.is_edge(s, r) {
        return Err(CircuitError::Invalid(format!(
            "{sender} does not write before {receiver} reads: not an edge"
        )));
    }
    let spec = CircuitSpecRuns {
        direction: opts.direction,
        corruption: opts.corruption.clone(),
    };
    let runs = runs::build(model, &graph, pairs, &spec)?;
    let (clean, corrupted) = runs.mean_baselines();
    let m = exact_scores(
        model,
        &graph,
        &runs,
        (&[(s, r)], at.as_ref().map(std::slice::from_ref)),
        1,
        (Stage::Exact, &mut Watch::none()),
    )?;
    Ok(derive(m[0], &clean, &corrupted))
}

/// Path patching of one sender into a set of receivers (the IOI paper's
/// query, e.g. the S-inhibition heads into the name movers' queries):
/// every metric's change when `sender`'s paths to all of `receivers` are
/// patched at once, every other head frozen to the base run (`opts.path`
/// says whether MLPs are frozen too), averaged over `pairs`, normalised
/// metrics derived from the baselines.
pub fn path_effect(
    model: &Transformer,
    pairs: &[PreparedPair],
    opts: &CircuitOptions,
    sender: &str,
    receivers: &[String],
) -> Result<PathEffect, CircuitError> {
    let graph = Graph::new(&model.cfg);
    let s = graph.find_sender(sender).ok_or_else(|| {
        CircuitError::Invalid(format!(
            "the model has no sender {sender:?}; senders are input, a{{layer}}.h{{head}} and m{{layer}}"
        ))
    })?;
    let mut rs = Vec::with_capacity(receivers.len());
    for name in receivers {
        let r = graph.find_receiver(name).ok_or_else(|| {
            CircuitError::Invalid(format!(
                "the model has no receiver {name:?}; receivers are a{{layer}}.h{{head}}<q|k|v> \
                 (a{{layer}}.kv{{group}}<k|v> with grouped-query attention), m{{layer}} and logits"
            ))
        })?;
        if rs.contains(&r) {
            return Err(CircuitError::Invalid(format!(
                "receiver {name} is listed twice"
            )));
        }
        rs.push(r);
    }
    let query = PathQuery {
        sender: s,
        receivers: rs,
    };
    check_query(&graph, &query, &opts.path).map_err(CircuitError::Invalid)?;
    let spec = CircuitSpecRuns {
        direction: opts.direction,
        corruption: opts.corruption.clone(),
    };
    let runs = runs::build(model, &graph, pairs, &spec)?;
    let (clean, corrupted) = runs.mean_baselines();
    let mut per_run = Vec::with_capacity(runs.runs.len());
    for run in &runs.runs {
        let m = path_patch(
            model,
            &graph,
            run,
            std::slice::from_ref(&query),
            &opts.path,
            1,
        )?;
        let (a, b) = (m[0].values(), run.base_metrics.values());
        per_run.push(Metrics::from_values(std::array::from_fn(|i| a[i] - b[i])));
    }
    Ok(PathEffect {
        effect: derive(Metrics::mean(&per_run), &clean, &corrupted),
        clean,
        corrupted,
    })
}

/// What [`path_effect`] measured.
#[derive(Debug, Clone, Copy)]
pub struct PathEffect {
    /// Every metric's change, averaged over the pairs (and noise samples).
    pub effect: Metrics,
    /// Mean baselines of the clean and corrupted runs.
    pub clean: Metrics,
    pub corrupted: Metrics,
}
