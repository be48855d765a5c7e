//! Checking a set of circuit parts: one search (every identity field
//! agrees), every shard 1..N once, every unit once, nothing edited (the
//! content digest). What comes out is every unit's values in canonical
//! order, for [`super::units::assemble`] and the finishing step.

use super::part::{CircuitPart, Manifest, Shared, CIRCUIT_PART_FORMAT};
use super::units::{Unit, UnitValues};

/// Why a set of circuit parts does not merge. Parts are named by file.
#[derive(Debug, thiserror::Error)]
pub enum CircuitMergeError {
    #[error("no part files given; pass every part of the circuit search, e.g. part-*.json")]
    NoParts,
    #[error(
        "{file}: circuit part format {found} is not supported (this build reads format {})",
        CIRCUIT_PART_FORMAT
    )]
    Format { file: String, found: u32 },
    #[error("{file}: {what} is damaged ({detail}); recompute this shard")]
    Damaged {
        file: String,
        what: String,
        detail: String,
    },
    #[error(
        "{file} is from another circuit search than {first}: its {field} differs ({theirs} vs \
         {ours}); merge only the parts of one search"
    )]
    Foreign {
        file: String,
        first: String,
        field: &'static str,
        ours: String,
        theirs: String,
    },
    #[error("{a} and {b} are both shard {shard}; keep one of them")]
    DuplicateShard { a: String, b: String, shard: String },
    #[error(
        "shard(s) {missing} of {n} missing: pass their part files too (each written by \
         `patchbench circuit ... --shard K/{n}`)"
    )]
    MissingShards { missing: String, n: usize },
    #[error("unit {unit} is in both {a} and {b}; the parts overlap, so they were not cut from one split")]
    DuplicateUnit { unit: usize, a: String, b: String },
    #[error(
        "unit {unit} is in no part although every shard is present: a part file was truncated \
         or edited; recompute the shard next to it ({near})"
    )]
    MissingUnit { unit: usize, near: String },
}

/// A checked, complete set of parts.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The first part's manifest and shared data.
    pub manifest: Manifest,
    pub shared: Shared,
    /// Every unit, in canonical order, with its values.
    pub units: Vec<Unit>,
    pub values: Vec<UnitValues>,
}

/// Checks `parts` (`(file name, part)`) and collects their units.
pub fn check(parts: &[(String, CircuitPart)]) -> Result<Checked, CircuitMergeError> {
    let Some((first_name, first)) = parts.first() else {
        return Err(CircuitMergeError::NoParts);
    };
    for (name, p) in parts {
        if p.patchbench_circuit_part != CIRCUIT_PART_FORMAT {
            return Err(CircuitMergeError::Format {
                file: name.clone(),
                found: p.patchbench_circuit_part,
            });
        }
        let found = p.content_digest();
        if found != p.digest {
            return Err(CircuitMergeError::Damaged {
                file: name.clone(),
                what: "the part".into(),
                detail: format!("its content digest is {found}, the file says {}", p.digest),
            });
        }
        check_same(first_name, first, name, p)?;
    }
    let n = first.manifest.shard.n;
    let mut by_shard: Vec<Option<&str>> = vec![None; n];
    for (name, p) in parts {
        let s = p.manifest.shard;
        if s.k == 0 || s.k > n {
            return Err(CircuitMergeError::Damaged {
                file: name.clone(),
                what: "manifest.shard".into(),
                detail: format!("{s} is not K/N with 1 <= K <= N"),
            });
        }
        if let Some(a) = by_shard[s.k - 1] {
            return Err(CircuitMergeError::DuplicateShard {
                a: a.to_string(),
                b: name.clone(),
                shard: s.to_string(),
            });
        }
        by_shard[s.k - 1] = Some(name);
    }
    let missing: Vec<String> = (1..=n)
        .filter(|k| by_shard[k - 1].is_none())
        .map(|k| k.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(CircuitMergeError::MissingShards {
            missing: missing.join(", "),
            n,
        });
    }
    let total = first.manifest.units;
    let mut slots: Vec<Option<(&str, Unit, UnitValues)>> = vec![None; total];
    for (name, p) in parts {
        for u in &p.units {
            let damaged = |detail: String| CircuitMergeError::Damaged {
                file: name.clone(),
                what: format!("unit {}", u.index),
                detail,
            };
            let slot = slots
                .get_mut(u.index)
                .ok_or_else(|| damaged(format!("index beyond the {total} units")))?;
            if let Some((a, _, _)) = slot {
                return Err(CircuitMergeError::DuplicateUnit {
                    unit: u.index,
                    a: a.to_string(),
                    b: name.clone(),
                });
            }
            let (unit, values) = u
                .values()
                .ok_or_else(|| damaged("values are not one row of hex metrics per edge".into()))?;
            *slot = Some((name, unit, values));
        }
    }
    if let Some(unit) = slots.iter().position(|o| o.is_none()) {
        let near = slots[..unit]
            .iter()
            .rev()
            .chain(&slots[unit..])
            .flatten()
            .next()
            .map_or("?".to_string(), |s| s.0.to_string());
        return Err(CircuitMergeError::MissingUnit { unit, near });
    }
    let (units, values) = slots.into_iter().flatten().map(|(_, u, v)| (u, v)).unzip();
    Ok(Checked {
        manifest: first.manifest.clone(),
        shared: first.circuit.clone(),
        units,
        values,
    })
}

/// Checks that part `b` is of the same search as part `a`.
fn check_same(
    a_name: &str,
    a: &CircuitPart,
    b_name: &str,
    b: &CircuitPart,
) -> Result<(), CircuitMergeError> {
    let (ma, mb) = (&a.manifest, &b.manifest);
    let checks: [(&'static str, String, String); 10] = [
        ("patchbench version", ma.version.clone(), mb.version.clone()),
        (
            "shard count",
            ma.shard.n.to_string(),
            mb.shard.n.to_string(),
        ),
        ("spec", json(&ma.spec), json(&mb.spec)),
        (
            "model fingerprint",
            ma.fingerprint.clone(),
            mb.fingerprint.clone(),
        ),
        ("weights mode", ma.weights.clone(), mb.weights.clone()),
        (
            "prompts (inputs digest)",
            ma.inputs.clone(),
            mb.inputs.clone(),
        ),
        ("dataset digest", json(&ma.dataset), json(&mb.dataset)),
        ("metrics", ma.metrics.join(","), mb.metrics.join(",")),
        (
            "unit plan (units, units_digest)",
            format!("{} {}", ma.units, ma.units_digest),
            format!("{} {}", mb.units, mb.units_digest),
        ),
        (
            "shared data (pairs, baselines, edges)",
            json(&a.circuit),
            json(&b.circuit),
        ),
    ];
    for (field, ours, theirs) in checks {
        if ours != theirs {
            let clip = |s: String| crate::util::text::clip(&s, 120).into_owned();
            return Err(CircuitMergeError::Foreign {
                file: b_name.to_string(),
                first: a_name.to_string(),
                field,
                ours: clip(ours),
                theirs: clip(theirs),
            });
        }
    }
    Ok(())
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
