//! The model thread's baselines job (the dataset pane): each pair's clean
//! and corrupted runs, unpatched, scored with every metric exactly as a
//! sweep scores its baselines (`patching::runs::build_runs`, so the pane
//! and a sweep's per-pair baselines agree). Pairs are measured one at a
//! time; a pair that cannot run (a prompt that does not tokenise, a
//! multi-token answer) gets its reason and the others go on. Progress is
//! sent at most every 40 ms, and the cancel mark is checked between pairs.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::patching::prepare::prepare_pair;
use crate::patching::result::Baselines;
use crate::patching::runs::build_runs;
use crate::patching::{Metrics, SweepSpec, Target};

use super::messages::{JobId, PairsInput, WorkerMsg};
use super::model_thread::ModelThread;

impl ModelThread {
    pub(super) fn baselines(&mut self, job: JobId, input: &PairsInput) {
        let upto = self.baselines_cancelled_upto.clone();
        let cancelled = || job <= upto.load(Ordering::SeqCst);
        let done = |cancelled, error| WorkerMsg::BaselinesDone {
            job,
            cancelled,
            error,
        };
        if cancelled() {
            return (self.sink)(done(true, None));
        }
        let Some(m) = self.model.as_ref() else {
            return (self.sink)(done(false, Some("no model is loaded".into())));
        };
        // The prompt corruption's unpatched runs; no hook is patched.
        let spec = SweepSpec::new(Target::ResidPre);
        let hooks = HashSet::new();
        let total = input.pairs.len();
        let mut values = Vec::new();
        let mut last_sent = Instant::now();
        for (i, pair) in input.pairs.iter().enumerate() {
            if cancelled() {
                return (self.sink)(done(true, None));
            }
            let b = prepare_pair(&m.tokenizer, pair, input.prepend_bos, i)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    build_runs(&m.model, std::slice::from_ref(&p), &spec, &hooks)
                        .map_err(|e| e.to_string())
                })
                .and_then(|(_, b, _)| b.first().copied().ok_or_else(|| "no run".to_string()))
                .map(|b| with_normalized(b.clean, b.corrupted));
            values.push((i, b));
            if i + 1 == total || last_sent.elapsed() >= Duration::from_millis(40) {
                last_sent = Instant::now();
                (self.sink)(WorkerMsg::BaselinesProgress {
                    job,
                    done: i + 1,
                    total,
                    values: std::mem::take(&mut values),
                });
            }
        }
        (self.sink)(done(false, None));
    }
}

/// The baselines with the normalised metrics filled in (clean 1,
/// corrupted 0 by definition), as a sweep's result stores them.
fn with_normalized(mut clean: Metrics, mut corrupted: Metrics) -> Baselines {
    let (c, k) = (clean, corrupted);
    clean.normalize(&c, &k);
    corrupted.normalize(&c, &k);
    Baselines { clean, corrupted }
}
