//! Circuits: which component talks to which, found by patching edges.
//!
//! A layer above `patching/` (it reuses the sweep machinery's prompt
//! preparation, unpatched runs and metric registry) and below `session/`.
//!
//! - `graph`: senders, receivers and edges of a model's residual stream;
//! - `runs`: the unpatched runs and every sender's output in them;
//! - `exact`: exact edge patching, one batched row per edge (the reference);
//! - `patched`: runs with any set of edges patched (circuits, faithfulness);
//! - `eap`: EAP and EAP-IG estimates from one forward pass; `seeds`: each
//!   metric's gradient seed and which backward passes serve which metrics;
//! - `path`: path patching (the IOI paper's two-step procedure);
//! - `positions`: position-aware edges (an edge at one token position);
//! - `atp`: AtP* (QK fix, GradDrop); `scoring`: the estimates averaged over runs;
//! - `units`: the scoring stage as canonical units, split into shards;
//!   `part`, `merge`: circuit part files and the checks of a set of them;
//! - `finish`: ranking, exact checks and the faithfulness curve from scores;
//! - `circuit`: scoring every edge with a method, top-k circuits and the
//!   faithfulness curve;
//! - `progress`: stage-by-stage progress reports and cancelling;
//! - `single`: the exact change of one named edge (the workbench's drill-down);
//! - `layered`, `svg`: columns-by-layer layout of the top edges and its SVG
//!   drawing (`--format svg`; the workbench draws the same layout as text).
//!
//! Every method yields, per edge and per registry metric, the change of the
//! metric when that edge alone is patched from the source run into the
//! base run (denoising: clean into corrupted; noising: corrupted into clean).

pub mod atp;
pub mod circuit;
pub mod eap;
pub mod exact;
pub mod finish;
mod grads;
pub mod graph;
pub mod layered;
pub mod merge;
pub mod output;
pub mod part;
pub mod patched;
pub mod path;
pub mod positions;
pub mod progress;
pub mod runs;
pub mod scoring;
mod seeds;
pub mod single;
pub mod sparse;
pub mod svg;
pub mod units;

pub use circuit::{
    run_circuit, run_circuit_watched, CircuitOptions, CircuitResult, EdgeScore, Method,
};
pub use graph::{Graph, ReceiverId, SenderId};
pub use path::{LnMode, PathOptions, PathQuery};
pub use progress::{CircuitProgress, Stage, Watch};

use crate::patching::SweepError;

/// What can go wrong finding a circuit.
#[derive(Debug, thiserror::Error)]
pub enum CircuitError {
    #[error(transparent)]
    Sweep(#[from] SweepError),
    #[error("{0}")]
    Invalid(String),
    #[error("circuit search cancelled")]
    Cancelled,
    #[error("tensor operation failed while finding the circuit: {0}")]
    Candle(#[from] candle_core::Error),
}
