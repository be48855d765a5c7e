//! The model thread's circuit jobs: a circuit search with progress and
//! cancel (as sweeps: progress throttled to one message per 40 ms, the
//! cancel mark checked between pieces of work), and an edge's drill-down
//! (its exact change when the search did not check it, and the attention
//! patterns of the heads at its ends, computed as the head drill-down
//! computes them). Results leave the thread as plain data.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::analysis;
use crate::circuits::positions::label_names;
use crate::circuits::single::exact_edge_at;
use crate::circuits::{run_circuit_watched, CircuitError, CircuitProgress, Watch};
use crate::patching::output::TokenList;
use crate::session::circuit::{CircuitSpec, StoredCircuit};
use crate::session::time::rfc3339;

use super::circuit::head_of;
use super::messages::{EdgeDrillData, JobId, PairsInput, WorkerMsg};
use super::model_thread::ModelThread;

impl ModelThread {
    pub(super) fn circuit(&mut self, job: JobId, input: &PairsInput, spec: &CircuitSpec) {
        let fail = |error: String, cancelled| WorkerMsg::CircuitFailed {
            job,
            error,
            cancelled,
        };
        let upto = self.circuits_cancelled_upto.clone();
        if job <= upto.load(Ordering::SeqCst) {
            return (self.sink)(fail("circuit search cancelled".into(), true));
        }
        let opts = match spec.options() {
            Ok(o) => o,
            Err(e) => return (self.sink)(fail(e, false)),
        };
        let (m, pairs) = match self.prepared(input) {
            Ok(x) => x,
            Err(e) => return (self.sink)(fail(e, false)),
        };
        // Labelled pairs of one length name a position-aware edge's position.
        let one_length = pairs.iter().all(|p| p.n_pos() == pairs[0].n_pos());
        let position_labels = match opts.positions && one_length {
            true => match super::dataset_state::align_labels(input, &pairs) {
                Ok(Some(l)) => label_names(&l, pairs[0].n_pos()),
                Ok(None) => Vec::new(),
                Err(e) => return (self.sink)(fail(e, false)),
            },
            false => Vec::new(),
        };
        let sink = self.sink.clone();
        let t0 = Instant::now();
        let mut last_sent: Option<Instant> = None;
        let mut on_progress = |p: &CircuitProgress| {
            if upto.load(Ordering::SeqCst) >= job {
                return false;
            }
            // Every stage's start goes out; within a stage, throttled.
            if p.done > 0 && last_sent.is_some_and(|t| t.elapsed() < Duration::from_millis(40)) {
                return true;
            }
            last_sent = Some(Instant::now());
            sink(WorkerMsg::CircuitProgress {
                job,
                stage: p.stage,
                done: p.done,
                total: p.total,
                elapsed: t0.elapsed(),
            });
            true
        };
        let result =
            run_circuit_watched(&m.model, &pairs, &opts, &mut Watch::new(&mut on_progress));
        match result {
            Ok(result) => {
                let p0 = &pairs[0];
                let tokens = |ids: &[u32]| TokenList {
                    ids: ids.to_vec(),
                    strings: m.tokenizer.token_strs(ids),
                };
                let stored = StoredCircuit {
                    fingerprint: m.fingerprint.clone(),
                    // The state fills in the digest it took at the start.
                    inputs: String::new(),
                    computed_at: rfc3339(SystemTime::now()),
                    clean_tokens: tokens(&p0.clean),
                    corrupted_tokens: tokens(&p0.corrupted),
                    answer: m.tokenizer.token_str(p0.answer),
                    wrong: m.tokenizer.token_str(p0.wrong),
                    position_labels,
                    result,
                }
                .trimmed();
                (self.sink)(WorkerMsg::CircuitDone {
                    job,
                    result: Box::new(stored),
                })
            }
            Err(CircuitError::Cancelled) => {
                (self.sink)(fail("circuit search cancelled".into(), true))
            }
            Err(e) => (self.sink)(fail(e.to_string(), false)),
        }
    }

    pub(super) fn edge_drill(
        &self,
        input: &PairsInput,
        spec: &CircuitSpec,
        (sender, receiver, at): (&str, &str, Option<usize>),
        exact: bool,
    ) -> Result<EdgeDrillData, String> {
        let (m, pairs) = self.prepared(input)?;
        let exact = if exact {
            let opts = spec.options()?;
            let edge = (sender, receiver);
            Some(exact_edge_at(&m.model, &pairs, &opts, edge, at).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let cfg = m.config();
        let mut heads = Vec::new();
        for name in [sender, receiver] {
            if let Some((layer, head)) = head_of(name, cfg.n_heads, cfg.n_kv_heads) {
                let p = pairs.first().ok_or("no prompt pairs")?;
                heads.push(analysis::head::head(m, p, layer, head).map_err(|e| e.to_string())?);
            }
        }
        Ok(EdgeDrillData { exact, heads })
    }
}
