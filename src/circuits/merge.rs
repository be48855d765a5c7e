//! Checking a set of circuit parts: one search (every identity field
//! agrees), every shard 1..N once, every unit once, nothing edited (the
//! content digest). What comes out is every unit's values in canonical
//! order, for [`super::units::assemble`] and the finishing step.

use super::part::{CircuitPart, Manifest, Shared, CIRCUIT_PART_FORMAT};
use super::units::{Unit, UnitValues};
use crate::patching::shard_set::{check_coverage, CoverageError, PartUnits};

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
    #[error(transparent)]
    Coverage(#[from] CoverageError),
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
    let coverage: Vec<PartUnits> = parts
        .iter()
        .map(|(name, p)| PartUnits {
            file: name,
            shard: p.manifest.shard,
            units: p.units.iter().map(|u| u.index).collect(),
        })
        .collect();
    let total = first.manifest.units;
    check_coverage(&coverage, first.manifest.shard.n, total, "circuit")?;
    let mut slots: Vec<Option<(Unit, UnitValues)>> = vec![None; total];
    for (name, p) in parts {
        for u in &p.units {
            let (unit, values) = u.values().ok_or_else(|| CircuitMergeError::Damaged {
                file: name.clone(),
                what: format!("unit {}", u.index),
                detail: "values are not one row of hex metrics per edge".into(),
            })?;
            slots[u.index] = Some((unit, values));
        }
    }
    let (units, values) = slots.into_iter().flatten().unzip();
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
