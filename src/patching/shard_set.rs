//! Whether a set of part files covers one sharded run exactly: every shard
//! 1..N once, every unit once. Shared by the merges of sweep parts
//! (`part::merge`) and circuit parts (`circuits::merge`), which check first
//! that the parts belong to one run and are undamaged, then this, then read
//! the values in place.

use super::part::Shard;

/// One part as the coverage check sees it.
#[derive(Debug, Clone)]
pub struct PartUnits<'a> {
    /// The part's file name, for messages.
    pub file: &'a str,
    pub shard: Shard,
    /// The indices of the units it computed.
    pub units: Vec<usize>,
}

/// Why a set of parts does not cover a run. `command` is the command that
/// writes the parts (`sweep`, `circuit`), for the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoverageError {
    #[error("{file}: manifest.shard is damaged ({shard} is not K/N with 1 <= K <= N); recompute this shard")]
    BadShard { file: String, shard: String },
    #[error("{a} and {b} are both shard {shard}; keep one of them")]
    DuplicateShard { a: String, b: String, shard: String },
    #[error(
        "shard(s) {missing} of {n} missing: pass their part files too (each written by \
         `patchbench {command} ... --shard K/{n}`)"
    )]
    MissingShards {
        missing: String,
        n: usize,
        command: &'static str,
    },
    #[error(
        "{file}: unit {unit} is damaged (index beyond the {total} units); recompute this shard"
    )]
    UnitBeyond {
        file: String,
        unit: usize,
        total: usize,
    },
    #[error("unit {unit} is in both {a} and {b}; the parts overlap, so they were not cut from one split")]
    DuplicateUnit { unit: usize, a: String, b: String },
    #[error(
        "unit {unit} is in no part although every shard is present: a part file was truncated \
         or edited; recompute the shard next to it ({near})"
    )]
    MissingUnit { unit: usize, near: String },
}

/// Checks that `parts`, all of a run cut into `n` shards and `total`
/// units, hold every shard and every unit exactly once. Returns, for each
/// unit, the index (into `parts`) of the part that computed it.
pub fn check_coverage(
    parts: &[PartUnits],
    n: usize,
    total: usize,
    command: &'static str,
) -> Result<Vec<usize>, CoverageError> {
    let mut by_shard: Vec<Option<&str>> = vec![None; n];
    for p in parts {
        let s = p.shard;
        if s.k == 0 || s.k > n || s.n != n {
            return Err(CoverageError::BadShard {
                file: p.file.to_string(),
                shard: s.to_string(),
            });
        }
        if let Some(a) = by_shard[s.k - 1] {
            return Err(CoverageError::DuplicateShard {
                a: a.to_string(),
                b: p.file.to_string(),
                shard: s.to_string(),
            });
        }
        by_shard[s.k - 1] = Some(p.file);
    }
    let missing: Vec<String> = (1..=n)
        .filter(|k| by_shard[k - 1].is_none())
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(CoverageError::MissingShards {
            missing: missing.join(", "),
            n,
            command,
        });
    }
    let mut owner: Vec<Option<usize>> = vec![None; total];
    for (i, p) in parts.iter().enumerate() {
        for &unit in &p.units {
            let slot = owner
                .get_mut(unit)
                .ok_or_else(|| CoverageError::UnitBeyond {
                    file: p.file.to_string(),
                    unit,
                    total,
                })?;
            if let Some(a) = *slot {
                return Err(CoverageError::DuplicateUnit {
                    unit,
                    a: parts[a].file.to_string(),
                    b: p.file.to_string(),
                });
            }
            *slot = Some(i);
        }
    }
    if let Some(unit) = owner.iter().position(|o| o.is_none()) {
        let near = owner[..unit]
            .iter()
            .rev()
            .chain(&owner[unit..])
            .flatten()
            .next()
            .map_or("?".to_string(), |&i| parts[i].file.to_string());
        return Err(CoverageError::MissingUnit { unit, near });
    }
    Ok(owner.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(file: &str, k: usize, n: usize, units: &[usize]) -> PartUnits<'static> {
        PartUnits {
            file: Box::leak(file.to_string().into_boxed_str()),
            shard: Shard { k, n },
            units: units.to_vec(),
        }
    }

    #[test]
    fn a_complete_set_gives_each_units_part() {
        let ps = [part("b", 2, 2, &[2, 1]), part("a", 1, 2, &[0])];
        assert_eq!(check_coverage(&ps, 2, 3, "sweep"), Ok(vec![1, 0, 0]));
    }

    #[test]
    fn gaps_overlaps_and_bad_shards_are_named() {
        let err = |ps: &[PartUnits], total| check_coverage(ps, 2, total, "circuit").unwrap_err();
        let e = err(&[part("a", 1, 2, &[0])], 1);
        assert_eq!(
            e.to_string(),
            "shard(s) 2 of 2 missing: pass their part files too (each written by \
             `patchbench circuit ... --shard K/2`)"
        );
        let e = err(&[part("a", 1, 2, &[0]), part("b", 1, 2, &[1])], 2);
        assert!(matches!(e, CoverageError::DuplicateShard { .. }), "{e}");
        let e = err(&[part("a", 0, 2, &[0]), part("b", 2, 2, &[1])], 2);
        assert!(
            e.to_string()
                .starts_with("a: manifest.shard is damaged (0/2"),
            "{e}"
        );
        let e = err(&[part("a", 3, 2, &[0])], 2);
        assert!(matches!(e, CoverageError::BadShard { .. }), "{e}");
        let e = err(&[part("a", 1, 2, &[0, 5]), part("b", 2, 2, &[1])], 2);
        assert!(
            matches!(e, CoverageError::UnitBeyond { unit: 5, .. }),
            "{e}"
        );
        let e = err(&[part("a", 1, 2, &[0, 1]), part("b", 2, 2, &[1])], 2);
        assert!(
            matches!(e, CoverageError::DuplicateUnit { unit: 1, .. }),
            "{e}"
        );
        let e = err(&[part("a", 1, 2, &[0]), part("b", 2, 2, &[2])], 3);
        assert_eq!(
            e,
            CoverageError::MissingUnit {
                unit: 1,
                near: "a".into()
            }
        );
    }
}
