//! Which stored circuits of the session are stale (another model, or the
//! prompts, BOS choice or spec changed since they were found). Apart from
//! the pane's transitions so that opening a session can mark them without
//! importing the intents.

use crate::patching::PromptPair;
use crate::session::circuit::circuit_staleness;

use super::state::AppState;

/// Marks the stored circuits that cannot be trusted as current (another
/// model, or prompts, BOS choice or spec changed since); returns how many.
pub fn mark_stale(s: &mut AppState) -> usize {
    let pairs = s.prompts.to_pairs();
    let pairs: Vec<&PromptPair> = pairs.iter().collect();
    let current = s
        .model
        .info()
        .map(|i| i.fingerprint.clone())
        .or_else(|| s.session.fingerprint.clone());
    let bos = s.prompts.bos;
    let mut n = 0;
    for v in &mut s.circuit.views {
        v.stale = v
            .stored
            .as_ref()
            .and_then(|r| circuit_staleness(&v.spec, r, &pairs, bos, current.as_deref()));
        n += v.stale.is_some() as usize;
    }
    n
}

/// "k of n stored circuits stale: why", if any are (already marked).
pub(crate) fn stale_summary(s: &AppState) -> Option<String> {
    let views = &s.circuit.views;
    let first = views.iter().find_map(|v| v.stale.as_ref())?;
    let k = views.iter().filter(|v| v.stale.is_some()).count();
    let n = views.iter().filter(|v| v.stored.is_some()).count();
    Some(format!(
        "{k} of {n} stored circuits stale: {first}; c recomputes"
    ))
}
