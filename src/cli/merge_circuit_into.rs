//! `patchbench merge CIRCUIT_PARTS... --into SESSION`: the merged circuit
//! search stored in the session's `circuits`, as the workbench stores a
//! search it ran (`c`): the top edges, the curve, the baselines, the
//! first pair's tokens, with the session's digest of spec, prompts and BOS
//! choice. The parts must be of the session: its model source and
//! recorded fingerprint, its prompt pairs as the session prepares them
//! (its BOS choice; a session with a dataset is refused), and a spec a
//! session can hold (the workbench's options: `--ig-on inputs`, GradDrop
//! on, path patching's defaults). The search goes into the circuit entry
//! with that spec (refused when it already has a current result) or a new
//! one; nothing else of the session changes.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{bail, Result};

use patchbench::circuits::part::PartSpec;
use patchbench::patching::output::TokenList;
use patchbench::patching::sharded::inputs_digest;
use patchbench::patching::{prepare_pairs, PromptPair};
use patchbench::session::circuit::{
    circuit_digest, circuit_staleness, CircuitEntry, CircuitSpec, StoredCircuit,
};
use patchbench::session::time::rfc3339;

use super::merge::MergeArgs;
use super::merge_circuit::finish_parts;
use super::session::load_session;
use super::session_sweep::write_back;

pub fn merge_circuit_into(
    files: Vec<(String, serde_json::Value)>,
    args: &MergeArgs,
    path: &Path,
) -> Result<()> {
    let shown = path.display();
    let (mut s, mut on_disk) = load_session(path)?;
    if s.dataset.is_some() {
        bail!(
            "{shown} has a dataset; merge --into stores circuits of a session's prompt pairs \
             only: merge the parts to --format json instead"
        );
    }
    let f = finish_parts(files, args)?;
    let man = &f.manifest;
    if s.model.source != man.model {
        bail!(
            "{shown} is a session on model {:?}, the parts were computed on {:?}: merge them into \
             a session on that model",
            s.model.source,
            man.model
        );
    }
    if let Some(old) = s
        .model
        .fingerprint
        .as_deref()
        .filter(|f| *f != man.fingerprint)
    {
        bail!(
            "the parts were computed with model fingerprint {} but {shown}'s results are of {old}: \
             the model changed; rerun the session's work before merging new parts",
            man.fingerprint
        );
    }
    let spec = CircuitSpec {
        method: f.opts.method,
        metric: man.spec.metric.clone(),
        direction: f.opts.direction,
        corruption: f.opts.corruption.clone(),
        ig_steps: f.opts.ig_steps,
        check_exact: f.opts.check_exact,
        faithfulness_points: f.opts.faithfulness_points,
        positions: f.opts.positions,
    };
    let held = spec.options().map_err(anyhow::Error::msg)?;
    if PartSpec::new(&held, man.spec.top) != man.spec {
        bail!(
            "the parts' search uses options a session does not hold (--ig-on, --no-graddrop, \
             --freeze-mlps, --ln or the batch size differ from the workbench's); merge them to \
             --format json instead"
        );
    }
    let prepared = prepare_pairs(&f.m.tokenizer, &s.prompts, s.prepend_bos)?;
    if inputs_digest(&prepared) != man.inputs {
        bail!(
            "the parts were computed on other prompt pairs than {shown}'s (as the session \
             prepares them, BOS choice included): cut them from `patchbench circuit` with the \
             session's prompts"
        );
    }
    let pairs: Vec<&PromptPair> = s.prompts.iter().collect();
    let p0 = &f.pairs[0];
    let tokens = |ids: &[u32]| TokenList {
        ids: ids.to_vec(),
        strings: f.m.tokenizer.token_strs(ids),
    };
    let stored = StoredCircuit {
        fingerprint: man.fingerprint.clone(),
        inputs: circuit_digest(&spec, &pairs, s.prepend_bos),
        computed_at: rfc3339(SystemTime::now()),
        clean_tokens: tokens(&p0.clean),
        corrupted_tokens: tokens(&p0.corrupted),
        answer: f.m.tokenizer.token_str(p0.answer),
        wrong: f.m.tokenizer.token_str(p0.wrong),
        // Sessions with a dataset are refused above: no position labels.
        position_labels: Vec::new(),
        result: f.result.clone(),
    }
    .trimmed();
    match s.circuits.iter().position(|c| c.spec == spec) {
        Some(i) => {
            let current = s.circuits[i].result.as_ref().is_some_and(|r| {
                circuit_staleness(&spec, r, &pairs, s.prepend_bos, Some(&man.fingerprint)).is_none()
            });
            if current {
                bail!("circuit {i} of {shown} already has a current result; nothing to merge");
            }
            s.circuits[i].result = Some(stored);
        }
        None => s.circuits.push(CircuitEntry {
            spec,
            result: Some(stored),
        }),
    }
    if s.model.fingerprint.is_none() {
        s.model.fingerprint = Some(man.fingerprint.clone());
    }
    write_back(path, &s, &mut on_disk)
}
