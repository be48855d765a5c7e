//! Prompt-pair datasets: files, generators, position labels and the
//! statistics of a sweep over many pairs.
//!
//! This layer sits above `patching/` (it hands prompt pairs and aligned
//! positions to the engine and reads per-pair results back) and below
//! `session/` (which stores a dataset by path and digest, or inline).
//!
//! - `dataset`: the pair type as files hold it, position spans, digests;
//! - `load`, `csv`: JSONL and CSV readers with line-accurate errors; a file
//!   with a bad row loads nothing;
//! - `labels`: per-pair position labels resolved for the engine;
//! - `answers`: the `answers` / `wrongs` lists tokenised for the
//!   multi-answer metric;
//! - `stats`, `report`: per-cell statistics over pairs and their place in
//!   the JSON/CSV outputs; `compare`: a paired permutation test;
//! - `gen`: seeded generators of IOI, fact, induction and greater-than
//!   datasets for a model's tokenizer.

pub mod answers;
pub mod compare;
mod csv;
pub mod dataset;
pub mod gen;
pub mod labels;
pub mod load;
pub mod report;
pub mod stats;

pub use dataset::{digest, Dataset, DatasetPair, Labels, Span};
pub use labels::{align, LabelError};
pub use load::{load, parse, DatasetError, Format, MAX_PAIRS};
pub use stats::{sweep_stats, StatsOptions, SweepStats};
