//! `patchbench sweep --session FILE [--write]`: runs a session's missing
//! (or, with `--rerun-stale`, stale) sweeps headless and prints them or
//! stores them back. The session itself is read and written only through
//! `patchbench::session`; printed reports go through `output.rs`, which
//! refuses to write them over the session.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Result};

use patchbench::patching::output::json_text;
use patchbench::patching::{run_sweep_labeled, Method, PositionLabels, PreparedPair};
use patchbench::session::{self, io, results, Session};

use super::dataset::prepare_dataset;
use super::output::{refuse_clobber, write_output};
use super::progress::ProgressLine;
use super::session::{load_model, load_session};
use super::sweep::{SweepCmd, SweepFormat};

pub fn sweep_session(cmd: &SweepCmd) -> Result<()> {
    let args = &cmd.session;
    let Some(path) = args.session.as_deref() else {
        bail!("--session FILE is required here");
    };
    if let Some(out) = cmd.out.as_deref() {
        // Refused before anything runs, not after the sweeps.
        refuse_clobber(out, &[path], cmd.format.extension())?;
    }
    let (mut session, mut on_disk) = load_session(path)?;
    let missing: Vec<usize> = (0..session.sweeps.len())
        .filter(|&i| session.sweeps[i].result.is_none())
        .collect();
    if missing.is_empty() && !args.rerun_stale {
        for (i, why) in results::stale_results(&session, None) {
            note!("sweep {i}: the stored result is stale: {why} (--rerun-stale reruns it)");
        }
        note!(
            "{}: nothing to run: all {} sweeps have results",
            path.display(),
            session.sweeps.len()
        );
        if cmd.shard.is_some() {
            bail!("--shard: no part to write; pass --rerun-stale to rerun a stale result");
        }
        return Ok(());
    }
    let m = load_model(
        &session.model.source,
        path,
        &cmd.sweep.model.device,
        &cmd.sweep.model.weights,
    )?;
    if let Some(old) = session
        .model
        .fingerprint
        .as_deref()
        .filter(|f| *f != m.fingerprint)
    {
        note!(
            "note: the model's fingerprint changed since this session last ran ({old} -> {}); results from before are stale",
            m.fingerprint
        );
    }
    // A session's dataset: read it, and record a changed file's digest so
    // the results computed on the old file turn stale.
    let dataset = match &session.dataset {
        Some(r) => {
            let got = session::dataset::resolve(r, Some(path))?;
            if got.changed {
                note!(
                    "note: the session's dataset changed since it was recorded ({} -> {}); results computed on it before are stale",
                    r.digest,
                    got.dataset.digest
                );
            }
            let digest = got.dataset.digest.clone();
            if let Some(r) = session.dataset.as_mut() {
                r.digest = digest;
            }
            Some(got.dataset)
        }
        None => None,
    };
    let mut todo = missing;
    for (i, why) in results::stale_results(&session, Some(&m.fingerprint)) {
        if args.rerun_stale {
            todo.push(i);
        } else {
            note!("sweep {i}: the stored result is stale: {why} (--rerun-stale reruns it)");
        }
    }
    todo.sort_unstable();
    if let Some(n) = args.sweep {
        if n >= session.sweeps.len() {
            bail!(
                "--sweep {n}: {} has {} sweep(s), numbered from 0",
                path.display(),
                session.sweeps.len()
            );
        }
        if !todo.contains(&n) {
            bail!(
                "--sweep {n}: sweep {n} of {} already has a current result (a stale one is \
                 rerun with --rerun-stale)",
                path.display()
            );
        }
        todo = vec![n];
    }
    if let Some(shard) = cmd.shard {
        return super::session_shard::shard_session(
            cmd,
            path,
            &session,
            &m,
            dataset.as_ref(),
            &todo,
            shard,
        );
    }
    if todo.is_empty() {
        note!(
            "{}: nothing to run: all {} sweeps have current results",
            path.display(),
            session.sweeps.len()
        );
        if cmd.shard.is_some() {
            bail!("--shard: no part to write");
        }
        return Ok(());
    }
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
        let (pairs, labels) = match prepare_entry_inputs(&session, i, &m, dataset.as_ref()) {
            Ok(p) => p,
            Err(e) => {
                note!("{label}: {e:#}");
                failed.push(i);
                continue;
            }
        };
        let mut bar = ProgressLine::new();
        let result = run_sweep_labeled(
            &m.model,
            &pairs,
            labels.as_ref(),
            &spec,
            &engine,
            None,
            &mut |p| bar.update(p),
        );
        bar.finish();
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                note!("{label}: {e}");
                failed.push(i);
                continue;
            }
        };
        note!(
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
        note!("{}: stored {} result(s)", path.display(), ran.len());
    } else if !ran.is_empty() {
        print_reports(cmd, path, &session, &ran)?;
        note!(
            "results not saved; add --write to store them in {}",
            path.display()
        );
    }
    if !failed.is_empty() {
        bail!("{} of {} sweeps failed", failed.len(), todo.len());
    }
    Ok(())
}

/// The prompt pairs (tokenised) and position labels of sweep `i`: the
/// session's dataset (or the sweep's subset of it), else its prompts.
pub fn prepare_entry_inputs(
    session: &Session,
    i: usize,
    m: &patchbench::model::LoadedModel,
    dataset: Option<&patchbench::data::Dataset>,
) -> Result<(Vec<PreparedPair>, Option<PositionLabels>)> {
    match dataset {
        Some(ds) => session::dataset::entry_subset(ds, &session.sweeps[i])
            .map_err(anyhow::Error::msg)
            .and_then(|sub| prepare_dataset(sub, m, session.prepend_bos))
            .map(|d| (d.pairs, d.labels)),
        None => results::prepare_entry(session, i, &m.tokenizer)
            .map(|p| (p, None))
            .map_err(anyhow::Error::new),
    }
}

/// Saves atomically, unless someone else changed the file since we read
/// it: then the results go to a sibling file rather than overwrite theirs.
pub fn write_back(path: &Path, session: &Session, on_disk: &mut Vec<u8>) -> Result<()> {
    // Read as the session was: a path swapped for a FIFO must not block.
    let now = io::read_checked(path).unwrap_or_default();
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

fn print_reports(cmd: &SweepCmd, path: &Path, session: &Session, ran: &[usize]) -> Result<()> {
    let reports: Vec<_> = ran
        .iter()
        .filter_map(|&i| results::report(session, &session.sweeps[i]))
        .collect();
    let text = match cmd.format {
        SweepFormat::Json if reports.len() == 1 => {
            serde_json::to_string_pretty(&reports[0].to_json())? + "\n"
        }
        SweepFormat::Json => {
            let all = reports.iter().map(|r| r.to_json()).collect();
            json_text(&serde_json::Value::Array(all)) + "\n"
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
    write_output(cmd.out.as_deref(), &text, &[path], cmd.format.extension())
}
