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
use std::sync::mpsc::{channel, Receiver, SendError, Sender};
use std::sync::{Arc, Mutex};
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

use super::guard::{describe, guarded, Faults};
use super::messages::*;
use super::tokenize::tokenize_pairs;

/// Where worker messages go (the UI loop's channel).
pub type Sink = Arc<dyn Fn(WorkerMsg) + Send + Sync>;

enum TokRequest {
    SetTokenizer(Arc<Tokenizer>),
    Tokenize { job: JobId, input: PairsInput },
}

/// What a model thread needs, kept so that a new one can be started.
#[derive(Clone)]
struct Shared {
    sink: Sink,
    tok_tx: Sender<TokRequest>,
    cancel: Arc<AtomicBool>,
    cancelled_upto: Arc<AtomicU64>,
    faults: Faults,
}

/// The running model thread.
struct ModelHandle {
    tx: Sender<Request>,
    thread: JoinHandle<()>,
}

/// Handle to the worker threads; dropping it stops them.
pub struct Worker {
    shared: Shared,
    model: Mutex<Option<ModelHandle>>,
    /// The last model asked for, reloaded when the model thread restarts.
    last_load: Mutex<Option<LoadSpec>>,
    tok_tx: Option<Sender<TokRequest>>,
    tok_thread: Option<JoinHandle<()>>,
}

/// Tells the UI when a thread dies of a panic outside the job boundary.
struct Sentinel(Sink, &'static str);

impl Drop for Sentinel {
    fn drop(&mut self) {
        if std::thread::panicking() {
            (self.0)(WorkerMsg::WorkerFailed {
                error: format!(
                    "the {} thread stopped after an internal error (a bug in patchbench); \
                     it restarts with the next request and the session is intact",
                    self.1
                ),
                thread_stopped: true,
            });
        }
    }
}

fn spawn_model_thread(shared: &Shared) -> ModelHandle {
    let (tx, rx) = channel();
    let mut model_thread = ModelThread {
        sink: shared.sink.clone(),
        tok_tx: shared.tok_tx.clone(),
        model: None,
        timings: HashMap::new(),
        cancel: shared.cancel.clone(),
        cancelled_upto: shared.cancelled_upto.clone(),
        faults: shared.faults.clone(),
    };
    let sentinel = Sentinel(shared.sink.clone(), "model");
    let thread = std::thread::Builder::new()
        .name("patchbench-model".into())
        .spawn(move || {
            let _sentinel = sentinel;
            lower_priority();
            model_thread.run(rx)
        })
        .expect("spawning the model thread");
    ModelHandle { tx, thread }
}

impl Worker {
    pub fn spawn(sink: Sink) -> Worker {
        Worker::spawn_with_faults(sink, Faults::default())
    }

    /// A worker whose model thread runs the test hooks in `faults`.
    pub fn spawn_with_faults(sink: Sink, faults: Faults) -> Worker {
        let (tok_tx, tok_rx) = channel();
        let shared = Shared {
            sink: sink.clone(),
            tok_tx: tok_tx.clone(),
            cancel: Arc::new(AtomicBool::new(false)),
            cancelled_upto: Arc::new(AtomicU64::new(0)),
            faults,
        };
        let model = spawn_model_thread(&shared);
        let sentinel = Sentinel(sink.clone(), "tokenizer");
        let tok_thread = std::thread::Builder::new()
            .name("patchbench-tokenize".into())
            .spawn(move || {
                let _sentinel = sentinel;
                tokenizer_thread(tok_rx, sink)
            })
            .expect("spawning the tokenizer thread");
        Worker {
            shared,
            model: Mutex::new(Some(model)),
            last_load: Mutex::new(None),
            tok_tx: Some(tok_tx),
            tok_thread: Some(tok_thread),
        }
    }

    pub fn send(&self, r: Request) {
        if let Request::Tokenize { job, input } = r {
            if let Some(t) = &self.tok_tx {
                let _ = t.send(TokRequest::Tokenize { job, input });
            }
            return;
        }
        let mut last_load = lock(&self.last_load);
        if let Request::Load(spec) = &r {
            *last_load = Some(spec.clone());
        }
        let mut model = lock(&self.model);
        let Some(h) = model.as_mut() else { return };
        // A model thread that died (a panic outside the job boundary,
        // already reported by its sentinel) is replaced, and the model it
        // had is loaded again before the request.
        let r = if h.thread.is_finished() {
            r
        } else {
            match h.tx.send(r) {
                Ok(()) => return,
                Err(SendError(r)) => r,
            }
        };
        *h = spawn_model_thread(&self.shared);
        if !matches!(r, Request::Load(_)) {
            if let Some(spec) = last_load.clone() {
                let _ = h.tx.send(Request::Load(spec));
            }
        }
        let _ = h.tx.send(r);
    }

    /// Cancels sweep `job` (and any earlier one), running or queued.
    pub fn cancel(&self, job: JobId) {
        self.shared.cancelled_upto.fetch_max(job, Ordering::SeqCst);
        self.shared.cancel.store(true, Ordering::SeqCst);
    }
}

/// A mutex's value, also after a panic elsewhere poisoned it (the values
/// kept here stay valid whatever panicked).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.cancel.store(true, Ordering::SeqCst);
        self.shared.cancelled_upto.store(u64::MAX, Ordering::SeqCst);
        let model = lock(&self.model).take();
        self.tok_tx.take();
        let mut threads: Vec<JoinHandle<()>> = self.tok_thread.take().into_iter().collect();
        if let Some(ModelHandle { tx, thread }) = model {
            drop(tx);
            threads.push(thread);
        }
        // A forward pass in progress finishes first; don't hang quitting on it.
        let deadline = Instant::now() + Duration::from_millis(500);
        for t in threads {
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
            match guarded("tokenising the prompts", || tokenize_pairs(t, &input)) {
                Ok(result) => sink(WorkerMsg::Tokenized { job, result }),
                Err(error) => {
                    let problems = vec![error.clone()];
                    let result = Tokenized {
                        problems,
                        ..Default::default()
                    };
                    sink(WorkerMsg::Tokenized { job, result });
                    sink(WorkerMsg::WorkerFailed {
                        error,
                        thread_stopped: false,
                    });
                }
            }
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
    }
}

impl ModelThread {
    fn run(&mut self, rx: Receiver<Request>) {
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
