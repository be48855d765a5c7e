//! The exact change of one named edge: what the workbench's edge
//! drill-down shows beside the estimate when the search did not check
//! that edge exactly.

use crate::model::Transformer;
use crate::patching::metrics::Metrics;
use crate::patching::PreparedPair;

use super::circuit::{derive, exact_scores, CircuitOptions};
use super::graph::Graph;
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
        &[(s, r)],
        1,
        (Stage::Exact, &mut Watch::none()),
    )?;
    Ok(derive(m[0], &clean, &corrupted))
}
