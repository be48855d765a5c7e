//! The model thread: it owns the loaded model and runs the requests that
//! need it (loading, estimates, sweeps, drill-downs), one at a time, each
//! inside the job boundary of `guard` so that a panic fails that job alone.
//! `worker` starts it (and restarts it should it die) and queues requests.
//! The long jobs live beside it: `sweep_job`, `circuit_job`, `baselines_job`.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use crate::analysis;
use crate::model::device::{device_name, parse_device};
use crate::model::loaded::LoadOptions;
use crate::model::WeightsMode;
use crate::model::{LoadedModel, Tokenizer};
use crate::patching::{prepare_each, prepare_pairs, EngineOptions, PreparedPair};

use super::guard::{describe, guarded, Faults};
use super::messages::*;

/// Keeps the newest request of each kind, in a fixed order: a load first
/// (it invalidates the rest), then cheap work before the sweep.
fn coalesce(queue: Vec<Request>) -> Vec<Request> {
    let mut load = None;
    let mut est = None;
    let mut drill = None;
    let mut sweep = None;
    let mut circuit = None;
    let mut baselines = None;
    for r in queue {
        match r {
            Request::Load(_) => load = Some(r),
            Request::Estimate { .. } => est = Some(r),
            Request::Drill { .. } => drill = Some(r),
            Request::Sweep { .. } => sweep = Some(r),
            Request::Circuit { .. } => circuit = Some(r),
            Request::Baselines { .. } => baselines = Some(r),
            // One drill-down is open at a time: an edge's replaces a cell's.
            Request::EdgeDrill { .. } => drill = Some(r),
            Request::Tokenize { .. } => {}
        }
    }
    [load, est, drill, baselines, sweep, circuit]
        .into_iter()
        .flatten()
        .collect()
}

/// A request to the tokenizer thread (`tokenize::tokenizer_thread`).
pub(crate) enum TokRequest {
    SetTokenizer(Arc<Tokenizer>),
    Tokenize { job: JobId, input: PairsInput },
}

pub(crate) struct ModelThread {
    pub(super) sink: Sink,
    tok_tx: Sender<TokRequest>,
    pub(super) model: Option<LoadedModel>,
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) cancelled_upto: Arc<AtomicU64>,
    pub(super) circuits_cancelled_upto: Arc<AtomicU64>,
    pub(super) baselines_cancelled_upto: Arc<AtomicU64>,
    faults: Faults,
}

/// The reply that ends request `r` with an error, as an ordinary failure
/// of its kind would, so the UI's state moves on (a sweep stops running,
/// an estimate or a drill-down shows the error).
fn failure_reply(r: &Request) -> Box<dyn FnOnce(String) -> WorkerMsg> {
    match r {
        Request::Load(spec) => {
            let source = spec.source.clone();
            Box::new(move |error| WorkerMsg::ModelFailed { source, error })
        }
        &Request::Tokenize { job, .. } => Box::new(move |error| WorkerMsg::Tokenized {
            job,
            result: Tokenized {
                problems: vec![error],
                ..Default::default()
            },
        }),
        &Request::Estimate { job, .. } => Box::new(move |error| WorkerMsg::Estimated {
            job,
            result: Err(error),
        }),
        &Request::Sweep { job, .. } => Box::new(move |error| WorkerMsg::SweepFailed {
            job,
            error,
            cancelled: false,
        }),
        &Request::Drill { job, .. } => Box::new(move |error| WorkerMsg::Drilled {
            job,
            result: Err(error),
        }),
        &Request::Circuit { job, .. } => Box::new(move |error| WorkerMsg::CircuitFailed {
            job,
            error,
            cancelled: false,
        }),
        &Request::EdgeDrill { job, .. } => Box::new(move |error| WorkerMsg::Drilled {
            job,
            result: Err(error),
        }),
        &Request::Baselines { job, .. } => Box::new(move |error| WorkerMsg::BaselinesDone {
            job,
            cancelled: false,
            error: Some(error),
        }),
    }
}

impl ModelThread {
    pub(crate) fn new(
        sink: Sink,
        tok_tx: Sender<TokRequest>,
        cancel: Arc<AtomicBool>,
        cancelled_upto: Arc<AtomicU64>,
        faults: Faults,
    ) -> Self {
        ModelThread {
            sink,
            tok_tx,
            model: None,
            cancel,
            cancelled_upto,
            circuits_cancelled_upto: Arc::new(AtomicU64::new(0)),
            baselines_cancelled_upto: Arc::new(AtomicU64::new(0)),
            faults,
        }
    }

    /// Where circuit searches learn that they are cancelled.
    pub(crate) fn with_circuit_cancel(mut self, upto: Arc<AtomicU64>) -> Self {
        self.circuits_cancelled_upto = upto;
        self
    }

    /// Where baselines jobs learn that they are cancelled.
    pub(crate) fn with_baselines_cancel(mut self, upto: Arc<AtomicU64>) -> Self {
        self.baselines_cancelled_upto = upto;
        self
    }

    pub(crate) fn run(&mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let queue: Vec<Request> = std::iter::once(first).chain(rx.try_iter()).collect();
            for r in coalesce(queue) {
                if let Some(f) = &self.faults.outside_job {
                    f(&r);
                }
                let what = describe(&r);
                let failed = failure_reply(&r);
                let in_job = self.faults.in_job.clone();
                let outcome = guarded(&what, || {
                    if let Some(f) = in_job {
                        f(&r);
                    }
                    self.handle(r)
                });
                if let Err(error) = outcome {
                    (self.sink)(failed(error.clone()));
                    (self.sink)(WorkerMsg::WorkerFailed {
                        error,
                        thread_stopped: false,
                    });
                }
            }
        }
    }

    fn handle(&mut self, r: Request) {
        match r {
            Request::Load(spec) => self.load(spec),
            Request::Estimate { job, input, spec } => {
                let result = self.estimate(&input, &spec);
                (self.sink)(WorkerMsg::Estimated { job, result });
            }
            Request::Sweep {
                job,
                input,
                spec,
                checkpoint,
            } => self.sweep(job, &input, &spec, checkpoint.as_ref()),
            Request::Drill {
                job,
                input,
                pair,
                target,
            } => {
                let result = self.drill(&input, pair, target).map(Box::new);
                (self.sink)(WorkerMsg::Drilled { job, result });
            }
            Request::Circuit { job, input, spec } => self.circuit(job, &input, &spec),
            Request::Baselines { job, input } => self.baselines(job, &input),
            Request::EdgeDrill {
                job,
                input,
                spec,
                sender,
                receiver,
                at,
                exact,
            } => {
                let result = self
                    .edge_drill(&input, &spec, (&sender, &receiver, at), exact)
                    .map(|d| Box::new(DrillData::Edge(d)));
                (self.sink)(WorkerMsg::Drilled { job, result });
            }
            Request::Tokenize { .. } => {}
        }
    }

    fn load(&mut self, spec: LoadSpec) {
        (self.sink)(WorkerMsg::ModelLoading {
            source: spec.source.clone(),
        });
        self.model = None;
        let opts = match (
            parse_device(&spec.device),
            spec.weights.parse::<WeightsMode>(),
        ) {
            (Ok(device), Ok(weights)) => LoadOptions { device, weights },
            (Err(e), _) | (_, Err(e)) => {
                (self.sink)(WorkerMsg::ModelFailed {
                    source: spec.source,
                    error: format!("{e:#}"),
                });
                return;
            }
        };
        match LoadedModel::load(&spec.source, &opts) {
            Ok(m) => {
                let info = ModelInfo {
                    source: m.source.clone(),
                    fingerprint: m.fingerprint.clone(),
                    config: m.config().clone(),
                    load_ms: m.load_ms,
                    device: device_name(m.model.device()),
                    adds_bos: m.tokenizer.adds_bos_by_default(),
                    bos_token: m.tokenizer.bos_token_id().map(|b| m.tokenizer.token_str(b)),
                };
                let _ = self
                    .tok_tx
                    .send(TokRequest::SetTokenizer(Arc::new(m.tokenizer.clone())));
                self.model = Some(m);
                (self.sink)(WorkerMsg::ModelLoaded(Box::new(info)));
            }
            Err(e) => (self.sink)(WorkerMsg::ModelFailed {
                source: spec.source,
                error: e.to_string(),
            }),
        }
    }

    pub(super) fn prepared(
        &self,
        input: &PairsInput,
    ) -> Result<(&LoadedModel, Vec<PreparedPair>), String> {
        let m = self.model.as_ref().ok_or("no model is loaded")?;
        // Labelled pairs line up by label, so their lengths may differ.
        let pairs = if input.labels.is_empty() {
            prepare_pairs(&m.tokenizer, &input.pairs, input.prepend_bos)
        } else {
            prepare_each(&m.tokenizer, &input.pairs, input.prepend_bos)
        }
        .map_err(|e| e.to_string())?;
        Ok((m, pairs))
    }

    fn estimate(
        &mut self,
        input: &PairsInput,
        spec: &crate::patching::SweepSpec,
    ) -> Result<analysis::Estimate, String> {
        let (m, mut pairs) = self.prepared(input)?;
        if !input.labels.is_empty() {
            // Pairs aligned by label may differ in length; the estimate
            // prices each as the first (by its positions, an upper bound).
            pairs = vec![pairs[0].clone(); pairs.len()];
        }
        // Calibrated on the batch shapes this sweep will run.
        analysis::estimate::measure(&m.model, &pairs, spec, &EngineOptions::default())
            .map_err(|e| e.to_string())
    }

    fn drill(
        &self,
        input: &PairsInput,
        pair: usize,
        target: DrillTarget,
    ) -> Result<DrillData, String> {
        let (m, pairs) = self.prepared(input)?;
        let p = pairs.get(pair).or(pairs.first()).ok_or("no prompt pairs")?;
        let r = match target {
            DrillTarget::Head { layer, head } => {
                analysis::head::head(m, p, layer, head).map(DrillData::Head)
            }
            DrillTarget::Mlp { layer, .. } => analysis::mlp::mlp(m, p, layer).map(DrillData::Mlp),
            DrillTarget::Attn { layer, .. } => {
                analysis::mlp::attn_layer(m, p, layer).map(DrillData::Attn)
            }
            DrillTarget::Lens { hook, pos } => {
                analysis::lens::logit_lens(m, p, hook, pos).map(DrillData::Lens)
            }
            DrillTarget::Edge { .. } => {
                return Err("an edge drill-down comes with its circuit's edge".into())
            }
        };
        r.map_err(|e| e.to_string())
    }
}
