//! Resuming an interrupted workbench sweep, at the app level (actions in,
//! commands out, a real worker, no terminal). A sweep of a saved session
//! checkpoints beside the session file; a workbench killed mid-sweep leaves
//! the checkpoint, opening the session offers it in a popup, and resuming
//! computes only the missing batches and gives the uninterrupted result bit
//! for bit, then deletes the checkpoint. A sweep cancelled in this sitting
//! is offered when the next one starts; discarding starts over.

mod app_support;

use std::path::{Path, PathBuf};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Duration;

use app_support::*;
use patchbench::app::messages::{LoadSpec, Request, SweepCheckpoint, WorkerMsg};
use patchbench::app::resume::{self, Interrupted};
use patchbench::app::state::Popup;
use patchbench::app::worker::Worker;
use patchbench::app::{Action, AppState, Command, Intent};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::metrics::Metrics;
use patchbench::patching::part::Shard;
use patchbench::patching::sharded::PartControl;
use patchbench::patching::work::{Selection, WorkControl, WorkUnit};
use patchbench::patching::{
    prepare_pairs, run_sweep, run_sweep_with, Corruption, EngineOptions, SweepError, SweepResult,
    SweepSpec, Target,
};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gpt2-tiny");

/// Resid-pre under Gaussian noise: fourteen batches on the fixture.
fn spec() -> SweepSpec {
    let mut spec = SweepSpec::new(Target::ResidPre);
    spec.corruption = Corruption::Gaussian {
        positions: vec![],
        scale: None,
        samples: 6,
        seed: 1,
    };
    spec
}

/// A ready workbench on a session saved at `path`, set to `spec()`.
fn workbench(path: &Path) -> AppState {
    let mut s = ready();
    s.session.path = Some(path.to_path_buf());
    s.settings.spec = spec();
    s
}

/// The sweep request among `out`.
fn sweep_request(out: &[Command]) -> (u64, Request, Option<SweepCheckpoint>) {
    out.iter()
        .find_map(|c| match c {
            Command::Worker(
                r @ Request::Sweep {
                    job, checkpoint, ..
                },
            ) => Some((*job, r.clone(), checkpoint.clone())),
            _ => None,
        })
        .expect("a sweep request")
}

/// Stops a run after `left` finished forward passes, as a killed process
/// would; `recorded`: the units it checkpointed (free ones included).
struct StopAfter<'a> {
    inner: PartControl<'a>,
    left: usize,
    recorded: usize,
}

impl WorkControl for StopAfter<'_> {
    fn select(&mut self, u: &[WorkUnit], r: &[usize]) -> Result<Vec<Selection>, SweepError> {
        self.inner.select(u, r)
    }
    fn done(&mut self, i: usize, u: &WorkUnit, v: &[Metrics]) -> Result<(), SweepError> {
        self.inner.done(i, u, v)?;
        self.recorded += 1;
        self.left -= usize::from(u.forward);
        if self.left == 0 {
            return Err(SweepError::Cancelled);
        }
        Ok(())
    }
}

fn same_bits(a: &SweepResult, b: &SweepResult) {
    let bits = |r: &SweepResult| {
        let mut v: Vec<u32> = r.metrics.values().flatten().map(|x| x.to_bits()).collect();
        for p in &r.per_pair {
            v.extend(p.values().flatten().map(|x| x.to_bits()));
        }
        v
    };
    assert_eq!(
        bits(a),
        bits(b),
        "the resumed sweep differs from the uninterrupted one"
    );
    assert_eq!(a.baselines, b.baselines);
}

#[test]
fn a_killed_sweep_is_offered_on_opening_and_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("ioi.yaml");
    let ckpt: PathBuf = resume::checkpoint_path(&session);

    // The first sitting starts the sweep and dies after two forward passes.
    let mut s = workbench(&session);
    let (_, request, checkpoint) = sweep_request(&key(&mut s, Intent::RunSweep));
    let c = checkpoint.expect("a saved session's sweep checkpoints");
    assert_eq!((c.path.as_path(), c.resume), (ckpt.as_path(), false));
    let Request::Sweep { input, .. } = request else {
        unreachable!()
    };
    let m = LoadedModel::load(FIXTURE, &LoadOptions::cpu()).unwrap();
    let pairs = prepare_pairs(&m.tokenizer, &input.pairs, input.prepend_bos).unwrap();
    let opts = EngineOptions::default();
    let one = Shard { k: 1, n: 1 };
    let sp = spec();
    let mut killed = StopAfter {
        inner: PartControl::new(&m, &pairs, &sp, &opts, one, Some(ckpt.clone())),
        left: 2,
        recorded: 0,
    };
    let r = run_sweep_with(
        &m.model,
        &pairs,
        None,
        &spec(),
        &opts,
        &mut killed,
        None,
        &mut |_| {},
    );
    assert!(matches!(r, Err(SweepError::Cancelled)));

    // The next sitting opens the session: the event loop finds the file.
    let found = resume::find(&session).expect("the checkpoint is found");
    assert_eq!(
        found,
        Interrupted {
            path: ckpt.clone(),
            spec: spec(),
            batches: Some(killed.recorded)
        }
    );
    let mut s = workbench(&session);
    s.settings.spec = SweepSpec::new(Target::HeadOut);
    act(&mut s, Action::SweepInterrupted(Box::new(found)));
    assert!(matches!(
        &s.popup,
        Some(Popup::ResumeSweep {
            requested: false,
            ..
        })
    ));
    let (job, request, checkpoint) = sweep_request(&key(&mut s, Intent::Yes));
    assert!(s.popup.is_none());
    assert_eq!(s.settings.spec, spec(), "the interrupted spec is resumed");
    assert!(checkpoint.is_some_and(|c| c.resume && c.path == ckpt));

    let (tx, rx) = channel();
    let w = Worker::spawn(Arc::new(move |m| {
        let _ = tx.send(m);
    }));
    w.send(Request::Load(LoadSpec {
        source: FIXTURE.into(),
        device: "cpu".into(),
        weights: "f32".into(),
    }));
    w.send(request);
    loop {
        let msg = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the worker answers");
        let done = matches!(&msg, WorkerMsg::SweepDone { job: j, .. } if *j == job);
        if let WorkerMsg::SweepFailed { error, .. } = &msg {
            panic!("the resumed sweep failed: {error}");
        }
        worker(&mut s, msg);
        if done {
            break;
        }
    }
    assert!(!ckpt.exists(), "a finished sweep deletes its checkpoint");
    let resumed = &s.sweep().unwrap().stored.as_ref().unwrap().result;
    let whole = run_sweep(&m.model, &pairs, &spec(), &opts, None, &mut |_| {}).unwrap();
    same_bits(resumed, &whole);
    assert!(
        resumed.timing.forward_passes < whole.timing.forward_passes,
        "only the missing batches ran ({} vs {} forward passes)",
        resumed.timing.forward_passes,
        whole.timing.forward_passes
    );
    assert!(s.session.interrupted.is_none());
}

#[test]
fn a_cancelled_sweep_is_offered_when_the_next_starts_and_discarding_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s.yaml");
    let ckpt = resume::checkpoint_path(&session);
    let mut s = workbench(&session);
    let (job, ..) = sweep_request(&key(&mut s, Intent::RunSweep));
    key(&mut s, Intent::Back);
    worker(
        &mut s,
        WorkerMsg::SweepFailed {
            job,
            error: "sweep cancelled".into(),
            cancelled: true,
        },
    );
    assert_eq!(
        s.session.interrupted.as_ref().map(|i| (&i.path, &i.spec)),
        Some((&ckpt, &spec()))
    );

    // Another sweep: asked first, nothing sent.
    s.settings.spec = SweepSpec::new(Target::HeadOut);
    let out = key(&mut s, Intent::RunSweep);
    assert!(out.is_empty(), "{out:?}");
    assert!(matches!(
        &s.popup,
        Some(Popup::ResumeSweep {
            requested: true,
            ..
        })
    ));
    // Esc decides later: still interrupted, still asked.
    assert!(key(&mut s, Intent::Back).is_empty());
    assert!(s.session.interrupted.is_some());
    key(&mut s, Intent::RunSweep);
    // Discard: the new sweep starts over (the worker deletes the file).
    let (_, Request::Sweep { spec: ran, .. }, c) = sweep_request(&key(&mut s, Intent::No)) else {
        unreachable!()
    };
    assert_eq!(ran.target, Target::HeadOut);
    assert!(c.is_some_and(|c| !c.resume && c.path == ckpt));
    assert!(s.session.interrupted.is_none());

    // Offered on opening and discarded there: the file is deleted.
    let mut s = workbench(&session);
    let i = Interrupted {
        path: ckpt.clone(),
        spec: spec(),
        batches: Some(3),
    };
    act(&mut s, Action::SweepInterrupted(Box::new(i)));
    let out = key(&mut s, Intent::No);
    assert_eq!(out, vec![Command::RemoveCheckpoint(ckpt)]);

    // An unsaved session has nowhere to keep a checkpoint.
    let mut s = ready();
    let (_, _, c) = sweep_request(&key(&mut s, Intent::RunSweep));
    assert!(c.is_none());
}

#[test]
fn a_file_that_is_not_a_checkpoint_is_not_offered_and_not_resumed_from() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("s.yaml");
    let ckpt = resume::checkpoint_path(&session);
    std::fs::write(&ckpt, "not a checkpoint\n").unwrap();
    assert_eq!(resume::find(&session), None, "not offered");
    let (tx, rx) = channel();
    let w = Worker::spawn(Arc::new(move |m| {
        let _ = tx.send(m);
    }));
    w.send(Request::Load(LoadSpec {
        source: FIXTURE.into(),
        device: "cpu".into(),
        weights: "f32".into(),
    }));
    let mut s = workbench(&session);
    let (job, request, _) = sweep_request(&key(&mut s, Intent::RunSweep));
    let Request::Sweep {
        job: j,
        input,
        spec,
        ..
    } = request
    else {
        unreachable!()
    };
    w.send(Request::Sweep {
        job: j,
        input,
        spec,
        checkpoint: Some(SweepCheckpoint {
            path: ckpt.clone(),
            resume: true,
        }),
    });
    let error = loop {
        match rx.recv_timeout(Duration::from_secs(120)).unwrap() {
            WorkerMsg::SweepFailed { job: x, error, .. } if x == job => break error,
            WorkerMsg::SweepDone { .. } => panic!("a foreign checkpoint must be refused"),
            _ => {}
        }
    };
    assert!(
        error.contains("is not a patchbench checkpoint header"),
        "{error}"
    );
    assert!(ckpt.exists(), "left for the user to look at");
}

#[test]
fn the_popup_names_the_sweep_its_progress_and_the_answers() {
    use patchbench::tui::keymap::Keymap;
    use patchbench::tui::render::render;
    use patchbench::tui::theme::{ColorMode, Theme};
    use ratatui::{buffer::Buffer, layout::Rect};

    let mut s = workbench(Path::new("/tmp/x/ioi.yaml"));
    let i = Interrupted {
        path: resume::checkpoint_path(Path::new("/tmp/x/ioi.yaml")),
        spec: spec(),
        batches: Some(5),
    };
    act(&mut s, Action::SweepInterrupted(Box::new(i)));
    let area = Rect::new(0, 0, 100, 30);
    let mut buf = Buffer::empty(area);
    let theme = Theme::default_theme(ColorMode::NoColor);
    render(&s, &theme, &Keymap::defaults(), area, &mut buf);
    let text: String = (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                + "\n"
        })
        .collect();
    for want in [
        "Resume the interrupted sweep?",
        "The resid_pre denoise sweep (gaussian) did not finish;",
        "5 finished batch(es) are kept in",
        "/tmp/x/ioi.yaml.sweep.ckpt",
        "y resume it",
        "n discard it",
        "Esc decide later",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}
