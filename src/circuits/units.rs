//! The scoring stage of a circuit search as a canonical list of work units,
//! and its split into shards (`patchbench circuit ... --shard K/N`).
//!
//! An edge's score is the mean over runs (prompt pairs × noise samples) of
//! its per-run value. Exact edge patching and path patching compute a
//! run's edges in pieces of `4 × max_rows` edges (a few batched forwards
//! each): a unit is one (run, piece), so they split over edges *and*
//! pairs. The gradient estimates (EAP, EAP-IG, AtP*) score every edge of a
//! run with one backward pass: a unit is one run, so they split over pairs
//! (and noise samples) only, and a single pair is one unit.
//!
//! An unsharded search computes the same units in the same order, each
//! exactly as a shard computes it (a unit's numbers depend only on its run
//! and its edges, which decide the batches), and [`assemble`] takes the
//! means in run order either way: a merge of shards has the same bits.
//! Shards are contiguous stretches of the list of about equal cost
//! (`patching::work::shard_of`): blocks run per edge (exact patching
//! resumes at the receiver's block), a whole pass per path-patched edge.

use crate::model::Transformer;
use crate::patching::metrics::Metrics;
use crate::patching::part::Shard;
use crate::patching::work::shard_of;

use super::circuit::{mean_rows, CircuitOptions, Method};
use super::graph::{Graph, ReceiverId, SenderId};
use super::path::PathQuery;
use super::progress::{Stage, Watch};
use super::runs::Runs;
use super::{exact, path, scoring, CircuitError};

/// One piece of the scoring stage: edges `start..end` of run `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub run: usize,
    pub start: usize,
    pub end: usize,
}

/// Per-run values of a unit's edges (normalised metrics left for the
/// finishing step, which knows the mean baselines).
#[derive(Debug, Clone, PartialEq)]
pub struct UnitValues {
    pub scores: Vec<Metrics>,
    /// AtP*: the plain linear estimate.
    pub plain: Option<Vec<Metrics>>,
    /// AtP* with GradDrop: the ranking magnitude.
    pub graddrop: Option<Vec<Metrics>>,
}

/// Scores of every edge, means over runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RawScores {
    pub scores: Vec<Metrics>,
    pub plain: Option<Vec<Metrics>>,
    pub graddrop: Option<Vec<Metrics>>,
}

/// Edges per unit of the per-edge methods: the pieces progress is reported
/// between in an unsharded search too.
pub fn piece(max_rows: usize) -> usize {
    max_rows.max(1) * 4
}

/// The canonical units, run by run.
pub fn plan(method: Method, n_runs: usize, n_edges: usize, max_rows: usize) -> Vec<Unit> {
    let step = match method {
        Method::Exact | Method::Path => piece(max_rows),
        Method::Eap | Method::EapIg | Method::AtpStar => n_edges.max(1),
    };
    let mut units = Vec::new();
    for run in 0..n_runs {
        let mut start = 0;
        while start < n_edges {
            let end = (start + step).min(n_edges);
            units.push(Unit { run, start, end });
            start = end;
        }
    }
    units
}

/// The cost of each unit in blocks run (plus one block of overhead per
/// forward), for a balanced split.
pub fn costs(
    units: &[Unit],
    graph: &Graph,
    edges: &[(SenderId, ReceiverId)],
    opts: &CircuitOptions,
) -> Vec<u64> {
    let layers = graph.n_layers as u64;
    let forwards = |n: usize| n.div_ceil(opts.max_rows.max(1)) as u64;
    units
        .iter()
        .map(|u| {
            let es = &edges[u.start..u.end];
            match opts.method {
                Method::Exact => {
                    let blocks: u64 = es
                        .iter()
                        .map(|&(_, r)| {
                            layers - graph.receiver_layer(r).min(graph.n_layers - 1) as u64
                        })
                        .sum();
                    blocks + forwards(es.len())
                }
                Method::Path => 2 * layers * es.len() as u64 + forwards(es.len()),
                Method::Eap | Method::EapIg | Method::AtpStar => 1,
            }
        })
        .collect()
}

/// The indices of the units shard `shard` computes.
pub fn select(costs: &[u64], shard: Shard) -> Vec<usize> {
    shard_of(costs, shard.n)
        .into_iter()
        .enumerate()
        .filter(|&(_, s)| s + 1 == shard.k)
        .map(|(i, _)| i)
        .collect()
}

/// Computes the units `which` (indices into `units`), reporting progress
/// to `watch` before each.
pub fn compute(
    model: &Transformer,
    graph: &Graph,
    runs: &Runs,
    (edges, at): (&[(SenderId, ReceiverId)], Option<&[usize]>),
    opts: &CircuitOptions,
    (units, which): (&[Unit], &[usize]),
    watch: &mut Watch<'_>,
) -> Result<Vec<UnitValues>, CircuitError> {
    let mut out = Vec::with_capacity(which.len());
    for (done, &i) in which.iter().enumerate() {
        watch.step(Stage::Scores, done, which.len())?;
        let u = units[i];
        let run = runs
            .runs
            .get(u.run)
            .ok_or_else(|| CircuitError::Invalid(format!("unit {i}: no run {}", u.run)))?;
        let es = edges.get(u.start..u.end).ok_or_else(|| {
            CircuitError::Invalid(format!("unit {i}: no edges {}..{}", u.start, u.end))
        })?;
        let es_at = at.map(|a| &a[u.start..u.end]);
        let minus_base = |m: Vec<Metrics>| -> Vec<Metrics> {
            m.into_iter().map(|m| minus(m, &run.base_metrics)).collect()
        };
        out.push(match opts.method {
            Method::Exact => UnitValues {
                scores: minus_base(exact::exact_edges_at(
                    model,
                    graph,
                    run,
                    (es, es_at),
                    opts.max_rows,
                )?),
                plain: None,
                graddrop: None,
            },
            Method::Path => {
                let queries: Vec<PathQuery> = es
                    .iter()
                    .map(|&(sender, r)| PathQuery {
                        sender,
                        receivers: vec![r],
                    })
                    .collect();
                let qs = (&queries[..], es_at);
                let m = path::path_patch_at(model, graph, run, qs, &opts.path, opts.max_rows)?;
                UnitValues {
                    scores: minus_base(m),
                    plain: None,
                    graddrop: None,
                }
            }
            Method::Eap | Method::EapIg | Method::AtpStar => {
                scoring::run_estimates(model, graph, run, (es, es_at), opts)?
            }
        });
    }
    Ok(out)
}

fn minus(a: Metrics, b: &Metrics) -> Metrics {
    let (a, b) = (a.values(), b.values());
    Metrics::from_values(std::array::from_fn(|i| a[i] - b[i]))
}

/// The means over runs of every unit's values: `values[i]` belongs to
/// `units[i]`, the whole canonical list in order.
pub fn assemble(n_runs: usize, units: &[Unit], values: Vec<UnitValues>) -> RawScores {
    let mut scores = vec![Vec::new(); n_runs];
    let mut plain = vec![Vec::new(); n_runs];
    let mut graddrop = vec![Vec::new(); n_runs];
    let (mut any_plain, mut any_graddrop) = (false, false);
    for (u, v) in units.iter().zip(values) {
        scores[u.run].extend(v.scores);
        if let Some(p) = v.plain {
            any_plain = true;
            plain[u.run].extend(p);
        }
        if let Some(g) = v.graddrop {
            any_graddrop = true;
            graddrop[u.run].extend(g);
        }
    }
    RawScores {
        scores: mean_rows(&scores),
        plain: any_plain.then(|| mean_rows(&plain)),
        graddrop: any_graddrop.then(|| mean_rows(&graddrop)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_cover_every_run_and_edge_once_in_order() {
        for (method, per) in [(Method::Exact, 8), (Method::Path, 8), (Method::Eap, 21)] {
            let units = plan(method, 3, 21, 2);
            let mut next = (0, 0);
            for u in &units {
                if u.start == 0 && next.1 == 21 {
                    next = (next.0 + 1, 0);
                }
                assert_eq!((u.run, u.start), next, "{method:?}");
                assert!(u.end - u.start <= per && u.end > u.start);
                next = (u.run, u.end);
            }
            assert_eq!(next, (2, 21));
        }
    }

    #[test]
    fn shards_select_every_unit_once() {
        let costs: Vec<u64> = (0..17).map(|i| 1 + i % 5).collect();
        for n in 1..=5 {
            let mut seen: Vec<usize> = (1..=n)
                .flat_map(|k| select(&costs, Shard { k, n }))
                .collect();
            seen.sort();
            assert_eq!(seen, (0..17).collect::<Vec<_>>());
        }
    }
}
