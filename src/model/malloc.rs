//! How the C allocator keeps freed memory, chosen once at start-up by the
//! binary ([`configure`]).
//!
//! Gradient passes and batched patches allocate and free tensors of tens
//! of megabytes by the hundred. glibc serves blocks above its (adaptive)
//! mmap threshold with fresh mappings and gives freed heap tops back to
//! the kernel past 128 KiB, so each such tensor costs page faults on
//! first touch: AtP* on gpt2-small spent 10 of its 28 CPU seconds in the
//! kernel. Keeping blocks up to 32 MiB (glibc's largest threshold) on the
//! heap and holding up to 512 MiB of freed memory per arena turns that
//! into reuse: `bench circuit` AtP* 15.7 s → 11.8 s wall (sys 10.3 s →
//! 6.2 s), EAP-IG and exact patching unchanged within noise, the same peak
//! RSS. The cost is that up to that much freed memory stays mapped after
//! a large job. A user's own `GLIBC_TUNABLES` malloc settings win.

/// Largest block kept on the heap (glibc's ceiling for the threshold).
const MMAP_THRESHOLD: i32 = 32 << 20;
/// Freed memory an arena keeps before returning it to the kernel.
const TRIM_THRESHOLD: i32 = 512 << 20;

/// Applies the settings above; true when the allocator took them (false
/// off glibc, or when the user set malloc tunables).
pub fn configure() -> bool {
    let user_set = std::env::var("GLIBC_TUNABLES").is_ok_and(|v| v.contains("malloc"));
    !user_set && apply()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // SAFETY: mallopt only changes allocator parameters; both values are
    // within glibc's accepted ranges (it returns 0 when it refuses one).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    let _ = (MMAP_THRESHOLD, TRIM_THRESHOLD);
    false
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_both_settings() {
        assert!(super::apply());
    }
}
