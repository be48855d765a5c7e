//! `patchbench merge PARTS...`: joins the part files of a sharded sweep
//! (`patchbench sweep ... --shard K/N`) into the JSON, CSV or table an
//! unsharded run prints, or (`--into SESSION`) into the session sweep the
//! parts were cut from (`merge_into.rs`). The parts must be of one sweep
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

use patchbench::patching::output::SweepReport;
use patchbench::patching::part::{merge, MergeError, PartFile};
use patchbench::util::fs::{limits, read_text_capped};

use super::output::{refuse_clobber, write_output};
use super::sweep::{render, SweepFormat};

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Every part file of the sweep (any order).
    #[arg(required = true, value_name = "PARTS")]
    pub parts: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "json")]
    pub format: SweepFormat,
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
}

/// Reads and parses every part file, naming the file in any error.
pub fn read_parts(paths: &[PathBuf]) -> Result<Vec<(String, PartFile)>> {
    let mut parts = Vec::with_capacity(paths.len());
    for path in paths {
        let text = read_text_capped(path, limits::PARTS, "sweep part file")
            .with_context(|| format!("reading part {}", path.display()))?;
        let name = path.display().to_string();
        let part: PartFile = serde_json::from_str(&text).map_err(|source| MergeError::Parse {
            file: name.clone(),
            source,
        })?;
        parts.push((name, part));
    }
    Ok(parts)
}

pub fn merge_parts(args: &MergeArgs) -> Result<()> {
    let inputs: Vec<&std::path::Path> = args.parts.iter().map(|p| p.as_path()).collect();
    if let Some(session) = args.into.as_deref() {
        return super::merge_into::merge_into(&read_parts(&args.parts)?, session);
    }
    if let Some(out) = args.out.as_deref() {
        refuse_clobber(out, &inputs, args.format.extension())?;
    }
    let merged = merge(&read_parts(&args.parts)?)?;
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
    let text = render(
        &rep,
        merged.dataset.as_ref(),
        args.format,
        &args.metric,
        color,
    );
    write_output(args.out.as_deref(), &text, &inputs, args.format.extension())
}
