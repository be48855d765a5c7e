//! The readout below the heatmap grid: the colour legend (with the visible
//! window when the grid is paged), where the cursor is, and every metric of
//! the cell under it. Split from the grid drawing because it reads the
//! registry and formats numbers while the grid only colours cells.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

use super::{put_line, View};
use crate::app::grid::{GridRef, Values};
use crate::app::spread::{cell_spread, CellSpread};
use crate::patching::metrics::{Format, REGISTRY};
use crate::tui::theme::Theme;
use crate::tui::widgets::{heat_cell, num};
use crate::util::text::one_line;

/// Below the grid: the legend, where the cursor is, and every metric of
/// the cell under it.
pub(super) fn draw_readout(
    g: &GridRef<'_>,
    v: &View<'_>,
    th: &Theme,
    inner: Rect,
    buf: &mut Buffer,
) {
    let y = inner.bottom() - v.footer;
    let view = (v.r0, v.r1, v.c0, v.c1);
    let l0 = legend(v.centre, v.sign * v.half, v.metric, v.nr, v.nc, view, th);
    put_line(buf, inner, y, l0);
    let cell = g.index(&v.cur);
    let mut where_ = Vec::new();
    for ax in [v.page_ax, Some(v.row_ax), Some(v.col_ax)]
        .into_iter()
        .flatten()
    {
        where_.push(format!("{} {}", g.axis_name(ax), quote(g, ax, v.cur[ax])));
    }
    let mut l1 = vec![Span::styled(where_.join(" · "), th.style("axis.cursor"))];
    let l2 = match g.metrics(cell) {
        Some(m) => {
            let mut spans = Vec::new();
            for (def, x) in REGISTRY.iter().zip(m.values()) {
                let st = if def.name == v.metric {
                    th.style("field.selected")
                } else {
                    th.style("text")
                };
                spans.push(Span::styled(format!("{} ", def.short), th.style("muted")));
                let shown = match def.format {
                    Format::Integer => format!("{x:.0}"),
                    Format::Real => num(x),
                };
                spans.push(Span::styled(format!("{shown}  "), st));
            }
            l1.push(Span::styled("  Enter drills down", th.style("hint")));
            Line::from(spans)
        }
        None => Line::styled("not computed yet", th.style("muted")),
    };
    put_line(buf, inner, y + 1, Line::from(l1));
    put_line(buf, inner, y + 2, l2);
    if let Values::Done(r) = g.values {
        if let Some(sp) = cell_spread(r, v.metric, cell) {
            put_line(buf, inner, y + 3, spread_line(&sp, inner.width, th));
        }
    }
}

/// The selected cell over pairs: `n`, mean ± the 95% bootstrap interval,
/// the fraction of pairs agreeing in sign, a histogram of the per-pair
/// values, and for a normalised metric which normalisation is which.
fn spread_line<'a>(sp: &CellSpread, width: u16, th: &Theme) -> Line<'a> {
    let s = &sp.summary;
    let half = (s.ci_high - s.ci_low) / 2.0;
    let mean_label = if sp.dataset_normalized.is_some() {
        "per-pair mean"
    } else {
        "mean"
    };
    let mut spans = vec![
        Span::styled(format!("n {} ", sp.values.len()), th.style("muted")),
        Span::styled(format!("{mean_label} "), th.style("muted")),
        Span::styled(
            format!("{} ±{} ", num(s.mean), num(half)),
            th.style("field.selected"),
        ),
        Span::styled(
            format!("[{}, {}] 95% ", num(s.ci_low), num(s.ci_high)),
            th.style("text"),
        ),
    ];
    let bins = if width >= 110 { 24 } else { 12 };
    let (hist, lo, hi) = histogram(&sp.values, bins);
    spans.push(Span::styled(format!("{} ", num(lo)), th.style("muted")));
    spans.push(Span::styled(hist, th.style("axis.cursor")));
    spans.push(Span::styled(format!(" {} ", num(hi)), th.style("muted")));
    if s.sign_agreement.is_finite() {
        spans.push(Span::styled(
            format!(" sign {:.0}%", 100.0 * s.sign_agreement),
            th.style("muted"),
        ));
    }
    if let Some(tl) = sp.dataset_normalized {
        spans.push(Span::styled(
            format!("  grid: {} (dataset-mean baselines)", num(tl)),
            th.style("hint"),
        ));
    }
    Line::from(spans)
}

/// A histogram of the finite `values` in `bins` block characters, with
/// the range it spans.
pub(crate) fn histogram(values: &[f32], bins: usize) -> (String, f32, f32) {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = finite
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    if finite.is_empty() || bins == 0 {
        return (String::new(), f32::NAN, f32::NAN);
    }
    let mut counts = vec![0usize; bins];
    let span = hi - lo;
    for v in &finite {
        let b = if span > 0.0 {
            (((v - lo) / span) * bins as f32) as usize
        } else {
            bins / 2
        };
        counts[b.min(bins - 1)] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(1).max(1);
    let text = counts
        .iter()
        .map(|&c| match c {
            0 => ' ',
            c => BARS[((c * 8).div_ceil(max)).clamp(1, 8) - 1],
        })
        .collect();
    (text, lo, hi)
}

/// An axis value for the readout: token strings quoted, with their index.
fn quote(g: &GridRef<'_>, ax: usize, i: usize) -> String {
    match g.axis_name(ax) {
        "pos" | "dest_pos" => format!("{i} \"{}\"", one_line(&g.label(ax, i))),
        _ => one_line(&g.label(ax, i)).into_owned(),
    }
}

/// The colour scale from `centre - half` to `centre + half`; `half` is
/// negative for a metric where lower is better, whose better end is then
/// still on the right.
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
    let lower = if half < 0.0 { ", lower is better" } else { "" };
    spans.push(Span::styled(
        format!("  no effect = {} ({metric}{lower})", num(centre)),
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
