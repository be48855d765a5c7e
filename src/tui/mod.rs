//! The terminal UI (DESIGN.md: "tui/"): rendering the application state,
//! the event loop, keymaps and themes. Only this module knows about the
//! terminal; it never touches a tensor (the worker in `app` owns the model).
//!
//! - `run`: the event loop, `input`: events to actions, `terminal`: setup
//!   and restoration (panic hook included), `latency`: key-to-frame timing;
//! - `render`, `layout`, `widgets`, `panes/`: drawing, one file per pane;
//! - `keymap` (defaults in `keymap.yaml`), `theme` (`themes/*.yaml`),
//!   `colour` (colour values and what the terminal can show).

mod colour;
pub mod input;
pub mod keymap;
pub mod latency;
pub mod layout;
pub mod panes;
pub mod render;
pub mod run;
pub mod terminal;
pub mod theme;
pub mod widgets;

pub use run::{run, TuiOptions};
