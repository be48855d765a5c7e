//! The machine-readable circuit contract (`circuit --format json`), the
//! Graphviz drawing (`--format dot`), CSV and a ranked text table.
//!
//! JSON: `model`, `method`, `direction`, `corruption`, `metric` (the
//! ranking metric), `clean_tokens`/`corrupted_tokens`/`answer`/`wrong`,
//! `baselines`, `n_edges`, `nodes` (every sender and receiver name),
//! `edges` (the top edges by `|score|`: `sender`, `receiver`, `scores`
//! metric -> the method's value, `exact` metric -> the exact value where
//! checked), `faithfulness` (`k`, `recovered`, `metrics`), `edges_for_80`,
//! `edges_for_90`, `timing`. Position-aware searches (`--positions`) add
//! `positions: true`, and each edge its `src_pos` and `dst_pos` (equal
//! 0-based token positions; `n_edges` then counts (edge, position) units),
//! and `pos_label` where labelled pairs name the position.
//! Metric values are changes of the metric when the edge alone is patched; NaN (a metric without a gradient under an
//! estimating method) is written as `null`.

use serde_json::{json, Value};

use crate::patching::metrics::{lookup, METRICS};
use crate::patching::output::TokenList;

use super::circuit::{CircuitResult, EdgeScore};
use super::graph::Graph;

/// What the report quotes besides the result.
pub struct CircuitReport<'a> {
    pub model: &'a str,
    pub corruption: &'a str,
    pub clean: TokenList,
    pub corrupted: TokenList,
    pub answer: (u32, String),
    pub wrong: (u32, String),
    pub graph: &'a Graph,
    /// Position-aware edges over labelled pairs: each position's label.
    pub position_labels: &'a [Option<String>],
    pub result: &'a CircuitResult,
    /// Edges listed (0: all).
    pub top: usize,
    pub load_ms: u64,
}

impl CircuitReport<'_> {
    fn edges(&self) -> &[EdgeScore] {
        let n = if self.top == 0 {
            self.result.edges.len()
        } else {
            self.top.min(self.result.edges.len())
        };
        &self.result.edges[..n]
    }

    pub fn to_json(&self) -> Value {
        let r = self.result;
        let g = self.graph;
        let mut nodes: Vec<String> = (0..g.n_senders() as u32)
            .map(|s| g.sender_name(super::graph::SenderId(s)))
            .collect();
        // An MLP is both a sender and a receiver under one name.
        for i in 0..g.n_receivers() as u32 {
            let name = g.receiver_name(super::graph::ReceiverId(i));
            if !nodes.contains(&name) {
                nodes.push(name);
            }
        }
        let mut v = json!({
            "model": self.model,
            "method": r.method.name(),
            "direction": r.direction,
            "corruption": self.corruption,
            "metric": r.metric,
            "clean_tokens": self.clean,
            "corrupted_tokens": self.corrupted,
            "answer": {"id": self.answer.0, "string": self.answer.1},
            "wrong": {"id": self.wrong.0, "string": self.wrong.1},
            "baselines": r.baselines,
            "n_edges": r.n_edges,
            "nodes": nodes,
            "edges": self
                .edges()
                .iter()
                .map(|e| edge_json(e, self.label_of(e)))
                .collect::<Vec<_>>(),
            "faithfulness": r.faithfulness,
            "edges_for_80": r.edges_for_80,
            "edges_for_90": r.edges_for_90,
            "timing": {
                "load_ms": self.load_ms,
                "runs_ms": r.timing.runs_ms,
                "scores_ms": r.timing.scores_ms,
                "exact_ms": r.timing.exact_ms,
                "faithfulness_ms": r.timing.faithfulness_ms,
            },
        });
        if let (true, Some(obj)) = (r.positions, v.as_object_mut()) {
            obj.insert("positions".into(), true.into());
        }
        v
    }

    /// A position-aware edge's receiver with its position, label and
    /// token (`a3.h0<k> @5 IO 'Mary'`), or the receiver alone.
    fn receiver_at(&self, e: &EdgeScore) -> String {
        match e.dst_pos {
            Some(p) => {
                let tok = self.clean.strings.get(p).map(String::as_str);
                let at = super::positions::describe_labelled(p, self.label_of(e), tok);
                format!("{} {at}", e.receiver)
            }
            None => e.receiver.clone(),
        }
    }

    /// The label of a position-aware edge's position, where pairs name it.
    fn label_of(&self, e: &EdgeScore) -> Option<&str> {
        self.position_labels.get(e.dst_pos?)?.as_deref()
    }

    /// One row per listed edge: sender, receiver, each metric's score, then
    /// each metric's exact value (empty where not checked).
    pub fn to_csv(&self) -> String {
        let pos = self.result.positions;
        let mut out = String::from("rank,sender,receiver");
        if pos {
            out.push_str(",src_pos,dst_pos");
        }
        for m in METRICS {
            out.push_str(&format!(",{m}"));
        }
        for m in METRICS {
            out.push_str(&format!(",exact_{m}"));
        }
        out.push('\n');
        for (i, e) in self.edges().iter().enumerate() {
            out.push_str(&format!("{},{},{}", i + 1, e.sender, e.receiver));
            if pos {
                let at = |p: Option<usize>| p.map(|p| p.to_string()).unwrap_or_default();
                out.push_str(&format!(",{},{}", at(e.src_pos), at(e.dst_pos)));
            }
            for (_, v) in e.scores.iter() {
                out.push_str(&format!(",{}", num(v)));
            }
            for k in 0..METRICS.len() {
                let v = e.exact.map(|x| x.values()[k]);
                out.push_str(&format!(",{}", v.map(num).unwrap_or_default()));
            }
            out.push('\n');
        }
        out
    }

    /// Graphviz: senders and receiving components as nodes (a head's q/k/v
    /// inputs are edge labels), one arrow per listed edge, width by |score|,
    /// blue when patching the edge raises the metric, red when it lowers it.
    pub fn to_dot(&self) -> String {
        let metric = &self.result.metric;
        let (mi, _) = lookup(metric).expect("a registry metric");
        let edges = self.edges();
        let max = edges
            .iter()
            .map(|e| e.scores[mi].abs())
            .filter(|v| v.is_finite())
            .fold(0f32, f32::max)
            .max(1e-12);
        let mut out = format!(
            "digraph circuit {{\n  rankdir=BT;\n  label=\"{} {} ({} of {} edges, {})\";\n  node [shape=box, fontname=monospace];\n",
            self.result.method.name(),
            dot_escape(self.model),
            edges.len(),
            self.result.n_edges,
            metric
        );
        for e in edges {
            let (node, port) = split_port(&e.receiver);
            let v = e.scores[mi];
            let colour = if v >= 0.0 { "#1f77b4" } else { "#d62728" };
            let width = 0.5 + 4.0 * (v.abs() / max);
            out.push_str(&format!(
                "  \"{}\" -> \"{}\" [label=\"{}{}{:.3}\", color=\"{colour}\", penwidth={width:.2}];\n",
                dot_escape(&e.sender),
                dot_escape(node),
                port.map(|p| format!("{p} ")).unwrap_or_default(),
                e.dst_pos.map(|p| format!("@{p} ")).unwrap_or_default(),
                v
            ));
        }
        out.push_str("}\n");
        out
    }

    /// Ranked edges with the ranking metric's score (and exact value).
    pub fn to_table(&self) -> String {
        let metric = &self.result.metric;
        let (mi, _) = lookup(metric).expect("a registry metric");
        let r = self.result;
        let mut out = format!(
            "{} on {}: {} {}, ranked by |{metric}|; clean {:.4}, corrupted {:.4}\n",
            r.method.name(),
            self.model,
            r.n_edges,
            if r.positions {
                "(edge, position) units"
            } else {
                "edges"
            },
            r.baselines.clean[mi],
            r.baselines.corrupted[mi]
        );
        let max = self
            .edges()
            .iter()
            .map(|e| e.scores[mi].abs())
            .filter(|v| v.is_finite())
            .fold(0f32, f32::max)
            .max(1e-12);
        // AtP*'s plain estimate beside the fixed one; the distance from
        // exact wherever an edge was checked.
        let plain = self.edges().iter().any(|e| e.plain.is_some());
        let opt = |v: Option<f32>| match v {
            Some(v) => format!(" {v:>10.4}"),
            None => format!(" {:>10}", "-"),
        };
        let width = match r.positions {
            true => 28,
            false => 14,
        };
        out.push_str(&format!(
            "{:>5}  {:<10} {:<width$} {:>10}{} {:>10} {:>10}  \n",
            "rank",
            "sender",
            "receiver",
            "score",
            if plain {
                format!(" {:>10}", "plain")
            } else {
                String::new()
            },
            "exact",
            "error"
        ));
        for (i, e) in self.edges().iter().enumerate() {
            let v = e.scores[mi];
            let bar = "█".repeat(((v.abs() / max) * 20.0).round() as usize);
            out.push_str(&format!(
                "{:>5}  {:<10} {:<width$} {:>10.4}{}{}{}  {}{bar}\n",
                i + 1,
                e.sender,
                self.receiver_at(e),
                v,
                if plain {
                    opt(e.plain.map(|p| p[mi]))
                } else {
                    String::new()
                },
                opt(e.exact.map(|x| x[mi])),
                opt(e.error().map(|x| x[mi])),
                if v < 0.0 { "-" } else { "+" }
            ));
        }
        if !r.faithfulness.is_empty() {
            // Position-aware circuits keep (edge, position) units.
            let unit = if r.positions { "units" } else { "edges" };
            out.push_str(&format!("faithfulness ({unit} kept: metric recovered)\n"));
            for p in &r.faithfulness {
                out.push_str(&format!("  {:>7}: {:>8.4}\n", p.k, p.recovered));
            }
            let show = |k: Option<usize>| {
                k.map(|k| k.to_string())
                    .unwrap_or_else(|| "not reached".into())
            };
            out.push_str(&format!(
                "80%: {} {unit}, 90%: {} {unit} (first grid point)\n",
                show(r.edges_for_80),
                show(r.edges_for_90)
            ));
        }
        out
    }
}

/// An edge as the contract lists it: its fields, plus `error` (metric ->
/// the method's value minus the exact one) where it was checked.
fn edge_json(e: &EdgeScore, label: Option<&str>) -> Value {
    let mut v = serde_json::to_value(e).expect("an edge serialises");
    if let (Some(l), Value::Object(map)) = (label, &mut v) {
        map.insert("pos_label".into(), l.into());
    }
    if let (Some(err), Value::Object(map)) = (e.error(), &mut v) {
        map.insert(
            "error".into(),
            serde_json::to_value(err).expect("metrics serialise"),
        );
    }
    v
}

fn num(v: f32) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

/// `a3.h0<k>` -> (`a3.h0`, Some("k")); GQA receivers `a3.kv1<k>` keep their name.
fn split_port(name: &str) -> (&str, Option<&str>) {
    match name.find('<') {
        Some(i) => (&name[..i], Some(name[i + 1..].trim_end_matches('>'))),
        None => (name, None),
    }
}

fn dot_escape(s: &str) -> String {
    crate::util::text::escape_controls(s)
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}
