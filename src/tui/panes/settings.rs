//! The sweep pane: target, direction, corruption and its options, the
//! displayed metric, and the estimated cost of running.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use crate::app::settings::{EstimateState, Row};
use crate::app::{AppState, Focus, Mode};

use crate::tui::theme::Theme;
use crate::tui::widgets::{fit, pane_block, trunc};

pub struct SettingsPane<'a> {
    pub state: &'a AppState,
    pub theme: &'a Theme,
}

impl Widget for SettingsPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (s, th) = (self.state, self.theme);
        let st = &s.settings;
        let focused = s.focus == Focus::Settings;
        let block = pane_block(" Sweep ", focused, th);
        let inner = block.inner(area);
        block.render(area, buf);
        let rows = st.rows();
        let cur = st.row.min(rows.len() - 1);
        let w = inner.width as usize;
        // Keep the estimate and the target's description visible below the rows.
        let room = inner.height.saturating_sub(2) as usize;
        let first = cur.saturating_sub(room.saturating_sub(1));
        for (y, (i, row)) in (inner.y..).zip(rows.iter().enumerate().skip(first).take(room)) {
            let sel = focused && i == cur;
            let label_style = if sel {
                th.style("field.selected")
            } else {
                th.style("field.label")
            };
            buf.set_string(
                inner.x,
                y,
                fit(
                    &format!("{}{}", if sel { "▸" } else { " " }, row.label()),
                    12,
                ),
                label_style,
            );
            let vx = inner.x + 12;
            let vw = w.saturating_sub(12);
            if *row == Row::Positions && sel && s.mode == Mode::Edit {
                st.positions.render(Rect::new(vx, y, vw as u16, 1), buf);
            } else {
                let v = st.value(*row, s.heatmap.metric);
                buf.set_string(
                    vx,
                    y,
                    trunc(&v, vw),
                    th.style(if sel { "field.selected" } else { "text" }),
                );
            }
        }
        let bottom = inner.bottom();
        if bottom < inner.y + 2 {
            return;
        }
        let about = match st.current_row() {
            Row::Metric => s.heatmap.metric_def().about.to_string(),
            _ => st.spec.target.about().to_string(),
        };
        buf.set_string(inner.x, bottom - 2, trunc(&about, w), th.style("muted"));
        let est: Line = match &st.estimate {
            EstimateState::None => {
                Line::styled("estimate after the model loads", th.style("muted"))
            }
            EstimateState::Pending => Line::styled("estimating…", th.style("muted")),
            EstimateState::Failed(e) => {
                Line::styled(trunc(&format!("⚠ {e}"), w), th.style("warning"))
            }
            EstimateState::Ready(e) => Line::from(vec![
                Span::styled("≈ ", th.style("muted")),
                Span::styled(fmt_secs(e.seconds), th.style("ok")),
                Span::styled(format!(" · {} fwd", e.passes), th.style("text")),
                Span::styled(format!(" (naive {})", e.naive_passes), th.style("muted")),
            ]),
        };
        buf.set_line(inner.x, bottom - 1, &est, inner.width);
    }
}

fn fmt_secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.0} min", s / 60.0)
    }
}
