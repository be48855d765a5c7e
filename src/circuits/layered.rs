//! A layered layout of a circuit's top edges: one column per layer
//! (`input` first, `logits` last, only the layers the edges touch), the
//! components in each column, and every edge from its sender's node to
//! its receiver's node with the receiving port (`q`, `k`, `v`).
//!
//! It works from edge names alone (`a3.h0`, `a3.h0<k>`, `a3.kv1<v>`, `m2`,
//! `input`, `logits`), so the SVG export (`svg.rs`) and the workbench's
//! text drawing share it without the model. A head's three inputs are one
//! node: the port is a property of the edge, as in the EAP literature's
//! drawings.

use crate::patching::metrics::MetricId;

use super::circuit::EdgeScore;

/// One component of the drawing.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// `input`, `a3.h0`, `a3.kv1`, `m2`, `logits`.
    pub name: String,
    /// Edges (indices into [`Layered::edges`]) arriving here.
    pub incoming: Vec<usize>,
    /// Edges leaving from here.
    pub outgoing: Vec<usize>,
}

/// One layer's column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// `input`, `L3`, `logits`.
    pub label: String,
    pub nodes: Vec<Node>,
}

/// One drawn edge.
#[derive(Debug, Clone, PartialEq)]
pub struct LayeredEdge {
    /// The edge's index in the ranked list it came from (0 = top).
    pub rank: usize,
    pub sender: String,
    pub receiver: String,
    /// `(column, row)` of the sender's and the receiver's node.
    pub from: (usize, usize),
    pub to: (usize, usize),
    /// The receiving input of a head (`q`, `k`, `v`).
    pub port: Option<char>,
    /// The score drawn (the ranking metric's).
    pub score: f32,
}

/// The layout.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Layered {
    pub columns: Vec<Column>,
    pub edges: Vec<LayeredEdge>,
}

/// Where a component goes: its column key (`input` before layer 0,
/// `logits` after every layer) and its order inside the column (heads by
/// index, then KV heads, then the MLP).
fn place(node: &str) -> (i64, (u8, usize)) {
    let num = |s: &str| s.parse::<usize>().ok();
    if node == "input" {
        return (-1, (0, 0));
    }
    if node == "logits" {
        return (i64::MAX, (0, 0));
    }
    if let Some(l) = node.strip_prefix('m').and_then(num) {
        return (l as i64, (3, 0));
    }
    if let Some((l, h)) = node.strip_prefix('a').and_then(|r| r.split_once('.')) {
        if let Some(l) = num(l) {
            if let Some(h) = h.strip_prefix("kv").and_then(num) {
                return (l as i64, (2, h));
            }
            if let Some(h) = h.strip_prefix('h').and_then(num) {
                return (l as i64, (1, h));
            }
        }
    }
    // An unknown name (a future node kind) sorts last in a column of its own.
    (i64::MAX - 1, (9, 0))
}

/// `a3.h0<k>` -> (`a3.h0`, Some('k')); other names have no port.
pub fn split_port(name: &str) -> (&str, Option<char>) {
    match name.find('<') {
        Some(i) => (&name[..i], name[i + 1..].chars().next()),
        None => (name, None),
    }
}

/// The label of column key `key`.
fn column_label(key: i64) -> String {
    match key {
        -1 => "input".into(),
        i64::MAX => "logits".into(),
        k if k == i64::MAX - 1 => "other".into(),
        l => format!("L{l}"),
    }
}

/// Lays out `edges` (already ranked; all of them are drawn), scored by
/// `metric`.
pub fn layout(edges: &[EdgeScore], metric: MetricId) -> Layered {
    let mut names: Vec<String> = Vec::new();
    for e in edges {
        for n in [e.sender.as_str(), split_port(&e.receiver).0] {
            if !names.iter().any(|m| m == n) {
                names.push(n.to_string());
            }
        }
    }
    names.sort_by_key(|n| place(n));
    let mut columns: Vec<Column> = Vec::new();
    let mut keys: Vec<i64> = Vec::new();
    let mut at = std::collections::HashMap::new();
    for n in names {
        let key = place(&n).0;
        if keys.last() != Some(&key) {
            keys.push(key);
            columns.push(Column {
                label: column_label(key),
                nodes: Vec::new(),
            });
        }
        let c = columns.len() - 1;
        at.insert(n.clone(), (c, columns[c].nodes.len()));
        columns[c].nodes.push(Node {
            name: n,
            incoming: Vec::new(),
            outgoing: Vec::new(),
        });
    }
    let mut out = Vec::new();
    for (rank, e) in edges.iter().enumerate() {
        let (recv, port) = split_port(&e.receiver);
        let (from, to) = (at[&e.sender], at[recv]);
        let i = out.len();
        columns[from.0].nodes[from.1].outgoing.push(i);
        columns[to.0].nodes[to.1].incoming.push(i);
        out.push(LayeredEdge {
            rank,
            sender: e.sender.clone(),
            receiver: e.receiver.clone(),
            from,
            to,
            port,
            score: e.scores[metric],
        });
    }
    Layered {
        columns,
        edges: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patching::metrics::{Metrics, LOGIT_DIFF};

    fn edge(s: &str, r: &str, v: f32) -> EdgeScore {
        let mut m = Metrics::nan();
        m[LOGIT_DIFF] = v;
        EdgeScore {
            sender: s.into(),
            receiver: r.into(),
            scores: m,
            exact: None,
            plain: None,
            graddrop: None,
            src_pos: None,
            dst_pos: None,
        }
    }

    #[test]
    fn columns_follow_the_layers_and_ports_stay_on_edges() {
        let edges = [
            edge("m3", "logits", 7.0),
            edge("a0.h0", "a3.h0<k>", 2.0),
            edge("input", "a0.h0<v>", -1.0),
            edge("a0.h1", "m0", 0.5),
            edge("m0", "a3.h0<q>", 0.25),
        ];
        let l = layout(&edges, LOGIT_DIFF);
        let labels: Vec<&str> = l.columns.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(labels, ["input", "L0", "L3", "logits"]);
        let names: Vec<&str> = l.columns[1].nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a0.h0", "a0.h1", "m0"]);
        let k = &l.edges[1];
        assert_eq!((k.from, k.to, k.port), ((1, 0), (2, 0), Some('k')));
        // a3.h0 receives on q and k: one node, two incoming edges.
        let a3 = &l.columns[2]
            .nodes
            .iter()
            .find(|n| n.name == "a3.h0")
            .unwrap();
        assert_eq!(a3.incoming, [1, 4]);
        assert_eq!(l.edges[2].score, -1.0);
    }
}
