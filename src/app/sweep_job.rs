//! The model thread's sweeps: the prompt pairs prepared (and aligned by
//! their position labels when they carry some), the layout sent ahead so
//! the heatmap fills in, progress throttled to one message per 40 ms
//! (finished cells always go out, normalised with the progress
//! baselines), the cancel mark checked between batches, finished batches
//! kept in the session's checkpoint.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::patching::output::TokenList;
use crate::patching::part::Shard;
use crate::patching::plan::{plan, plan_labeled};
use crate::patching::sharded::PartControl;
use crate::patching::{run_sweep_with, EngineOptions, SweepError};
use crate::session::time::rfc3339;

use super::messages::*;
use super::model_thread::ModelThread;

impl ModelThread {
    pub(super) fn sweep(
        &mut self,
        job: JobId,
        input: &PairsInput,
        spec: &crate::patching::SweepSpec,
        checkpoint: Option<&SweepCheckpoint>,
    ) {
        let fail = |error: String, cancelled| WorkerMsg::SweepFailed {
            job,
            error,
            cancelled,
        };
        if job <= self.cancelled_upto.load(Ordering::SeqCst) {
            (self.sink)(fail("sweep cancelled".into(), true));
            return;
        }
        self.cancel.store(false, Ordering::SeqCst);
        let (m, pairs) = match self.prepared(input) {
            Ok(x) => x,
            Err(e) => return (self.sink)(fail(e, false)),
        };
        let labels = match super::dataset_state::align_labels(input, &pairs) {
            Ok(l) => l,
            Err(e) => return (self.sink)(fail(e, false)),
        };
        let p0 = &pairs[0];
        let tokens = |ids: &[u32]| TokenList {
            ids: ids.to_vec(),
            strings: m.tokenizer.token_strs(ids),
        };
        let layout = match &labels {
            Some(l) => plan_labeled(m.config(), p0.n_pos(), spec, &l.spans[0]),
            None => plan(m.config(), p0.n_pos(), spec),
        };
        let positional = layout.axes.iter().any(|a| a == "pos" || a == "dest_pos");
        let position_labels = match &labels {
            Some(l) if positional => l.names.clone(),
            _ => vec![],
        };
        (self.sink)(WorkerMsg::SweepStarted {
            job,
            start: Box::new(SweepStart {
                axes: layout.axes.clone(),
                shape: layout.shape.clone(),
                components: layout.components.clone(),
                clean_tokens: tokens(&p0.clean),
                corrupted_tokens: tokens(&p0.corrupted),
                answer: m.tokenizer.token_str(p0.answer),
                answer_id: p0.answer,
                wrong: m.tokenizer.token_str(p0.wrong),
                wrong_id: p0.wrong,
                fingerprint: m.fingerprint.clone(),
                position_labels,
            }),
        });
        let sink = self.sink.clone();
        let (cancel, upto) = (self.cancel.clone(), self.cancelled_upto.clone());
        let mut last_sent = Instant::now();
        let mut on_progress = |p: &crate::patching::Progress| {
            if upto.load(Ordering::SeqCst) >= job {
                cancel.store(true, Ordering::SeqCst);
            }
            // Throttle bare progress; cells that finished always go out.
            if p.finished.is_empty() && last_sent.elapsed() < Duration::from_millis(40) {
                return;
            }
            last_sent = Instant::now();
            // Normalised here with the progress baselines, as `assemble`
            // does for the final result, so a partial heatmap of any
            // corruption shows the normalised logit difference;
            // normalising is idempotent, so this stays right if the engine
            // starts filling it in itself.
            let b = &p.baselines;
            let finished = p
                .finished
                .iter()
                .map(|&(c, mut m)| {
                    m.normalize(&b.clean, &b.corrupted);
                    (c, m)
                })
                .collect();
            sink(WorkerMsg::SweepProgress {
                job,
                done: p.done,
                total: p.total,
                elapsed: p.elapsed,
                eta: p.eta,
                finished,
                baselines: p.baselines,
            });
        };
        let opts = EngineOptions::default();
        // Finished batches go to the checkpoint (a killed workbench loses
        // only the batch in flight); it is deleted once the sweep is done,
        // kept when it is cancelled or fails, to be resumed.
        if let Some(c) = checkpoint.filter(|c| !c.resume) {
            if let Err(e) = std::fs::remove_file(&c.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    let what =
                        format!("cannot delete the old checkpoint {}: {e}", c.path.display());
                    return (self.sink)(fail(what, false));
                }
            }
        }
        let one = Shard { k: 1, n: 1 };
        let path = checkpoint.map(|c| c.path.clone());
        let mut control =
            PartControl::new(m, &pairs, spec, &opts, one, path).with_labels(labels.as_ref());
        let outcome = run_sweep_with(
            &m.model,
            &pairs,
            labels.as_ref(),
            spec,
            &opts,
            &mut control,
            Some(&self.cancel),
            &mut on_progress,
        )
        .and_then(|result| control.finish().map(|()| result));
        match outcome {
            Ok(result) => (self.sink)(WorkerMsg::SweepDone {
                job,
                result: Box::new(result),
                computed_at: rfc3339(SystemTime::now()),
            }),
            Err(SweepError::Cancelled) => (self.sink)(fail("sweep cancelled".into(), true)),
            Err(e) => (self.sink)(fail(e.to_string(), false)),
        }
    }
}
