//! How candle's CPU backend spreads work over threads, chosen once at
//! start-up by the binary ([`configure`]).
//!
//! candle runs matrix multiplies on its rayon pool and element-wise ops
//! (norms, softmax, adds, the mask) on a second pool whose workers spin
//! for a while after each op before they sleep. A patched forward is a
//! long chain of small element-wise ops between matrix multiplies, so on a
//! machine with few cores those spinning workers take the cores the next
//! matrix multiply needs. Measured on 2 cores (`bench dataset`, 6 IOI
//! pairs of 15 tokens, gpt2-small shape, head_out): 19.7 s CPU with
//! candle's default against 14.9 s with the element-wise pool off, the
//! same as one thread for everything (15.3 s); wall time fell by a
//! fifth. So with two threads or fewer the element-wise ops run on the
//! calling thread (`CANDLE_NUM_THREADS=1`); matrix multiplies keep every
//! thread, and GELU has its own split (`gelu.rs`). Larger machines keep
//! candle's defaults, and an explicit `CANDLE_NUM_THREADS` or
//! `CANDLE_BARRIER_POOL_SPIN_LIMIT` always wins.

/// Thread counts at or below which the element-wise pool is turned off.
const SMALL_MACHINE: usize = 2;

/// What [`configure`] would set: `Some(("CANDLE_NUM_THREADS", "1"))` on a
/// small machine unless the user chose either setting.
pub fn choice(
    threads: usize,
    user_set: impl Fn(&str) -> bool,
) -> Option<(&'static str, &'static str)> {
    let chosen = ["CANDLE_NUM_THREADS", "CANDLE_BARRIER_POOL_SPIN_LIMIT"]
        .iter()
        .any(|k| user_set(k));
    (!chosen && threads <= SMALL_MACHINE).then_some(("CANDLE_NUM_THREADS", "1"))
}

/// Applies [`choice`] to this process. Call it first thing in `main`,
/// before any thread starts and before candle reads the variable (it reads
/// it once, when its pool is first used).
pub fn configure() {
    if let Some((k, v)) = choice(candle_core::utils::get_num_threads(), |k| {
        std::env::var_os(k).is_some()
    }) {
        // Sound here: called before the process starts a second thread.
        std::env::set_var(k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::choice;

    #[test]
    fn small_machines_run_element_wise_ops_on_the_calling_thread() {
        assert_eq!(choice(1, |_| false), Some(("CANDLE_NUM_THREADS", "1")));
        assert_eq!(choice(2, |_| false), Some(("CANDLE_NUM_THREADS", "1")));
        assert_eq!(choice(16, |_| false), None);
    }

    #[test]
    fn a_user_setting_wins() {
        assert_eq!(choice(2, |k| k == "CANDLE_NUM_THREADS"), None);
        assert_eq!(choice(2, |k| k == "CANDLE_BARRIER_POOL_SPIN_LIMIT"), None);
    }
}
