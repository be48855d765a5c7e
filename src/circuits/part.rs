//! Circuit part files: the scores one shard of a circuit search computed
//! (`patchbench circuit ... --shard K/N`), and the checks that a set of
//! them is one whole search (`patchbench merge`).
//!
//! A circuit part is one JSON object (ARCHITECTURE.md documents it):
//! - `patchbench_circuit_part`: the format version (1); a sweep part has
//!   `patchbench_part` instead, so the two never pass for each other;
//! - `manifest`: the search's identity (`version`, `spec` — every option of
//!   `patchbench circuit` that changes the result, `--top` included —,
//!   `model`, `weights`, `fingerprint`, `inputs` (digest of the prepared
//!   pairs), `dataset` digest, `metrics`, `units` and `units_digest`), its
//!   place (`shard: {k, n}`) and `timing`;
//! - `circuit`: what every part shares: the prepared `pairs` (token ids and
//!   answers: the merge finishes on them), the per-pair `baselines` (hex),
//!   `n_edges` and, for `--dataset`, the `dataset` note of the output;
//! - `units`: each computed unit's `index`, `run`, `edges` (`[start, end)`)
//!   and its per-run values (`scores`, and AtP*'s `plain` and `graddrop`)
//!   as hex f32 bits, like sweep parts;
//! - `digest`: FNV-1a of the JSON of the three objects above, so a part
//!   edited or cut short is refused rather than merged.

use serde::{Deserialize, Serialize};

use crate::patching::metrics::{lookup, Metrics};
use crate::patching::part::{metrics_hex, parse_metrics_hex, Shard};
use crate::patching::{Corruption, Direction, PreparedPair};
use crate::util::digest::hex_digest;

use super::circuit::{CircuitOptions, Method};
use super::eap::IgOn;
use super::path::PathOptions;
use super::units::{Unit, UnitValues};

/// The circuit part format written by this build.
pub const CIRCUIT_PART_FORMAT: u32 = 1;

/// Every option of a circuit search that changes its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartSpec {
    pub method: Method,
    pub metric: String,
    pub direction: Direction,
    pub corruption: Corruption,
    pub ig_steps: usize,
    pub ig_on: IgOn,
    pub graddrop: bool,
    pub check_exact: usize,
    pub faithfulness_points: usize,
    pub max_rows: usize,
    pub path: PathOptions,
    /// Edges listed in the output (`--top`).
    pub top: usize,
    /// Position-aware edges (absent when off, so parts written before it
    /// existed keep their digest).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub positions: bool,
}

impl PartSpec {
    pub fn new(opts: &CircuitOptions, top: usize) -> Self {
        PartSpec {
            method: opts.method,
            metric: opts.metric.def().name.to_string(),
            direction: opts.direction,
            corruption: opts.corruption.clone(),
            ig_steps: opts.ig_steps,
            ig_on: opts.ig_on,
            graddrop: opts.graddrop,
            check_exact: opts.check_exact,
            faithfulness_points: opts.faithfulness_points,
            max_rows: opts.max_rows,
            path: opts.path,
            top,
            positions: opts.positions,
        }
    }

    /// The options the search ran with; `None` for a metric this build
    /// does not know.
    pub fn options(&self) -> Option<CircuitOptions> {
        Some(CircuitOptions {
            method: self.method,
            direction: self.direction,
            corruption: self.corruption.clone(),
            ig_steps: self.ig_steps,
            ig_on: self.ig_on,
            graddrop: self.graddrop,
            metric: lookup(&self.metric)?.0,
            check_exact: self.check_exact,
            faithfulness_points: self.faithfulness_points,
            max_rows: self.max_rows,
            path: self.path,
            positions: self.positions,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartTiming {
    /// RFC 3339 start of the shard's run (UTC).
    pub started: String,
    /// Whole milliseconds: no float in the part, whose digest must survive
    /// a JSON round trip.
    pub load_ms: u64,
    pub runs_ms: u64,
    pub scores_ms: u64,
    pub device: String,
    pub host: String,
}

/// A circuit search's identity plus this part's place in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: String,
    pub shard: Shard,
    pub spec: PartSpec,
    /// The model source as given, and how its weights were held: what the
    /// merge loads unless told otherwise.
    pub model: String,
    pub weights: String,
    pub fingerprint: String,
    pub inputs: String,
    pub dataset: Option<String>,
    pub metrics: Vec<String>,
    pub units: usize,
    pub units_digest: String,
    pub timing: PartTiming,
}

/// A prepared prompt pair, as token ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairIds {
    pub clean: Vec<u32>,
    pub corrupted: Vec<u32>,
    pub answer: u32,
    pub wrong: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wrongs: Vec<u32>,
}

impl PairIds {
    pub fn of(p: &PreparedPair) -> Self {
        PairIds {
            clean: p.clean.clone(),
            corrupted: p.corrupted.clone(),
            answer: p.answer,
            wrong: p.wrong,
            answers: p.sets.answers.clone(),
            wrongs: p.sets.wrongs.clone(),
        }
    }

    pub fn pair(&self) -> PreparedPair {
        PreparedPair {
            clean: self.clean.clone(),
            corrupted: self.corrupted.clone(),
            answer: self.answer,
            wrong: self.wrong,
            sets: crate::patching::metrics::AnswerSets {
                answers: self.answers.clone(),
                wrongs: self.wrongs.clone(),
            },
        }
    }
}

/// The `dataset` object of `circuit --dataset`'s JSON output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetNote {
    pub path: Option<String>,
    pub digest: String,
    pub ids: Vec<Option<String>>,
    /// Position-aware searches over labelled pairs of one length: each
    /// token position's label (`positions::label_names`); absent
    /// otherwise, so parts written before it keep their digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub position_labels: Vec<Option<String>>,
}

/// What every part of a search shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shared {
    pub pairs: Vec<PairIds>,
    /// Per pair: clean then corrupted metrics, as hex bits.
    pub baselines: String,
    pub n_edges: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetNote>,
}

/// One computed unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartUnit {
    pub index: usize,
    pub run: usize,
    pub edges: (usize, usize),
    pub scores: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graddrop: Option<String>,
}

impl PartUnit {
    pub fn new(index: usize, unit: Unit, v: &UnitValues) -> Self {
        PartUnit {
            index,
            run: unit.run,
            edges: (unit.start, unit.end),
            scores: metrics_hex(&v.scores),
            plain: v.plain.as_deref().map(metrics_hex),
            graddrop: v.graddrop.as_deref().map(metrics_hex),
        }
    }

    /// The unit's place and values; `None` when a value string is not one
    /// row of hex metrics per edge.
    pub fn values(&self) -> Option<(Unit, UnitValues)> {
        let n = self.edges.1.checked_sub(self.edges.0)?;
        let rows = |s: &str| parse_metrics_hex(s).filter(|m: &Vec<Metrics>| m.len() == n);
        let opt = |s: &Option<String>| -> Option<Option<Vec<Metrics>>> {
            match s {
                Some(s) => rows(s).map(Some),
                None => Some(None),
            }
        };
        let unit = Unit {
            run: self.run,
            start: self.edges.0,
            end: self.edges.1,
        };
        Some((
            unit,
            UnitValues {
                scores: rows(&self.scores)?,
                plain: opt(&self.plain)?,
                graddrop: opt(&self.graddrop)?,
            },
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitPart {
    pub patchbench_circuit_part: u32,
    pub manifest: Manifest,
    pub circuit: Shared,
    pub units: Vec<PartUnit>,
    pub digest: String,
}

impl CircuitPart {
    /// A part with its content digest filled in.
    pub fn sealed(manifest: Manifest, circuit: Shared, units: Vec<PartUnit>) -> Self {
        let mut p = CircuitPart {
            patchbench_circuit_part: CIRCUIT_PART_FORMAT,
            manifest,
            circuit,
            units,
            digest: String::new(),
        };
        p.digest = p.content_digest();
        p
    }

    /// FNV-1a of the manifest, shared data and units as compact JSON.
    pub fn content_digest(&self) -> String {
        let text = serde_json::to_string(&(&self.manifest, &self.circuit, &self.units))
            .unwrap_or_default();
        hex_digest(text.as_bytes())
    }
}

/// Digest of a unit plan.
pub fn units_digest(units: &[Unit]) -> String {
    let v: Vec<[usize; 3]> = units.iter().map(|u| [u.run, u.start, u.end]).collect();
    hex_digest(serde_json::to_string(&v).unwrap_or_default().as_bytes())
}
