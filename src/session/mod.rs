//! Sessions: investigations saved as YAML, resumed and shared.

pub mod model;

pub use model::{ModelRef, Session, StoredResult, SweepEntry, UiState, SESSION_VERSION};
