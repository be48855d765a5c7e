//! The job boundary of the worker threads.
//!
//! A bug in a model loader or in the engine must cost one job, not the
//! workbench: every request runs inside [`guarded`], which catches a panic
//! and turns it into an error message; the thread then goes on with the
//! next request, with the model it had. The UI hears of it twice: through
//! the request's own failure reply (so its state moves on exactly as for an
//! ordinary error) and through [`super::messages::WorkerMsg::JobPanicked`],
//! which it shows in a popup, because a panic is a bug to report.
//!
//! [`Faults`] lets tests inject a panic into a job (or into the thread
//! itself, outside the boundary) to check all of this without a real bug.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::util::text::{clip, one_line};

use super::messages::Request;

/// The longest panic message carried in a reply.
const MAX_PANIC_CHARS: usize = 500;

/// A hook run on a worker thread with each request.
pub type FaultHook = Arc<dyn Fn(&Request) + Send + Sync>;

/// Test hooks: code run with each request on the model thread (and with
/// each `Tokenize` request on the tokenizer thread). A hook that panics
/// simulates a bug there. `in_job` runs inside the job boundary (a failed
/// job); `outside_job` runs outside it (the thread dies, and must be
/// restarted).
#[derive(Clone, Default)]
pub struct Faults {
    pub in_job: Option<FaultHook>,
    pub outside_job: Option<FaultHook>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("in_job", &self.in_job.is_some())
            .field("outside_job", &self.outside_job.is_some())
            .finish()
    }
}

/// The text of a panic payload (`panic!` with a literal gives `&str`, with
/// a format string `String`), one line and clipped: it may quote a file.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    let raw = if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "a panic without a message"
    };
    clip(&one_line(raw), MAX_PANIC_CHARS).into_owned()
}

/// Runs `f`; a panic becomes `Err` with a message saying what failed.
pub fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        format!(
            "internal error while {what}: {} (a bug in patchbench; the session is intact)",
            panic_message(payload.as_ref())
        )
    })
}

/// What a request was doing, for the failure message.
pub fn describe(r: &Request) -> String {
    match r {
        Request::Load(spec) => format!("loading the model {}", one_line(&spec.source)),
        Request::Tokenize { .. } => "tokenising the prompts".into(),
        Request::Estimate { .. } => "estimating the sweep's cost".into(),
        Request::Sweep { spec, .. } => format!("running the {} sweep", spec.target),
        Request::Drill { target, .. } => format!("computing the {} drill-down", target.title()),
        Request::Baselines { input, .. } => {
            format!("measuring the baselines of {} pairs", input.pairs.len())
        }
        Request::Circuit { spec, .. } => format!("finding the circuit ({})", spec.method.name()),
        Request::EdgeDrill {
            sender, receiver, ..
        } => format!("computing the drill-down of edge {sender} -> {receiver}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        let r: Result<(), String> = guarded("testing", || panic!("bad \u{1b}[2J {}", 42));
        let e = r.unwrap_err();
        assert!(e.contains("while testing: bad \\e[2J 42"), "{e}");
        assert_eq!(guarded("testing", || 7), Ok(7));
    }

    #[test]
    fn long_panic_messages_are_clipped() {
        let long = "x".repeat(10_000);
        let e = guarded("testing", || -> () { panic!("{long}") }).unwrap_err();
        assert!(e.len() < 1000, "{}", e.len());
    }
}
