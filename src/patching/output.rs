//! The machine-readable sweep output (DESIGN.md's contract) and a readable
//! text heatmap.
//!
//! JSON: one object with `model`, `target`, `direction`, `corruption`,
//! `clean_tokens`, `corrupted_tokens`, `answer`, `wrong`, `baselines`,
//! `axes`, `shape`, `metrics` (name -> nested arrays, row-major in `axes`
//! order) and `timing`. Missing cells (NaN) are `null`. CSV: one row per
//! cell, a column per axis and per metric.
//!
//! Strings from the model (token and answer strings, component labels,
//! the model source) can hold any character: the table escapes control
//! characters ([`one_line`]) so a vocabulary entry cannot drive the
//! terminal, and CSV cells are escaped the same way and then quoted per
//! RFC 4180 when they hold a comma or a quote ([`csv_field`]), so every row
//! stays one line with the columns its header names; a text cell that a
//! spreadsheet would take for a formula gets a leading apostrophe. JSON keeps strings
//! exact: serde escapes C0 controls, and [`json_text`] also writes DEL, the
//! C1 controls (0x9B is CSI) and bidirectional overrides as `\uXXXX`,
//! which parse back to the same string.
//!
//! Metrics are written in registry order ([`METRICS`]); a stored result
//! that lacks one of them (computed by a build with fewer metrics) has it
//! written as missing cells rather than failing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::util::text::one_line;

use super::metrics::{Metrics, METRICS};
use super::result::SweepResult;
use super::spec::SweepSpec;

/// Token ids with their display strings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenList {
    pub ids: Vec<u32>,
    pub strings: Vec<String>,
}

/// Everything printed about one sweep.
#[derive(Debug, Clone)]
pub struct SweepReport<'a> {
    pub model: &'a str,
    pub spec: &'a SweepSpec,
    pub clean: TokenList,
    pub corrupted: TokenList,
    pub answer: (u32, String),
    pub wrong: (u32, String),
    pub result: &'a SweepResult,
    pub load_ms: f64,
}

fn num(x: f32) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

/// Every metric of `m` by name, non-finite values as null.
pub fn metrics_obj(m: &Metrics) -> Value {
    Value::Object(m.iter().map(|(n, v)| (n.to_string(), num(v))).collect())
}

/// The values of `metric`, or `n` missing cells when the result lacks it.
fn column<'a>(metrics: &'a BTreeMap<String, Vec<f32>>, metric: &str, n: usize) -> Cow<'a, [f32]> {
    match metrics.get(metric) {
        Some(v) => Cow::Borrowed(v),
        None => Cow::Owned(vec![f32::NAN; n]),
    }
}

/// Every metric, nested by `shape`, in registry order.
fn metrics_nested(metrics: &BTreeMap<String, Vec<f32>>, shape: &[usize]) -> Map<String, Value> {
    let n = shape.iter().product();
    METRICS
        .iter()
        .map(|m| (m.to_string(), nest(&column(metrics, m, n), shape)))
        .collect()
}

/// `s` as one text CSV field: control characters (newlines included)
/// escaped, then quoted with doubled quotes when it holds a comma or a
/// quote. Text that a spreadsheet would read as a formula (it begins with
/// `=`, `+`, `-`, `@`, a tab or a carriage return, as a token string such as
/// "=SUM(A1)" can) gets a leading apostrophe, so opening the CSV runs
/// nothing; numbers never pass through here and stay numbers.
pub fn csv_field(s: &str) -> Cow<'_, str> {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let mut s = one_line(s);
    if formula {
        s = Cow::Owned(format!("'{s}"));
    }
    if s.contains([',', '"']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        s
    }
}

/// `v` as pretty JSON with nothing a terminal acts on: serde_json leaves
/// DEL, C1 controls and bidirectional overrides raw, so they are written as
/// `\uXXXX` escapes (inside strings, the only place they can occur).
pub fn json_text(v: &Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into());
    let unsafe_char = |c: char| {
        c != '\n'
            && (c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
    };
    if !text.chars().any(unsafe_char) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        // Newlines and indentation are serde's own layout, never inside a
        // string (where serde has escaped them).
        if unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Nests a row-major vector by `shape`.
pub fn nest(values: &[f32], shape: &[usize]) -> Value {
    match shape {
        [] => num(values[0]),
        [n] => Value::Array(values[..*n].iter().map(|&x| num(x)).collect()),
        [n, rest @ ..] => {
            let stride: usize = rest.iter().product();
            Value::Array(
                (0..*n)
                    .map(|i| nest(&values[i * stride..(i + 1) * stride], rest))
                    .collect(),
            )
        }
    }
}

impl SweepReport<'_> {
    pub fn to_json(&self) -> Value {
        let r = self.result;
        let metrics = metrics_nested(&r.metrics, &r.shape);
        let mut v = json!({
            "model": self.model,
            "target": self.spec.target.name(),
            "direction": self.spec.direction.to_string(),
            "corruption": serde_json::to_value(&self.spec.corruption).unwrap_or(Value::Null),
            "clean_tokens": self.clean,
            "corrupted_tokens": self.corrupted,
            "answer": {"id": self.answer.0, "string": self.answer.1},
            "wrong": {"id": self.wrong.0, "string": self.wrong.1},
            "baselines": {
                "clean": metrics_obj(&r.baselines.clean),
                "corrupted": metrics_obj(&r.baselines.corrupted),
            },
            "axes": r.axes,
            "shape": r.shape,
            "metrics": metrics,
            "timing": {
                "load_ms": self.load_ms,
                "sweep_ms": r.timing.sweep_ms,
                "forward_passes": r.timing.forward_passes,
                "device": r.timing.device,
            },
        });
        let obj = v.as_object_mut().expect("object");
        if !r.components.is_empty() {
            obj.insert("components".into(), json!(r.components));
        }
        obj.insert("method".into(), json!(r.method));
        if !r.position_labels.is_empty() {
            obj.insert("position_labels".into(), json!(r.position_labels));
        }
        if matches!(self.spec.target.name(), "trace_mlp" | "trace_attn") {
            obj.insert("window".into(), json!(self.spec.window));
        }
        if r.per_pair.len() > 1 {
            let pairs: Vec<Value> = r
                .per_pair
                .iter()
                .zip(&r.pair_baselines)
                .map(|(m, b)| {
                    json!({
                        "baselines": {"clean": metrics_obj(&b.clean), "corrupted": metrics_obj(&b.corrupted)},
                        "metrics": metrics_nested(m, &r.shape),
                    })
                })
                .collect();
            obj.insert("per_pair".into(), Value::Array(pairs));
        }
        v
    }

    /// One row per cell: axis indices (component labels for `component`),
    /// then every metric.
    pub fn to_csv(&self) -> String {
        let r = self.result;
        let mut out = String::new();
        let columns: Vec<Cow<[f32]>> = METRICS
            .iter()
            .map(|m| column(&r.metrics, m, r.n_cells()))
            .collect();
        let header: Vec<String> = r
            .axes
            .iter()
            .map(|a| csv_field(a).into_owned())
            .chain(METRICS.iter().map(|s| s.to_string()))
            .collect();
        out.push_str(&header.join(","));
        out.push('\n');
        for cell in 0..r.n_cells() {
            let mut idx = Vec::with_capacity(r.shape.len());
            let mut rem = cell;
            for n in r.shape.iter().rev() {
                idx.push(rem % n);
                rem /= n;
            }
            idx.reverse();
            let mut row: Vec<String> = r
                .axes
                .iter()
                .zip(&idx)
                .map(|(a, &i)| {
                    if a == "component" {
                        r.components
                            .get(i)
                            .map(|c| csv_field(c).into_owned())
                            .unwrap_or_else(|| i.to_string())
                    } else if (a == "pos" || a == "dest_pos") && !r.position_labels.is_empty() {
                        r.position_labels
                            .get(i)
                            .map(|c| csv_field(c).into_owned())
                            .unwrap_or_else(|| i.to_string())
                    } else {
                        i.to_string()
                    }
                })
                .collect();
            for col in &columns {
                let x = col[cell];
                row.push(if x.is_finite() {
                    format!("{x}")
                } else {
                    String::new()
                });
            }
            out.push_str(&row.join(","));
            out.push('\n');
        }
        out
    }

    /// A text heatmap of `metric`; ANSI colours when `color`.
    pub fn to_table(&self, metric: &str, color: bool) -> String {
        let r = self.result;
        let vals = column(&r.metrics, metric, r.n_cells());
        let mut out = String::new();
        let b = &r.baselines;
        out.push_str(&format!(
            "{} {} ({}, {}): {}   clean {:.3}  corrupted {:.3}\n",
            self.spec.target,
            self.spec.direction,
            self.spec.corruption.name(),
            one_line(self.model),
            metric,
            b.clean.get(metric).unwrap_or(f32::NAN),
            b.corrupted.get(metric).unwrap_or(f32::NAN),
        ));
        let (lo, hi) = vals
            .iter()
            .filter(|x| x.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            });
        let scale = lo.abs().max(hi.abs()).max(1e-9);
        let (blocks, rows_axis, cols_axis) = match r.shape.len() {
            2 => (1, 0, 1),
            _ => (r.shape[0], 1, 2),
        };
        let (nr, nc) = (r.shape[rows_axis], r.shape[cols_axis]);
        let col_label = |j: usize| -> String {
            match r.axes[cols_axis].as_str() {
                "pos" | "dest_pos" if !r.position_labels.is_empty() => r
                    .position_labels
                    .get(j)
                    .map(|t| one_line(t).into_owned())
                    .unwrap_or_default(),
                // A newline token is common enough to get a readable mark;
                // every other control character is escaped.
                "pos" | "dest_pos" => self
                    .clean
                    .strings
                    .get(j)
                    .map(|t| one_line(&t.replace('\n', "⏎")).into_owned())
                    .unwrap_or_default(),
                a => format!("{}{j}", &a[..1].to_uppercase()),
            }
        };
        for blk in 0..blocks {
            if blocks > 1 {
                let name = r
                    .components
                    .get(blk)
                    .map(|c| one_line(c).into_owned())
                    .unwrap_or_else(|| format!("{} {blk}", r.axes[0]));
                out.push_str(&format!("\n[{name}]\n"));
            }
            out.push_str(&format!("{:>8}", r.axes[rows_axis]));
            for j in 0..nc {
                let l: String = col_label(j).chars().take(7).collect();
                out.push_str(&format!(" {l:>7}"));
            }
            out.push('\n');
            for i in 0..nr {
                out.push_str(&format!("{i:>8}"));
                for j in 0..nc {
                    let x = vals[(blk * nr + i) * nc + j];
                    let cell = if x.is_finite() {
                        format!("{x:>7.2}")
                    } else {
                        "      ·".into()
                    };
                    if color && x.is_finite() {
                        let (rr, gg, bb) = diverging(x / scale);
                        out.push_str(&format!(
                            " \x1b[48;2;{rr};{gg};{bb}m\x1b[38;2;0;0;0m{cell}\x1b[0m"
                        ));
                    } else {
                        out.push(' ');
                        out.push_str(&cell);
                    }
                }
                out.push('\n');
            }
        }
        out.push_str(&format!(
            "range {lo:.3} .. {hi:.3}; colour scale symmetric around 0\n"
        ));
        out
    }
}

/// Blue (negative) - white (0) - red (positive), for `t` in [-1, 1].
pub fn diverging(t: f32) -> (u8, u8, u8) {
    let t = t.clamp(-1.0, 1.0);
    let fade = |c: f32| (255.0 - (255.0 - c) * t.abs()) as u8;
    if t >= 0.0 {
        (fade(200.0), fade(40.0), fade(40.0))
    } else {
        (fade(40.0), fade(90.0), fade(200.0))
    }
}
