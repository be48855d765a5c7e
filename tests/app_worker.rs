//! The worker's job boundary: a panic in a job (injected through
//! `Faults`) is reported as that job's failure plus a `WorkerFailed`
//! message, the model stays loaded, and the next job succeeds; a panic
//! that takes the model thread down is reported and the thread restarts,
//! reloading the model, with the next request; a panic that takes the
//! tokenizer thread down is reported, its lost job answered, and the thread
//! restarts by itself so token rows keep updating. Then the UI side: `update`
//! shows the message in a popup, escaped, and keeps the session.

mod app_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

use app_support::*;
use patchbench::app::guard::Faults;
use patchbench::app::messages::{LoadSpec, PairsInput, Request, WorkerMsg};
use patchbench::app::state::{Level, ModelState, Popup};
use patchbench::app::worker::Worker;
use patchbench::app::{Action, Command};
use patchbench::patching::{SweepSpec, Target};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gpt2-tiny");

fn load() -> Request {
    Request::Load(LoadSpec {
        source: FIXTURE.into(),
        device: "cpu".into(),
        weights: "f32".into(),
    })
}

fn sweep(job: u64) -> Request {
    Request::Sweep {
        job,
        input: PairsInput {
            pairs: vec![patchbench::app::example_pair(FIXTURE)],
            prepend_bos: None,
            labels: vec![],
        },
        spec: SweepSpec::new(Target::ResidPre),
        checkpoint: None,
    }
}

/// A hook that panics on the first sweep request only.
fn panic_on_first_sweep() -> Arc<dyn Fn(&Request) + Send + Sync> {
    let seen = Arc::new(AtomicUsize::new(0));
    Arc::new(move |r: &Request| {
        if matches!(r, Request::Sweep { .. }) && seen.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("injected failure \u{1b}[2J in the sweep");
        }
    })
}

fn spawn(faults: Faults) -> (Worker, Receiver<WorkerMsg>) {
    let (tx, rx) = channel();
    let w = Worker::spawn_with_faults(
        Arc::new(move |m| {
            let _ = tx.send(m);
        }),
        faults,
    );
    (w, rx)
}

fn next(rx: &Receiver<WorkerMsg>) -> WorkerMsg {
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the worker answers")
}

fn wait_loaded(rx: &Receiver<WorkerMsg>) {
    loop {
        match next(rx) {
            WorkerMsg::ModelLoaded(_) => return,
            WorkerMsg::ModelFailed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
}

/// Waits for sweep `job` to end: `Ok(cells)` or `Err(error)`.
fn sweep_outcome(rx: &Receiver<WorkerMsg>, job: u64) -> Result<usize, String> {
    loop {
        match next(rx) {
            WorkerMsg::SweepDone { job: j, result, .. } if j == job => return Ok(result.n_cells()),
            WorkerMsg::SweepFailed { job: j, error, .. } if j == job => return Err(error),
            _ => {}
        }
    }
}

#[test]
fn a_panicking_job_fails_alone_and_the_next_job_succeeds() {
    let (w, rx) = spawn(Faults {
        in_job: Some(panic_on_first_sweep()),
        outside_job: None,
    });
    w.send(load());
    wait_loaded(&rx);
    w.send(sweep(1));
    let error = sweep_outcome(&rx, 1).expect_err("the injected panic fails the sweep");
    assert!(
        error.contains("internal error while running the resid_pre sweep"),
        "{error}"
    );
    assert!(
        error.contains("injected failure \\e[2J"),
        "escaped: {error}"
    );
    match next(&rx) {
        WorkerMsg::WorkerFailed {
            error: e,
            thread_stopped: false,
        } => assert_eq!(e, error),
        other => panic!("expected WorkerFailed, got {other:?}"),
    }
    // Same thread, same model: no reload, and the next sweep runs.
    w.send(sweep(2));
    let cells = sweep_outcome(&rx, 2).expect("the next sweep succeeds");
    assert!(cells > 0);
}

#[test]
fn a_dead_model_thread_is_restarted_with_the_model_reloaded() {
    let (w, rx) = spawn(Faults {
        in_job: None,
        outside_job: Some(panic_on_first_sweep()),
    });
    w.send(load());
    wait_loaded(&rx);
    w.send(sweep(1));
    // The thread died taking sweep 1 with it: its sentinel says so.
    loop {
        match next(&rx) {
            WorkerMsg::WorkerFailed {
                error,
                thread_stopped: true,
            } => {
                assert!(error.contains("model thread stopped"), "{error}");
                break;
            }
            WorkerMsg::SweepDone { .. } => panic!("the injected panic did not happen"),
            _ => {}
        }
    }
    // The next request restarts the thread, reloads the model, and runs.
    w.send(sweep(2));
    let mut reloaded = false;
    let cells = loop {
        match next(&rx) {
            WorkerMsg::ModelLoaded(_) => reloaded = true,
            WorkerMsg::SweepDone { job: 2, result, .. } => break result.n_cells(),
            WorkerMsg::SweepFailed { job: 2, error, .. } => panic!("{error}"),
            _ => {}
        }
    };
    assert!(reloaded, "the model is loaded again before the sweep");
    assert!(cells > 0);
}

/// A hook that panics on the first tokenisation request only.
fn panic_on_first_tokenize() -> Arc<dyn Fn(&Request) + Send + Sync> {
    let seen = Arc::new(AtomicUsize::new(0));
    Arc::new(move |r: &Request| {
        if matches!(r, Request::Tokenize { .. }) && seen.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("injected failure \u{1b}[2J in the tokenizer");
        }
    })
}

fn tokenize(job: u64) -> Request {
    Request::Tokenize {
        job,
        input: PairsInput {
            pairs: vec![patchbench::app::example_pair(FIXTURE)],
            prepend_bos: None,
            labels: vec![],
        },
    }
}

#[test]
fn a_dead_tokenizer_thread_is_reported_and_restarted() {
    let (w, rx) = spawn(Faults {
        in_job: None,
        outside_job: Some(panic_on_first_tokenize()),
    });
    w.send(load());
    wait_loaded(&rx);
    w.send(tokenize(1));
    // The job in flight is answered with the error, then the popup message
    // (not `thread_stopped`: the model thread and its jobs are untouched).
    let mut answered = false;
    let error = loop {
        match next(&rx) {
            WorkerMsg::Tokenized { job: 1, result } => {
                assert!(result.pairs.is_empty(), "{result:?}");
                assert!(
                    result.problems[0].contains("tokenizer thread stopped"),
                    "{result:?}"
                );
                answered = true;
            }
            WorkerMsg::WorkerFailed {
                error,
                thread_stopped: false,
            } => break error,
            other => panic!("expected the failure of job 1, got {other:?}"),
        }
    };
    assert!(
        answered,
        "the lost job is answered before the popup message"
    );
    assert!(error.contains("tokenizer thread stopped"), "{error}");
    assert!(
        error.contains("injected failure \\e[2J"),
        "escaped: {error}"
    );
    assert!(error.contains("has restarted"), "{error}");
    // The restarted thread kept the tokenizer and answers the next request.
    w.send(tokenize(2));
    match next(&rx) {
        WorkerMsg::Tokenized { job: 2, result } => {
            assert!(result.problems.is_empty(), "{result:?}");
            assert_eq!(result.pairs.len(), 1);
            assert!(!result.pairs[0].clean.is_empty());
        }
        other => panic!("expected job 2's tokens, got {other:?}"),
    }
    // And the model thread was never disturbed: a sweep runs without a reload.
    w.send(sweep(3));
    loop {
        match next(&rx) {
            WorkerMsg::ModelLoaded(_) => panic!("the model was reloaded"),
            WorkerMsg::SweepDone { job: 3, .. } => break,
            WorkerMsg::SweepFailed { job: 3, error, .. } => panic!("{error}"),
            _ => {}
        }
    }
}

#[test]
fn update_reports_a_failed_job_in_a_popup_and_keeps_the_session() {
    let mut s = ready();
    let cmds = key(&mut s, patchbench::app::Intent::RunSweep);
    let job = cmds
        .iter()
        .find_map(|c| match c {
            Command::Worker(Request::Sweep { job, .. }) => Some(*job),
            _ => None,
        })
        .expect("a sweep request");
    let pairs_before = s.prompts.to_pairs();
    let error = "internal error while running the resid_pre sweep: boom \\e[2J".to_string();
    worker(
        &mut s,
        WorkerMsg::SweepFailed {
            job,
            error: error.clone(),
            cancelled: false,
        },
    );
    let cmds = worker(
        &mut s,
        WorkerMsg::WorkerFailed {
            error: format!("{error}\u{1b}]0;title\u{7}"),
            thread_stopped: false,
        },
    );
    assert!(cmds.is_empty(), "{cmds:?}");
    assert!(s.running.is_none());
    assert_eq!(s.prompts.to_pairs(), pairs_before);
    assert!(matches!(s.model.state, ModelState::Ready(_)));
    assert_eq!(s.status.as_ref().unwrap().level, Level::Error);
    match &s.popup {
        Some(Popup::Message { title, text }) => {
            assert_eq!(title, "internal error");
            assert!(text.contains("boom"), "{text}");
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{7}'),
                "{text:?}"
            );
        }
        other => panic!("expected a message popup, got {other:?}"),
    }
    // A new sweep is accepted.
    act(&mut s, Action::Intent(patchbench::app::Intent::Back));
    let cmds = key(&mut s, patchbench::app::Intent::RunSweep);
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::Worker(Request::Sweep { .. }))));
}

#[test]
fn a_stopped_thread_ends_the_jobs_in_flight_and_reloads_the_model() {
    let mut s = ready();
    key(&mut s, patchbench::app::Intent::RunSweep);
    assert!(s.running.is_some());
    let cmds = worker(
        &mut s,
        WorkerMsg::WorkerFailed {
            error: "the model thread stopped".into(),
            thread_stopped: true,
        },
    );
    assert!(
        s.running.is_none(),
        "the lost sweep no longer shows as running"
    );
    assert_eq!(s.model.state, ModelState::Loading);
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::Worker(Request::Load(_)))));
    assert!(matches!(s.popup, Some(Popup::Message { .. })));
}
