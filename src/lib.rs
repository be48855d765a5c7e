//! patchbench: a terminal workbench for activation patching on transformer
//! language models.
//!
//! The crate is layered as `../shared/DESIGN.md` describes: `model` (weights
//! to a hooked canonical transformer), `patching` (sweeps and metrics),
//! `session` (YAML persistence), `app` (state and the worker thread) and `tui`
//! (rendering). Only `tui` knows about the terminal; only `model` and
//! `patching` touch candle tensors.

pub mod analysis;
pub mod app;
pub mod circuits;
pub mod data;
pub mod demo;
pub mod model;
pub mod patching;
pub mod session;
pub mod tui;
pub mod util;
