//! `patchbench compare A.json [B.json]`: a paired permutation test between
//! two sweeps' per-pair values (`data::compare`), at one cell of each or
//! cell by cell. The files are `patchbench sweep --dataset ... --format
//! json` outputs; with one file, `--cell` and `--cell-b` pick two cells of it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use patchbench::data::compare::{paired_permutation, DEFAULT_PERMUTATIONS};
use patchbench::patching::metrics::METRICS;
use patchbench::util::fs::{limits, read_text_capped};

use super::bounds::count;
use super::output::write_output;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum CompareFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// A sweep JSON with per-pair values (`sweep --dataset ... --format json`).
    pub a: PathBuf,
    /// A second sweep over the same pairs (default: A itself, with --cell-b).
    pub b: Option<PathBuf>,
    /// Metric compared.
    #[arg(long, default_value = "logit_diff", value_parser = parse_metric)]
    pub metric: String,
    /// Cell of A as comma-separated axis indices (e.g. 0,3); default: every
    /// cell, each against the same cell of B.
    #[arg(long, value_delimiter = ',')]
    pub cell: Vec<usize>,
    /// Cell of B (default: --cell).
    #[arg(long, value_delimiter = ',')]
    pub cell_b: Vec<usize>,
    /// Random sign flips of the permutation test.
    #[arg(long, default_value_t = DEFAULT_PERMUTATIONS, allow_negative_numbers = true,
          value_parser = count::<1, 10_000_000>)]
    pub permutations: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "table")]
    pub format: CompareFormat,
    /// Write the output here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn parse_metric(s: &str) -> Result<String, String> {
    if METRICS.contains(&s) {
        Ok(s.into())
    } else {
        Err(format!(
            "unknown metric {s:?}; metrics are: {}",
            METRICS.join(", ")
        ))
    }
}

/// A sweep file's shape and per-pair values of one metric (`[pair][cell]`).
struct PerPair {
    shape: Vec<usize>,
    values: Vec<Vec<f32>>,
}

fn flatten(v: &Value, out: &mut Vec<f32>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        Value::Number(n) => out.push(n.as_f64().unwrap_or(f64::NAN) as f32),
        _ => out.push(f32::NAN),
    }
}

fn read(path: &Path, metric: &str) -> Result<PerPair> {
    let text = read_text_capped(path, limits::SESSION, "sweep JSON file")?;
    let v: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a sweep JSON file", path.display()))?;
    let shape: Vec<usize> = v
        .get("shape")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .with_context(|| {
            format!(
                "{}: no `shape`; is this `patchbench sweep --format json` output?",
                path.display()
            )
        })?;
    let Some(pairs) = v.get("per_pair").and_then(Value::as_array) else {
        bail!(
            "{}: holds no per-pair values (`per_pair`); run the sweep over a dataset (--dataset FILE) of two or more pairs",
            path.display()
        );
    };
    let values = pairs
        .iter()
        .map(|p| {
            let mut out = Vec::new();
            if let Some(m) = p.get("metrics").and_then(|m| m.get(metric)) {
                flatten(m, &mut out);
            }
            out
        })
        .collect();
    Ok(PerPair { shape, values })
}

fn index(shape: &[usize], idx: &[usize], which: &str) -> Result<usize> {
    if idx.len() != shape.len() || idx.iter().zip(shape).any(|(i, n)| i >= n) {
        bail!("{which} {idx:?} is not a cell of a sweep of shape {shape:?}; give one index per axis, each below its size");
    }
    Ok(idx.iter().zip(shape).fold(0, |acc, (i, n)| acc * n + i))
}

pub fn compare(args: &CompareArgs) -> Result<()> {
    let a = read(&args.a, &args.metric)?;
    let b = match &args.b {
        Some(p) => read(p, &args.metric)?,
        None if args.cell_b.is_empty() => bail!(
            "with one file, give --cell and --cell-b (two cells of it), or give a second sweep file"
        ),
        None => read(&args.a, &args.metric)?,
    };
    let col = |p: &PerPair, c: usize| -> Vec<f32> {
        p.values
            .iter()
            .map(|v| v.get(c).copied().unwrap_or(f32::NAN))
            .collect()
    };
    let mut rows = Vec::new();
    if args.cell.is_empty() {
        if a.shape != b.shape {
            bail!("the sweeps have shapes {:?} and {:?}; compare cell by cell needs one shape (or pick cells with --cell/--cell-b)", a.shape, b.shape);
        }
        let n: usize = a.shape.iter().product();
        for c in 0..n {
            let r = paired_permutation(&col(&a, c), &col(&b, c), args.permutations, args.seed);
            rows.push((c, c, r.ok()));
        }
    } else {
        let ca = index(&a.shape, &args.cell, "--cell")?;
        let cb_idx = if args.cell_b.is_empty() {
            &args.cell
        } else {
            &args.cell_b
        };
        let cb = index(&b.shape, cb_idx, "--cell-b")?;
        let r = paired_permutation(&col(&a, ca), &col(&b, cb), args.permutations, args.seed)?;
        rows.push((ca, cb, Some(r)));
    }
    let text = match args.format {
        CompareFormat::Json => {
            let cells: Vec<Value> = rows
                .iter()
                .map(|(ca, cb, r)| match r {
                    Some(r) => json!({"cell_a": ca, "cell_b": cb, "n": r.n, "mean_a": r.mean_a,
                        "mean_b": r.mean_b, "diff": r.diff, "ci_low": r.ci_low, "ci_high": r.ci_high,
                        "p_value": r.p_value}),
                    None => json!({"cell_a": ca, "cell_b": cb, "p_value": null}),
                })
                .collect();
            let v = json!({"metric": args.metric, "test": "paired sign-flip permutation, two-sided",
                "permutations": args.permutations, "seed": args.seed, "shape_a": a.shape,
                "shape_b": b.shape, "cells": cells});
            serde_json::to_string_pretty(&v)? + "\n"
        }
        CompareFormat::Table => {
            let mut t = format!(
                "paired permutation test of {} ({} sign flips, seed {})\n{:>8} {:>8} {:>10} {:>10} {:>10} {:>21} {:>9}\n",
                args.metric, args.permutations, args.seed, "cell A", "cell B", "mean A", "mean B", "A - B", "95% CI of A - B", "p"
            );
            for (ca, cb, r) in &rows {
                match r {
                    Some(r) => t.push_str(&format!(
                        "{ca:>8} {cb:>8} {:>10.4} {:>10.4} {:>10.4} [{:>9.4}, {:>9.4}] {:>9.4}\n",
                        r.mean_a, r.mean_b, r.diff, r.ci_low, r.ci_high, r.p_value
                    )),
                    None => t.push_str(&format!("{ca:>8} {cb:>8} (no values)\n")),
                }
            }
            t
        }
    };
    let inputs: Vec<&Path> = std::iter::once(args.a.as_path())
        .chain(args.b.as_deref())
        .collect();
    write_output(args.out.as_deref(), &text, &inputs, "txt")
}
