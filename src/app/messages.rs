//! What crosses between the UI thread and the worker: requests in, messages
//! out. Plain data only (strings, `Vec<f32>`, small structs); the model and
//! its tensors never leave the worker.

use std::path::PathBuf;
use std::time::Duration;

use crate::analysis::{AttnDrill, Estimate, HeadDrill, LensDrill, MlpDrill};
use crate::circuits::Stage;
use crate::model::{HookPoint, ModelConfig};
use crate::patching::output::TokenList;
use crate::patching::result::Baselines;
use crate::patching::{Metrics, PromptPair, SweepResult, SweepSpec};
use crate::session::circuit::{CircuitSpec, StoredCircuit};

/// Where worker messages go (the UI loop's channel).
pub type Sink = std::sync::Arc<dyn Fn(WorkerMsg) + Send + Sync>;

/// Identifies one request, so replies to superseded requests can be dropped.
pub type JobId = u64;

/// How to load a model.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadSpec {
    pub source: String,
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    pub device: String,
    /// `f32`, `bf16`, `f16` or `quantized` (`--weights`).
    pub weights: String,
}

/// Prompt pairs as the user wrote them, with the BOS choice.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PairsInput {
    pub pairs: Vec<PromptPair>,
    pub prepend_bos: Option<bool>,
    /// Position labels of each pair (a labelled dataset's, one entry per
    /// pair), or empty: position-indexed sweeps then run over the labels,
    /// so pairs of different lengths line up by role.
    pub labels: Vec<crate::data::Labels>,
}

/// A request to the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Load(LoadSpec),
    Tokenize {
        job: JobId,
        input: PairsInput,
    },
    Estimate {
        job: JobId,
        input: PairsInput,
        spec: SweepSpec,
    },
    Sweep {
        job: JobId,
        input: PairsInput,
        spec: SweepSpec,
        /// Where the sweep keeps its checkpoint (beside the session file;
        /// `None` for a session not saved yet).
        checkpoint: Option<SweepCheckpoint>,
    },
    Drill {
        job: JobId,
        input: PairsInput,
        pair: usize,
        target: DrillTarget,
    },
    /// Find a circuit (`app::circuit`).
    Circuit {
        job: JobId,
        input: PairsInput,
        spec: CircuitSpec,
    },
    /// Every pair's clean and corrupted baselines (the dataset pane),
    /// with progress; answered by `BaselinesProgress` and `BaselinesDone`.
    Baselines {
        job: JobId,
        input: PairsInput,
    },
    /// One edge of a circuit: its exact change (when `exact`) and the
    /// patterns of the heads at its ends; answered by `Drilled`.
    EdgeDrill {
        job: JobId,
        input: PairsInput,
        spec: CircuitSpec,
        sender: String,
        receiver: String,
        /// A position-aware edge's token position.
        at: Option<usize>,
        exact: bool,
    },
}

impl Request {
    pub fn job(&self) -> Option<JobId> {
        match self {
            Request::Load(_) => None,
            Request::Tokenize { job, .. }
            | Request::Estimate { job, .. }
            | Request::Sweep { job, .. }
            | Request::Drill { job, .. }
            | Request::Circuit { job, .. }
            | Request::Baselines { job, .. }
            | Request::EdgeDrill { job, .. } => Some(*job),
        }
    }
}

/// An interrupted sweep found beside the session (`resume::find`); in
/// this module so that actions can carry it without importing `resume`.
#[derive(Debug, Clone, PartialEq)]
pub struct Interrupted {
    pub path: PathBuf,
    pub spec: SweepSpec,
    /// Finished batches the checkpoint holds (`None`: unknown, e.g. a
    /// sweep of this sitting that was cancelled).
    pub batches: Option<usize>,
}

/// A sweep's checkpoint file (`patching::checkpoint`, the CLI's format).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepCheckpoint {
    pub path: std::path::PathBuf,
    /// Continue from what the file holds; `false`: delete it and start over.
    pub resume: bool,
}

/// What a drill-down looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillTarget {
    Head {
        layer: usize,
        head: usize,
    },
    Mlp {
        layer: usize,
        pos: Option<usize>,
    },
    Attn {
        layer: usize,
        pos: Option<usize>,
    },
    /// The logit lens on a residual-stream-shaped hook at a position.
    Lens {
        hook: HookPoint,
        pos: usize,
    },
    /// The edge at `rank` of the shown circuit (`app::circuit`).
    Edge {
        rank: usize,
    },
}

impl DrillTarget {
    pub fn title(&self) -> String {
        match self {
            DrillTarget::Head { layer, head } => format!("head L{layer}H{head}"),
            DrillTarget::Mlp { layer, .. } => format!("MLP layer {layer}"),
            DrillTarget::Attn { layer, .. } => format!("attention layer {layer}"),
            DrillTarget::Lens { hook, pos } => format!("logit lens {hook} @ pos {pos}"),
            DrillTarget::Edge { rank } => format!("circuit edge #{}", rank + 1),
        }
    }
}

/// A finished drill-down.
#[derive(Debug, Clone, PartialEq)]
pub enum DrillData {
    Head(HeadDrill),
    Mlp(MlpDrill),
    Attn(AttnDrill),
    Lens(LensDrill),
    Edge(EdgeDrillData),
}

/// A finished edge drill-down.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeDrillData {
    /// Every metric's exact change when the edge alone is patched, if asked.
    pub exact: Option<crate::patching::Metrics>,
    /// The sender's and the receiver's head, where they are heads.
    pub heads: Vec<HeadDrill>,
}

/// About the loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    pub source: String,
    pub fingerprint: String,
    pub config: ModelConfig,
    pub load_ms: f64,
    pub device: String,
    pub adds_bos: bool,
    pub bos_token: Option<String>,
}

/// One pair, tokenised, with what is wrong with it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PairTokens {
    pub clean: Vec<String>,
    pub corrupted: Option<Vec<String>>,
    /// The answer's token, or why it is not one token.
    pub answer: Option<Result<String, String>>,
    pub wrong: Option<Result<String, String>>,
    /// Problems that block a sweep (length mismatch, same answers, ...).
    pub problems: Vec<String>,
}

/// Every pair tokenised.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tokenized {
    pub pairs: Vec<PairTokens>,
    /// Problems across pairs (different lengths).
    pub problems: Vec<String>,
}

/// The shape of a sweep, sent when it starts so the heatmap can fill in.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepStart {
    pub axes: Vec<String>,
    pub shape: Vec<usize>,
    pub components: Vec<String>,
    pub clean_tokens: TokenList,
    pub corrupted_tokens: TokenList,
    pub answer: String,
    pub answer_id: u32,
    pub wrong: String,
    pub wrong_id: u32,
    pub fingerprint: String,
    /// The labels the position axis runs over (a labelled dataset), or empty.
    pub position_labels: Vec<String>,
}

/// A message from the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerMsg {
    ModelLoading {
        source: String,
    },
    ModelLoaded(Box<ModelInfo>),
    ModelFailed {
        source: String,
        error: String,
    },
    Tokenized {
        job: JobId,
        result: Tokenized,
    },
    Estimated {
        job: JobId,
        result: Result<Estimate, String>,
    },
    SweepStarted {
        job: JobId,
        start: Box<SweepStart>,
    },
    SweepProgress {
        job: JobId,
        done: usize,
        total: usize,
        elapsed: Duration,
        eta: Option<Duration>,
        /// Cells now final: every metric averaged over prompt pairs and
        /// noise samples, the logit difference normalised with `baselines`.
        finished: Vec<(usize, Metrics)>,
        /// The clean and corrupted baselines (means over pairs), for the
        /// normalisation and the colour scale's centre of a partial heatmap.
        baselines: Baselines,
    },
    SweepDone {
        job: JobId,
        result: Box<SweepResult>,
        /// RFC 3339 time of completion.
        computed_at: String,
    },
    SweepFailed {
        job: JobId,
        error: String,
        cancelled: bool,
    },
    Drilled {
        job: JobId,
        result: Result<Box<DrillData>, String>,
    },
    CircuitProgress {
        job: JobId,
        stage: Stage,
        done: usize,
        total: usize,
        elapsed: Duration,
    },
    CircuitDone {
        job: JobId,
        result: Box<StoredCircuit>,
    },
    CircuitFailed {
        job: JobId,
        error: String,
        cancelled: bool,
    },
    /// Baselines of some pairs: `(pair, its baselines or why it cannot run)`.
    BaselinesProgress {
        job: JobId,
        done: usize,
        total: usize,
        values: Vec<(usize, Result<Baselines, String>)>,
    },
    /// The baselines job ended (`error`: it could not run at all).
    BaselinesDone {
        job: JobId,
        cancelled: bool,
        error: Option<String>,
    },

    /// A job panicked (a bug): its own failure reply has been sent; this
    /// carries the message for a popup. `thread_stopped`: the panic was
    /// outside the job boundary and took the thread with it, so every job
    /// in flight is lost; the worker restarts with the next request.
    WorkerFailed {
        error: String,
        thread_stopped: bool,
    },
}
