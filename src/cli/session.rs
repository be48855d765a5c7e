//! The session commands `check` and `export`, and the loading helpers
//! that `sweep --session` shares. All reading and writing goes through
//! `patchbench::session`; output files through `output.rs`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use patchbench::model::loaded::LoadOptions;
use patchbench::model::{LoadedModel, WeightsMode};
use patchbench::patching::output::json_text;
use patchbench::patching::METRICS;
use patchbench::session::{
    self, dirs::resolve_model_source, io, results, Problem, Session, Severity,
};

use super::output::write_output;

pub fn load_model(source: &str, file: &Path, device: &str, weights: &str) -> Result<LoadedModel> {
    let opts = LoadOptions {
        device: super::device_from_arg(device)?,
        weights: weights.parse::<WeightsMode>()?,
    };
    let resolved = resolve_model_source(source, file);
    LoadedModel::load(&resolved, &opts)
        .with_context(|| format!("loading the session's model {source:?}"))
}

pub fn load_session(path: &Path) -> Result<(Session, Vec<u8>)> {
    let bytes = io::read_checked(path)?;
    let loaded = io::parse_bytes(&bytes, path)?;
    for w in &loaded.warnings {
        note!("{}", w.render(path));
    }
    Ok((loaded.session, bytes))
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Session files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also load each session's model: check that every prompt pair
    /// tokenises (equal lengths, one-token answers) and that stored results
    /// are not stale.
    #[arg(long)]
    pub load_model: bool,
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// How weights are held: f32, bf16, f16 or quantized.
    #[arg(long, alias = "dtype", default_value = "f32")]
    pub weights: String,
}

/// Validates session files, printing every problem; fails if any.
pub fn check(args: &CheckArgs) -> Result<()> {
    let (mut errors, mut warnings) = (0, 0);
    for path in &args.files {
        let (problems, summary) = match check_one(path, args) {
            Ok(x) => x,
            Err(e) => (vec![Problem::error("", format!("{e:#}"))], None),
        };
        for p in &problems {
            match p.severity {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            report!("{}", p.render(path));
        }
        if let Some(s) = summary.filter(|_| problems.is_empty()) {
            report!("{}: ok: {s}", path.display());
        }
    }
    if errors + warnings > 0 {
        bail!("{errors} error(s), {warnings} warning(s)");
    }
    Ok(())
}

fn check_one(path: &Path, args: &CheckArgs) -> Result<(Vec<Problem>, Option<String>)> {
    let report = session::check_file(path)?;
    let mut problems = report.problems;
    let Some(s) = report.session else {
        return Ok((problems, None));
    };
    let with_results = s.sweeps.iter().filter(|e| e.result.is_some()).count();
    let summary = format!(
        "model {}, {} prompt pair(s), {} sweep(s), {with_results} with results",
        s.model.source,
        s.prompts.len(),
        s.sweeps.len()
    );
    let current = if args.load_model {
        let m = load_model(&s.model.source, path, &args.device, &args.weights)?;
        for i in 0..s.sweeps.len() {
            if let Err(e) = results::prepare_entry(&s, i, &m.tokenizer) {
                problems.push(Problem::error(format!("sweeps[{i}]"), e.to_string()));
            }
        }
        Some(m.fingerprint)
    } else {
        None
    };
    for (i, why) in results::stale_results(&s, current.as_deref()) {
        problems.push(
            Problem::warning(format!("sweeps[{i}].result"), format!("stale: {why}"))
                .hint("rerun with `patchbench sweep --session FILE --write --rerun-stale`"),
        );
    }
    Ok((problems, Some(summary)))
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum ExportFormat {
    Csv,
    Json,
    Svg,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The session file.
    pub file: PathBuf,
    /// Which sweep (0-based, as `patchbench check` lists them); may be
    /// omitted when the session has one sweep.
    #[arg(long, allow_negative_numbers = true,
          value_parser = super::bounds::count::<0, { usize::MAX }>)]
    pub sweep: Option<usize>,
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Metric drawn by --format svg (default: the session's selected metric).
    #[arg(long)]
    pub metric: Option<String>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Exports a stored sweep result as CSV, JSON (the DESIGN.md contract) or
/// an SVG heatmap.
pub fn export(args: &ExportArgs) -> Result<()> {
    let (s, _) = load_session(&args.file)?;
    let list = || {
        s.sweeps
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let state = if e.result.is_some() {
                    "result"
                } else {
                    "no result"
                };
                format!("  {i}: {} {} ({state})", e.spec.target, e.spec.direction)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let n = match (args.sweep, s.sweeps.len()) {
        (_, 0) => bail!("{} has no sweeps to export", args.file.display()),
        (None, 1) => 0,
        (None, k) => bail!(
            "the session has {k} sweeps; choose one with --sweep N:\n{}",
            list()
        ),
        (Some(n), k) if n >= k => bail!(
            "there is no sweep {n}; the session's sweeps are:\n{}",
            list()
        ),
        (Some(n), _) => n,
    };
    let entry = &s.sweeps[n];
    let Some(stored) = &entry.result else {
        bail!(
            "sweep {n} has no result yet; run `patchbench sweep --session {} --write` first",
            args.file.display()
        );
    };
    if let Some(why) = results::staleness(&s, entry, None) {
        note!("warning: sweep {n}'s result is stale: {why}");
    }
    let report = results::report(&s, entry).context("stored result")?;
    let text = match args.format {
        ExportFormat::Json => json_text(&report.to_json()) + "\n",
        ExportFormat::Csv => report.to_csv(),
        ExportFormat::Svg => {
            let metric = args.metric.as_deref().unwrap_or(&s.ui.metric);
            if !METRICS.contains(&metric) {
                bail!(
                    "unknown metric {metric:?}; metrics are {}",
                    METRICS.join(", ")
                );
            }
            session::heatmap_svg(&s.model.source, &entry.spec, stored, metric)?
        }
    };
    let ext = match args.format {
        ExportFormat::Csv => "csv",
        ExportFormat::Json => "json",
        ExportFormat::Svg => "svg",
    };
    write_output(args.out.as_deref(), &text, &[&args.file], ext)
}
