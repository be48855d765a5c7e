//! The application layer: state, actions, `update`, commands, and the
//! worker thread that owns the model (DESIGN.md: "app/").
//!
//! The shape is Elm's: [`update`] takes the [`AppState`] and one
//! [`Action`] (a user intent, or a reply from the worker or the file
//! system), changes the state, and returns [`Command`]s for the event loop
//! to carry out. Nothing here draws; `tui/` renders the state. Nothing here
//! touches a tensor either: the [`worker::Worker`] owns the model and sends
//! plain data back ([`messages`]).
//!
//! - `state`, `prompts`, `settings`, `grid`, `drill`: the state, by concern;
//! - `action`, `command`, `messages`: what flows in and out;
//! - `update`, `panes`, `replies`: the transitions (`update` dispatches to
//!   `panes` and `replies`; what they share is below them, in `transitions`
//!   and `saving`, so no two import each other);
//! - `worker`, `model_thread`, `sweep_job`, `guard`, `tokenize`: background work;
//! - `dataset_state`, `dataset`, `dataset_edits`, `baselines_job`: the dataset (its pairs
//!   and labels, one pair opened alone) and the dataset pane, and the
//!   model thread's measuring of every pair's baselines;
//! - `resume`: resuming a sweep interrupted with its checkpoint (a popup);
//! - `spread`: the statistics of a sweep over many pairs as the heatmap
//!   shows them (intervals, one pair alone, differences of sweeps), and
//!   `spread_keys`, its keys and caches on the state;
//! - `sessions`: state ↔ `crate::session` (mapping, staleness, export names);
//! - `circuit`, `circuit_job`: the circuit pane's state and transitions, and
//!   the model thread's circuit searches and edge drill-downs.

pub mod action;
mod baselines_job;
pub mod circuit;
mod circuit_job;
pub mod circuit_stale;
pub mod circuit_state;
pub mod command;
pub mod dataset;
pub mod dataset_edits;
pub mod dataset_state;
pub mod drill;
pub mod grid;
pub mod guard;
pub mod messages;
mod model_thread;
mod panes;
pub mod prompts;
mod replies;
pub mod resume;
mod saving;
pub mod sessions;
pub mod settings;
pub mod spread;
pub mod spread_keys;
pub mod state;
mod sweep_job;
pub mod tokenize;
mod transitions;
pub mod update;
pub mod worker;

pub use action::{Action, Intent};
pub use command::{Command, SaveKind};
pub use state::{AppState, Focus, Mode, StartOptions};
pub use update::update;

use crate::patching::PromptPair;

/// The example pair a new workbench starts with: indirect object
/// identification, worded for the model's tokenizer (the demo model's
/// vocabulary is lower-case words).
pub fn example_pair(source: &str) -> PromptPair {
    if source == "demo" {
        PromptPair {
            clean: "when mary and john went to the store , john gave a drink to".into(),
            corrupted: Some("when mary and john went to the store , mary gave a drink to".into()),
            answer: "mary".into(),
            wrong: "john".into(),
        }
    } else {
        PromptPair {
            clean: "When Mary and John went to the store, John gave a drink to".into(),
            corrupted: Some("When Mary and John went to the store, Mary gave a drink to".into()),
            answer: " Mary".into(),
            wrong: " John".into(),
        }
    }
}
