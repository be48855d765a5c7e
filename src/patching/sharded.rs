//! Running part of a sweep: one shard of its units, resumed from a
//! checkpoint, and packed as a part file (`part.rs`).
//!
//! [`PartControl`] is the [`WorkControl`] of `patchbench sweep --shard K/N`
//! and of any sweep with a checkpoint: it assigns units to shards by cost
//! ([`shard_of`]), reads the units a checkpoint already holds, appends each
//! finished one, and keeps the shard's units for the part file. Without
//! `--shard` it is shard 1/1: the whole sweep, resumable.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::model::LoadedModel;
use crate::util::digest::hex_digest;

use super::checkpoint::Checkpoint;
use super::engine::EngineOptions;
use super::error::SweepError;
use super::metrics::Metrics;
use super::output::TokenList;
use super::part::{
    baselines_hex, metric_names, metrics_hex, DatasetNote, EngineKey, Header, Manifest, PartFile,
    PartSweep, PartTiming, PartUnit, SessionKey, Shard, PART_FORMAT,
};
use super::plan::{has_position_axis, plan, plan_labeled, PositionLabels};
use super::prepare::PreparedPair;
use super::result::{Layout, SweepResult};
use super::runs::PairBaselines;
use super::spec::SweepSpec;
use super::work::{shard_of, Selection, WorkControl, WorkUnit};

/// Digest of the prepared prompts: token ids and answers, in order.
pub fn inputs_digest(pairs: &[PreparedPair]) -> String {
    let v: Vec<Value> = pairs
        .iter()
        .map(|p| {
            if p.sets.is_empty() {
                json!([p.clean, p.corrupted, p.answer, p.wrong])
            } else {
                // Only with further answers, so earlier digests stay valid.
                json!([
                    p.clean,
                    p.corrupted,
                    p.answer,
                    p.wrong,
                    p.sets.answers,
                    p.sets.wrongs
                ])
            }
        })
        .collect();
    hex_digest(Value::Array(v).to_string().as_bytes())
}

/// Digest of a unit plan.
fn units_digest(units: &[WorkUnit]) -> String {
    let v: Vec<Value> = units
        .iter()
        .map(|u| json!([u.layer, u.n_pos, u.forward, u.rows]))
        .collect();
    hex_digest(Value::Array(v).to_string().as_bytes())
}

/// The work control of a shard (or a whole sweep) with an optional checkpoint.
pub struct PartControl<'a> {
    model: &'a LoadedModel,
    pairs: &'a [PreparedPair],
    spec: &'a SweepSpec,
    engine: EngineKey,
    shard: Shard,
    dataset: Option<String>,
    dataset_note: Option<DatasetNote>,
    labels: Option<&'a PositionLabels>,
    session: Option<SessionKey>,
    checkpoint_path: Option<PathBuf>,
    checkpoint: Option<Checkpoint>,
    units: usize,
    units_digest: String,
    run_pairs: Vec<usize>,
    collected: Vec<PartUnit>,
    /// Units read back from the checkpoint.
    pub resumed: usize,
    /// Records of a torn or damaged checkpoint tail that were dropped.
    pub dropped: usize,
}

impl<'a> PartControl<'a> {
    pub fn new(
        model: &'a LoadedModel,
        pairs: &'a [PreparedPair],
        spec: &'a SweepSpec,
        opts: &EngineOptions,
        shard: Shard,
        checkpoint: Option<PathBuf>,
    ) -> Self {
        PartControl {
            model,
            pairs,
            spec,
            engine: EngineKey {
                max_batch_mem: opts.max_batch_mem,
                max_batch_tokens: opts.max_batch_tokens,
                packed: opts.packed,
            },
            shard,
            dataset: None,
            dataset_note: None,
            labels: None,
            session: None,
            checkpoint_path: checkpoint,
            checkpoint: None,
            units: 0,
            units_digest: String::new(),
            run_pairs: vec![],
            collected: vec![],
            resumed: 0,
            dropped: 0,
        }
    }

    /// Records the dataset digest of a sweep over a dataset.
    pub fn with_dataset(mut self, digest: Option<String>) -> Self {
        self.dataset = digest;
        self
    }

    /// Records a dataset sweep's report extras (its digest included).
    pub fn with_dataset_note(mut self, note: DatasetNote) -> Self {
        self.dataset = Some(note.digest.clone());
        self.dataset_note = Some(note);
        self
    }

    /// The position labels the sweep runs with (the cell layout follows them).
    pub fn with_labels(mut self, labels: Option<&'a PositionLabels>) -> Self {
        self.labels = labels;
        self
    }

    /// Marks the part as one of a session's sweep.
    pub fn with_session(mut self, key: Option<SessionKey>) -> Self {
        self.session = key;
        self
    }

    /// The sweep's identity: what a checkpoint must match to be resumed.
    fn key(&self) -> Value {
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "shard": self.shard,
            "spec": self.spec,
            "fingerprint": self.model.fingerprint,
            "inputs": inputs_digest(self.pairs),
            "dataset": self.dataset,
            "session": self.session,
            "engine": self.engine,
            "metrics": metric_names(),
            "units": self.units,
            "units_digest": self.units_digest,
        })
    }

    /// Deletes the checkpoint: call once the output is safely written.
    pub fn finish(self) -> Result<(), SweepError> {
        if let Some(c) = self.checkpoint {
            c.remove()?;
        }
        Ok(())
    }

    /// The part file of this shard, from the (partial) result of the run.
    pub fn part(&self, result: &SweepResult, started: String, host: String) -> PartFile {
        let first = &self.pairs[0];
        let tok = &self.model.tokenizer;
        let tl = |ids: &[u32]| TokenList {
            ids: ids.to_vec(),
            strings: tok.token_strs(ids),
        };
        let baselines: Vec<PairBaselines> = result
            .pair_baselines
            .iter()
            .map(|b| PairBaselines {
                clean: b.clean,
                corrupted: b.corrupted,
            })
            .collect();
        let mut units = self.collected.clone();
        units.sort_by_key(|u| u.index);
        PartFile {
            patchbench_part: PART_FORMAT,
            manifest: Manifest {
                version: env!("CARGO_PKG_VERSION").into(),
                shard: self.shard,
                spec: self.spec.clone(),
                model: self.model.source.clone(),
                fingerprint: self.model.fingerprint.clone(),
                inputs: inputs_digest(self.pairs),
                dataset: self.dataset.clone(),
                labels: result.position_labels.clone(),
                session: self.session.clone(),
                engine: self.engine,
                metrics: metric_names(),
                units: self.units,
                units_digest: self.units_digest.clone(),
                timing: PartTiming {
                    started,
                    load_ms: self.model.load_ms,
                    sweep_ms: result.timing.sweep_ms,
                    forward_passes: result.timing.forward_passes,
                    device: result.timing.device.clone(),
                    host,
                },
            },
            sweep: PartSweep {
                layout: Layout::of(&self.first_plan()),
                run_pairs: self.run_pairs.clone(),
                baselines: baselines_hex(&baselines),
                header: Header {
                    clean: tl(&first.clean),
                    corrupted: tl(&first.corrupted),
                    answer: (first.answer, tok.token_str(first.answer)),
                    wrong: (first.wrong, tok.token_str(first.wrong)),
                },
                dataset: self.dataset_note.clone(),
            },
            units,
        }
    }

    /// The first pair's plan, whose cells the result is laid out by (as
    /// the engine lays it out: by label when labels name the positions).
    fn first_plan(&self) -> super::plan::Plan {
        let cfg = &self.model.model.cfg;
        let n_pos = self.pairs[0].n_pos();
        match self.labels {
            Some(l) if has_position_axis(cfg, self.spec) && !l.spans.is_empty() => {
                plan_labeled(cfg, n_pos, self.spec, &l.spans[0])
            }
            _ => plan(cfg, n_pos, self.spec),
        }
    }

    fn collect(&mut self, index: usize, unit: &WorkUnit, values: &[Metrics]) {
        self.collected.push(PartUnit {
            index,
            rows: unit.rows.iter().map(|r| (r.run, r.cell)).collect(),
            values: metrics_hex(values),
        });
    }
}

impl WorkControl for PartControl<'_> {
    fn select(
        &mut self,
        units: &[WorkUnit],
        run_pairs: &[usize],
    ) -> Result<Vec<Selection>, SweepError> {
        self.units = units.len();
        self.units_digest = units_digest(units);
        self.run_pairs = run_pairs.to_vec();
        let costs: Vec<u64> = units
            .iter()
            .map(|u| u.cost(&self.model.model.cfg))
            .collect();
        let owner = shard_of(&costs, self.shard.n);
        if let Some(path) = self.checkpoint_path.clone() {
            let c = Checkpoint::open(&path, &self.key())?;
            self.dropped = c.dropped;
            self.checkpoint = Some(c);
        }
        let mut out = Vec::with_capacity(units.len());
        for (i, u) in units.iter().enumerate() {
            if owner[i] != self.shard.k - 1 {
                out.push(Selection::Skip);
                continue;
            }
            let known = match &self.checkpoint {
                Some(c) => c.known(i, u)?,
                None => None,
            };
            match known {
                Some(ms) => {
                    self.collect(i, u, &ms);
                    self.resumed += 1;
                    out.push(Selection::Known(ms));
                }
                None => out.push(Selection::Run),
            }
        }
        Ok(out)
    }

    fn done(
        &mut self,
        index: usize,
        unit: &WorkUnit,
        values: &[Metrics],
    ) -> Result<(), SweepError> {
        if let Some(c) = &mut self.checkpoint {
            c.append(index, unit, values)?;
        }
        self.collect(index, unit, values);
        Ok(())
    }
}
