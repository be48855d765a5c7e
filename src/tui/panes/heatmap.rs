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
use crate::patching::metrics::effect_sign;
use crate::tui::theme::Theme;
use crate::tui::widgets::{fit, fit_right, heat_cell, pane_block, trunc};
use crate::util::text::one_line;

mod beside;
mod readout;
use readout::draw_readout;

pub struct HeatmapPane<'a> {
    pub state: &'a AppState,
    pub theme: &'a Theme,
}

impl Widget for HeatmapPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (s, th) = (self.state, self.theme);
        let mut title = vec![Span::raw(" Heatmap ")];
        if let Some(d) = &s.heatmap.spread.derived {
            title.push(Span::styled(format!("· {} ", d.what), th.style("warning")));
        }
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
            if let Some(p) = &v.pairs {
                // A sweep of pairs opened alone, beside the dataset's.
                let which: Vec<String> = p.iter().take(3).map(|i| (i + 1).to_string()).collect();
                title.push(Span::raw(format!("· of pair {} ", which.join(","))));
            }
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
        let Some(grid) = s.grid() else {
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
        if let Some(other) = crate::app::spread_keys::beside_grid(s) {
            return beside::draw(s, &grid, &other, stale, th, inner, buf);
        }
        draw_grid(s, &grid, stale, th, inner, buf, Side::ALONE);
    }
}

/// What the grid shows this frame: the axes, the cursor, the visible
/// window of rows and columns, the cell and label widths, and the colour
/// scale. Worked out once, then each drawing step reads it.
struct View<'m> {
    metric: &'m str,
    cur: Vec<usize>,
    page_ax: Option<usize>,
    row_ax: usize,
    col_ax: usize,
    /// Rows and columns in the grid.
    nr: usize,
    nc: usize,
    /// The visible rows `r0..r1` and columns `c0..c1`.
    r0: usize,
    r1: usize,
    c0: usize,
    c1: usize,
    /// Row-label width and cell width, in characters.
    lw: usize,
    cw: usize,
    centre: f32,
    half: f32,
    /// The metric's effect sign: colours show the effect on the task, so a
    /// fall in KL or rank is coloured as a rise in logit difference is.
    sign: f32,
    /// Rows of readout below the grid.
    footer: u16,
    /// Per cell, when shading is on: its interval crosses zero.
    uncertain: Option<&'m [Option<bool>]>,
}

/// How a grid is drawn when another stands beside it.
#[derive(Debug, Clone, Copy)]
struct Side {
    /// The colour scale's half-range shared with the other grid.
    half: Option<f32>,
    /// Shade uncertain cells (the cache is the shown sweep's only).
    shade: bool,
}

impl Side {
    const ALONE: Side = Side {
        half: None,
        shade: true,
    };
}

/// The grid in four steps: the banners above it (page, staleness), the
/// column labels, the rows of cells, and the readout below (legend, the
/// cursor's position and every metric of its cell).
fn draw_grid(
    s: &AppState,
    g: &GridRef<'_>,
    stale: Option<String>,
    th: &Theme,
    inner: Rect,
    buf: &mut Buffer,
    side: Side,
) {
    let mut cursor = s.heatmap.clone();
    cursor.fit(g.shape);
    let cur = cursor.cursor;
    let y = draw_banners(g, &cur, stale.as_deref(), th, inner, buf);
    let mut v = view(s, g, cur, th, inner, y);
    if let Some(h) = side.half {
        v.half = h;
    }
    if !side.shade {
        v.uncertain = None;
    }
    draw_column_labels(g, &v, th, inner, y, buf);
    draw_rows(g, &v, th, inner, y + HEADER, buf);
    draw_readout(g, &v, th, inner, buf);
}

/// Rows of column labels above the cells, and of readout below them (one
/// more, the spread over pairs, when the result has several pairs).
const HEADER: u16 = 2;
const FOOTER: u16 = 3;
/// The widest a cell grows to fill the pane.
const MAX_FILL_WIDTH: usize = 24;

fn put_line(buf: &mut Buffer, inner: Rect, y: u16, l: Line<'_>) {
    buf.set_line(inner.x, y, &l, inner.width);
}

/// The page selector of a 3-axis result and the stale notice; returns the
/// first row below them.
fn draw_banners(
    g: &GridRef<'_>,
    cur: &[usize],
    stale: Option<&str>,
    th: &Theme,
    inner: Rect,
    buf: &mut Buffer,
) -> u16 {
    let mut y = inner.y;
    if let Some(p) = g.layout().0 {
        let l = Line::from(vec![
            Span::styled(
                format!(
                    "◀ {} {} ({}/{}) ▶",
                    g.axis_name(p),
                    one_line(&g.label(p, cur[p])),
                    cur[p] + 1,
                    g.shape[p]
                ),
                th.style("axis.cursor"),
            ),
            Span::styled("  < > flip", th.style("hint")),
        ]);
        put_line(buf, inner, y, l);
        y += 1;
    }
    if let Some(reason) = stale {
        let text = format!("stale: {reason}; press r to recompute");
        put_line(buf, inner, y, Line::styled(text, th.style("stale")));
        y += 1;
    }
    y
}

/// The visible window: as many rows and columns as fit below `top`, paged
/// so that the cursor is on screen.
fn view<'m>(
    s: &'m AppState,
    g: &GridRef<'_>,
    cur: Vec<usize>,
    th: &Theme,
    inner: Rect,
    top: u16,
) -> View<'m> {
    let metric = s.heatmap.metric_name();
    let (page_ax, row_ax, col_ax) = g.layout();
    let (nr, nc) = (g.shape[row_ax], g.shape[col_ax]);
    let (centre, half) = g.scale(metric);
    let many = match g.values {
        crate::app::grid::Values::Done(r) => r.per_pair.len() > 1,
        _ => false,
    };
    let footer = FOOTER + u16::from(many);
    let rows_vis = inner.bottom().saturating_sub(top + HEADER + footer).max(1) as usize;
    let lw = (0..nr)
        .map(|i| g.label(row_ax, i).chars().count())
        .max()
        .unwrap_or(1)
        .clamp(6, 8)
        + 1;
    let zoom = if th.has_color() {
        s.heatmap.zoom.max(1)
    } else {
        s.heatmap.zoom.max(2)
    } as usize;
    // Cells widen to use the pane when the grid has room (up to
    // MAX_FILL_WIDTH); the zoom is the narrowest they get.
    let fill = (inner.width as usize).saturating_sub(lw) / nc.max(1);
    let cw = zoom.max(fill.min(MAX_FILL_WIDTH));
    let cols_vis = ((inner.width as usize).saturating_sub(lw) / cw).max(1);
    let (r0, c0) = (
        (cur[row_ax] / rows_vis) * rows_vis,
        (cur[col_ax] / cols_vis) * cols_vis,
    );
    let (r1, c1) = ((r0 + rows_vis).min(nr), (c0 + cols_vis).min(nc));
    View {
        metric,
        cur,
        page_ax,
        row_ax,
        col_ax,
        nr,
        nc,
        r0,
        r1,
        c0,
        c1,
        lw,
        cw,
        centre,
        half,
        sign: effect_sign(metric),
        footer,
        uncertain: s.heatmap.spread.uncertain.as_deref(),
    }
}

/// The axis names and the column labels: staggered over two rows so each
/// gets two cells' width (numeric labels are short and take one).
fn draw_column_labels(
    g: &GridRef<'_>,
    v: &View<'_>,
    th: &Theme,
    inner: Rect,
    y: u16,
    buf: &mut Buffer,
) {
    let x0 = inner.x + v.lw as u16;
    let numeric = !matches!(g.axis_name(v.col_ax), "pos" | "dest_pos" | "component");
    buf.set_string(
        inner.x,
        y,
        fit(&format!("{}→", g.axis_name(v.col_ax)), v.lw),
        th.style("axis"),
    );
    buf.set_string(
        inner.x,
        y + 1,
        fit(&format!("{}↓", g.axis_name(v.row_ax)), v.lw),
        th.style("axis"),
    );
    let cw = v.cw;
    for j in v.c0..v.c1 {
        let k = j - v.c0;
        let (row, width) = if numeric || cw >= 6 {
            (1, cw)
        } else {
            (k % 2, 2 * cw - 1)
        };
        let x = x0 + (k * cw) as u16;
        let room = (inner.right().saturating_sub(x)) as usize;
        let label = trunc(&g.label(v.col_ax, j), width.min(room));
        let st = if j == v.cur[v.col_ax] {
            th.style("axis.cursor")
        } else {
            th.style("axis")
        };
        buf.set_string(x, y + row as u16, label, st);
    }
}

/// Each visible row: its label, then its cells.
fn draw_rows(g: &GridRef<'_>, v: &View<'_>, th: &Theme, inner: Rect, top: u16, buf: &mut Buffer) {
    let x0 = inner.x + v.lw as u16;
    let mut idx = v.cur.clone();
    for (y, i) in (top..).zip(v.r0..v.r1) {
        idx[v.row_ax] = i;
        let st = if i == v.cur[v.row_ax] {
            th.style("axis.cursor")
        } else {
            th.style("axis")
        };
        buf.set_string(
            inner.x,
            y,
            fit_right(&trunc(&g.label(v.row_ax, i), v.lw - 1), v.lw - 1),
            st,
        );
        for j in v.c0..v.c1 {
            idx[v.col_ax] = j;
            let on_cursor = i == v.cur[v.row_ax] && j == v.cur[v.col_ax];
            let (text, style) = cell(g, v, g.index(&idx), on_cursor, th);
            buf.set_string(x0 + ((j - v.c0) * v.cw) as u16, y, text, style);
        }
    }
}

/// One cell's text and style: its colour (or shade) on the scale, blank
/// while it is being computed, bracketed under the cursor.
fn cell(
    g: &GridRef<'_>,
    v: &View<'_>,
    cell: usize,
    on_cursor: bool,
    th: &Theme,
) -> (String, Style) {
    let cw = v.cw;
    let uncertain = v
        .uncertain
        .and_then(|u| u.get(cell).copied().flatten())
        .unwrap_or(false);
    let (mut text, mut style) = match g.value(v.metric, cell) {
        // An interval across zero: no colour, `~` (the value still shows
        // when it fits).
        Some(x) if uncertain => {
            let t = match cw {
                w if w >= 7 => format!("~{}", fit_right(&format!("{x:+.2}"), w - 2)) + " ",
                w => "~".repeat(w),
            };
            (t, th.style("muted"))
        }
        Some(x) => {
            let t = v.sign * (x - v.centre) / v.half;
            heat_cell(t, (cw >= 5).then_some(x), cw, th)
        }
        None => (
            " ".repeat(cw),
            th.pending()
                .map_or(Style::default(), |c| Style::default().bg(c)),
        ),
    };
    if on_cursor {
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
    (text, style)
}
