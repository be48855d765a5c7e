//! `patchbench merge` of circuit parts (`patchbench circuit ... --shard
//! K/N`): checks that the parts are one search and cover every unit once
//! (`circuits/merge.rs`), then runs the finishing step once over the union
//! of their scores: ranking, the exact check of the top edges and the
//! faithfulness curve. Those are forward passes, so the merge loads the
//! model — the parts' `manifest.model` with their weights mode unless
//! `--model`/`--weights` say otherwise — and refuses one with another
//! fingerprint. It reruns the unpatched forwards and refuses to go on when
//! their baselines differ from the parts' by a bit (another device kind or
//! weights mode): the output is then exactly what `patchbench circuit`
//! without `--shard` prints (timing aside). `--into SESSION` stores it in
//! the session's circuits instead (`merge_circuit_into.rs`).

use anyhow::{anyhow, bail, Context, Result};

use patchbench::circuits::circuit::Search;
use patchbench::circuits::finish::finish;
use patchbench::circuits::merge::check;
use patchbench::circuits::part::{units_digest, CircuitPart, DatasetNote, Manifest, PairIds};
use patchbench::circuits::units::assemble;
use patchbench::circuits::Watch;
use patchbench::circuits::{CircuitOptions, CircuitResult};
use patchbench::model::LoadedModel;
use patchbench::patching::part::baselines_hex;
use patchbench::patching::PreparedPair;

use super::circuit::render;
use super::merge::MergeArgs;
use super::output::{refuse_clobber, write_output};
use super::ModelArgs;

/// A finished search from a checked set of circuit parts.
pub struct Finished {
    pub m: LoadedModel,
    pub manifest: Manifest,
    pub dataset: Option<DatasetNote>,
    pub pairs: Vec<PreparedPair>,
    pub opts: CircuitOptions,
    pub result: CircuitResult,
}

pub fn merge_circuit(files: Vec<(String, serde_json::Value)>, args: &MergeArgs) -> Result<()> {
    if let Some(session) = args.into.as_deref() {
        return super::merge_circuit_into::merge_circuit_into(files, args, session);
    }
    let format = args.format.circuit();
    let inputs: Vec<&std::path::Path> = args.parts.iter().map(|p| p.as_path()).collect();
    if let Some(out) = args.out.as_deref() {
        refuse_clobber(out, &inputs, format.extension())?;
    }
    let f = finish_parts(files, args)?;
    let text = render(
        &f.m,
        &f.pairs,
        f.dataset.as_ref(),
        (&f.opts, &f.result),
        (f.manifest.spec.top, format),
    );
    write_output(args.out.as_deref(), &text, &inputs, format.extension())
}

/// Checks the parts, loads the model and runs the finishing step.
pub fn finish_parts(files: Vec<(String, serde_json::Value)>, args: &MergeArgs) -> Result<Finished> {
    let mut parts = Vec::with_capacity(files.len());
    for (name, v) in files {
        let part: CircuitPart = serde_json::from_value(v)
            .with_context(|| format!("{name}: not a patchbench circuit part file"))?;
        parts.push((name, part));
    }
    let checked = check(&parts)?;
    let man = &checked.manifest;
    let opts = man.spec.options().ok_or_else(|| {
        anyhow!(
            "the parts rank edges by metric {:?}, which this build does not know; merge with the \
             patchbench that wrote them ({})",
            man.spec.metric,
            man.version
        )
    })?;
    let model = ModelArgs {
        model: args.model.clone().unwrap_or_else(|| man.model.clone()),
        device: args.device.clone().unwrap_or_else(|| "auto".into()),
        weights: args.weights.clone().unwrap_or_else(|| man.weights.clone()),
    };
    let m = model.load()?;
    if m.fingerprint != man.fingerprint {
        bail!(
            "model {} has fingerprint {}, but the parts were computed with {} ({}); give that \
             model with --model",
            m.source,
            m.fingerprint,
            man.fingerprint,
            man.model
        );
    }
    let pairs: Vec<PreparedPair> = checked.shared.pairs.iter().map(PairIds::pair).collect();
    if pairs.is_empty() {
        bail!("{}: the part lists no prompt pairs", parts[0].0);
    }
    let search = Search::new(&m.model, &pairs, &opts, &mut Watch::none())?;
    if units_digest(&search.units(&opts)) != man.units_digest {
        bail!(
            "this build plans the search's units differently from the parts' ({}); merge with \
             the patchbench that wrote them",
            man.version
        );
    }
    if baselines_hex(&search.runs.baselines) != checked.shared.baselines {
        bail!(
            "the model as loaded here ({}, weights {}) computes other baselines than it did for \
             the parts ({}); merge on the kind of device the parts ran on, with the same \
             --weights, so the result is the one an unsharded run gives",
            patchbench::model::device::device_name(m.model.device()),
            model.weights,
            man.timing.device
        );
    }
    let raw = assemble(search.runs.runs.len(), &checked.units, checked.values);
    let scores_ms = parts
        .iter()
        .map(|p| p.1.manifest.timing.scores_ms)
        .max()
        .unwrap_or(0);
    let result = finish(
        &m.model,
        &search,
        &pairs,
        &opts,
        raw,
        scores_ms,
        &mut Watch::none(),
    )?;
    Ok(Finished {
        manifest: man.clone(),
        dataset: checked.shared.dataset,
        m,
        pairs,
        opts,
        result,
    })
}
