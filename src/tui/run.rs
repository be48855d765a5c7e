//! The event loop. One channel carries both terminal input (read on its
//! own thread) and worker messages, so the loop sleeps until either
//! arrives, applies every pending event through `update`, carries out the
//! resulting commands, and redraws once, only when something happened
//! (gitui's `select_event`, yazi's render flag). Timers (autosave, the
//! elapsed-time display of a running sweep) are timeouts of that one wait.
//!
//! `PATCHBENCH_LATENCY_LOG=FILE` records, for every key, the time from
//! reading it to the end of the frame that shows its effect, and writes the
//! samples and a summary to FILE on exit.
//!
//! `PATCHBENCH_INJECT_PANIC=worker` or `=ui` is a test hook
//! (`scripts/e2e-tmux.sh`): the first sweep panics, in the model thread's
//! job or on the UI thread, to check in a real terminal that the first is
//! reported and survived and that the second restores the terminal.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::Event;

use crate::app::guard::Faults;
use crate::app::messages::{LoadSpec, Request, WorkerMsg};
use crate::app::resume;
use crate::app::state::Level;
use crate::app::worker::Worker;
use crate::app::{example_pair, update, Action, AppState, Command, SaveKind, StartOptions};
use crate::session::{
    self, autosave_dir, data_dir, default_session_dirs, leftover_autosaves, list_sessions,
    sessions_dir, Autosave, Recovery, SessionError,
};

use super::input::action_for;
use super::keymap::Keymap;
use super::latency::LatencyLog;
use super::layout::Areas;
use super::render::render;
use super::terminal::TerminalGuard;
use super::theme::{ColorMode, Theme};

/// How the workbench starts.
#[derive(Debug, Clone, Default)]
pub struct TuiOptions {
    /// Model source; `None` = the session's, else `demo`.
    pub model: Option<String>,
    pub device: String,
    pub weights: String,
    /// Theme name or path; `None` = dark.
    pub theme: Option<String>,
    /// `truecolor`, `256` or `none`; `None` = from the environment.
    pub color: Option<String>,
    /// A session to resume.
    pub open: Option<PathBuf>,
    pub mouse: bool,
    /// A dataset file whose pairs become the prompt pairs.
    pub dataset: Option<PathBuf>,
}

enum LoopEvent {
    Input(Event, Instant),
    Worker(WorkerMsg),
}

fn config_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "patchbench").map(|d| d.config_dir().to_path_buf())
}

/// Builds the initial state: the session to resume or the example pair,
/// and any warnings about the keymap or the theme.
pub fn initial_state(opts: &TuiOptions, warnings: Vec<String>) -> io::Result<AppState> {
    let opened = match &opts.open {
        Some(p) => Some((p.clone(), session::load(p).map_err(io::Error::other)?)),
        None => None,
    };
    let source = opts
        .model
        .clone()
        .or_else(|| opened.as_ref().map(|(_, l)| l.session.model.source.clone()))
        .unwrap_or_else(|| "demo".into());
    let dataset = match &opts.dataset {
        Some(p) => {
            // Absolute, so the session can name it wherever it is saved.
            let p = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            Some(crate::data::load(&p).map_err(io::Error::other)?)
        }
        None => None,
    };
    let mut s = AppState::new(StartOptions {
        load: LoadSpec {
            source: source.clone(),
            device: opts.device.clone(),
            weights: opts.weights.clone(),
        },
        pairs: vec![example_pair(&source)],
        autosave: autosave_dir().ok(),
        sessions_dir: sessions_dir().ok(),
        data_dir: data_dir().ok(),
    });
    s.session.model_override = opts.model.is_some();
    if let Some((path, loaded)) = opened {
        let interrupted = resume::find(&path);
        // Its dataset by path, unless one given on the command line replaces it.
        let session_dataset = match dataset {
            None => session_dataset(&path, &loaded),
            Some(_) => None,
        };
        // The same path as opening from the browser: stale marks, repairs
        // in the status bar. The model is not loaded yet, so this asks the
        // worker for nothing; its load is sent by `run`.
        update(
            &mut s,
            Action::SessionLoaded {
                path,
                result: Ok(Box::new(loaded)),
            },
        );
        if let Some(i) = interrupted {
            update(&mut s, Action::SweepInterrupted(Box::new(i)));
        }
        if let Some(a) = session_dataset {
            update(&mut s, a);
        }
    }
    if let Some(ds) = dataset {
        // The dataset's pairs are the prompts (also over an opened
        // session's, whose dataset it becomes): sweeps run over all of
        // them, the dataset pane lists them.
        let n = ds.len();
        let name = dataset_name(opts.dataset.as_deref().unwrap_or(Path::new("")));
        update(
            &mut s,
            Action::DatasetOpened {
                name: name.clone(),
                result: Ok(Box::new(ds)),
            },
        );
        s.set_status(
            Level::Info,
            format!("{n} pairs from {name}: r sweeps them all, D lists them"),
        );
    }
    if !warnings.is_empty() {
        // A popup, not only the status bar: the model's loading message
        // would replace it before anyone read it.
        s.set_status(Level::Warn, warnings.join("; "));
        s.show_message("keymap or theme problem", &warnings.join("\n"));
    }
    Ok(s)
}

/// A file name for titles (control characters escaped where drawn).
fn dataset_name(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Reads the dataset file a loaded session names, as the action that
/// applies it (an inline dataset is applied with the session itself).
fn session_dataset(path: &Path, loaded: &session::Loaded) -> Option<Action> {
    let r = loaded.session.dataset.as_ref()?;
    let file = r.file(Some(path))?;
    let result = session::dataset::resolve(r, Some(path))
        .map(|res| Box::new(res.dataset))
        .map_err(|e| e.to_string());
    Some(Action::DatasetOpened {
        name: dataset_name(&file),
        result,
    })
}

/// Autosave files: this sitting's slot (`crate::session::Autosave`) and a
/// recovered one from an earlier sitting, while it is being offered.
struct Autosaves {
    slot: Option<Autosave>,
    recovered: Option<Recovery>,
}

impl Autosaves {
    fn new(original: Option<&Path>) -> Self {
        Autosaves {
            slot: Autosave::new(original).ok(),
            recovered: None,
        }
    }

    /// The newest autosave left by a sitting that did not save, as an offer.
    fn offer(&mut self) -> Option<Action> {
        let mut all: Vec<Recovery> = leftover_autosaves()
            .into_iter()
            .filter(|r| r.newer_than_original)
            .collect();
        all.sort_by_key(|r| r.saved_at);
        let r = all.pop()?;
        let loaded = r.load().ok()?;
        let age = r
            .saved_at
            .map(|t| session::time::short(t) + " UTC")
            .unwrap_or_else(|| "an earlier sitting".into());
        let path = r.autosave.clone();
        self.recovered = Some(r);
        Some(Action::AutosaveFound {
            path,
            loaded: Box::new(loaded),
            age,
        })
    }

    fn save(&self, session: &session::Session) -> Result<(), String> {
        match &self.slot {
            Some(a) => a.save(session).map_err(|e| e.to_string()),
            None => Err("no data directory for autosaves".into()),
        }
    }

    fn discard(&mut self) {
        if let Some(a) = &self.slot {
            let _ = a.discard();
        }
        if let Some(r) = self.recovered.take() {
            let _ = r.discard();
        }
    }

    /// The session now lives at `path`: the autosave slot follows it.
    fn follow(&mut self, path: &Path) {
        if let Some(a) = &mut self.slot {
            let _ = a.set_original(path);
        }
    }
}

/// Runs the workbench until the user quits.
pub fn run(opts: TuiOptions) -> io::Result<()> {
    let cfg = config_dir();
    let (keymap, kw) = Keymap::load(cfg.as_deref());
    let mode = match &opts.color {
        Some(c) => ColorMode::parse(c).map_err(io::Error::other)?,
        None => ColorMode::detect(),
    };
    let themes_dir = cfg.as_ref().map(|d| d.join("themes"));
    let (theme, tw) = Theme::load(
        opts.theme.as_deref().unwrap_or("dark"),
        themes_dir.as_deref(),
        mode,
    );
    let mut state = initial_state(&opts, kw.into_iter().chain(tw).collect())?;
    let autosave_every = std::env::var("PATCHBENCH_AUTOSAVE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(30), Duration::from_secs);
    let mut latency = LatencyLog::from_env();

    let mut guard = TerminalGuard::enter(opts.mouse)?;
    let size = guard.terminal.size()?;
    state.size = (size.width, size.height);
    let (tx, rx) = channel::<LoopEvent>();
    let wtx = tx.clone();
    let inject = std::env::var("PATCHBENCH_INJECT_PANIC").unwrap_or_default();
    let worker = Worker::spawn_with_faults(
        Arc::new(move |m| {
            let _ = wtx.send(LoopEvent::Worker(m));
        }),
        injected_faults(&inject),
    );
    worker.send(Request::Load(state.model.load.clone()));
    std::thread::Builder::new()
        .name("patchbench-input".into())
        .spawn(move || {
            while let Ok(ev) = crossterm::event::read() {
                if tx.send(LoopEvent::Input(ev, Instant::now())).is_err() {
                    break;
                }
            }
        })?;

    let mut queue: VecDeque<Action> = VecDeque::new();
    let mut autosaves = Autosaves::new(opts.open.as_deref());
    if opts.open.is_none() {
        queue.extend(autosaves.offer());
    }
    let mut areas: Option<Areas> = None;
    let mut dirty = true;
    let mut keys_waiting: Vec<(Instant, bool)> = Vec::new();
    let mut next_autosave = Instant::now() + autosave_every;
    let mut last_draw = Instant::now();
    loop {
        if apply_all(&mut queue, &mut state, &worker, &mut autosaves, &inject) {
            dirty = true;
        }
        if state.quit {
            break;
        }
        // A running sweep's elapsed time moves even between messages.
        if state.running.is_some() && last_draw.elapsed() >= Duration::from_millis(500) {
            dirty = true;
        }
        if dirty {
            guard.terminal.draw(|f| {
                areas = render(&state, &theme, &keymap, f.area(), f.buffer_mut());
            })?;
            last_draw = Instant::now();
            dirty = false;
            for (t, running) in keys_waiting.drain(..) {
                latency.record(t.elapsed(), running);
            }
        }
        let now = Instant::now();
        if now >= next_autosave {
            queue.push_back(Action::AutosaveDue);
            next_autosave = now + autosave_every;
            continue;
        }
        let mut wait = next_autosave - now;
        if state.running.is_some() {
            wait = wait.min(Duration::from_millis(500));
        }
        let first = match rx.recv_timeout(wait) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        // Each event is applied before the next is mapped to an action:
        // keys typed quickly after one that changes focus or mode (Tab,
        // then l) arrive in one batch and must be read in the new context.
        for ev in std::iter::once(first).chain(rx.try_iter()) {
            match ev {
                LoopEvent::Input(ev, t) => {
                    if matches!(ev, Event::Key(_)) {
                        keys_waiting.push((t, state.running.is_some()));
                    }
                    if matches!(ev, Event::Resize(..)) {
                        dirty = true;
                    }
                    queue.extend(action_for(&state, &keymap, &ev, areas.as_ref()));
                }
                LoopEvent::Worker(m) => queue.push_back(Action::Worker(m)),
            }
            if apply_all(&mut queue, &mut state, &worker, &mut autosaves, &inject) {
                dirty = true;
            }
            if state.quit {
                break;
            }
        }
        // Keys that mapped to nothing still get a frame (and a sample).
        if !keys_waiting.is_empty() {
            dirty = true;
        }
    }
    drop(guard);
    drop(worker);
    latency.write()?;
    Ok(())
}

/// Applies every queued action through `update` and carries out the
/// commands (whose outcomes may queue more); whether anything was applied.
fn apply_all(
    queue: &mut VecDeque<Action>,
    state: &mut AppState,
    worker: &Worker,
    autosaves: &mut Autosaves,
    inject: &str,
) -> bool {
    let mut any = false;
    while let Some(a) = queue.pop_front() {
        if let Action::Saved {
            path,
            kind: SaveKind::Save | SaveKind::SaveAs { .. },
            result: Ok(()),
        }
        | Action::SessionLoaded {
            path,
            result: Ok(_),
        } = &a
        {
            autosaves.follow(path);
        }
        for c in update(state, a) {
            if inject == "ui" && matches!(c, Command::Worker(Request::Sweep { .. })) {
                panic!("injected panic on the UI thread (PATCHBENCH_INJECT_PANIC=ui)");
            }
            execute(c, worker, autosaves, queue);
        }
        any = true;
    }
    any
}

/// The model thread's test hook for `PATCHBENCH_INJECT_PANIC=worker`: the
/// first sweep panics inside its job.
fn injected_faults(inject: &str) -> Faults {
    if inject != "worker" {
        return Faults::default();
    }
    let fired = AtomicBool::new(false);
    Faults {
        in_job: Some(Arc::new(move |r: &Request| {
            if matches!(r, Request::Sweep { .. }) && !fired.swap(true, Ordering::SeqCst) {
                panic!("injected panic in the sweep (PATCHBENCH_INJECT_PANIC=worker)");
            }
        })),
        outside_job: None,
    }
}

fn execute(c: Command, worker: &Worker, autosaves: &mut Autosaves, queue: &mut VecDeque<Action>) {
    match c {
        Command::Worker(r) => worker.send(r),
        Command::Cancel(job) => worker.cancel(job),
        Command::CancelCircuit(job) => worker.cancel_circuit(job),
        Command::CancelBaselines(job) => worker.cancel_baselines(job),
        Command::Save {
            path,
            session: s,
            kind,
        } => {
            let result = match kind {
                SaveKind::Autosave => autosaves.save(&s),
                SaveKind::Save => session::save(&s, &path).map_err(|e| e.to_string()),
                SaveKind::SaveAs { overwrite } => match session::save_as(&s, &path, overwrite) {
                    Err(SessionError::Exists { .. }) => {
                        return queue.push_back(Action::SaveTargetExists { path });
                    }
                    r => r.map_err(|e| e.to_string()),
                },
            };
            queue.push_back(Action::Saved { path, kind, result });
        }
        Command::RemoveAutosave => autosaves.discard(),
        Command::ListSessions => {
            let dirs = default_session_dirs();
            queue.push_back(Action::SessionsListed(list_sessions(&dirs)));
        }
        Command::LoadSession(path) => {
            let result = session::load(&path)
                .map(Box::new)
                .map_err(|e| e.to_string());
            let interrupted = result.is_ok().then(|| resume::find(&path)).flatten();
            let dataset = result.as_ref().ok().and_then(|l| session_dataset(&path, l));
            queue.push_back(Action::SessionLoaded { path, result });
            queue.extend(dataset);
            if let Some(i) = interrupted {
                queue.push_back(Action::SweepInterrupted(Box::new(i)));
            }
        }
        Command::Export { path, svg } => {
            let result = export(&path, &svg).map_err(|e| e.to_string());
            queue.push_back(Action::Exported { path, result });
        }
        Command::RemoveCheckpoint(path) => {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    queue.push_back(Action::Worker(WorkerMsg::WorkerFailed {
                        error: format!("cannot delete {}: {e}", path.display()),
                        thread_stopped: false,
                    }));
                }
            }
        }
        Command::Quit => {}
    }
}

/// Writes an exported figure atomically, creating its folder (the data
/// directory may not exist yet).
fn export(path: &Path, svg: &str) -> Result<(), SessionError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| SessionError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    }
    session::write_atomic(path, svg.as_bytes())
}
