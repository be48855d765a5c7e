//! The prompts pane: the current pair's four fields, the BOS choice, the
//! two prompts' tokens aligned column by column with differing positions
//! marked, and what would stop a sweep.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use crate::app::prompts::{editor_text, ANSWER, CLEAN, CORRUPTED, FIELDS, WRONG};
use crate::app::{AppState, Focus, Mode};

use crate::tui::theme::Theme;
use crate::tui::widgets::{fit, pane_block, quote, trunc};
use crate::util::text::one_line;

pub struct PromptsPane<'a> {
    pub state: &'a AppState,
    pub theme: &'a Theme,
}

const LABEL_W: u16 = 11;

impl Widget for PromptsPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (s, th) = (self.state, self.theme);
        let p = &s.prompts;
        let focused = s.focus == Focus::Prompts;
        let title = format!(" Prompts · pair {}/{} ", p.selected + 1, p.pairs.len());
        let block = pane_block(title, focused, th);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 3 || inner.width < 20 {
            return;
        }
        let editing =
            |f: usize| focused && s.mode == Mode::Edit && p.field == f && s.popup.is_none();
        let field = |buf: &mut Buffer, f: usize, x: u16, y: u16, lw: u16, w: u16| {
            let label_style = if focused && p.field == f {
                if editing(f) {
                    th.style("field.editing")
                } else {
                    th.style("field.selected")
                }
            } else {
                th.style("field.label")
            };
            let marker = if focused && p.field == f { "▸" } else { " " };
            buf.set_string(
                x,
                y,
                fit(&format!("{marker}{}", FIELDS[f]), lw as usize),
                label_style,
            );
            let rect = Rect::new(x + lw, y, w.saturating_sub(lw), 1);
            let ta = &p.current().fields[f];
            if editing(f) {
                ta.render(rect, buf);
            } else {
                let text = editor_text(ta);
                let shown = if text.is_empty() && f == CORRUPTED {
                    "(none: noise/ablation only)".to_string()
                } else {
                    quote(&text)
                };
                buf.set_string(
                    rect.x,
                    y,
                    trunc(&shown, rect.width as usize),
                    th.style(if text.is_empty() { "muted" } else { "text" }),
                );
            }
        };
        let (x, w) = (inner.x, inner.width);
        field(buf, CLEAN, x, inner.y, LABEL_W, w);
        field(buf, CORRUPTED, x, inner.y + 1, LABEL_W, w);
        let half = w / 2;
        field(buf, ANSWER, x, inner.y + 2, LABEL_W, half);
        field(buf, WRONG, x + half, inner.y + 2, 7, w - half);

        let tokens = p.tokens.as_ref().and_then(|t| t.pairs.get(p.selected));
        let bos = match (p.bos, s.model.info()) {
            (Some(true), _) => "BOS on".to_string(),
            (Some(false), _) => "BOS off".to_string(),
            (None, Some(i)) => {
                format!("BOS default ({})", if i.adds_bos { "adds" } else { "none" })
            }
            (None, None) => "BOS default".to_string(),
        };
        let mut meta = vec![Span::styled(format!("{bos}  "), th.style("muted"))];
        if let Some(t) = tokens {
            meta.push(Span::styled(
                format!("{} tokens", t.clean.len()),
                th.style("muted"),
            ));
            for (what, r) in [("answer", &t.answer), ("wrong", &t.wrong)] {
                match r {
                    Some(Ok(tok)) => meta.push(Span::styled(
                        format!("  {what} {} ✓", quote(tok)),
                        th.style("ok"),
                    )),
                    Some(Err(_)) => meta.push(Span::styled(
                        format!("  {what} ✗ not one token"),
                        th.style("warning"),
                    )),
                    None => {}
                }
            }
        } else if s.model.info().is_none() {
            meta.push(Span::styled(
                "tokens appear when the model is loaded",
                th.style("muted"),
            ));
        }
        if inner.height > 3 {
            buf.set_line(x, inner.y + 3, &Line::from(meta), w);
        }
        let problems = p.problems();
        let n_prob = problems.len().min(2) as u16;
        let tok_top = inner.y + 4;
        let tok_bottom = inner.bottom().saturating_sub(n_prob.max(1));
        if let Some(t) = tokens {
            let corrupted = t.corrupted.clone().unwrap_or_else(|| t.clean.clone());
            let rows = token_rows(&t.clean, &corrupted, w as usize, th);
            let avail = (tok_bottom.saturating_sub(tok_top) / 2) as usize;
            // Show the part with the first difference when not all fits.
            let first_diff = rows.iter().position(|r| r.2).unwrap_or(0);
            let start = if rows.len() > avail {
                first_diff.min(rows.len() - avail)
            } else {
                0
            };
            let mut y = tok_top;
            for (clean, corr, _) in rows.into_iter().skip(start).take(avail) {
                buf.set_line(x, y, &clean, w);
                buf.set_line(x, y + 1, &corr, w);
                y += 2;
            }
        }
        let mut y = inner.bottom().saturating_sub(n_prob.max(1));
        if problems.is_empty() {
            if tokens.is_some() {
                buf.set_string(x, y, "✓ ready to run", th.style("ok"));
            }
        } else {
            for prob in problems.iter().take(2) {
                buf.set_string(
                    x,
                    y,
                    trunc(&format!("⚠ {prob}"), w as usize),
                    th.style("warning"),
                );
                y += 1;
            }
        }
    }
}

/// The two token rows, wrapped to `width`: `(clean line, corrupted line,
/// has a difference)` per wrapped chunk. Each position is as wide as the
/// longer of its two tokens, so the rows stay aligned.
fn token_rows<'a>(
    clean: &[String],
    corrupted: &[String],
    width: usize,
    th: &Theme,
) -> Vec<(Line<'a>, Line<'a>, bool)> {
    let n = clean.len().max(corrupted.len());
    let label = 6;
    let mut out = Vec::new();
    let mut cur: (Vec<Span<'a>>, Vec<Span<'a>>, bool, usize) = (vec![], vec![], false, 0);
    let start = |cur: &mut (Vec<Span<'a>>, Vec<Span<'a>>, bool, usize)| {
        cur.0 = vec![Span::styled("clean ", th.style("muted"))];
        cur.1 = vec![Span::styled("corr. ", th.style("muted"))];
        cur.2 = false;
        cur.3 = label;
    };
    start(&mut cur);
    for i in 0..n {
        let c = one_line(clean.get(i).map(String::as_str).unwrap_or(""));
        let k = one_line(corrupted.get(i).map(String::as_str).unwrap_or(""));
        let cw = c.chars().count().max(k.chars().count()).clamp(1, 16);
        if cur.3 + cw + 1 > width && cur.3 > label {
            out.push((
                Line::from(std::mem::take(&mut cur.0)),
                Line::from(std::mem::take(&mut cur.1)),
                cur.2,
            ));
            start(&mut cur);
        }
        let diff = c != k;
        let st = th.style(if diff { "token.diff" } else { "token" });
        cur.0.push(Span::styled(fit(&c, cw), st));
        cur.1.push(Span::styled(fit(&k, cw), st));
        cur.0.push(Span::styled("│", th.style("token.sep")));
        cur.1.push(Span::styled("│", th.style("token.sep")));
        cur.2 |= diff;
        cur.3 += cw + 1;
    }
    if cur.3 > label {
        out.push((Line::from(cur.0), Line::from(cur.1), cur.2));
    }
    out
}
