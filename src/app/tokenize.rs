//! Live tokenisation for the prompt pane: every pair's token strings and
//! the problems that would stop a sweep, worded for the user, and the
//! tokenizer thread that computes them.
//!
//! The thread restarts itself: a panic inside a job is that job's failure
//! ([`guarded`]); one outside it (in the thread's own loop) ends the
//! serving loop, which [`tokenizer_thread`] catches, reports, and starts
//! again with the tokenizer it had and the same queue. The job that was in
//! flight gets a reply carrying the error, so the prompt pane never waits
//! for a lost job and the next keystroke tokenises as usual. Nothing else
//! is lost, so the UI hears `thread_stopped: false` (which would otherwise
//! make it reload the model).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use crate::model::Tokenizer;
use crate::patching::prepare::prepare_pair;
use crate::patching::PairError;

use super::guard::{guarded, panic_message, Faults};
use super::messages::{JobId, PairTokens, PairsInput, Request, Sink, Tokenized, WorkerMsg};
use super::model_thread::TokRequest;

/// What survives a restart of the tokenizer thread's loop.
#[derive(Default)]
struct TokState {
    tok: Option<Arc<Tokenizer>>,
    /// The job being worked on, answered if the loop dies with it.
    in_flight: Option<JobId>,
}

/// The tokenizer thread: serves `rx` until every sender is gone,
/// restarting its loop after a panic outside the job boundary.
pub(crate) fn tokenizer_thread(rx: Receiver<TokRequest>, sink: Sink, faults: Faults) {
    let mut state = TokState::default();
    loop {
        let served = catch_unwind(AssertUnwindSafe(|| serve(&rx, &sink, &faults, &mut state)));
        let Err(payload) = served else { return };
        let error = format!(
            "the tokenizer thread stopped after an internal error (a bug in patchbench): {}; \
             it has restarted and the session is intact",
            panic_message(payload.as_ref())
        );
        if let Some(job) = state.in_flight.take() {
            let result = Tokenized {
                problems: vec![error.clone()],
                ..Default::default()
            };
            sink(WorkerMsg::Tokenized { job, result });
        }
        sink(WorkerMsg::WorkerFailed {
            error,
            thread_stopped: false,
        });
    }
}

/// Drains the queue, keeping the newest tokenizer and request, and answers
/// the request; returns when the channel closes.
fn serve(rx: &Receiver<TokRequest>, sink: &Sink, faults: &Faults, state: &mut TokState) {
    while let Ok(first) = rx.recv() {
        let mut last = None;
        for r in std::iter::once(first).chain(rx.try_iter()) {
            match r {
                TokRequest::SetTokenizer(t) => state.tok = Some(t),
                TokRequest::Tokenize { job, input } => last = Some((job, input)),
            }
        }
        let (Some(t), Some((job, input))) = (&state.tok, last) else {
            continue;
        };
        state.in_flight = Some(job);
        // The test hooks take a `Request`: built only when one is set.
        let lent = || Request::Tokenize {
            job,
            input: input.clone(),
        };
        if let Some(f) = &faults.outside_job {
            f(&lent());
        }
        let outcome = guarded("tokenising the prompts", || {
            if let Some(f) = &faults.in_job {
                f(&lent());
            }
            tokenize_pairs(t, &input)
        });
        match outcome {
            Ok(result) => sink(WorkerMsg::Tokenized { job, result }),
            Err(error) => {
                let result = Tokenized {
                    problems: vec![error.clone()],
                    ..Default::default()
                };
                sink(WorkerMsg::Tokenized { job, result });
                sink(WorkerMsg::WorkerFailed {
                    error,
                    thread_stopped: false,
                });
            }
        }
        state.in_flight = None;
    }
}

/// Tokenises every pair of `input`; never fails, problems are reported.
pub fn tokenize_pairs(tok: &Tokenizer, input: &PairsInput) -> Tokenized {
    let mut out = Tokenized::default();
    let mut lengths = Vec::new();
    for (i, pair) in input.pairs.iter().enumerate() {
        let mut pt = PairTokens::default();
        match tok.encode(&pair.clean, input.prepend_bos) {
            Ok(ids) => pt.clean = tok.token_strs(&ids),
            Err(e) => pt.problems.push(format!("clean prompt: {e}")),
        }
        if let Some(c) = &pair.corrupted {
            match tok.encode(c, input.prepend_bos) {
                Ok(ids) => pt.corrupted = Some(tok.token_strs(&ids)),
                Err(e) => pt.problems.push(format!("corrupted prompt: {e}")),
            }
        }
        let one = |text: &str| {
            tok.single_token(text)
                .map(|id| tok.token_str(id))
                .map_err(|e| e.to_string())
        };
        pt.answer = Some(one(&pair.answer));
        pt.wrong = Some(one(&pair.wrong));
        match prepare_pair(tok, pair, input.prepend_bos, i) {
            Ok(p) => lengths.push((i, p.n_pos())),
            Err(PairError::LengthMismatch { clean, corrupted, .. }) => pt.problems.push(format!(
                "clean has {} tokens, corrupted {}: patching by position needs equal lengths; reword one prompt",
                clean.len(),
                corrupted.len()
            )),
            // Answer problems are shown beside the answer fields.
            Err(PairError::Answer { .. }) => {}
            Err(e) => pt.problems.push(e.to_string()),
        }
        out.pairs.push(pt);
    }
    if !input.labels.is_empty() {
        // Labelled pairs line up by label: lengths may differ, but every
        // label must resolve in its pair.
        let prepared: Vec<_> = input
            .pairs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| prepare_pair(tok, p, input.prepend_bos, i).ok())
            .collect();
        if prepared.len() == input.pairs.len() {
            if let Err(e) = super::dataset_state::align_labels(input, &prepared) {
                out.problems.push(e);
            }
        }
    } else if let Some(&(_, first)) = lengths.first() {
        if let Some(&(i, n)) = lengths.iter().find(|(_, n)| *n != first) {
            out.problems.push(format!(
                "all pairs of a sweep need the same token length: pair 1 has {first}, pair {} has {n}",
                i + 1
            ));
        }
    }
    out
}
