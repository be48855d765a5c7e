//! The finishing step of a circuit search, from the edges' scores to the
//! result: ranking, the exact check of the top edges, the faithfulness
//! curve of the top-k circuits on a log grid of k.
//!
//! It runs once per search: after the scoring units in an unsharded
//! search, and in `patchbench merge` over the union of the parts' units
//! (it needs the model: the exact check and the curve are real forwards).

use std::time::Instant;

use crate::model::Transformer;
use crate::patching::metrics::{Compute, Metrics};
use crate::patching::{Direction, PreparedPair};

use super::circuit::{
    derive, exact_scores, mean_rows, Baselines, CircuitOptions, CircuitResult, CircuitTiming,
    EdgeScore, FaithPoint, Method, Search,
};
use super::graph::{Graph, ReceiverId, SenderId};
use super::progress::{Stage, Watch};
use super::runs::{self, CircuitSpecRuns};
use super::sparse::{self, SparseRow};
use super::units::RawScores;
use super::CircuitError;

/// Ranks the edges by their scores (means over runs, normalised metrics
/// not yet derived), checks the top ones exactly and measures the curve.
pub fn finish(
    model: &Transformer,
    search: &Search,
    pairs: &[PreparedPair],
    opts: &CircuitOptions,
    raw: RawScores,
    scores_ms: u64,
    watch: &mut Watch<'_>,
) -> Result<CircuitResult, CircuitError> {
    let (graph, edges, runs) = (&search.graph, &search.edges, &search.runs);
    let (clean, corrupted) = runs.mean_baselines();
    let derive_all = |v: Vec<Metrics>| -> Vec<Metrics> {
        v.into_iter()
            .map(|m| derive(m, &clean, &corrupted))
            .collect()
    };
    let scores = derive_all(raw.scores);
    let (plain, graddrop) = (raw.plain.map(derive_all), raw.graddrop.map(derive_all));
    // Ranked by |score|, or by GradDrop's magnitude where there is one
    // (AtP*'s ranking).
    let key = |i: usize| {
        let v = graddrop.as_ref().unwrap_or(&scores)[i][opts.metric];
        if v.is_finite() {
            v.abs()
        } else {
            -1.0
        }
    };
    let mut order: Vec<usize> = (0..edges.len()).collect();
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
    let t2 = Instant::now();
    let mut exact_of = vec![None; edges.len()];
    if opts.method.checks_exact() && opts.check_exact > 0 {
        let top: Vec<usize> = order.iter().copied().take(opts.check_exact).collect();
        let picked: Vec<_> = top.iter().map(|&i| edges[i]).collect();
        let at: Option<Vec<usize>> = search
            .at
            .as_ref()
            .map(|a| top.iter().map(|&i| a[i]).collect());
        let ex = exact_scores(
            model,
            graph,
            runs,
            (&picked, at.as_deref()),
            opts.max_rows,
            (Stage::Exact, watch),
        )?;
        for (i, m) in top.into_iter().zip(ex) {
            exact_of[i] = Some(derive(m, &clean, &corrupted));
        }
    } else if opts.method == Method::Exact {
        exact_of = scores.iter().map(|m| Some(*m)).collect();
    }
    let exact_ms = ms(t2);
    let t3 = Instant::now();
    let ranked: Vec<(SenderId, ReceiverId)> = order.iter().map(|&i| edges[i]).collect();
    let ranked_at: Option<Vec<usize>> = search
        .at
        .as_ref()
        .map(|a| order.iter().map(|&i| a[i]).collect());
    let faithfulness = if opts.faithfulness_points > 0 {
        let ks = log_grid(edges.len(), opts.faithfulness_points);
        let ranked = (&ranked[..], ranked_at.as_deref());
        faithfulness_curve_watched(model, graph, pairs, opts, ranked, &ks, watch)?
    } else {
        Vec::new()
    };
    let faithfulness_ms = ms(t3);
    let first = |x: f32| faithfulness.iter().find(|p| p.recovered >= x).map(|p| p.k);
    Ok(CircuitResult {
        method: opts.method,
        direction: opts.direction,
        metric: opts.metric.def().name.to_string(),
        n_edges: edges.len(),
        positions: search.at.is_some(),
        baselines: Baselines { clean, corrupted },
        edges: order
            .iter()
            .map(|&i| EdgeScore {
                sender: graph.sender_name(edges[i].0),
                receiver: graph.receiver_name(edges[i].1),
                scores: scores[i],
                exact: exact_of[i],
                plain: plain.as_ref().map(|p| p[i]),
                graddrop: graddrop.as_ref().map(|g| g[i]),
                src_pos: search.at.as_ref().map(|a| a[i]),
                dst_pos: search.at.as_ref().map(|a| a[i]),
            })
            .collect(),
        edges_for_80: first(0.8),
        edges_for_90: first(0.9),
        faithfulness,
        timing: CircuitTiming {
            runs_ms: search.runs_ms,
            scores_ms,
            exact_ms,
            faithfulness_ms,
        },
    })
}

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// About `points` values of `k` from 1 to `n`, evenly spaced in log scale,
/// always including 0 (the empty circuit) and `n` (the full graph).
pub fn log_grid(n: usize, points: usize) -> Vec<usize> {
    let mut ks = vec![0];
    let p = points.max(2);
    for i in 0..p {
        let k = (n as f64).powf(i as f64 / (p - 1) as f64).round() as usize;
        ks.push(k.clamp(1, n.max(1)));
    }
    ks.push(n);
    ks.dedup();
    ks
}

/// Real forward passes of the top-`k` circuits: the clean run, every edge
/// outside the circuit patched from the corrupted run.
pub fn faithfulness_curve(
    model: &Transformer,
    graph: &Graph,
    pairs: &[PreparedPair],
    opts: &CircuitOptions,
    ranked: &[(SenderId, ReceiverId)],
    ks: &[usize],
) -> Result<Vec<FaithPoint>, CircuitError> {
    let ranked = (ranked, None);
    faithfulness_curve_watched(model, graph, pairs, opts, ranked, ks, &mut Watch::none())
}

/// [`faithfulness_curve`] over position-aware edges: `ranked[i]` at
/// position `at[i]` (every pair of one length).
pub fn faithfulness_curve_at(
    model: &Transformer,
    graph: &Graph,
    pairs: &[PreparedPair],
    opts: &CircuitOptions,
    (ranked, at): (&[(SenderId, ReceiverId)], &[usize]),
    ks: &[usize],
) -> Result<Vec<FaithPoint>, CircuitError> {
    let ranked = (ranked, Some(at));
    faithfulness_curve_watched(model, graph, pairs, opts, ranked, ks, &mut Watch::none())
}

fn faithfulness_curve_watched(
    model: &Transformer,
    graph: &Graph,
    pairs: &[PreparedPair],
    opts: &CircuitOptions,
    (ranked, at): (&[(SenderId, ReceiverId)], Option<&[usize]>),
    ks: &[usize],
    watch: &mut Watch<'_>,
) -> Result<Vec<FaithPoint>, CircuitError> {
    watch.step(Stage::Faithfulness, 0, 1)?;
    let spec = CircuitSpecRuns {
        direction: Direction::Noise,
        corruption: opts.corruption.clone(),
    };
    let runs = runs::build(model, graph, pairs, &spec)?;
    let (clean, corrupted) = runs.mean_baselines();
    // Each point as its difference from the unpatched or the all-patched
    // run, whichever is shorter (`sparse`: the dense weights' sum, term
    // for term); position-aware, the units are (edge, position).
    let per = at.map_or(1, |_| pairs[0].n_pos());
    let complete = ranked.len() == graph.edges().len() * per;
    let rows: Vec<SparseRow<'_>> = ks
        .iter()
        .map(|&k| SparseRow::circuit((ranked, at), k, complete))
        .collect();
    let chunks = rows.len().div_ceil(opts.max_rows.max(1));
    let total = runs.runs.len() * chunks;
    let mut per_run = Vec::new();
    for (r, run) in runs.runs.iter().enumerate() {
        let mut out = Vec::new();
        for (c, chunk) in rows.chunks(opts.max_rows.max(1)).enumerate() {
            watch.step(Stage::Faithfulness, r * chunks + c, total)?;
            out.extend(sparse::sparse_runs(model, graph, run, chunk)?);
        }
        per_run.push(out);
    }
    let means = mean_rows(&per_run);
    let rank_by = opts.metric;
    Ok(ks
        .iter()
        .zip(means)
        .map(|(&k, mut m)| {
            m.normalize(&clean, &corrupted);
            let of = match rank_by.def().compute {
                Compute::Normalized { of } => crate::patching::metrics::id(of),
                Compute::Run(_) => rank_by,
            };
            FaithPoint {
                k,
                recovered: crate::patching::metrics::normalized(m[of], clean[of], corrupted[of]),
                metrics: m,
            }
        })
        .collect())
}
