//! Part files: what one shard of a sweep computed, and the merge of a
//! complete set of parts into the result one process would have produced.
//!
//! A part file is one JSON object (ARCHITECTURE.md documents it as an
//! output contract):
//! - `patchbench_part`: the format version (1);
//! - `manifest`: the sweep's identity (`version`, `spec`, `model`,
//!   `fingerprint`, `inputs` (digest of the prepared prompts), `dataset`,
//!   `engine` (the batching options, which decide the units), `metrics`,
//!   `units` and `units_digest` (the canonical unit list)), the part's place
//!   in it (`shard: {k, n}`, 1-based) and its `timing`;
//! - `sweep`: what every part shares: the cell `layout`, each run's pair,
//!   the per-pair `baselines` and the report `header` (tokens, answers);
//! - `units`: each computed unit's index, `rows` (`[run, cell]`) and values.
//!
//! Metric values are stored as the hex of their f32 bit patterns (8 digits
//! per value, metrics in `manifest.metrics` order), so a merge reproduces
//! every bit, NaN and infinities included, which decimal JSON cannot.

use serde::{Deserialize, Serialize};

use super::metrics::{Metrics, METRICS, N_METRICS};
use super::output::TokenList;
use super::result::{assemble_values, Layout, SweepResult, Timing};
use super::runs::PairBaselines;
use super::shard_set::{check_coverage, CoverageError, PartUnits};
use super::spec::SweepSpec;

/// The part file format written by this build.
pub const PART_FORMAT: u32 = 1;

/// Which part of `n` (1-based `k`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("--shard {s:?}: give K/N with 1 <= K <= N, e.g. --shard 2/3");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if k == 0 || k > n || n > 100_000 {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

/// The engine options that decide how cells are batched (and so the units
/// and their bits); parts and checkpoints must agree on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineKey {
    pub max_batch_mem: usize,
    pub max_batch_tokens: usize,
    pub packed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartTiming {
    /// RFC 3339 start of the shard's run (UTC).
    pub started: String,
    pub load_ms: f64,
    pub sweep_ms: f64,
    /// Forward passes this part ran (unpatched runs included).
    pub forward_passes: usize,
    pub device: String,
    pub host: String,
}

/// A sweep's identity plus this part's place in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: String,
    pub shard: Shard,
    pub spec: SweepSpec,
    pub model: String,
    pub fingerprint: String,
    pub inputs: String,
    pub dataset: Option<String>,
    /// The position labels the `pos` axis runs over (a labelled dataset);
    /// empty when the axis is token positions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The session sweep this part is of (`sweep --session S --shard K/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionKey>,
    pub engine: EngineKey,
    pub metrics: Vec<String>,
    pub units: usize,
    pub units_digest: String,
    pub timing: PartTiming,
}

/// Which sweep of which session a part belongs to, so that `merge --into`
/// stores it where `sweep --session --write` would have, and nowhere else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionKey {
    /// The session's `model.source`.
    pub source: String,
    /// The sweep's index in the session's `sweeps`.
    pub sweep: usize,
    /// The session's digest of the sweep's inputs (spec, prompt pairs or
    /// dataset, BOS choice), as its stored result records it.
    pub inputs: String,
}

/// A dataset sweep's report extras: the `dataset` object of the JSON
/// output and the options of its per-cell statistics, so a merge prints
/// what the unsharded `sweep --dataset` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetNote {
    pub path: Option<String>,
    pub digest: String,
    pub ids: Vec<Option<String>>,
    pub resamples: usize,
    pub stats_seed: u64,
}

/// Tokens and answers of the (first) prompt pair, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub clean: TokenList,
    pub corrupted: TokenList,
    pub answer: (u32, String),
    pub wrong: (u32, String),
}

/// What every part of a sweep shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartSweep {
    pub layout: Layout,
    pub run_pairs: Vec<usize>,
    /// Per pair: clean then corrupted metrics, as hex bits.
    pub baselines: String,
    pub header: Header,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<DatasetNote>,
}

/// One computed unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartUnit {
    pub index: usize,
    /// `(run, cell)` of each row.
    pub rows: Vec<(usize, usize)>,
    /// One metrics row per row, as hex bits.
    pub values: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartFile {
    pub patchbench_part: u32,
    pub manifest: Manifest,
    pub sweep: PartSweep,
    pub units: Vec<PartUnit>,
}

/// Metrics as hex of their f32 bits, 8 digits per value.
pub fn metrics_hex(ms: &[Metrics]) -> String {
    let mut s = String::with_capacity(ms.len() * N_METRICS * 8);
    for m in ms {
        for v in m.values() {
            s.push_str(&format!("{:08x}", v.to_bits()));
        }
    }
    s
}

/// Parses [`metrics_hex`]; `None` when it is not whole rows of hex.
pub fn parse_metrics_hex(s: &str) -> Option<Vec<Metrics>> {
    let row = 8 * N_METRICS;
    if s.len() % row != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len() / row)
        .map(|r| {
            let mut v = [0f32; N_METRICS];
            for (i, x) in v.iter_mut().enumerate() {
                let at = r * row + i * 8;
                *x = f32::from_bits(u32::from_str_radix(&s[at..at + 8], 16).ok()?);
            }
            Some(Metrics::from_values(v))
        })
        .collect()
}

/// Per-pair baselines as hex (clean then corrupted per pair).
pub fn baselines_hex(b: &[PairBaselines]) -> String {
    let flat: Vec<Metrics> = b.iter().flat_map(|b| [b.clean, b.corrupted]).collect();
    metrics_hex(&flat)
}

fn parse_baselines(s: &str) -> Option<Vec<PairBaselines>> {
    let flat = parse_metrics_hex(s)?;
    (flat.len() % 2 == 0).then(|| {
        flat.chunks(2)
            .map(|c| PairBaselines {
                clean: c[0],
                corrupted: c[1],
            })
            .collect()
    })
}

/// The metric names of this build, as a manifest lists them.
pub fn metric_names() -> Vec<String> {
    METRICS.iter().map(|s| s.to_string()).collect()
}

/// Why a set of parts does not merge. Parts are named by their file.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no part files given; pass every part of the sweep, e.g. part-*.json")]
    NoParts,
    #[error("{file}: not a patchbench part file")]
    Parse {
        file: String,
        source: serde_json::Error,
    },
    #[error(
        "{file}: part format {found} is not supported (this build reads format {})",
        PART_FORMAT
    )]
    Format { file: String, found: u32 },
    #[error("{file}: {what} is damaged ({detail}); recompute this shard")]
    Damaged {
        file: String,
        what: String,
        detail: String,
    },
    #[error(
        "{file} is from another sweep than {first}: its {field} differs ({theirs} vs {ours}); \
         merge only the parts of one sweep"
    )]
    Foreign {
        file: String,
        first: String,
        field: &'static str,
        ours: String,
        theirs: String,
    },
    #[error(transparent)]
    Coverage(#[from] CoverageError),
}

/// A merged sweep: the first part's manifest and the assembled result.
#[derive(Debug, Clone)]
pub struct Merged {
    pub manifest: Manifest,
    pub header: Header,
    pub dataset: Option<DatasetNote>,
    pub result: SweepResult,
}

/// Merges parts (`(file name, part)`): checks that they are of one sweep
/// and cover every unit exactly once, then assembles the result with the
/// same arithmetic as an unsharded run.
pub fn merge(parts: &[(String, PartFile)]) -> Result<Merged, MergeError> {
    let Some((first_name, first)) = parts.first() else {
        return Err(MergeError::NoParts);
    };
    for (name, p) in parts {
        if p.patchbench_part != PART_FORMAT {
            return Err(MergeError::Format {
                file: name.clone(),
                found: p.patchbench_part,
            });
        }
        check_same(first_name, first, name, p)?;
    }
    let coverage: Vec<PartUnits> = parts
        .iter()
        .map(|(name, p)| PartUnits {
            file: name,
            shard: p.manifest.shard,
            units: p.units.iter().map(|u| u.index).collect(),
        })
        .collect();
    check_coverage(
        &coverage,
        first.manifest.shard.n,
        first.manifest.units,
        "sweep",
    )?;
    let sweep = &first.sweep;
    let baselines = parse_baselines(&sweep.baselines).ok_or_else(|| MergeError::Damaged {
        file: first_name.clone(),
        what: "sweep.baselines".into(),
        detail: "not whole rows of hex metrics".into(),
    })?;
    let n_cells = sweep.layout.n_cells();
    let mut values = vec![vec![Metrics::nan(); n_cells]; sweep.run_pairs.len()];
    for (name, p) in parts {
        for u in &p.units {
            let damaged = |detail: String| MergeError::Damaged {
                file: name.clone(),
                what: format!("unit {}", u.index),
                detail,
            };
            let ms = parse_metrics_hex(&u.values)
                .filter(|ms| ms.len() == u.rows.len())
                .ok_or_else(|| damaged("values are not one row of hex metrics per row".into()))?;
            for (&(run, cell), m) in u.rows.iter().zip(ms) {
                *values
                    .get_mut(run)
                    .and_then(|r| r.get_mut(cell))
                    .ok_or_else(|| damaged(format!("run {run}, cell {cell} does not exist")))? = m;
            }
        }
    }
    let timing = Timing {
        sweep_ms: parts
            .iter()
            .map(|p| p.1.manifest.timing.sweep_ms)
            .fold(0.0, f64::max),
        forward_passes: parts
            .iter()
            .map(|p| p.1.manifest.timing.forward_passes)
            .sum(),
        device: first.manifest.timing.device.clone(),
    };
    let mut result = assemble_values(&sweep.layout, &sweep.run_pairs, &baselines, values, timing);
    result.position_labels = first.manifest.labels.clone();
    Ok(Merged {
        manifest: first.manifest.clone(),
        header: sweep.header.clone(),
        dataset: sweep.dataset.clone(),
        result,
    })
}

/// Checks that part `b` is of the same sweep as part `a`.
fn check_same(a_name: &str, a: &PartFile, b_name: &str, b: &PartFile) -> Result<(), MergeError> {
    let (ma, mb) = (&a.manifest, &b.manifest);
    let foreign = |field: &'static str, ours: String, theirs: String| MergeError::Foreign {
        file: b_name.to_string(),
        first: a_name.to_string(),
        field,
        ours,
        theirs,
    };
    let checks: [(&'static str, String, String); 13] = [
        ("patchbench version", ma.version.clone(), mb.version.clone()),
        (
            "shard count",
            ma.shard.n.to_string(),
            mb.shard.n.to_string(),
        ),
        ("spec", json(&ma.spec), json(&mb.spec)),
        (
            "model fingerprint",
            ma.fingerprint.clone(),
            mb.fingerprint.clone(),
        ),
        (
            "prompts (inputs digest)",
            ma.inputs.clone(),
            mb.inputs.clone(),
        ),
        ("dataset digest", json(&ma.dataset), json(&mb.dataset)),
        ("position labels", json(&ma.labels), json(&mb.labels)),
        ("session sweep", json(&ma.session), json(&mb.session)),
        ("batching options", json(&ma.engine), json(&mb.engine)),
        ("metrics", ma.metrics.join(","), mb.metrics.join(",")),
        ("unit count", ma.units.to_string(), mb.units.to_string()),
        (
            "unit plan (units_digest)",
            ma.units_digest.clone(),
            mb.units_digest.clone(),
        ),
        (
            "shared sweep data (layout, baselines, tokens)",
            json(&a.sweep),
            json(&b.sweep),
        ),
    ];
    for (field, ours, theirs) in checks {
        if ours != theirs {
            let clip = |s: String| crate::util::text::clip(&s, 120).into_owned();
            return Err(foreign(field, clip(ours), clip(theirs)));
        }
    }
    if mb.shard.k == 0 || mb.shard.k > mb.shard.n {
        return Err(MergeError::Damaged {
            file: b_name.to_string(),
            what: "manifest.shard".into(),
            detail: format!("{} is not K/N with 1 <= K <= N", mb.shard),
        });
    }
    Ok(())
}

/// Compact JSON of anything serialisable, for comparing manifest fields.
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
