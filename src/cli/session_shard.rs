//! `patchbench sweep --session FILE --shard K/N [--sweep I] [--out PART]`:
//! one part of a session's sweep. The session is only read (the tasks of a
//! job array share it); the part's manifest names the session sweep (its
//! index, the session's model source, the session's digest of the sweep's
//! inputs), so `patchbench merge PARTS --into FILE` stores the merged sweep
//! exactly where and as `sweep --session FILE --write` would have, and
//! refuses a session edited since. With `--out` the part keeps a checkpoint
//! beside it and a rerun resumes, as for any sharded sweep.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{bail, Result};

use patchbench::data::Dataset;
use patchbench::model::LoadedModel;
use patchbench::patching::output::json_text;
use patchbench::patching::part::{SessionKey, Shard};
use patchbench::patching::sharded::PartControl;
use patchbench::patching::Method;
use patchbench::session::{results, time::rfc3339, Session};

use super::output::{refuse_clobber, write_output};
use super::session_sweep::prepare_entry_inputs;
use super::sweep::{checkpoint_path, host_name, run_with_control, SweepCmd, SweepFormat};

/// Runs shard `shard` of the one sweep in `todo` and writes its part file.
pub fn shard_session(
    cmd: &SweepCmd,
    path: &Path,
    session: &Session,
    m: &LoadedModel,
    dataset: Option<&Dataset>,
    todo: &[usize],
    shard: Shard,
) -> Result<()> {
    let shown = path.display();
    if cmd.session.write {
        bail!(
            "--shard writes a part file, not the session; drop --write and store the merged \
             parts with `patchbench merge PARTS... --into {shown}`"
        );
    }
    if cmd.format != SweepFormat::Json {
        bail!("--shard writes a part file, which is JSON; drop --format");
    }
    let i = match todo {
        [] => bail!("{shown}: no sweep to run: every sweep has a current result"),
        [i] => *i,
        _ => bail!(
            "{shown} has {} sweeps to run ({}); --shard splits one: choose it with --sweep N",
            todo.len(),
            todo.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if let Some(out) = cmd.out.as_deref() {
        refuse_clobber(out, &[path], "json")?;
    }
    let (pairs, labels) = prepare_entry_inputs(session, i, m, dataset)?;
    let spec = session.sweeps[i].spec.clone();
    let engine = cmd.sweep.engine(Method::Fast);
    let started = rfc3339(SystemTime::now());
    let key = SessionKey {
        source: session.model.source.clone(),
        sweep: i,
        inputs: results::inputs_digest(session, &session.sweeps[i]),
    };
    let checkpoint = cmd.out.as_deref().and_then(checkpoint_path);
    let mut control = PartControl::new(m, &pairs, &spec, &engine, shard, checkpoint)
        .with_labels(labels.as_ref())
        .with_dataset(dataset.map(|d| d.digest.clone()))
        .with_session(Some(key));
    let result = run_with_control(m, &pairs, labels.as_ref(), (&spec, &engine), &mut control)?;
    let part = control.part(&result, started, host_name());
    let text = json_text(&serde_json::to_value(&part)?) + "\n";
    write_output(cmd.out.as_deref(), &text, &[path], "json")?;
    Ok(control.finish()?)
}
