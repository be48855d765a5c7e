//! The circuit pane's two figures.
//!
//! The layered drawing is `circuits::layered`'s layout as text: one column
//! per layer (`input` … `logits`), each component's name, and under it the
//! edges arriving there as `port←sender` coloured by sign — an adjacency
//! view that stays legible at 80×24, where box-drawing lines between a
//! dozen columns would not. It draws as many top edges as fit (columns at
//! least 9 characters wide, a column's entries within the height); the
//! edge under the list's cursor is highlighted when drawn.
//!
//! The faithfulness curve is a ratatui `Chart` with braille markers: the
//! metric recovered (1 = clean behaviour, 0 = corrupted) against the edges
//! kept, on a log axis (`ln(1 + k)`), with the 80% line dotted.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Widget};

use crate::app::AppState;
use crate::circuits::layered::{layout, Layered};
use crate::patching::metrics::MetricId;
use crate::session::circuit::StoredCircuit;

use super::circuit::sign_style;
use crate::tui::theme::Theme;
use crate::tui::widgets::{fit, trunc};

/// The narrowest column of the drawing.
const MIN_COL: usize = 9;
/// The most edges drawn.
const MAX_DRAWN: usize = 16;

/// Lines each column of a layout needs: a name per node plus a line per
/// incoming edge, a blank between nodes.
fn column_height(l: &Layered, c: usize) -> usize {
    l.columns[c]
        .nodes
        .iter()
        .map(|n| 1 + n.incoming.len())
        .sum::<usize>()
        + l.columns[c].nodes.len().saturating_sub(1)
}

/// The layout of the most top edges that fits `w` × `h` (one line of
/// column labels above).
fn fitting(edges: &[crate::circuits::EdgeScore], mi: MetricId, w: usize, h: usize) -> Layered {
    let mut n = edges.len().min(MAX_DRAWN);
    loop {
        let l = layout(&edges[..n], mi);
        let fits_w = l.columns.len() * MIN_COL <= w;
        let fits_h = (0..l.columns.len()).all(|c| column_height(&l, c) < h);
        if n <= 1 || (fits_w && fits_h) {
            return l;
        }
        n -= 1;
    }
}

pub fn draw_layered(
    s: &AppState,
    c: &StoredCircuit,
    mi: MetricId,
    area: Rect,
    th: &Theme,
    buf: &mut Buffer,
) {
    if area.height < 3 || area.width < MIN_COL as u16 {
        return;
    }
    let l = fitting(
        &c.result.edges,
        mi,
        area.width as usize,
        area.height as usize,
    );
    if l.columns.is_empty() {
        return;
    }
    let cw = (area.width as usize / l.columns.len()).max(MIN_COL);
    let cursor = s.circuit.cursor;
    for (ci, col) in l.columns.iter().enumerate() {
        let x = area.x + (ci * cw) as u16;
        if x >= area.right() {
            break;
        }
        let w = (area.right() - x).min(cw as u16);
        let mut lines = vec![Line::styled(fit(&col.label, cw - 1), th.style("axis"))];
        for (k, n) in col.nodes.iter().enumerate() {
            if k > 0 {
                lines.push(Line::raw(""));
            }
            lines.push(Line::styled(trunc(&n.name, cw - 1), th.style("title")));
            for &ei in &n.incoming {
                let e = &l.edges[ei];
                let port = e.port.map_or(String::new(), |p| p.to_string());
                let text = trunc(&format!("{port}←{}", e.sender), cw - 1);
                let st = if e.rank == cursor {
                    th.style("selection")
                } else {
                    sign_style(e.score, th)
                };
                lines.push(Line::from(Span::styled(text, st)));
            }
        }
        for (row, line) in lines.iter().enumerate().take(area.height as usize) {
            buf.set_line(x, area.y + row as u16, line, w);
        }
    }
    let drawn = l.edges.len();
    if drawn < c.result.edges.len() && area.height as usize > 2 {
        let note = format!("top {drawn} drawn");
        let x = area.right().saturating_sub(note.chars().count() as u16);
        buf.set_string(x, area.bottom() - 1, note, th.style("hint"));
    }
}

pub fn draw_curve(c: &StoredCircuit, area: Rect, th: &Theme, buf: &mut Buffer) {
    let pts: Vec<(f64, f64)> = c
        .result
        .faithfulness
        .iter()
        .filter(|p| p.recovered.is_finite())
        .map(|p| ((1.0 + p.k as f64).ln(), p.recovered as f64))
        .collect();
    if area.height < 4 || area.width < 20 {
        return;
    }
    if pts.is_empty() {
        buf.set_string(
            area.x,
            area.y,
            "no faithfulness curve (the search measured none)",
            th.style("muted"),
        );
        return;
    }
    let n = c.result.n_edges.max(1);
    let xmax = (1.0 + n as f64).ln();
    // `+ 0.0` turns a -0.0 (an empty circuit's recovery) into 0.0.
    let ymin = pts.iter().map(|p| p.1).fold(0.0, f64::min) + 0.0;
    let ymax = pts.iter().map(|p| p.1).fold(1.0, f64::max);
    let line80 = [(0.0, 0.8), (xmax, 0.8)];
    let colour = th
        .heat(1.0)
        .map_or(th.style("text"), |c| Style::default().fg(c));
    let datasets = vec![
        Dataset::default()
            .name("80%")
            .marker(Marker::Dot)
            .graph_type(GraphType::Line)
            .style(th.style("muted"))
            .data(&line80),
        Dataset::default()
            .name("recovered")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(colour)
            .data(&pts),
    ];
    let mid = ((1.0 + n as f64).sqrt() - 1.0).round() as usize;
    let x_labels = vec![
        Span::raw("0"),
        Span::raw(mid.to_string()),
        Span::raw(n.to_string()),
    ];
    let y_labels = vec![
        Span::raw(format!("{ymin:.1}")),
        Span::raw(format!("{ymax:.1}")),
    ];
    Chart::new(datasets)
        .x_axis(
            Axis::default()
                .title(Line::styled("edges kept (log)", th.style("axis")))
                .bounds([0.0, xmax])
                .labels(x_labels)
                .style(th.style("axis")),
        )
        .y_axis(
            Axis::default()
                .title(Line::styled("recovered", th.style("axis")))
                .bounds([ymin, ymax])
                .labels(y_labels)
                .style(th.style("axis")),
        )
        .hidden_legend_constraints((
            ratatui::layout::Constraint::Percentage(0),
            ratatui::layout::Constraint::Percentage(0),
        ))
        .render(area, buf);
}
