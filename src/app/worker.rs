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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, SendError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::guard::Faults;
use super::messages::*;
use super::model_thread::{ModelThread, TokRequest};
use super::tokenize::tokenizer_thread;

pub use super::messages::Sink;

/// What a model thread needs, kept so that a new one can be started.
#[derive(Clone)]
struct Shared {
    sink: Sink,
    tok_tx: Sender<TokRequest>,
    cancel: Arc<AtomicBool>,
    cancelled_upto: Arc<AtomicU64>,
    /// Circuit searches up to this job are cancelled (apart from sweeps':
    /// cancelling one kind must not stop the other).
    circuits_cancelled_upto: Arc<AtomicU64>,
    /// Baselines jobs up to this one are cancelled.
    baselines_cancelled_upto: Arc<AtomicU64>,
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

/// Tells the UI when the model thread dies of a panic outside the job
/// boundary. (The tokenizer thread restarts itself: see `tokenize`.)
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
    let mut model_thread = ModelThread::new(
        shared.sink.clone(),
        shared.tok_tx.clone(),
        shared.cancel.clone(),
        shared.cancelled_upto.clone(),
        shared.faults.clone(),
    )
    .with_circuit_cancel(shared.circuits_cancelled_upto.clone())
    .with_baselines_cancel(shared.baselines_cancelled_upto.clone());
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
            circuits_cancelled_upto: Arc::new(AtomicU64::new(0)),
            baselines_cancelled_upto: Arc::new(AtomicU64::new(0)),
            faults,
        };
        let model = spawn_model_thread(&shared);
        let tok_faults = shared.faults.clone();
        let tok_thread = std::thread::Builder::new()
            .name("patchbench-tokenize".into())
            .spawn(move || tokenizer_thread(tok_rx, sink, tok_faults))
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

    /// Cancels circuit search `job` (and any earlier one), running or queued.
    pub fn cancel_circuit(&self, job: JobId) {
        self.shared
            .circuits_cancelled_upto
            .fetch_max(job, Ordering::SeqCst);
    }

    /// Cancels baselines job `job` (and any earlier one), running or queued.
    pub fn cancel_baselines(&self, job: JobId) {
        self.shared
            .baselines_cancelled_upto
            .fetch_max(job, Ordering::SeqCst);
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
        self.shared
            .circuits_cancelled_upto
            .store(u64::MAX, Ordering::SeqCst);
        self.shared
            .baselines_cancelled_upto
            .store(u64::MAX, Ordering::SeqCst);
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
