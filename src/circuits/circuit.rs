//! Scoring every edge with one method, checking the top edges exactly,
//! and the faithfulness curve of the top-k circuits.
//!
//! Scores are averaged over run pairs (prompt pairs, noise samples), like
//! sweep cells; a normalised metric's score is the score of the metric it
//! normalises divided by `clean − corrupted` of the mean baselines.
//!
//! Faithfulness follows the EAP literature: the clean run with every edge
//! *outside* the circuit carrying the corrupted run's value (whatever the
//! scoring direction), scored by the ranking metric normalised between the
//! baselines (1 = the clean behaviour fully recovered, 0 = none of it). The
//! empty circuit is the corrupted run and the full graph the clean run
//! (tests hold both). The curve is measured at `k` on a log grid.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::model::Transformer;
use crate::patching::metrics::{Compute, MetricId, Metrics, REGISTRY};
use crate::patching::{Corruption, Direction, PreparedPair};

use super::graph::{Graph, ReceiverId, SenderId};
use super::progress::{Stage, Watch};
use super::runs::{self, CircuitSpecRuns, Runs};
use super::units::{Unit, UnitValues};
use super::{exact, CircuitError};

pub use super::finish::{faithfulness_curve, faithfulness_curve_at, log_grid};

/// How edges are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// First-order estimate from one backward pass (Syed et al. 2023).
    Eap,
    /// EAP with gradients integrated along interpolated input embeddings.
    EapIg,
    /// Every edge patched exactly (one forward row per edge).
    Exact,
    /// Path patching of each edge (sender -> that receiver, every other
    /// head frozen; see [`super::path`]).
    Path,
    /// AtP* (Kramár et al. 2024): EAP with the QK fix and GradDrop.
    AtpStar,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Eap => "eap",
            Method::EapIg => "eap-ig",
            Method::Exact => "exact",
            Method::Path => "path",
            Method::AtpStar => "atp-star",
        }
    }

    /// Whether the scores are a gradient estimate of exact edge patching.
    pub fn is_estimate(self) -> bool {
        matches!(self, Method::Eap | Method::EapIg | Method::AtpStar)
    }

    /// Whether the top edges are also patched exactly, to show how far
    /// the method's scores are from exact edge patching.
    pub fn checks_exact(self) -> bool {
        self != Method::Exact
    }

    /// Every method, in the order the workbench cycles through them
    /// (`tests/circuit_pane.rs` holds it equal to the CLI's `--method`).
    pub const ALL: &'static [Method] = &[
        Method::Eap,
        Method::EapIg,
        Method::AtpStar,
        Method::Exact,
        Method::Path,
    ];

    /// The method named `name` (`eap`, `eap-ig`, `atp-star`, `exact`, `path`).
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.iter().copied().find(|m| m.name() == name)
    }
}

/// What to compute.
#[derive(Debug, Clone)]
pub struct CircuitOptions {
    pub method: Method,
    pub direction: Direction,
    pub corruption: Corruption,
    /// EAP-IG interpolation steps.
    pub ig_steps: usize,
    /// What EAP-IG interpolates: the input embeddings or every sender's
    /// output.
    pub ig_on: super::eap::IgOn,
    /// AtP*: add GradDrop (one more gradient group per layer) and rank by it.
    pub graddrop: bool,
    /// The metric edges are ranked by (`|score|`) and faithfulness is read in.
    pub metric: MetricId,
    /// Top edges patched exactly to measure an estimate's error.
    pub check_exact: usize,
    /// Points of the faithfulness curve's log grid (0: no curve).
    pub faithfulness_points: usize,
    /// Batch rows per forward pass.
    pub max_rows: usize,
    /// Path patching's choices (`Method::Path`).
    pub path: super::path::PathOptions,
    /// Position-aware edges: every edge is scored, checked and kept or
    /// patched at each token position on its own (see [`super::positions`]).
    pub positions: bool,
}

impl Default for CircuitOptions {
    fn default() -> Self {
        Self {
            method: Method::Eap,
            direction: Direction::Denoise,
            corruption: Corruption::Prompt,
            ig_steps: 5,
            ig_on: Default::default(),
            graddrop: true,
            metric: crate::patching::metrics::LOGIT_DIFF,
            check_exact: 100,
            faithfulness_points: 10,
            max_rows: 32,
            path: Default::default(),
            positions: false,
        }
    }
}

/// One edge's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeScore {
    pub sender: String,
    pub receiver: String,
    /// Metric -> the method's value (change of the metric when the edge
    /// alone is patched).
    pub scores: Metrics,
    /// Metric -> the exact change, for edges checked exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<Metrics>,
    /// AtP*: the plain linear estimate (EAP's) beside the QK-fixed one in
    /// `scores`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain: Option<Metrics>,
    /// AtP* with GradDrop: the magnitude edges are ranked by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graddrop: Option<Metrics>,
    /// Position-aware edges: the token position of the sender's
    /// contribution (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_pos: Option<usize>,
    /// Position-aware edges: the position where the receiver reads it
    /// (equal to `src_pos`: the residual stream moves nothing between
    /// positions; a separate field keeps a cross-position variant
    /// compatible).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_pos: Option<usize>,
}

impl EdgeScore {
    /// How far the method's value is from exact edge patching (`scores −
    /// exact`), where the edge was checked.
    pub fn error(&self) -> Option<Metrics> {
        let e = self.exact?;
        let (a, b) = (self.scores.values(), e.values());
        Some(Metrics::from_values(std::array::from_fn(|i| a[i] - b[i])))
    }
}

/// One point of the faithfulness curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaithPoint {
    /// Edges kept.
    pub k: usize,
    /// The ranking metric normalised between the baselines.
    pub recovered: f32,
    /// Every metric of the circuit run (means over run pairs).
    pub metrics: Metrics,
}

/// Wall-clock times of the stages, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CircuitTiming {
    pub runs_ms: u64,
    pub scores_ms: u64,
    pub exact_ms: u64,
    pub faithfulness_ms: u64,
}

/// Everything a circuit search produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitResult {
    pub method: Method,
    pub direction: Direction,
    pub metric: String,
    /// Edges ranked: (edge, position) units when `positions`.
    pub n_edges: usize,
    /// Whether the edges are position-aware (each at one token position).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub positions: bool,
    pub baselines: Baselines,
    /// Every edge, by decreasing `|score|` of the ranking metric.
    pub edges: Vec<EdgeScore>,
    pub faithfulness: Vec<FaithPoint>,
    /// The first grid `k` whose circuit recovers at least 80% / 90%.
    pub edges_for_80: Option<usize>,
    pub edges_for_90: Option<usize>,
    pub timing: CircuitTiming,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    pub clean: Metrics,
    pub corrupted: Metrics,
}

/// Scores every edge of `model` on `pairs` with `opts.method`.
pub fn run_circuit(
    model: &Transformer,
    pairs: &[PreparedPair],
    opts: &CircuitOptions,
) -> Result<CircuitResult, CircuitError> {
    run_circuit_watched(model, pairs, opts, &mut Watch::none())
}

/// [`run_circuit`], reporting progress to `watch` between pieces of work
/// and stopping with [`CircuitError::Cancelled`] when it says so.
///
/// The work is the sharded search's (`units.rs`): every unit of the
/// scoring stage, then the finishing step over their means.
pub fn run_circuit_watched(
    model: &Transformer,
    pairs: &[PreparedPair],
    opts: &CircuitOptions,
    watch: &mut Watch<'_>,
) -> Result<CircuitResult, CircuitError> {
    let search = Search::new(model, pairs, opts, watch)?;
    let t1 = Instant::now();
    let units = search.units(opts);
    let all: Vec<usize> = (0..units.len()).collect();
    let values = search.score(model, opts, (&units, &all), watch)?;
    let raw = super::units::assemble(search.runs.runs.len(), &units, values);
    super::finish::finish(model, &search, pairs, opts, raw, ms(t1), watch)
}

/// A circuit search with its unpatched runs built: what scoring a share of
/// the units and finishing from the scores both need.
pub struct Search {
    pub graph: Graph,
    /// The ranked units' edges: every edge once, or, position-aware, every
    /// edge once per position (edge-major).
    pub edges: Vec<(SenderId, ReceiverId)>,
    /// Position-aware: each unit's token position, parallel to `edges`.
    pub at: Option<Vec<usize>>,
    pub runs: Runs,
    pub runs_ms: u64,
}

impl Search {
    /// Checks the options against the model and runs the unpatched forwards.
    pub fn new(
        model: &Transformer,
        pairs: &[PreparedPair],
        opts: &CircuitOptions,
        watch: &mut Watch<'_>,
    ) -> Result<Search, CircuitError> {
        let graph = Graph::new(&model.cfg);
        if opts.method.is_estimate() {
            model
                .require_float_weights(opts.method.name())
                .map_err(|e| CircuitError::Invalid(e.to_string()))?;
        }
        if opts.method.is_estimate() && estimate_of(opts.metric).is_none() {
            return Err(CircuitError::Invalid(format!(
                "metric {} has no gradient, so {} cannot estimate it; rank by another metric or use --method exact",
                opts.metric.def().name,
                opts.method.name()
            )));
        }
        if opts.positions {
            super::positions::check(pairs)?;
        }
        let edges = graph.edges();
        if let (Method::Path, Some(&(sender, r))) = (opts.method, edges.first()) {
            let q = super::path::PathQuery {
                sender,
                receivers: vec![r],
            };
            super::path::check_query(&graph, &q, &opts.path).map_err(CircuitError::Invalid)?;
        }
        let t0 = Instant::now();
        watch.step(Stage::Runs, 0, 1)?;
        let spec = CircuitSpecRuns {
            direction: opts.direction,
            corruption: opts.corruption.clone(),
        };
        let runs = runs::build(model, &graph, pairs, &spec)?;
        let (edges, at) = match opts.positions {
            true => {
                let (e, a) = super::positions::expand(&edges, pairs[0].n_pos());
                (e, Some(a))
            }
            false => (edges, None),
        };
        Ok(Search {
            graph,
            edges,
            at,
            runs,
            runs_ms: ms(t0),
        })
    }

    /// The canonical units of the scoring stage.
    pub fn units(&self, opts: &CircuitOptions) -> Vec<Unit> {
        super::units::plan(
            opts.method,
            self.runs.runs.len(),
            self.edges.len(),
            opts.max_rows,
        )
    }

    /// Computes units `which` of `units`.
    pub fn score(
        &self,
        model: &Transformer,
        opts: &CircuitOptions,
        work: (&[Unit], &[usize]),
        watch: &mut Watch<'_>,
    ) -> Result<Vec<UnitValues>, CircuitError> {
        super::units::compute(
            model,
            &self.graph,
            &self.runs,
            (&self.edges, self.at.as_deref()),
            opts,
            work,
            watch,
        )
    }
}

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

/// The metric whose estimate a metric's estimate is derived from: itself
/// when it has a gradient, the normalised metric's source otherwise.
fn estimate_of(m: MetricId) -> Option<MetricId> {
    match m.def().compute {
        Compute::Normalized { of } => estimate_of(crate::patching::metrics::id(of)),
        Compute::Run(_) => m.def().grad.map(|_| m),
    }
}

/// Fills normalised metrics' scores: a change of `of` divided by the
/// baselines' difference in it.
pub(super) fn derive(mut m: Metrics, clean: &Metrics, corrupted: &Metrics) -> Metrics {
    for (i, d) in REGISTRY.iter().enumerate() {
        if let Compute::Normalized { of } = d.compute {
            let of = crate::patching::metrics::id(of);
            let denom = clean[of] - corrupted[of];
            m[MetricId(i)] = if denom.abs() < 1e-12 {
                f32::NAN
            } else {
                m[of] / denom
            };
        }
    }
    m
}

/// Exact changes of every metric, averaged over run pairs; progress goes
/// to the watch after each piece of a few batches.
pub(super) fn exact_scores(
    model: &Transformer,
    graph: &Graph,
    runs: &Runs,
    (edges, at): (&[(SenderId, ReceiverId)], Option<&[usize]>),
    max_rows: usize,
    (stage, watch): (Stage, &mut Watch<'_>),
) -> Result<Vec<Metrics>, CircuitError> {
    let piece = max_rows.max(1) * 4;
    let total = runs.runs.len() * edges.len().div_ceil(piece);
    let mut done = 0;
    let mut per_run = Vec::new();
    for run in &runs.runs {
        let mut rows = Vec::with_capacity(edges.len());
        for (c, chunk) in edges.chunks(piece).enumerate() {
            watch.step(stage, done, total)?;
            let at = at.map(|a| &a[c * piece..c * piece + chunk.len()]);
            let m = exact::exact_edges_at(model, graph, run, (chunk, at), max_rows)?;
            rows.extend(m.into_iter().map(|m| minus(m, &run.base_metrics)));
            done += 1;
        }
        per_run.push(rows);
    }
    Ok(mean_rows(&per_run))
}

fn minus(a: Metrics, b: &Metrics) -> Metrics {
    let (a, b) = (a.values(), b.values());
    Metrics::from_values(std::array::from_fn(|i| a[i] - b[i]))
}

/// Element-wise mean over runs of per-edge metrics.
pub(super) fn mean_rows(per_run: &[Vec<Metrics>]) -> Vec<Metrics> {
    let n = per_run.first().map_or(0, |r| r.len());
    (0..n)
        .map(|i| Metrics::mean(&per_run.iter().map(|r| r[i]).collect::<Vec<_>>()))
        .collect()
}
