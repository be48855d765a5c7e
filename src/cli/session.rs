//! The session commands: `check`, `export`, and `sweep --session FILE
//! [--write]`, which runs a session's missing sweeps headless and stores
//! them back. All reading and writing goes through `patchbench::session`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use patchbench::model::device::{parse_device, parse_dtype};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::{run_sweep, Method, METRICS};
use patchbench::session::{
    self, dirs::resolve_model_source, io, results, Problem, Session, Severity,
};

use super::sweep::{ProgressLine, SweepCmd, SweepFormat};

/// `patchbench sweep`'s session mode.
#[derive(Args, Debug)]
pub struct SessionSweepArgs {
    /// Run the sweeps of this session file that have no result yet; the
    /// session names the model and the prompts.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "clean", "corrupted", "answer", "wrong", "target", "direction", "corruption",
        "noise_positions", "noise_scale", "samples", "seed", "window", "model",
        "prepend_bos", "no_prepend_bos", "method",
    ])]
    pub session: Option<PathBuf>,
    /// With --session: save each result back into FILE (atomically) as it finishes.
    #[arg(long, requires = "session")]
    pub write: bool,
    /// With --session: also rerun stored results that are stale (another
    /// model, or spec/prompts edited since).
    #[arg(long, requires = "session")]
    pub rerun_stale: bool,
}

impl SessionSweepArgs {
    pub fn check_unused(&self) -> Result<()> {
        if self.write || self.rerun_stale {
            bail!("--write and --rerun-stale apply to --session FILE");
        }
        Ok(())
    }
}

fn load_model(source: &str, file: &Path, device: &str, dtype: &str) -> Result<LoadedModel> {
    let opts = LoadOptions {
        device: parse_device(device)?,
        dtype: parse_dtype(dtype)?,
    };
    let resolved = resolve_model_source(source, file);
    LoadedModel::load(&resolved, &opts)
        .with_context(|| format!("loading the session's model {source:?}"))
}

fn load_session(path: &Path) -> Result<(Session, Vec<u8>)> {
    let bytes = io::read_checked(path)?;
    let loaded = io::parse_bytes(&bytes, path)?;
    for w in &loaded.warnings {
        eprintln!("{}", w.render(path));
    }
    Ok((loaded.session, bytes))
}

pub fn sweep_session(cmd: &SweepCmd) -> Result<()> {
    let args = &cmd.session;
    let Some(path) = args.session.as_deref() else {
        bail!("--session FILE is required here");
    };
    let (mut session, mut on_disk) = load_session(path)?;
    let missing: Vec<usize> = (0..session.sweeps.len())
        .filter(|&i| session.sweeps[i].result.is_none())
        .collect();
    if missing.is_empty() && !args.rerun_stale {
        for (i, why) in results::stale_results(&session, None) {
            eprintln!("sweep {i}: the stored result is stale: {why} (--rerun-stale reruns it)");
        }
        eprintln!(
            "{}: nothing to run: all {} sweeps have results",
            path.display(),
            session.sweeps.len()
        );
        return Ok(());
    }
    let m = load_model(
        &session.model.source,
        path,
        &cmd.sweep.model.device,
        &cmd.sweep.model.dtype,
    )?;
    if let Some(old) = session
        .model
        .fingerprint
        .as_deref()
        .filter(|f| *f != m.fingerprint)
    {
        eprintln!(
            "note: the model's fingerprint changed since this session last ran ({old} -> {}); results from before are stale",
            m.fingerprint
        );
    }
    let mut todo = missing;
    for (i, why) in results::stale_results(&session, Some(&m.fingerprint)) {
        if args.rerun_stale {
            todo.push(i);
        } else {
            eprintln!("sweep {i}: the stored result is stale: {why} (--rerun-stale reruns it)");
        }
    }
    todo.sort_unstable();
    let engine = cmd.sweep.engine(Method::Fast);
    let (mut failed, mut ran) = (Vec::new(), Vec::new());
    for &i in &todo {
        let spec = session.sweeps[i].spec.clone();
        let label = format!(
            "sweep {i} ({}, {}, {})",
            spec.target,
            spec.direction,
            spec.corruption.name()
        );
        let pairs = match results::prepare_entry(&session, i, &m.tokenizer) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{label}: {e}");
                failed.push(i);
                continue;
            }
        };
        let mut bar = ProgressLine::new();
        let result = run_sweep(&m.model, &pairs, &spec, &engine, None, &mut |p| {
            bar.update(p)
        });
        bar.finish();
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{label}: {e}");
                failed.push(i);
                continue;
            }
        };
        eprintln!(
            "{label}: {} cells, {} forward passes, {:.2} s",
            result.n_cells(),
            result.timing.forward_passes,
            result.timing.sweep_ms / 1e3
        );
        let stored = results::store_result(&session, i, &m, &pairs, result);
        session.sweeps[i].result = Some(stored);
        session.model.fingerprint = Some(m.fingerprint.clone());
        ran.push(i);
        if args.write {
            write_back(path, &session, &mut on_disk)?;
        }
    }
    if args.write {
        eprintln!("{}: stored {} result(s)", path.display(), ran.len());
    } else if !ran.is_empty() {
        print_reports(cmd, &session, &ran)?;
        eprintln!(
            "results not saved; add --write to store them in {}",
            path.display()
        );
    }
    if !failed.is_empty() {
        bail!("{} of {} sweeps failed", failed.len(), todo.len());
    }
    Ok(())
}

/// Saves atomically, unless someone else changed the file since we read
/// it: then the results go to a sibling file rather than overwrite theirs.
fn write_back(path: &Path, session: &Session, on_disk: &mut Vec<u8>) -> Result<()> {
    let now = std::fs::read(path).unwrap_or_default();
    let text = session::to_yaml(session);
    if now != *on_disk {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let stamp = session::time::rfc3339(std::time::SystemTime::now()).replace(':', "");
        let side = path.with_file_name(format!("{stem}.sweep-{stamp}.yaml"));
        io::save_as(session, &side, false)?;
        bail!(
            "{} changed on disk while the sweeps ran, so it was not overwritten; the results are in {}",
            path.display(),
            side.display()
        );
    }
    io::write_atomic(path, text.as_bytes())?;
    *on_disk = text.into_bytes();
    Ok(())
}

fn print_reports(cmd: &SweepCmd, session: &Session, ran: &[usize]) -> Result<()> {
    let reports: Vec<_> = ran
        .iter()
        .filter_map(|&i| results::report(session, &session.sweeps[i]))
        .collect();
    let text = match cmd.format {
        SweepFormat::Json if reports.len() == 1 => {
            serde_json::to_string_pretty(&reports[0].to_json())? + "\n"
        }
        SweepFormat::Json => {
            let all: Vec<_> = reports.iter().map(|r| r.to_json()).collect();
            serde_json::to_string_pretty(&all)? + "\n"
        }
        SweepFormat::Csv if reports.len() == 1 => reports[0].to_csv(),
        SweepFormat::Csv => bail!(
            "--format csv prints one sweep; use --write, then `patchbench export FILE --sweep N --format csv`"
        ),
        SweepFormat::Table => {
            let color = cmd.out.is_none()
                && std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none();
            reports
                .iter()
                .map(|r| r.to_table(&cmd.metric, color))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    output(cmd.out.as_deref(), &text)
}

fn output(out: Option<&Path>, text: &str) -> Result<()> {
    match out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display())),
        None => Ok(std::io::stdout().lock().write_all(text.as_bytes())?),
    }
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
    #[arg(long, default_value = "f32")]
    pub dtype: String,
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
            println!("{}", p.render(path));
        }
        if let Some(s) = summary.filter(|_| problems.is_empty()) {
            println!("{}: ok: {s}", path.display());
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
        let m = load_model(&s.model.source, path, &args.device, &args.dtype)?;
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
    #[arg(long)]
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
        eprintln!("warning: sweep {n}'s result is stale: {why}");
    }
    let report = results::report(&s, entry).context("stored result")?;
    let text = match args.format {
        ExportFormat::Json => serde_json::to_string_pretty(&report.to_json())? + "\n",
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
    output(args.out.as_deref(), &text)
}
