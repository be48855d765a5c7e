//! The circuit pane's state: the session's circuits with their stored
//! results and staleness, the running search, the edge cursor and the
//! shown view. Kept apart from the transitions (`circuit.rs`) so that
//! `state` can hold it without importing the intents that act on it.

use std::time::Duration;

use crate::circuits::{EdgeScore, Method, Stage};
use crate::session::circuit::{CircuitSpec, StoredCircuit};
use crate::session::Staleness;

use super::messages::JobId;

/// A circuit of the session: its spec, its stored result, and whether
/// that result is stale.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitView {
    pub spec: CircuitSpec,
    pub stored: Option<StoredCircuit>,
    pub stale: Option<Staleness>,
}

/// A circuit search in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitRunning {
    pub job: JobId,
    /// Index into `CircuitState::views`.
    pub view: usize,
    /// `None` until the first progress message.
    pub stage: Option<Stage>,
    pub done: usize,
    pub total: usize,
    pub elapsed: Duration,
    pub cancelling: bool,
    /// Digest of the inputs when it started (`circuit_digest`).
    pub inputs: String,
}

/// What the pane shows when it is too narrow for everything at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CircuitTab {
    #[default]
    Edges,
    Graph,
    Curve,
}

impl CircuitTab {
    pub const ALL: [CircuitTab; 3] = [CircuitTab::Edges, CircuitTab::Graph, CircuitTab::Curve];

    pub fn name(self) -> &'static str {
        match self {
            CircuitTab::Edges => "edges",
            CircuitTab::Graph => "graph",
            CircuitTab::Curve => "faithfulness",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CircuitState {
    /// The main area shows the circuit pane instead of the heatmap.
    pub shown: bool,
    /// The method of the next search.
    pub method: Method,
    /// Whether the next search is position-aware.
    pub positions: bool,
    pub views: Vec<CircuitView>,
    pub selected: usize,
    pub running: Option<CircuitRunning>,
    /// The selected edge (rank, 0 = top).
    pub cursor: usize,
    pub tab: CircuitTab,
}

impl Default for CircuitState {
    fn default() -> Self {
        CircuitState {
            shown: false,
            method: Method::ALL[0],
            positions: false,
            views: Vec::new(),
            selected: 0,
            running: None,
            cursor: 0,
            tab: CircuitTab::default(),
        }
    }
}

impl CircuitState {
    pub fn view(&self) -> Option<&CircuitView> {
        self.views.get(self.selected)
    }

    /// The shown circuit's stored result.
    pub fn stored(&self) -> Option<&StoredCircuit> {
        self.view().and_then(|v| v.stored.as_ref())
    }

    /// The running search, if it is the shown circuit's.
    pub fn running_shown(&self) -> Option<&CircuitRunning> {
        self.running.as_ref().filter(|r| r.view == self.selected)
    }

    /// The edge under the cursor.
    pub fn edge(&self) -> Option<&EdgeScore> {
        self.stored().and_then(|c| c.result.edges.get(self.cursor))
    }
}

/// The layer and query head of a head node (`a3.h1`, `a3.h1<q>`; a KV
/// head `a3.kv1<k>` stands for the first query head of its group).
pub fn head_of(name: &str, n_heads: usize, n_kv_heads: usize) -> Option<(usize, usize)> {
    let name = name.split('<').next()?;
    let (l, h) = name.strip_prefix('a')?.split_once('.')?;
    let layer = l.parse().ok()?;
    if let Some(g) = h.strip_prefix("kv") {
        let group = n_heads / n_kv_heads.max(1);
        return Some((layer, g.parse::<usize>().ok()? * group.max(1)));
    }
    Some((layer, h.strip_prefix('h')?.parse().ok()?))
}

/// Whether an estimate is far from the exact value: of the other sign, or
/// off by more than half the larger magnitude. Small sharp models under
/// large perturbations are where linear estimates fail; the pane marks
/// such edges rather than hiding the disagreement.
pub fn far_from_exact(estimate: f32, exact: f32) -> bool {
    if !estimate.is_finite() || !exact.is_finite() {
        return false;
    }
    let scale = estimate.abs().max(exact.abs());
    if scale < 1e-6 {
        return false;
    }
    (estimate.signum() != exact.signum() && estimate.abs().min(exact.abs()) > 0.05 * scale)
        || (estimate - exact).abs() > 0.5 * scale
}
