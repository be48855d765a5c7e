//! The model thread: it owns the loaded model and runs the requests that
//! need it (loading, estimates, sweeps, drill-downs), one at a time, each
//! inside the job boundary of `guard` so that a panic fails that job alone.
//! `worker` starts it (and restarts it should it die) and queues requests.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::analysis;
use crate::model::device::{device_name, parse_device};
use crate::model::loaded::LoadOptions;
use crate::model::WeightsMode;
use crate::model::{LoadedModel, Tokenizer};
use crate::patching::output::TokenList;
use crate::patching::part::Shard;
use crate::patching::plan::{plan, plan_labeled};
use crate::patching::sharded::PartControl;
use crate::patching::{
    prepare_each, prepare_pairs, run_sweep_with, EngineOptions, PreparedPair, SweepError,
};
use crate::session::time::rfc3339;

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
    cancel: Arc<AtomicBool>,
    cancelled_upto: Arc<AtomicU64>,
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
                exact,
            } => {
                let result = self
                    .edge_drill(&input, &spec, &sender, &receiver, exact)
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

    fn sweep(
        &mut self,
        job: JobId,
        input: &PairsInput,
        spec: &crate::patching::SweepSpec,
        checkpoint: Option<&SweepCheckpoint>,
    ) {
        let fail = |error: String, cancelled| WorkerMsg::SweepFailed {
            job,
            error,
            cancelled,
        };
        if job <= self.cancelled_upto.load(Ordering::SeqCst) {
            (self.sink)(fail("sweep cancelled".into(), true));
            return;
        }
        self.cancel.store(false, Ordering::SeqCst);
        let (m, pairs) = match self.prepared(input) {
            Ok(x) => x,
            Err(e) => return (self.sink)(fail(e, false)),
        };
        let labels = match super::dataset_state::align_labels(input, &pairs) {
            Ok(l) => l,
            Err(e) => return (self.sink)(fail(e, false)),
        };
        let p0 = &pairs[0];
        let tokens = |ids: &[u32]| TokenList {
            ids: ids.to_vec(),
            strings: m.tokenizer.token_strs(ids),
        };
        let layout = match &labels {
            Some(l) => plan_labeled(m.config(), p0.n_pos(), spec, &l.spans[0]),
            None => plan(m.config(), p0.n_pos(), spec),
        };
        let positional = layout.axes.iter().any(|a| a == "pos" || a == "dest_pos");
        let position_labels = match &labels {
            Some(l) if positional => l.names.clone(),
            _ => vec![],
        };
        (self.sink)(WorkerMsg::SweepStarted {
            job,
            start: Box::new(SweepStart {
                axes: layout.axes.clone(),
                shape: layout.shape.clone(),
                components: layout.components.clone(),
                clean_tokens: tokens(&p0.clean),
                corrupted_tokens: tokens(&p0.corrupted),
                answer: m.tokenizer.token_str(p0.answer),
                answer_id: p0.answer,
                wrong: m.tokenizer.token_str(p0.wrong),
                wrong_id: p0.wrong,
                fingerprint: m.fingerprint.clone(),
                position_labels,
            }),
        });
        let sink = self.sink.clone();
        let (cancel, upto) = (self.cancel.clone(), self.cancelled_upto.clone());
        let mut last_sent = Instant::now();
        let mut on_progress = |p: &crate::patching::Progress| {
            if upto.load(Ordering::SeqCst) >= job {
                cancel.store(true, Ordering::SeqCst);
            }
            // Throttle bare progress; cells that finished always go out.
            if p.finished.is_empty() && last_sent.elapsed() < Duration::from_millis(40) {
                return;
            }
            last_sent = Instant::now();
            // Normalised here with the progress baselines, as `assemble`
            // does for the final result, so a partial heatmap of any
            // corruption shows the normalised logit difference;
            // normalising is idempotent, so this stays right if the engine
            // starts filling it in itself.
            let b = &p.baselines;
            let finished = p
                .finished
                .iter()
                .map(|&(c, mut m)| {
                    m.normalize(&b.clean, &b.corrupted);
                    (c, m)
                })
                .collect();
            sink(WorkerMsg::SweepProgress {
                job,
                done: p.done,
                total: p.total,
                elapsed: p.elapsed,
                eta: p.eta,
                finished,
                baselines: p.baselines,
            });
        };
        let opts = EngineOptions::default();
        // Finished batches go to the checkpoint (a killed workbench loses
        // only the batch in flight); it is deleted once the sweep is done,
        // kept when it is cancelled or fails, to be resumed.
        if let Some(c) = checkpoint.filter(|c| !c.resume) {
            if let Err(e) = std::fs::remove_file(&c.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    let what =
                        format!("cannot delete the old checkpoint {}: {e}", c.path.display());
                    return (self.sink)(fail(what, false));
                }
            }
        }
        let one = Shard { k: 1, n: 1 };
        let path = checkpoint.map(|c| c.path.clone());
        let mut control =
            PartControl::new(m, &pairs, spec, &opts, one, path).with_labels(labels.as_ref());
        let outcome = run_sweep_with(
            &m.model,
            &pairs,
            labels.as_ref(),
            spec,
            &opts,
            &mut control,
            Some(&self.cancel),
            &mut on_progress,
        )
        .and_then(|result| control.finish().map(|()| result));
        match outcome {
            Ok(result) => (self.sink)(WorkerMsg::SweepDone {
                job,
                result: Box::new(result),
                computed_at: rfc3339(SystemTime::now()),
            }),
            Err(SweepError::Cancelled) => (self.sink)(fail("sweep cancelled".into(), true)),
            Err(e) => (self.sink)(fail(e.to_string(), false)),
        }
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
