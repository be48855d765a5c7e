//! Checking sizes before allocating them.
//!
//! Sizes come from files and arguments: a context length sizing a rotary
//! table, an embedding width, a batch count, a stored result's shape. A
//! corrupt or hostile value (2^62, or a product that overflows) must be
//! refused with a message, not passed to an allocator that aborts the process.
//! Every such size goes through [`check_elements`] or [`check_bytes`] first.

/// Why an allocation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocError {
    #[error("{what}: the size overflows ({dims}); the value is corrupt or absurd")]
    Overflow { what: String, dims: String },
    #[error(
        "{what}: needs {needed} but this machine can hold about {available}; \
         use a smaller value (or a machine with more memory)"
    )]
    TooLarge {
        what: String,
        needed: String,
        available: String,
    },
}

/// Bytes this process could still allocate: the smaller of the memory the
/// system says is available and the address-space limit (`ulimit -v`).
pub fn available_bytes() -> u64 {
    let mut avail = meminfo_available().unwrap_or(u64::MAX);
    if let Some(limit) = address_space_limit() {
        avail = avail.min(limit);
    }
    avail
}

fn meminfo_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

#[cfg(unix)]
fn address_space_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut rl) } == 0;
    (ok && rl.rlim_cur != libc::RLIM_INFINITY).then_some(rl.rlim_cur)
}

#[cfg(not(unix))]
fn address_space_limit() -> Option<u64> {
    None
}

/// `1.5 GiB`-style sizes for messages.
pub fn human_bytes(bytes: u128) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Checks that `bytes` can be allocated, leaving a margin for the rest of the
/// process.
pub fn check_bytes(what: &str, bytes: u128) -> Result<(), AllocError> {
    let available = available_bytes() as u128;
    if bytes > available {
        return Err(AllocError::TooLarge {
            what: what.to_string(),
            needed: human_bytes(bytes),
            available: human_bytes(available),
        });
    }
    Ok(())
}

/// Multiplies `dims` without overflow and checks the buffer of
/// `elem_bytes`-sized elements fits; returns the element count.
pub fn check_elements(what: &str, dims: &[usize], elem_bytes: usize) -> Result<usize, AllocError> {
    let overflow = || AllocError::Overflow {
        what: what.to_string(),
        dims: dims
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(" × "),
    };
    let mut n: u128 = 1;
    for &d in dims {
        n = n.checked_mul(d as u128).ok_or_else(overflow)?;
    }
    let bytes = n.checked_mul(elem_bytes as u128).ok_or_else(overflow)?;
    if n > usize::MAX as u128 || bytes > isize::MAX as u128 {
        return Err(overflow());
    }
    check_bytes(what, bytes)?;
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_refused() {
        let e = check_elements("embedding", &[1 << 62, 1 << 4], 4).unwrap_err();
        assert!(matches!(e, AllocError::Overflow { .. }), "{e}");
        let e = check_elements("rotary table", &[1 << 40, 64], 4).unwrap_err();
        assert!(matches!(e, AllocError::TooLarge { .. }), "{e}");
        assert!(e.to_string().contains("rotary table"));
    }

    #[test]
    fn ordinary_sizes_pass() {
        assert_eq!(
            check_elements("cache", &[12, 64, 768], 4).unwrap(),
            12 * 64 * 768
        );
    }
}
