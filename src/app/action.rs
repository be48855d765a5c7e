//! Actions: everything that can change the state, as one enum.
//!
//! User intents ([`Intent`]) are what keys are bound to: each has a name the
//! keymap file uses and a one-line description the help screen shows, both
//! generated from the one table in [`intents!`] so they cannot drift apart.
//! The other [`Action`] variants are replies: text typed while editing,
//! worker messages, finished file operations, timer ticks.

use std::path::PathBuf;

use crate::session::{Loaded, SessionListing};

use super::command::SaveKind;
use super::messages::WorkerMsg;

macro_rules! intents {
    ($($variant:ident $name:literal $about:literal,)*) => {
        /// A user intent, bindable to a key.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Intent { $($variant,)* }

        impl Intent {
            /// Every intent, in help-screen order.
            pub const ALL: &'static [Intent] = &[$(Intent::$variant,)*];

            /// The name keymap files use.
            pub fn name(self) -> &'static str {
                match self { $(Intent::$variant => $name,)* }
            }

            /// One line for the help screen.
            pub fn description(self) -> &'static str {
                match self { $(Intent::$variant => $about,)* }
            }

            pub fn from_name(name: &str) -> Option<Intent> {
                Intent::ALL.iter().copied().find(|i| i.name() == name)
            }
        }
    };
}

intents! {
    Quit "quit" "Quit (asks first when there are unsaved changes)",
    Help "help" "Show the keys",
    RunSweep "run_sweep" "Run the sweep with the current settings (restarts a running one)",
    Back "back" "Close the popup or drill-down, leave editing, or cancel the running sweep",
    Save "save" "Save the session (asks for a file name the first time)",
    SaveAs "save_as" "Save the session under a new file name",
    Open "open" "Open a saved session from the session browser",
    Export "export" "Export the shown sweep's heatmap (shown metric) as SVG beside the session file",
    FocusNext "focus_next" "Move focus to the next pane",
    FocusPrev "focus_prev" "Move focus to the previous pane",
    Edit "edit" "Edit the selected prompt field or setting",
    NextField "next_field" "While editing: go on to the next field",
    PrevField "prev_field" "While editing: go back to the previous field",
    DrillDown "drill_down" "Drill into the cell under the cursor (head, MLP layer or residual)",
    Up "up" "Move up (cursor, field or setting)",
    Down "down" "Move down (cursor, field or setting)",
    Left "left" "Move left, or choose the previous value of a setting",
    Right "right" "Move right, or choose the next value of a setting",
    PagePrev "page_prev" "Show the previous slice (component or layer) of a 3-axis result",
    PageNext "page_next" "Show the next slice (component or layer) of a 3-axis result",
    MetricNext "metric_next" "Show the next metric (no re-run)",
    MetricPrev "metric_prev" "Show the previous metric (no re-run)",
    ZoomIn "zoom_in" "Widen the heatmap cells",
    ZoomOut "zoom_out" "Narrow the heatmap cells (more fit on screen)",
    SweepNext "sweep_next" "Show the next sweep of the session",
    SweepPrev "sweep_prev" "Show the previous sweep of the session",
    PairList "pair_list" "Show the dataset pane in the heatmap's place (every pair with its clean/corrupted baselines), or the heatmap again",
    FilterFailing "filter_failing" "In the dataset pane: list only the pairs whose clean run does not prefer the answer (again: all)",
    SortPairs "sort_pairs" "In the dataset pane: list the pairs by clean logit difference, lowest first (again: in the dataset's order)",
    AllPairs "all_pairs" "In the dataset pane: put every pair of the dataset back in the prompt editor (after opening one alone)",
    SideBySide "side_by_side" "Show the shown sweep beside another sweep of the same shape, same colour scale and cursor (again: the next, then off)",
    StrongestNext "strongest_next" "Move the heatmap cursor to the next strongest effect",
    StrongestPrev "strongest_prev" "Move the heatmap cursor to the previous strongest effect",
    ShadeUncertain "shade_uncertain" "Shade the cells whose 95% interval over pairs crosses zero (again: off)",
    CompareNext "compare_next" "Show the shown sweep minus another sweep of the same shape (again: the next, then off)",
    RunCircuit "run_circuit" "Find the circuit of the prompt pairs (the circuit pane's method, the sweep settings' direction and corruption, ranked by the shown metric)",
    ToggleCircuit "circuit_pane" "Show the circuit pane in the heatmap's place, or the heatmap again",
    CircuitMethod "circuit_method" "In the circuit pane: choose the next method for the next search",
    CircuitPositions "circuit_positions" "In the circuit pane: position-aware edges (each edge at each token position) for the next search (again: off)",
    PairAdd "pair_add" "Add a prompt pair (a copy of the current one)",
    PairRemove "pair_remove" "Remove the current prompt pair",
    PairNext "pair_next" "Show the next prompt pair",
    PairPrev "pair_prev" "Show the previous prompt pair",
    ToggleBos "toggle_bos" "Cycle prepend-BOS: tokenizer default, on, off",
    Yes "yes" "In a dialog: yes",
    No "no" "In a dialog: no",
    Select "select" "In a list: open the selected entry",
}

/// Something that happened: a user intent or a reply.
#[derive(Debug, Clone)]
pub enum Action {
    Intent(Intent),
    /// A key typed while editing a text field.
    EditKey(tui_textarea::Input),
    /// Text pasted into the terminal (bracketed paste: one event however
    /// long, so it is inserted at once and the keys typed after it follow).
    Paste(String),
    Worker(WorkerMsg),
    /// The terminal has a new size.
    Resize(u16, u16),
    /// Time to write the autosave copy if there are unsaved changes.
    AutosaveDue,
    /// An autosave from an earlier sitting exists (at start-up).
    AutosaveFound {
        path: PathBuf,
        loaded: Box<Loaded>,
        age: String,
    },
    SessionsListed(Vec<SessionListing>),
    SessionLoaded {
        path: PathBuf,
        result: Result<Box<Loaded>, String>,
    },
    Saved {
        path: PathBuf,
        kind: SaveKind,
        result: Result<(), String>,
    },
    /// "Save as" refused to replace an existing file.
    SaveTargetExists {
        path: PathBuf,
    },
    /// A heatmap export was written.
    Exported {
        path: PathBuf,
        result: Result<(), String>,
    },
    /// A checkpoint of an interrupted sweep lies beside the opened session.
    SweepInterrupted(Box<super::messages::Interrupted>),
    /// A dataset file was read (`--dataset`, or the file a session names).
    DatasetOpened {
        /// The file's name, for the pane's title.
        name: String,
        result: Result<Box<crate::data::Dataset>, String>,
    },
    /// A mouse click on a pane, or the wheel.
    MouseFocus(super::state::Focus),
    MouseScroll {
        down: bool,
    },
}

impl Action {
    /// A name for logs and for the help screen.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Intent(i) => i.name(),
            Action::EditKey(_) => "edit_key",
            Action::Paste(_) => "paste",
            Action::Worker(_) => "worker_message",
            Action::Resize(..) => "resize",
            Action::AutosaveDue => "autosave_due",
            Action::AutosaveFound { .. } => "autosave_found",
            Action::SessionsListed(_) => "sessions_listed",
            Action::SessionLoaded { .. } => "session_loaded",
            Action::Saved { .. } => "saved",
            Action::SaveTargetExists { .. } => "save_target_exists",
            Action::Exported { .. } => "exported",
            Action::SweepInterrupted(_) => "sweep_interrupted",
            Action::DatasetOpened { .. } => "dataset_opened",
            Action::MouseFocus(_) => "mouse_focus",
            Action::MouseScroll { .. } => "mouse_scroll",
        }
    }

    /// One line describing the action.
    pub fn description(&self) -> &'static str {
        match self {
            Action::Intent(i) => i.description(),
            Action::EditKey(_) => "a key typed into the text field being edited",
            Action::Paste(_) => "text pasted into the text field being edited",
            Action::Worker(_) => "a message from the worker thread (progress, results, errors)",
            Action::Resize(..) => "the terminal was resized",
            Action::AutosaveDue => "periodic autosave of unsaved changes",
            Action::AutosaveFound { .. } => "an autosave from an earlier sitting was found",
            Action::SessionsListed(_) => "the session browser's list arrived",
            Action::SessionLoaded { .. } => "a session file was read",
            Action::Saved { .. } => "a session file was written",
            Action::SaveTargetExists { .. } => "the file to save as already exists",
            Action::Exported { .. } => "a heatmap export was written",
            Action::SweepInterrupted(_) => "an interrupted sweep of the session can be resumed",
            Action::DatasetOpened { .. } => "a dataset file was read",
            Action::MouseFocus(_) => "a mouse click focused a pane",
            Action::MouseScroll { .. } => "the mouse wheel moved",
        }
    }
}
