//! `patchbench circuit --format svg`: a layered drawing of the listed
//! edges, written here (no Graphviz needed).
//!
//! The layout is `layered.rs`'s: one column per layer, left to right from
//! `input` to `logits`, components stacked in each column. Each edge is a
//! cubic curve from the right side of its sender's box to the left side of
//! its receiver's, labelled with the receiving port (`q`, `k`, `v`) at
//! its end; its width grows with `|score|` and its colour says the sign
//! (blue: patching the edge raises the metric, red: lowers it), as in the
//! DOT output. Edges are drawn weakest first so the strongest lie on top.
//! Every name is XML-escaped (names come from the model's configuration,
//! the title from the command line).

use std::fmt::Write as _;

use crate::patching::metrics::lookup;

use super::circuit::EdgeScore;
use super::layered::{layout, Layered};

const BOX_W: f32 = 84.0;
const BOX_H: f32 = 26.0;
const COL_GAP: f32 = 96.0;
const ROW_GAP: f32 = 18.0;
const MARGIN: f32 = 24.0;
const TOP: f32 = 70.0;
const BLUE: &str = "#1f77b4";
const RED: &str = "#d62728";

/// The drawing of `edges` (ranked, all drawn) scored by `metric`; `title`
/// and `subtitle` head it. `None` when `metric` is not a registry metric.
pub fn circuit_svg(
    edges: &[EdgeScore],
    metric: &str,
    title: &str,
    subtitle: &str,
) -> Option<String> {
    let (mi, _) = lookup(metric)?;
    let l = layout(edges, mi);
    let rows = l.columns.iter().map(|c| c.nodes.len()).max().unwrap_or(0);
    let cols = l.columns.len();
    let width =
        (2.0 * MARGIN + cols as f32 * BOX_W + cols.saturating_sub(1) as f32 * COL_GAP).max(420.0);
    let height = TOP + rows as f32 * (BOX_H + ROW_GAP) + MARGIN;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"monospace\" font-size=\"12\">"
    );
    let _ = writeln!(
        s,
        "<rect x=\"0\" y=\"0\" width=\"{width:.0}\" height=\"{height:.0}\" fill=\"#ffffff\"/>"
    );
    let _ = writeln!(
        s,
        "<text x=\"{MARGIN}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        esc(title)
    );
    let _ = writeln!(
        s,
        "<text x=\"{MARGIN}\" y=\"40\" fill=\"#555555\">{}</text>",
        esc(subtitle)
    );
    for (c, col) in l.columns.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555555\">{}</text>",
            col_x(c) + BOX_W / 2.0,
            TOP - 10.0,
            esc(&col.label)
        );
    }
    edges_svg(&mut s, &l, edges);
    for (c, col) in l.columns.iter().enumerate() {
        for (r, n) in col.nodes.iter().enumerate() {
            let (x, y) = (col_x(c), row_y(r));
            let _ = writeln!(
                s,
                "<g class=\"node\"><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"4\" fill=\"#f4f4f4\" stroke=\"#333333\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text></g>",
                x + BOX_W / 2.0,
                y + BOX_H / 2.0 + 4.0,
                esc(&n.name)
            );
        }
    }
    s.push_str("</svg>\n");
    Some(s)
}

fn col_x(c: usize) -> f32 {
    MARGIN + c as f32 * (BOX_W + COL_GAP)
}

fn row_y(r: usize) -> f32 {
    TOP + r as f32 * (BOX_H + ROW_GAP)
}

fn edges_svg(s: &mut String, l: &Layered, edges: &[EdgeScore]) {
    let max = l
        .edges
        .iter()
        .map(|e| e.score.abs())
        .filter(|v| v.is_finite())
        .fold(0f32, f32::max)
        .max(1e-12);
    let mut order: Vec<usize> = (0..l.edges.len()).collect();
    order.sort_by(|&a, &b| l.edges[b].rank.cmp(&l.edges[a].rank));
    for i in order {
        let e = &l.edges[i];
        let x0 = col_x(e.from.0) + BOX_W;
        let y0 = row_y(e.from.1) + BOX_H / 2.0;
        let x1 = col_x(e.to.0);
        // Ports enter at fixed heights so q, k and v edges stay apart.
        let dy = match e.port {
            Some('q') => -7.0,
            Some('k') => 0.0,
            Some('v') => 7.0,
            _ => 0.0,
        };
        let y1 = row_y(e.to.1) + BOX_H / 2.0 + dy;
        let mid = (x1 - x0).abs() / 2.0;
        let (colour, w) = if e.score.is_finite() {
            let c = if e.score >= 0.0 { BLUE } else { RED };
            (c, 0.8 + 5.0 * e.score.abs() / max)
        } else {
            ("#999999", 0.8)
        };
        let _ = writeln!(
            s,
            "<g class=\"edge\"><title>#{} {} \u{2192} {}: {}</title><path d=\"M{x0:.1},{y0:.1} C{:.1},{y0:.1} {:.1},{y1:.1} {x1:.1},{y1:.1}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"{w:.2}\" stroke-opacity=\"0.8\"/>{}</g>",
            e.rank + 1,
            esc(&e.sender),
            // A position-aware edge names its position.
            esc(&match edges.get(e.rank).and_then(|x| x.dst_pos) {
                Some(p) => format!("{} @{p}", e.receiver),
                None => e.receiver.clone(),
            }),
            fmt_score(e.score),
            x0 + mid,
            x1 - mid,
            e.port
                .map(|p| format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{colour}\">{}</text>",
                    x1 - 10.0,
                    y1 - 2.0,
                    esc(&p.to_string())
                ))
                .unwrap_or_default()
        );
    }
}

fn fmt_score(v: f32) -> String {
    if v.is_finite() {
        format!("{:.4}", v + 0.0)
    } else {
        "n/a".into()
    }
}

/// XML text escaping; control characters (invalid in XML 1.0) become `?`.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

impl super::output::CircuitReport<'_> {
    /// `--format svg`: the listed edges drawn in layers.
    pub fn to_svg(&self) -> String {
        let r = self.result;
        let n = match self.top {
            0 => r.edges.len(),
            t => t.min(r.edges.len()),
        };
        let title = format!(
            "{} on {}: top {n} of {} edges by |{}|",
            r.method.name(),
            self.model,
            r.n_edges,
            r.metric
        );
        let reached = |k: Option<usize>| k.map_or("not reached".to_string(), |k| k.to_string());
        let subtitle = format!(
            "blue raises the metric when patched, red lowers it; width \u{221d} |score| \u{b7} faithfulness 80%: {}, 90%: {} edges",
            reached(r.edges_for_80),
            reached(r.edges_for_90)
        );
        circuit_svg(&r.edges[..n], &r.metric, &title, &subtitle)
            .expect("a result's metric is a registry metric")
    }
}
