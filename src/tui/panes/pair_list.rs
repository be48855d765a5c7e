//! The pair list popup: each prompt pair with the clean and corrupted
//! logit difference the shown sweep measured, failing pairs (the clean run
//! does not prefer the answer) marked `✗`; `f` lists only those, Enter
//! opens one alone in the heatmap.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Widget};

use crate::app::pair_list::rows;
use crate::app::AppState;
use crate::tui::theme::Theme;
use crate::tui::widgets::{fit, fit_right, num, pane_block};

pub struct PairListPopup<'a> {
    pub state: &'a AppState,
    pub theme: &'a Theme,
    pub selected: usize,
    pub failing_only: bool,
}

impl Widget for PairListPopup<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (s, th) = (self.state, self.theme);
        Clear.render(area, buf);
        let all = rows(s, false);
        let failing = all.iter().filter(|r| r.failing).count();
        let list = if self.failing_only {
            all.iter().filter(|r| r.failing).cloned().collect()
        } else {
            all.clone()
        };
        let title =
            format!(
            " Pairs · {} of {} · {failing} failing{} · Enter opens one alone · f {} · Esc closes ",
            list.len(),
            all.len(),
            if self.failing_only { " (shown)" } else { "" },
            if self.failing_only { "all" } else { "failing only" },
        );
        let block = pane_block(title, true, th).style(th.style("popup"));
        let inner = block.inner(area);
        block.render(area, buf);
        let w = inner.width as usize;
        let text_w = w.saturating_sub(6 + 2 + 9 + 9 + 3);
        let mut v = vec![Line::styled(
            format!(
                "  {}{}{}{}  ",
                fit("pair", 6),
                fit("clean prompt", text_w),
                fit_right("clean ld", 9),
                fit_right("corr ld", 9)
            ),
            th.style("axis"),
        )];
        if all.iter().all(|r| r.clean.is_none()) {
            v.push(Line::styled(
                "no baselines yet: run a sweep (r) to measure each pair",
                th.style("muted"),
            ));
        }
        if list.is_empty() {
            v.push(Line::styled(
                "no failing pairs: every clean run prefers its answer",
                th.style("muted"),
            ));
        }
        let room = inner.height.saturating_sub(v.len() as u16) as usize;
        let first = self.selected.saturating_sub(room.saturating_sub(1));
        for (i, r) in list.iter().enumerate().skip(first).take(room) {
            let on = i == self.selected;
            let st = match (on, r.failing) {
                (true, _) => th.style("selection"),
                (false, true) => th.style("warning"),
                (false, false) => th.style("text"),
            };
            v.push(Line::from(vec![
                Span::styled(if on { "▸ " } else { "  " }, st),
                Span::styled(fit(&(r.index + 1).to_string(), 6), st),
                Span::styled(fit(&r.text, text_w), st),
                Span::styled(fit_right(&r.clean.map_or("–".into(), num), 9), st),
                Span::styled(fit_right(&r.corrupted.map_or("–".into(), num), 9), st),
                Span::styled(if r.failing { " ✗ " } else { "   " }, st),
            ]));
        }
        Paragraph::new(v).render(inner, buf);
    }
}
