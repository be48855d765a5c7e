//! `patchbench circuit ... --shard K/N`: one shard of a circuit search's
//! scoring stage, written as a circuit part file (`circuits/part.rs`).
//!
//! Every shard runs the unpatched forwards of every pair (two per pair:
//! noise seeds and mean ablations depend on the whole dataset, and they are
//! cheap beside the scoring), then only its stretch of the canonical units
//! (`circuits/units.rs`): exact and path patching split over edges and
//! pairs, EAP, EAP-IG and AtP* over pairs (and noise samples). Ranking, the
//! exact check of the top edges and the faithfulness curve run once, in
//! `patchbench merge` (`merge_circuit.rs`).

use std::time::{Instant, SystemTime};

use anyhow::Result;

use patchbench::circuits::circuit::Search;
use patchbench::circuits::part::{
    units_digest, CircuitPart, DatasetNote, Manifest, PairIds, PartSpec, PartTiming, PartUnit,
    Shared,
};
use patchbench::circuits::units::{costs, select};
use patchbench::circuits::{CircuitOptions, Watch};
use patchbench::model::device::device_name;
use patchbench::model::LoadedModel;
use patchbench::patching::part::{baselines_hex, metric_names, Shard};
use patchbench::patching::sharded::inputs_digest;
use patchbench::patching::PreparedPair;
use patchbench::session::time::rfc3339;

use super::sweep::host_name;

/// Scores shard `shard`'s units and returns the part file.
pub fn part(
    m: &LoadedModel,
    weights: &str,
    pairs: &[PreparedPair],
    dataset: Option<DatasetNote>,
    opts: &CircuitOptions,
    (shard, top): (Shard, usize),
) -> Result<CircuitPart> {
    let started = rfc3339(SystemTime::now());
    let search = Search::new(&m.model, pairs, opts, &mut Watch::none())?;
    let units = search.units(opts);
    let which = select(&costs(&units, &search.graph, &search.edges, opts), shard);
    let t = Instant::now();
    let values = search.score(&m.model, opts, (&units, &which), &mut Watch::none())?;
    let scores_ms = t.elapsed().as_millis() as u64;
    let manifest = Manifest {
        version: env!("CARGO_PKG_VERSION").into(),
        shard,
        spec: PartSpec::new(opts, top),
        model: m.source.clone(),
        weights: weights.to_string(),
        fingerprint: m.fingerprint.clone(),
        inputs: inputs_digest(pairs),
        dataset: dataset.as_ref().map(|d| d.digest.clone()),
        metrics: metric_names(),
        units: units.len(),
        units_digest: units_digest(&units),
        timing: PartTiming {
            started,
            load_ms: m.load_ms as u64,
            runs_ms: search.runs_ms,
            scores_ms,
            device: device_name(m.model.device()),
            host: host_name(),
        },
    };
    let shared = Shared {
        pairs: pairs.iter().map(PairIds::of).collect(),
        baselines: baselines_hex(&search.runs.baselines),
        n_edges: search.edges.len(),
        dataset,
    };
    let units = which
        .iter()
        .zip(&values)
        .map(|(&i, v)| PartUnit::new(i, units[i], v))
        .collect();
    Ok(CircuitPart::sealed(manifest, shared, units))
}
