//! Two sweeps side by side (`V`): the shown sweep on the left, another of
//! the same shape on the right (noising beside denoising, two datasets'
//! sweeps), each with its title, labels and readout, one cursor for both.
//!
//! One colour scale: both grids share the larger half-range, and each is
//! centred on its own "no effect" (its unpatched base run), so equal
//! colours mean equal effects whichever the direction. A pane too narrow
//! for two legible grids shows the shown sweep alone and says so.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Line;

use super::{draw_grid, put_line, Side};
use crate::app::grid::GridRef;
use crate::app::AppState;
use crate::tui::theme::Theme;
use crate::tui::widgets::trunc;

/// The narrowest half that still shows a grid legibly.
pub(super) const MIN_HALF: u16 = 36;

pub(super) fn draw(
    s: &AppState,
    left: &GridRef<'_>,
    right: &GridRef<'_>,
    stale: Option<String>,
    th: &Theme,
    inner: Rect,
    buf: &mut Buffer,
) {
    let Some(other) = s.heatmap.spread.beside else {
        return;
    };
    let title = |i: usize| {
        s.sweeps.get(i).map_or(String::new(), |v| {
            let stale = if v.stale.is_some() { " · STALE" } else { "" };
            format!(
                "sweep {}: {} {}{stale}",
                i + 1,
                v.spec.target,
                v.spec.direction
            )
        })
    };
    if inner.width < 2 * MIN_HALF + 1 || inner.height < 8 {
        let msg = format!(
            "too narrow for side by side ({} columns; it needs {}): showing {} alone",
            inner.width,
            2 * MIN_HALF + 3,
            title(s.selected_sweep)
        );
        put_line(
            buf,
            inner,
            inner.y,
            Line::styled(trunc(&msg, inner.width as usize), th.style("warning")),
        );
        let rest = Rect {
            y: inner.y + 1,
            height: inner.height - 1,
            ..inner
        };
        return draw_grid(s, left, stale, th, rest, buf, Side::ALONE);
    }
    let metric = s.heatmap.metric_name();
    let half = left.scale(metric).1.max(right.scale(metric).1);
    let wl = (inner.width - 1) / 2;
    let halves = [
        (Rect { width: wl, ..inner }, left, s.selected_sweep, true),
        (
            Rect {
                x: inner.x + wl + 1,
                width: inner.width - wl - 1,
                ..inner
            },
            right,
            other,
            false,
        ),
    ];
    for (r, g, i, shown) in halves {
        let st = if shown { "axis.cursor" } else { "axis" };
        put_line(
            buf,
            r,
            r.y,
            Line::styled(trunc(&title(i), r.width as usize), th.style(st)),
        );
        let rest = Rect {
            y: r.y + 1,
            height: r.height - 1,
            ..r
        };
        let side = Side {
            half: Some(half),
            shade: shown,
        };
        let stale = if shown { stale.clone() } else { None };
        draw_grid(s, g, stale, th, rest, buf, side);
    }
}
