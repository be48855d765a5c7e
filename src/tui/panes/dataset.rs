//! The dataset pane, in the heatmap's place while shown (`D`): a summary
//! line (the dataset, how many pairs fail, the baselines' progress while
//! the model thread measures them), then each pair with its clean and
//! corrupted logit difference, failing pairs (the clean run does not
//! prefer the answer) marked `✗`; `f` lists only those, `s` sorts by the
//! clean logit difference (lowest first), Enter opens one
//! alone in the prompt editor, `a` brings every pair back.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::app::dataset::rows;
use crate::app::{AppState, Focus};
use crate::tui::theme::Theme;
use crate::tui::widgets::{fit, fit_right, num, pane_block, trunc};

pub struct DatasetPane<'a> {
    pub state: &'a AppState,
    pub theme: &'a Theme,
}

impl Widget for DatasetPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (s, th) = (self.state, self.theme);
        let d = &s.dataset;
        let all = rows(s, false);
        let failing = all.iter().filter(|r| r.failing).count();
        let list: Vec<_> = all
            .iter()
            .filter(|r| !d.failing_only || r.failing)
            .cloned()
            .collect();
        let name = d.name.as_deref().unwrap_or("the prompt pairs");
        let title = format!(
            " Dataset · {} · {} pairs · {failing} failing{}{} ",
            trunc(name, 40),
            all.len(),
            if d.failing_only { " (only those)" } else { "" },
            if d.by_clean { " · by clean ld" } else { "" },
        );
        let block = pane_block(title, s.focus == Focus::Heatmap, th);
        let inner = block.inner(area);
        block.render(area, buf);
        let w = inner.width as usize;
        let mut v = vec![];
        let status = match (&d.measuring, d.alone) {
            (Some(m), _) => format!(
                "measuring baselines {}/{} pairs on the model thread · Esc cancels",
                m.done, m.total
            ),
            (None, Some(i)) => format!(
                "pair {} alone in the editor · a: every pair back · Enter: another",
                i + 1
            ),
            (None, None) => {
                "Enter: open a pair alone · f: failing only · s: sort · D/Esc: heatmap".into()
            }
        };
        v.push(Line::styled(trunc(&status, w), th.style("muted")));
        let text_w = w.saturating_sub(2 + 5 + 9 + 9 + 3);
        v.push(Line::styled(
            format!(
                "  {}{}{}{}",
                fit("pair", 5),
                fit("clean prompt", text_w),
                fit_right("clean ld", 9),
                fit_right("corr ld", 9)
            ),
            th.style("axis"),
        ));
        if all.iter().all(|r| r.clean.is_none() && r.problem.is_none()) && d.measuring.is_none() {
            v.push(Line::styled(
                trunc(
                    "no baselines yet: they are measured once the model is loaded (D twice)",
                    w,
                ),
                th.style("muted"),
            ));
        }
        if list.is_empty() {
            v.push(Line::styled(
                trunc("no failing pairs: every clean run prefers its answer", w),
                th.style("muted"),
            ));
        }
        let room = inner.height.saturating_sub(v.len() as u16) as usize;
        let selected = d.selected.min(list.len().saturating_sub(1));
        let first = selected.saturating_sub(room.saturating_sub(1));
        for (i, r) in list.iter().enumerate().skip(first).take(room) {
            let on = i == selected;
            let st = match (on, r.failing || r.problem.is_some()) {
                (true, _) => th.style("selection"),
                (false, true) => th.style("warning"),
                (false, false) => th.style("text"),
            };
            let alone = d.alone == Some(r.index);
            let (clean, corrupted) = match &r.problem {
                Some(_) => ("can't run".to_string(), String::new()),
                None => (
                    r.clean.map_or("–".into(), num),
                    r.corrupted.map_or("–".into(), num),
                ),
            };
            v.push(Line::from(vec![
                Span::styled(
                    match (on, alone) {
                        (true, _) => "▸ ",
                        (false, true) => "• ",
                        _ => "  ",
                    },
                    st,
                ),
                Span::styled(fit(&(r.index + 1).to_string(), 5), st),
                Span::styled(fit(&r.text, text_w), st),
                Span::styled(fit_right(&clean, 9), st),
                Span::styled(fit_right(&corrupted, 9), st),
                Span::styled(if r.failing { " ✗ " } else { "   " }, st),
            ]));
        }
        if let Some(p) = list.get(selected).and_then(|r| r.problem.as_ref()) {
            if inner.height as usize > v.len() {
                v.push(Line::styled(trunc(p, w), th.style("warning")));
            }
        }
        Paragraph::new(v).render(inner, buf);
    }
}
