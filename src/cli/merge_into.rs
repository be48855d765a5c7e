//! `patchbench merge PARTS... --into SESSION`: stores the merged parts of
//! a session's sweep (`sweep --session SESSION --shard K/N`) in the session
//! file, exactly as `sweep --session SESSION --write` stores the unsharded
//! run: the same stored result (timing and `computed_at` aside), the
//! model's fingerprint recorded, a dataset's digest recorded, everything
//! else of the session kept. The parts name the sweep (its index, the
//! session's model source and the session's digest of the sweep's inputs);
//! a session that no longer matches them (another model, an edited spec,
//! prompts or dataset, a sweep that already has a current result) is
//! refused, naming what differs, and left untouched.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{bail, Result};

use patchbench::patching::part::{merge, PartFile};
use patchbench::session::{self, results, StoredResult};

use super::session::load_session;
use super::session_sweep::write_back;

pub fn merge_into(parts: &[(String, PartFile)], path: &Path) -> Result<()> {
    let merged = merge(parts)?;
    let m = &merged.manifest;
    let shown = path.display();
    let Some(key) = &m.session else {
        bail!(
            "these parts are of a sweep run without --session, so they belong to no session \
             sweep; merge them without --into, or cut the session's sweep with \
             `patchbench sweep --session {shown} --shard K/N`"
        );
    };
    let (mut s, mut on_disk) = load_session(path)?;
    if s.model.source != key.source {
        bail!(
            "{shown} is a session on model {:?}, the parts are of one on {:?}: merge them into \
             the session they were cut from",
            s.model.source,
            key.source
        );
    }
    let Some(entry) = s.sweeps.get(key.sweep) else {
        bail!(
            "the parts are of sweep {} but {shown} has {} sweep(s): merge them into the session \
             they were cut from",
            key.sweep,
            s.sweeps.len()
        );
    };
    if entry.spec != m.spec {
        bail!(
            "sweep {} of {shown} is {} {} ({}) but the parts are of {} {} ({}): the session's \
             sweep was edited since the shards ran; rerun them",
            key.sweep,
            entry.spec.target,
            entry.spec.direction,
            entry.spec.corruption.name(),
            m.spec.target,
            m.spec.direction,
            m.spec.corruption.name()
        );
    }
    match (&mut s.dataset, &m.dataset) {
        (Some(r), Some(theirs)) => {
            // As the unsharded run does: read the file, record its digest.
            let now = session::dataset::resolve(r, Some(path))?.dataset.digest;
            if now != *theirs {
                bail!(
                    "the session's dataset is now {now} but the parts were computed on {theirs}: \
                     the file changed since the shards ran; rerun them"
                );
            }
            r.digest = now;
        }
        (None, None) => {}
        (ours, theirs) => bail!(
            "{shown} {} but the parts {}: merge them into the session they were cut from",
            if ours.is_some() {
                "sweeps a dataset"
            } else {
                "sweeps its prompts"
            },
            if theirs.is_some() {
                "are of a dataset"
            } else {
                "are of prompt pairs"
            },
        ),
    }
    let entry = &s.sweeps[key.sweep];
    let inputs = results::inputs_digest(&s, entry);
    if inputs != key.inputs {
        bail!(
            "the prompts, spec or BOS choice of sweep {} of {shown} were edited since the shards \
             ran (inputs digest {inputs}, the parts' {}): rerun the shards",
            key.sweep,
            key.inputs
        );
    }
    if let Some(old) = s
        .model
        .fingerprint
        .as_deref()
        .filter(|f| *f != m.fingerprint)
    {
        bail!(
            "the parts were computed with model fingerprint {} but {shown}'s results are of \
             {old}: the model changed; rerun the session's sweeps with `patchbench sweep \
             --session {shown} --write --rerun-stale` before merging new parts",
            m.fingerprint
        );
    }
    if entry.result.is_some() && results::staleness(&s, entry, Some(&m.fingerprint)).is_none() {
        bail!(
            "sweep {} of {shown} already has a current result; nothing to merge",
            key.sweep
        );
    }
    let h = &merged.header;
    s.sweeps[key.sweep].result = Some(StoredResult {
        fingerprint: m.fingerprint.clone(),
        inputs,
        computed_at: session::time::rfc3339(SystemTime::now()),
        load_ms: m.timing.load_ms,
        clean_tokens: h.clean.clone(),
        corrupted_tokens: h.corrupted.clone(),
        answer: h.answer.1.clone(),
        answer_id: h.answer.0,
        wrong: h.wrong.1.clone(),
        wrong_id: h.wrong.0,
        result: merged.result,
    });
    s.model.fingerprint = Some(m.fingerprint.clone());
    write_back(path, &s, &mut on_disk)?;
    note!(
        "{shown}: stored sweep {} merged from {} part(s)",
        key.sweep,
        parts.len()
    );
    Ok(())
}
