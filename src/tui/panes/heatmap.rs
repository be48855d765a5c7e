//! The heatmap pane: the shown sweep's displayed metric as a grid of
//! coloured cells (shade glyphs and signs without colour), with labelled
//! axes, a legend, a cursor and every metric of the cell under it.
//!
//! Cells scroll a page at a time when the grid is larger than the pane, so
//! the view is a pure function of the cursor; `+`/`-` change the cell width.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::app::grid::GridRef;
use crate::app::{AppState, Focus};
use crate::patching::metrics::{Format, REGISTRY};

use crate::tui::theme::Theme;
use crate::tui::widgets::{fit, fit_right, heat_cell, num, pane_block, trunc};

pub struct HeatmapPane<'a> {
    pub state: &'a AppState,
    pub theme: &'a Theme,
}

impl Widget for HeatmapPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (s, th) = (self.state, self.theme);
        let mut title = vec![Span::raw(" Heatmap ")];
        if let Some(v) = s.sweep() {
            title.push(Span::raw(format!(
                "· {} {} {} · {} · {}/{} ",
                v.spec.target,
                v.spec.direction,
                v.spec.corruption.name(),
                s.heatmap.metric_name(),
                s.selected_sweep + 1,
                s.sweeps.len()
            )));
        }
        if let Some(m) = s
            .sweep()
            .and_then(|v| v.stored.as_ref())
            .map(|r| r.result.method.as_str())
            .filter(|m| *m != "exact")
        {
            title.push(Span::styled(format!("({m}) "), th.style("warning")));
        }
        let stale = s.stale_reason();
        if stale.is_some() {
            title.push(Span::styled("STALE ", th.style("stale")));
        }
        let block = pane_block(Line::from(title), s.focus == Focus::Heatmap, th);
        let inner = block.inner(area);
        block.render(area, buf);
        let Some(grid) = s.sweep().and_then(|v| v.grid()) else {
            let msg = if s.sweeps.is_empty() {
                "No sweep yet. Choose a target in the sweep pane and press r to run it."
            } else {
                "This sweep has no result yet: press r to run it."
            };
            Paragraph::new(vec![Line::from(""), Line::styled(msg, th.style("muted"))])
                .render(inner, buf);
            return;
        };
        if grid.shape.len() < 2 || inner.height < 6 {
            return;
        }
        draw_grid(s, &grid, stale, th, inner, buf);
    }
}

fn draw_grid(
    s: &AppState,
    g: &GridRef<'_>,
    stale: Option<String>,
    th: &Theme,
    inner: Rect,
    buf: &mut Buffer,
) {
    let metric = s.heatmap.metric_name();
    let mut cursor = s.heatmap.clone();
    cursor.fit(g.shape);
    let cur = cursor.cursor;
    let (page_ax, row_ax, col_ax) = g.layout();
    let (nr, nc) = (g.shape[row_ax], g.shape[col_ax]);
    let (centre, half) = g.scale(metric);
    let mut y = inner.y;
    let line = |buf: &mut Buffer, y: u16, l: Line<'_>| {
        buf.set_line(inner.x, y, &l, inner.width);
    };
    if let Some(p) = page_ax {
        let l = Line::from(vec![
            Span::styled(
                format!(
                    "◀ {} {} ({}/{}) ▶",
                    g.axis_name(p),
                    g.label(p, cur[p]),
                    cur[p] + 1,
                    g.shape[p]
                ),
                th.style("axis.cursor"),
            ),
            Span::styled("  < > flip", th.style("hint")),
        ]);
        line(buf, y, l);
        y += 1;
    }
    if let Some(reason) = &stale {
        line(
            buf,
            y,
            Line::styled(
                format!("stale: {reason}; press r to recompute"),
                th.style("stale"),
            ),
        );
        y += 1;
    }
    let footer = 3u16;
    let header = 2u16;
    let rows_vis = inner.bottom().saturating_sub(y + header + footer).max(1) as usize;
    let lw = (0..nr)
        .map(|i| g.label(row_ax, i).chars().count())
        .max()
        .unwrap_or(1)
        .clamp(6, 8)
        + 1;
    let cw = if th.has_color() {
        s.heatmap.zoom.max(1)
    } else {
        s.heatmap.zoom.max(2)
    } as usize;
    let cols_vis = ((inner.width as usize).saturating_sub(lw) / cw).max(1);
    let (r0, c0) = (
        (cur[row_ax] / rows_vis) * rows_vis,
        (cur[col_ax] / cols_vis) * cols_vis,
    );
    let (r1, c1) = ((r0 + rows_vis).min(nr), (c0 + cols_vis).min(nc));

    // Column labels: staggered over two rows so each gets two cells' width.
    let x0 = inner.x + lw as u16;
    let numeric = !matches!(g.axis_name(col_ax), "pos" | "dest_pos" | "component");
    buf.set_string(
        inner.x,
        y,
        fit(&format!("{}→", g.axis_name(col_ax)), lw),
        th.style("axis"),
    );
    buf.set_string(
        inner.x,
        y + 1,
        fit(&format!("{}↓", g.axis_name(row_ax)), lw),
        th.style("axis"),
    );
    for j in c0..c1 {
        let k = j - c0;
        let (row, width) = if numeric || cw >= 6 {
            (1, cw)
        } else {
            (k % 2, 2 * cw - 1)
        };
        let x = x0 + (k * cw) as u16;
        let room = (inner.right().saturating_sub(x)) as usize;
        let label = trunc(&g.label(col_ax, j), width.min(room));
        let st = if j == cur[col_ax] {
            th.style("axis.cursor")
        } else {
            th.style("axis")
        };
        buf.set_string(x, y + row as u16, label, st);
    }
    y += header;
    let mut idx = cur.clone();
    for i in r0..r1 {
        idx[row_ax] = i;
        let st = if i == cur[row_ax] {
            th.style("axis.cursor")
        } else {
            th.style("axis")
        };
        buf.set_string(
            inner.x,
            y,
            fit_right(&trunc(&g.label(row_ax, i), lw - 1), lw - 1),
            st,
        );
        for j in c0..c1 {
            idx[col_ax] = j;
            let cell = g.index(&idx);
            let x = x0 + ((j - c0) * cw) as u16;
            let (mut text, mut style) = match g.value(metric, cell) {
                Some(v) => {
                    let t = (v - centre) / half;
                    heat_cell(t, (cw >= 5).then_some(v), cw, th)
                }
                None => (
                    " ".repeat(cw),
                    th.pending()
                        .map_or(Style::default(), |c| Style::default().bg(c)),
                ),
            };
            if i == cur[row_ax] && j == cur[col_ax] {
                text = match cw {
                    1 => "◆".into(),
                    2 => "[]".into(),
                    _ => format!(
                        "[{}]",
                        &text.chars().skip(1).take(cw - 2).collect::<String>()
                    ),
                };
                // Keep the cell's colour; brackets mark it (reversed without colour).
                style = if th.has_color() {
                    style.add_modifier(Modifier::BOLD)
                } else {
                    style.add_modifier(Modifier::REVERSED | Modifier::BOLD)
                };
            }
            buf.set_string(x, y, text, style);
        }
        y += 1;
    }
    let y = inner.bottom() - footer;
    line(
        buf,
        y,
        legend(centre, half, metric, nr, nc, (r0, r1, c0, c1), th),
    );
    let cell = g.index(&cur);
    let mut where_ = Vec::new();
    for ax in [page_ax, Some(row_ax), Some(col_ax)].into_iter().flatten() {
        where_.push(format!("{} {}", g.axis_name(ax), quote(g, ax, cur[ax])));
    }
    let mut l1 = vec![Span::styled(where_.join(" · "), th.style("axis.cursor"))];
    let l2 = match g.metrics(cell) {
        Some(m) => {
            let mut spans = Vec::new();
            for (def, x) in REGISTRY.iter().zip(m.values()) {
                let st = if def.name == metric {
                    th.style("field.selected")
                } else {
                    th.style("text")
                };
                spans.push(Span::styled(format!("{} ", def.short), th.style("muted")));
                let v = match def.format {
                    Format::Integer => format!("{x:.0}"),
                    Format::Real => num(x),
                };
                spans.push(Span::styled(format!("{v}  "), st));
            }
            l1.push(Span::styled("  Enter drills down", th.style("hint")));
            Line::from(spans)
        }
        None => Line::styled("not computed yet", th.style("muted")),
    };
    line(buf, y + 1, Line::from(l1));
    line(buf, y + 2, l2);
}

/// An axis value for the readout: token strings quoted, with their index.
fn quote(g: &GridRef<'_>, ax: usize, i: usize) -> String {
    match g.axis_name(ax) {
        "pos" | "dest_pos" => format!("{i} \"{}\"", g.label(ax, i)),
        _ => g.label(ax, i),
    }
}

fn legend<'a>(
    centre: f32,
    half: f32,
    metric: &str,
    nr: usize,
    nc: usize,
    view: (usize, usize, usize, usize),
    th: &Theme,
) -> Line<'a> {
    let mut spans = vec![Span::styled(
        format!("{} ", num(centre - half)),
        th.style("muted"),
    )];
    for k in -5..=5 {
        let t = k as f32 / 5.0;
        let (text, st) = heat_cell(t, None, 2, th);
        spans.push(Span::styled(text, st));
    }
    spans.push(Span::styled(
        format!(" {}", num(centre + half)),
        th.style("muted"),
    ));
    spans.push(Span::styled(
        format!("  no effect = {} ({metric})", num(centre)),
        th.style("hint"),
    ));
    let (r0, r1, c0, c1) = view;
    if r1 - r0 < nr || c1 - c0 < nc {
        spans.push(Span::styled(
            format!("  rows {}-{}/{nr} cols {}-{}/{nc}", r0, r1 - 1, c0, c1 - 1),
            th.style("hint"),
        ));
    }
    Line::from(spans)
}
