//! `patchbench merge PARTS...`: joins the part files of a sharded sweep
//! (`patchbench sweep ... --shard K/N`) into the JSON, CSV or table an
//! unsharded run prints, or (`--into SESSION`) into the session sweep the
//! parts were cut from (`merge_into.rs`). Circuit parts (`patchbench
//! circuit ... --shard K/N`) are recognised by their format key and
//! finished with the model (`merge_circuit.rs`); a set mixing the two kinds
//! is refused. The parts must be of one sweep
//! (same spec, model fingerprint, prompts, batching and unit plan) and
//! cover every unit exactly once; otherwise the error names the missing,
//! duplicated or foreign part. Values are assembled with the engine's own
//! arithmetic, so the output equals the unsharded run's bit for bit (timing
//! aside: the merged `sweep_ms` is the slowest part's, `forward_passes`
//! the sum).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use clap::ValueEnum;
use patchbench::patching::output::SweepReport;
use patchbench::patching::part::{merge, MergeError, PartFile};
use patchbench::util::fs::{limits, read_text_capped};

use super::circuit::CircuitFormat;
use super::output::{refuse_clobber, write_output};
use super::sweep::{render, SweepFormat};

/// Output formats: a sweep's (json, csv, table) and a circuit's (those and
/// dot, svg).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum MergeFormat {
    Json,
    Csv,
    Table,
    /// Circuit parts only: a Graphviz digraph of the listed edges.
    Dot,
    /// Circuit parts only: a layered drawing of the listed edges.
    Svg,
}

impl MergeFormat {
    fn sweep(self) -> Result<SweepFormat> {
        match self {
            MergeFormat::Json => Ok(SweepFormat::Json),
            MergeFormat::Csv => Ok(SweepFormat::Csv),
            MergeFormat::Table => Ok(SweepFormat::Table),
            MergeFormat::Dot | MergeFormat::Svg => {
                anyhow::bail!("--format dot and svg are for circuit parts; a sweep merges to json, csv or table")
            }
        }
    }

    pub fn circuit(self) -> CircuitFormat {
        match self {
            MergeFormat::Json => CircuitFormat::Json,
            MergeFormat::Csv => CircuitFormat::Csv,
            MergeFormat::Table => CircuitFormat::Table,
            MergeFormat::Dot => CircuitFormat::Dot,
            MergeFormat::Svg => CircuitFormat::Svg,
        }
    }
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Every part file of the sweep (any order).
    #[arg(required = true, value_name = "PARTS")]
    pub parts: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "json")]
    pub format: MergeFormat,
    /// Metric shown by --format table.
    #[arg(long, default_value = "logit_diff_normalized")]
    pub metric: String,
    /// Write the output to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Store the merged sweep in this session file instead of printing it:
    /// the parts of `patchbench sweep --session FILE --shard K/N`, stored
    /// as `sweep --session FILE --write` stores the unsharded run.
    #[arg(long, value_name = "SESSION", conflicts_with_all = ["out", "format", "metric"])]
    pub into: Option<PathBuf>,
    /// Circuit parts: the model the search is finished with (ranking, exact
    /// checks and the faithfulness curve are forward passes); default: the
    /// parts' own `manifest.model`. Its fingerprint must be the parts'.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Circuit parts: cpu, cuda, cuda:N or auto (default auto).
    #[arg(long)]
    pub device: Option<String>,
    /// Circuit parts: how weights are held; default: as the parts held them.
    #[arg(long, alias = "dtype")]
    pub weights: Option<String>,
}

/// Which kind of part files a merge got.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Sweep,
    Circuit,
}

fn kind_of(v: &serde_json::Value) -> Kind {
    if v.get("patchbench_circuit_part").is_some() {
        Kind::Circuit
    } else {
        Kind::Sweep
    }
}

/// Reads every part file as JSON, naming the file in any error.
fn read_json(paths: &[PathBuf]) -> Result<Vec<(String, serde_json::Value)>> {
    let mut parts = Vec::with_capacity(paths.len());
    for path in paths {
        let text = read_text_capped(path, limits::PARTS, "part file")
            .with_context(|| format!("reading part {}", path.display()))?;
        let name = path.display().to_string();
        let v = serde_json::from_str(&text).map_err(|source| MergeError::Parse {
            file: name.clone(),
            source,
        })?;
        parts.push((name, v));
    }
    Ok(parts)
}

/// Parses sweep part files read as JSON, naming the file in any error.
fn sweep_parts(files: Vec<(String, serde_json::Value)>) -> Result<Vec<(String, PartFile)>> {
    let mut parts = Vec::with_capacity(files.len());
    for (name, v) in files {
        let part: PartFile = serde_json::from_value(v).map_err(|source| MergeError::Parse {
            file: name.clone(),
            source,
        })?;
        parts.push((name, part));
    }
    Ok(parts)
}

pub fn merge_parts(args: &MergeArgs) -> Result<()> {
    let inputs: Vec<&std::path::Path> = args.parts.iter().map(|p| p.as_path()).collect();
    let files = read_json(&args.parts)?;
    let sweep_at = files.iter().find(|f| kind_of(&f.1) == Kind::Sweep);
    let circuit_at = files.iter().find(|f| kind_of(&f.1) == Kind::Circuit);
    match (sweep_at, circuit_at) {
        (Some(s), Some(c)) => anyhow::bail!(
            "{} is a sweep part and {} a circuit part: merge the parts of one sweep or of one \
             circuit search at a time",
            s.0,
            c.0
        ),
        (None, Some(_)) => return super::merge_circuit::merge_circuit(files, args),
        _ => {}
    }
    if args.model.is_some() || args.device.is_some() || args.weights.is_some() {
        anyhow::bail!(
            "--model, --device and --weights are for circuit parts (their merge finishes the \
             search with the model); sweep parts merge without one: drop them"
        );
    }
    let format = args.format.sweep()?;
    if let Some(session) = args.into.as_deref() {
        return super::merge_into::merge_into(&sweep_parts(files)?, session);
    }
    if let Some(out) = args.out.as_deref() {
        refuse_clobber(out, &inputs, format.extension())?;
    }
    let merged = merge(&sweep_parts(files)?)?;
    let rep = SweepReport {
        model: &merged.manifest.model,
        spec: &merged.manifest.spec,
        clean: merged.header.clean.clone(),
        corrupted: merged.header.corrupted.clone(),
        answer: merged.header.answer.clone(),
        wrong: merged.header.wrong.clone(),
        result: &merged.result,
        load_ms: merged.manifest.timing.load_ms,
    };
    let color = args.out.is_none() && std::io::stdout().is_terminal();
    let text = render(&rep, merged.dataset.as_ref(), format, &args.metric, color);
    write_output(args.out.as_deref(), &text, &inputs, format.extension())
}
