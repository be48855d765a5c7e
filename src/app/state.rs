//! The application state: plain structs, one per concern, mutated only by
//! `update`. Per-pane cursors and scroll offsets live here, so rendering is
//! a pure function of the state.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use tui_textarea::TextArea;

use crate::patching::result::Baselines;
use crate::patching::{Direction, Metrics, PromptPair, SweepSpec, Target};
use crate::session::{Loaded, SessionListing, Staleness, StoredResult};
use crate::util::text::{clip, for_terminal, one_line};

use super::drill::DrillState;
use super::grid::{GridRef, HeatmapState};
use super::messages::{JobId, LoadSpec, ModelInfo, SweepStart};
use super::prompts::PromptsState;
use super::settings::SettingsState;

/// Navigation mode (single letters are commands) or editing a text field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Nav,
    Edit,
}

/// The pane with the keyboard focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Prompts,
    Settings,
    Heatmap,
    Drill,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelState {
    Loading,
    Ready(Box<ModelInfo>),
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ModelStatus {
    pub load: LoadSpec,
    pub state: ModelState,
}

impl ModelStatus {
    pub fn info(&self) -> Option<&ModelInfo> {
        match &self.state {
            ModelState::Ready(i) => Some(i),
            _ => None,
        }
    }
}

/// A sweep of the session: its spec, its stored result, and while it runs
/// the cells finished so far.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepView {
    pub spec: SweepSpec,
    /// The pairs it runs on, as indices into the whole set (the session's
    /// `pairs`): `Some([i])` for a pair opened alone; `None`: every pair.
    pub pairs: Option<Vec<usize>>,
    pub stored: Option<StoredResult>,
    /// Why the stored result cannot be trusted as current, as decided by
    /// `session::stale_results` (see `sessions::mark_stale` for when).
    pub stale: Option<Staleness>,
    pub partial: Option<Partial>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    pub start: SweepStart,
    pub cells: Vec<Option<Metrics>>,
    /// From the first progress message on.
    pub baselines: Option<Baselines>,
}

impl SweepView {
    pub fn new(spec: SweepSpec) -> Self {
        Self {
            spec,
            pairs: None,
            stored: None,
            stale: None,
            partial: None,
        }
    }

    /// The values to draw: the partial grid while running, else the stored result.
    pub fn grid(&self) -> Option<GridRef<'_>> {
        let dir: Direction = self.spec.direction;
        if let Some(p) = &self.partial {
            return Some(GridRef::from_partial(
                &p.start,
                &p.cells,
                p.baselines.as_ref(),
                dir,
            ));
        }
        self.stored.as_ref().map(|s| {
            GridRef::from_result(
                &s.result,
                &s.clean_tokens.strings,
                &s.corrupted_tokens.strings,
                dir,
            )
        })
    }
}

/// A sweep in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub job: JobId,
    /// Index into `AppState::sweeps`.
    pub sweep: usize,
    pub done: usize,
    pub total: usize,
    pub elapsed: Duration,
    pub eta: Option<Duration>,
    pub cancelling: bool,
    /// Digest of the inputs the sweep runs on (`session::results::digest`),
    /// taken when it starts: edits made while it runs leave it stale.
    pub inputs: String,
}

/// The longest status-bar message kept (the bar shows one line of it).
pub const MAX_STATUS_CHARS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusMsg {
    pub text: String,
    pub level: Level,
}

/// A popup over the panes; it takes the keys while open.
#[derive(Debug, Clone)]
pub enum Popup {
    Help {
        scroll: u16,
    },
    ConfirmQuit,
    SaveAs {
        input: Box<TextArea<'static>>,
    },
    /// "Save as" named an existing file: replace it?
    ConfirmOverwrite {
        path: PathBuf,
    },
    Browser {
        /// `None` until the listing arrives.
        entries: Option<Vec<SessionListing>>,
        selected: usize,
    },
    RestoreAutosave {
        path: PathBuf,
        loaded: Box<Loaded>,
        age: String,
    },
    Message {
        title: String,
        text: String,
    },
    /// A sweep of this session was interrupted: resume or discard it
    /// (`resume`). `requested`: raised by starting a sweep, which follows.
    ResumeSweep {
        interrupted: Box<super::messages::Interrupted>,
        requested: bool,
    },
}

/// Where the session lives and whether it has unsaved changes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionMeta {
    pub path: Option<PathBuf>,
    pub dirty: bool,
    pub notes: String,
    /// The session's dataset, kept so saving does not drop it.
    pub dataset: Option<crate::session::dataset::DatasetRef>,
    /// The model fingerprint the opened session recorded; saved back
    /// until a model is loaded.
    pub fingerprint: Option<String>,
    /// Where autosave copies go.
    pub autosave: Option<PathBuf>,
    /// Where new sessions are saved and the browser looks.
    pub dir: Option<PathBuf>,
    /// The user data directory: exports of unsaved sessions go here.
    pub data_dir: Option<PathBuf>,
    /// A model source named on the command line wins over the session's.
    pub model_override: bool,
    /// "Save and quit": quit once the save succeeds.
    pub quit_after_save: bool,
    /// A sweep whose checkpoint waits beside the session (`resume`).
    pub interrupted: Option<super::messages::Interrupted>,
}

/// Outstanding job ids.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Jobs {
    pub next: JobId,
    pub tokenize: Option<JobId>,
    pub estimate: Option<JobId>,
}

impl Jobs {
    pub fn new_id(&mut self) -> JobId {
        self.next += 1;
        self.next
    }
}

#[derive(Debug, Clone)]
pub struct AppState {
    pub mode: Mode,
    pub focus: Focus,
    pub model: ModelStatus,
    pub prompts: PromptsState,
    pub settings: SettingsState,
    pub sweeps: Vec<SweepView>,
    pub selected_sweep: usize,
    pub heatmap: HeatmapState,
    pub running: Option<Running>,
    /// Circuit searches and the circuit pane (`circuit.rs`).
    pub circuit: super::circuit_state::CircuitState,
    /// The dataset and the dataset pane (`dataset_state`).
    pub dataset: super::dataset_state::DatasetState,
    pub drill: Option<DrillState>,
    pub popup: Option<Popup>,
    /// Popups waiting for the open one to close (a message never hides
    /// another: a broken keymap and a failed model load are both seen).
    pub queued_popups: VecDeque<Popup>,
    pub status: Option<StatusMsg>,
    pub session: SessionMeta,
    pub jobs: Jobs,
    pub size: (u16, u16),
    pub quit: bool,
}

/// Everything needed to start.
#[derive(Debug, Clone)]
pub struct StartOptions {
    pub load: LoadSpec,
    pub pairs: Vec<PromptPair>,
    pub autosave: Option<PathBuf>,
    pub sessions_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

impl AppState {
    pub fn new(opts: StartOptions) -> Self {
        AppState {
            mode: Mode::Nav,
            focus: Focus::Prompts,
            model: ModelStatus {
                load: opts.load,
                state: ModelState::Loading,
            },
            prompts: PromptsState::new(&opts.pairs, None),
            settings: SettingsState::new(SweepSpec::new(Target::ResidPre)),
            sweeps: vec![],
            selected_sweep: 0,
            heatmap: HeatmapState::default(),
            running: None,
            circuit: Default::default(),
            dataset: Default::default(),
            drill: None,
            popup: None,
            queued_popups: VecDeque::new(),
            status: None,
            session: SessionMeta {
                autosave: opts.autosave,
                dir: opts.sessions_dir,
                data_dir: opts.data_dir,
                ..Default::default()
            },
            jobs: Jobs::default(),
            size: (80, 24),
            quit: false,
        }
    }

    pub fn sweep(&self) -> Option<&SweepView> {
        self.sweeps.get(self.selected_sweep)
    }

    /// The values the heatmap shows: the shown sweep's, or what the
    /// spread view derived from it (one pair alone, a difference).
    pub fn grid(&self) -> Option<GridRef<'_>> {
        let v = self.sweep()?;
        match (&self.heatmap.spread.derived, &v.stored, &v.partial) {
            (Some(d), Some(st), None) => Some(GridRef::from_result(
                &d.result,
                &st.clean_tokens.strings,
                &st.corrupted_tokens.strings,
                v.spec.direction,
            )),
            _ => v.grid(),
        }
    }

    /// Sets the status bar's message. It may quote anything (a prompt, a
    /// file's error), so it is made one safe line here, clipped to
    /// [`MAX_STATUS_CHARS`].
    pub fn set_status(&mut self, level: Level, text: impl Into<String>) {
        let text = text.into();
        self.status = Some(StatusMsg {
            text: clip(&one_line(&text), MAX_STATUS_CHARS).into_owned(),
            level,
        });
    }

    /// Shows `p` now, or once the popups already open or waiting close.
    pub fn show_popup(&mut self, p: Popup) {
        if self.popup.is_none() {
            self.popup = Some(p);
        } else {
            self.queued_popups.push_back(p);
        }
    }

    /// A message popup; title and text are made safe for the terminal
    /// (control characters escaped, the text clipped).
    pub fn show_message(&mut self, title: &str, text: &str) {
        self.show_popup(Popup::Message {
            title: clip(&one_line(title), MAX_STATUS_CHARS).into_owned(),
            text: for_terminal(text),
        });
    }

    /// Why the shown sweep's stored result cannot be trusted as current,
    /// if it cannot (not while it is being recomputed).
    pub fn stale_reason(&self) -> Option<String> {
        let sw = self.sweep()?;
        if sw.partial.is_some() {
            return None;
        }
        sw.stale.as_ref().map(|why| why.to_string())
    }
}
