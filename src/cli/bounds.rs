//! Parsers for the arguments that size something: noise samples, ROME's
//! window, a batch memory budget, how many tokens to list.
//!
//! A size from the command line reaches allocators and loops, so each is
//! bounded where it is parsed and refused with its range: `--samples 0`,
//! `--samples -1` or `--max-batch-mem 18446744073709551615` get "must be a
//! whole number from 1 to N" instead of a silent wrap, an empty result or
//! clap's "unexpected argument '-1'" (the arguments allow a leading `-` so
//! that a negative number reaches these parsers). The spec-level rules
//! (`SweepSpec::validate`) still apply after parsing; these bounds only make
//! sure every number is sane before anything is built from it.

/// The most layers a ROME window may name (it is clipped to the model's).
pub const MAX_WINDOW: usize = 4096;
/// The largest batch memory budget, in MiB (1 TiB).
pub const MAX_BATCH_MEM_MIB: usize = 1 << 20;
/// The most tokens `run --top-k` lists (more than any vocabulary).
pub const MAX_TOP_K: usize = 1 << 20;
/// The largest token position accepted (longer than any context).
pub const MAX_POSITION: usize = (1 << 20) - 1;

/// A whole number in `MIN..=MAX`.
pub fn count<const MIN: usize, const MAX: usize>(s: &str) -> Result<usize, String> {
    let range = || format!("must be a whole number from {MIN} to {MAX}");
    let t = s.trim();
    match t.parse::<usize>() {
        Ok(n) if (MIN..=MAX).contains(&n) => Ok(n),
        Ok(n) => Err(format!("{n} is out of range: {}", range())),
        Err(_) if t.starts_with('-') && t[1..].chars().all(|c| c.is_ascii_digit()) => {
            Err(format!("negative: {}", range()))
        }
        Err(_) => Err(range()),
    }
}

/// A positive, finite real number (a standard deviation).
pub fn positive_finite(s: &str) -> Result<f32, String> {
    let fix = "must be a positive finite number such as 0.5 (omit it for the default)";
    match s.trim().parse::<f32>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(x) if x.is_finite() => Err(format!("{x} is not positive: {fix}")),
        Ok(_) => Err(format!("not finite: {fix}")),
        Err(_) => Err(fix.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_bounded_with_their_range() {
        assert_eq!(count::<1, 10>("3"), Ok(3));
        assert!(count::<1, 10>("0").unwrap_err().contains("from 1 to 10"));
        assert!(count::<1, 10>("-1").unwrap_err().contains("negative"));
        assert!(count::<1, 10>("11").unwrap_err().contains("out of range"));
        assert!(count::<1, 10>("99999999999999999999999").is_err());
        assert!(count::<1, 10>("NaN").is_err());
    }

    #[test]
    fn scales_are_positive_and_finite() {
        assert_eq!(positive_finite("0.5"), Ok(0.5));
        for bad in ["0", "-1", "NaN", "inf", "-inf", "1e39", "x"] {
            assert!(positive_finite(bad).is_err(), "{bad}");
        }
    }
}
