//! Progress and cancelling of a circuit search.
//!
//! A search runs in stages (the unpatched runs, the scores, the exact
//! check of the top edges, the faithfulness curve); each stage reports
//! `done` of `total` work pieces through a [`Watch`] between pieces, and
//! the watcher answers whether to go on. The workbench's model thread
//! forwards the reports to the screen and stops a cancelled search at the
//! next piece, as the sweep engine does between batches; the CLI passes
//! [`Watch::none`].

use super::CircuitError;

/// The stages of a circuit search, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The unpatched runs and every sender's output in them.
    Runs,
    /// Scoring every edge with the method.
    Scores,
    /// Patching the top edges exactly.
    Exact,
    /// Running the top-k circuits.
    Faithfulness,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Runs => "unpatched runs",
            Stage::Scores => "scoring edges",
            Stage::Exact => "exact check",
            Stage::Faithfulness => "faithfulness",
        }
    }
}

/// One progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitProgress {
    pub stage: Stage,
    pub done: usize,
    pub total: usize,
}

/// Who hears the progress reports; it returns `false` to cancel.
pub struct Watch<'a> {
    f: Option<&'a mut dyn FnMut(&CircuitProgress) -> bool>,
}

impl<'a> Watch<'a> {
    /// Nobody listens; never cancels.
    pub fn none() -> Self {
        Watch { f: None }
    }

    pub fn new(f: &'a mut dyn FnMut(&CircuitProgress) -> bool) -> Self {
        Watch { f: Some(f) }
    }

    /// Reports `done` of `total` in `stage`; `Err(Cancelled)` when the
    /// watcher says stop.
    pub fn step(&mut self, stage: Stage, done: usize, total: usize) -> Result<(), CircuitError> {
        let go_on = match &mut self.f {
            Some(f) => f(&CircuitProgress { stage, done, total }),
            None => true,
        };
        if go_on {
            Ok(())
        } else {
            Err(CircuitError::Cancelled)
        }
    }
}
