//! `patchbench circuit --method path --sender S --receivers R1,R2,...`:
//! one path-patching query (the IOI paper's sender -> receiver set) instead
//! of a search over every edge; prints the change of every metric.

use anyhow::{bail, Result};
use serde_json::json;

use patchbench::circuits::single::path_effect;
use patchbench::circuits::{CircuitOptions, LnMode};
use patchbench::model::LoadedModel;
use patchbench::patching::metrics::METRICS;
use patchbench::patching::output::{json_text, metrics_obj};
use patchbench::patching::{Direction, PreparedPair};

use super::circuit::CircuitFormat;

/// The query's output in `format` (json or table).
pub fn run(
    m: &LoadedModel,
    pairs: &[PreparedPair],
    opts: &CircuitOptions,
    (sender, receivers): (&str, &[String]),
    format: CircuitFormat,
) -> Result<String> {
    if !matches!(format, CircuitFormat::Json | CircuitFormat::Table) {
        bail!(
            "a path-patching query (--sender/--receivers) prints one number per metric: \
             use --format table or --format json"
        );
    }
    let r = path_effect(&m.model, pairs, opts, sender, receivers)?;
    let ln = match opts.path.ln {
        LnMode::Recompute => "recompute",
        LnMode::Freeze => "freeze",
    };
    if format == CircuitFormat::Json {
        let v = json!({
            "method": "path",
            "model": m.source,
            "sender": sender,
            "receivers": receivers,
            "direction": match opts.direction {
                Direction::Denoise => "denoise",
                Direction::Noise => "noise",
            },
            "corruption": opts.corruption.name(),
            "freeze_mlps": opts.path.freeze_mlps,
            "ln": ln,
            "n_pairs": pairs.len(),
            "baselines": {
                "clean": metrics_obj(&r.clean),
                "corrupted": metrics_obj(&r.corrupted),
            },
            "effect": metrics_obj(&r.effect),
        });
        return Ok(json_text(&v) + "\n");
    }
    let mut out = format!(
        "path patching on {}: {sender} -> {{{}}}, {} pair{}, MLPs {}, LayerNorm {ln}\n",
        m.source,
        receivers.join(", "),
        pairs.len(),
        if pairs.len() == 1 { "" } else { "s" },
        if opts.path.freeze_mlps {
            "frozen"
        } else {
            "recomputed"
        },
    );
    out.push_str(&format!(
        "{:<28} {:>12} {:>12} {:>12}\n",
        "metric", "change", "clean", "corrupted"
    ));
    for name in METRICS {
        let v = |m: &patchbench::patching::Metrics| match m.get(name) {
            Some(x) if x.is_finite() => format!("{x:>12.6}"),
            _ => format!("{:>12}", "-"),
        };
        out.push_str(&format!(
            "{name:<28} {} {} {}\n",
            v(&r.effect),
            v(&r.clean),
            v(&r.corrupted)
        ));
    }
    Ok(out)
}
