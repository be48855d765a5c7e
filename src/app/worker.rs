//! The worker: one thread owns the model and runs everything that touches
//! it (loading, estimates, sweeps, drill-downs); a second, light thread
//! tokenises, so the prompt pane's live token rows keep up even while a
//! sweep holds the model thread.
//!
//! Requests are queued; before working, a thread drains its queue and keeps
//! only the newest request of each kind, so a new sweep supersedes a queued
//! one and a burst of keystrokes costs one tokenisation (gitui's
//! `AsyncSingleJob`). Replies carry the request's job id; the UI drops those
//! it no longer waits for. Cancelling a sweep sets a flag the engine checks
//! between batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::analysis::{self, ForwardTiming};
use crate::model::device::{device_name, parse_device, parse_dtype};
use crate::model::loaded::LoadOptions;
use crate::model::{LoadedModel, Tokenizer};
use crate::patching::output::TokenList;
use crate::patching::plan::plan;
use crate::patching::{prepare_pairs, run_sweep, EngineOptions, PreparedPair, SweepError};
use crate::session::time::rfc3339;

use super::messages::*;
use super::tokenize::tokenize_pairs;

/// Where worker messages go (the UI loop's channel).
pub type Sink = Arc<dyn Fn(WorkerMsg) + Send + Sync>;

enum TokRequest {
    SetTokenizer(Arc<Tokenizer>),
    Tokenize { job: JobId, input: PairsInput },
}

/// Handle to the worker threads; dropping it stops them.
pub struct Worker {
    tx: Option<Sender<Request>>,
    tok_tx: Option<Sender<TokRequest>>,
    cancel: Arc<AtomicBool>,
    cancelled_upto: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Worker {
    pub fn spawn(sink: Sink) -> Worker {
        let (tx, rx) = channel();
        let (tok_tx, tok_rx) = channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let cancelled_upto = Arc::new(AtomicU64::new(0));
        let mut model_thread = ModelThread {
            sink: sink.clone(),
            tok_tx: tok_tx.clone(),
            model: None,
            timings: HashMap::new(),
            cancel: cancel.clone(),
            cancelled_upto: cancelled_upto.clone(),
        };
        let t1 = std::thread::Builder::new()
            .name("patchbench-model".into())
            .spawn(move || {
                lower_priority();
                model_thread.run(rx)
            })
            .expect("spawning the model thread");
        let t2 = std::thread::Builder::new()
            .name("patchbench-tokenize".into())
            .spawn(move || tokenizer_thread(tok_rx, sink))
            .expect("spawning the tokenizer thread");
        Worker {
            tx: Some(tx),
            tok_tx: Some(tok_tx),
            cancel,
            cancelled_upto,
            threads: vec![t1, t2],
        }
    }

    pub fn send(&self, r: Request) {
        if let Request::Tokenize { job, input } = r {
            if let Some(t) = &self.tok_tx {
                let _ = t.send(TokRequest::Tokenize { job, input });
            }
        } else if let Some(t) = &self.tx {
            let _ = t.send(r);
        }
    }

    /// Cancels sweep `job` (and any earlier one), running or queued.
    pub fn cancel(&self, job: JobId) {
        self.cancelled_upto.fetch_max(job, Ordering::SeqCst);
        self.cancel.store(true, Ordering::SeqCst);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.cancelled_upto.store(u64::MAX, Ordering::SeqCst);
        self.tx.take();
        self.tok_tx.take();
        // A forward pass in progress finishes first; don't hang quitting on it.
        let deadline = Instant::now() + Duration::from_millis(500);
        for t in self.threads.drain(..) {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// Makes the model thread, and the compute pool it starts, yield the CPU to
/// the UI: the thread's nice value goes up by 10 (Linux keeps nice values
/// per thread, and threads inherit them), then the global rayon pool that
/// candle's matrix multiplies use is built from this thread. On a machine
/// with few cores the sweep then slows by little while every key is
/// answered within a frame. A pool that already exists is left alone.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its integer arguments; `who = 0` is the
    // calling thread on Linux.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
    let _ = rayon::ThreadPoolBuilder::new().build_global();
}

/// Keeps the newest request of each kind, in a fixed order: a load first
/// (it invalidates the rest), then cheap work before the sweep.
fn coalesce(queue: Vec<Request>) -> Vec<Request> {
    let mut load = None;
    let mut est = None;
    let mut drill = None;
    let mut sweep = None;
    for r in queue {
        match r {
            Request::Load(_) => load = Some(r),
            Request::Estimate { .. } => est = Some(r),
            Request::Drill { .. } => drill = Some(r),
            Request::Sweep { .. } => sweep = Some(r),
            Request::Tokenize { .. } => {}
        }
    }
    [load, est, drill, sweep].into_iter().flatten().collect()
}

fn tokenizer_thread(rx: Receiver<TokRequest>, sink: Sink) {
    let mut tok: Option<Arc<Tokenizer>> = None;
    while let Ok(first) = rx.recv() {
        let mut last = None;
        for r in std::iter::once(first).chain(rx.try_iter()) {
            match r {
                TokRequest::SetTokenizer(t) => tok = Some(t),
                TokRequest::Tokenize { job, input } => last = Some((job, input)),
            }
        }
        if let (Some(t), Some((job, input))) = (&tok, last) {
            sink(WorkerMsg::Tokenized {
                job,
                result: tokenize_pairs(t, &input),
            });
        }
    }
}

struct ModelThread {
    sink: Sink,
    tok_tx: Sender<TokRequest>,
    model: Option<LoadedModel>,
    /// Measured forward cost by prompt length.
    timings: HashMap<usize, ForwardTiming>,
    cancel: Arc<AtomicBool>,
    cancelled_upto: Arc<AtomicU64>,
}

impl ModelThread {
    fn run(&mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let queue: Vec<Request> = std::iter::once(first).chain(rx.try_iter()).collect();
            for r in coalesce(queue) {
                match r {
                    Request::Load(spec) => self.load(spec),
                    Request::Estimate { job, input, spec } => {
                        let result = self.estimate(&input, &spec);
                        (self.sink)(WorkerMsg::Estimated { job, result });
                    }
                    Request::Sweep { job, input, spec } => self.sweep(job, &input, &spec),
                    Request::Drill {
                        job,
                        input,
                        pair,
                        target,
                    } => {
                        let result = self.drill(&input, pair, target).map(Box::new);
                        (self.sink)(WorkerMsg::Drilled { job, result });
                    }
                    Request::Tokenize { .. } => {}
                }
            }
        }
    }

    fn load(&mut self, spec: LoadSpec) {
        (self.sink)(WorkerMsg::ModelLoading {
            source: spec.source.clone(),
        });
        self.model = None;
        self.timings.clear();
        let opts = match (parse_device(&spec.device), parse_dtype(&spec.dtype)) {
            (Ok(device), Ok(dtype)) => LoadOptions { device, dtype },
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

    fn prepared(&self, input: &PairsInput) -> Result<(&LoadedModel, Vec<PreparedPair>), String> {
        let m = self.model.as_ref().ok_or("no model is loaded")?;
        let pairs = prepare_pairs(&m.tokenizer, &input.pairs, input.prepend_bos)
            .map_err(|e| e.to_string())?;
        Ok((m, pairs))
    }

    fn estimate(
        &mut self,
        input: &PairsInput,
        spec: &crate::patching::SweepSpec,
    ) -> Result<analysis::Estimate, String> {
        let (m, pairs) = self.prepared(input)?;
        let n = pairs[0].n_pos();
        let timing = match self.timings.get(&n) {
            Some(t) => *t,
            None => analysis::estimate::measure_forward(&m.model, &pairs[0].clean)
                .map_err(|e| e.to_string())?,
        };
        let est = analysis::estimate::estimate(
            m.config(),
            &pairs,
            spec,
            &timing,
            &EngineOptions::default(),
        );
        self.timings.insert(n, timing);
        Ok(est)
    }

    fn sweep(&mut self, job: JobId, input: &PairsInput, spec: &crate::patching::SweepSpec) {
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
        let p0 = &pairs[0];
        let tokens = |ids: &[u32]| TokenList {
            ids: ids.to_vec(),
            strings: m.tokenizer.token_strs(ids),
        };
        let layout = plan(m.config(), p0.n_pos(), spec);
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
            let (clean, corrupted) = (
                p.baselines.clean.logit_diff,
                p.baselines.corrupted.logit_diff,
            );
            let finished = p
                .finished
                .iter()
                .map(|&(c, mut m)| {
                    m.normalize(clean, corrupted);
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
        match run_sweep(
            &m.model,
            &pairs,
            spec,
            &opts,
            Some(&self.cancel),
            &mut on_progress,
        ) {
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
        };
        r.map_err(|e| e.to_string())
    }
}
