//! Small popups: quit confirmation, save-as and its overwrite question,
//! the session browser, the autosave offer, the offer to resume an
//! interrupted sweep (`resume.rs`), and messages (errors from the worker or
//! the files).

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Widget, Wrap};

use crate::app::state::Popup;
use crate::session::time::short;

use crate::tui::theme::Theme;
use crate::tui::widgets::{fit, pane_block, trunc};
use crate::util::text::one_line;

pub struct DialogPopup<'a> {
    pub popup: &'a Popup,
    pub theme: &'a Theme,
}

/// A centred rectangle of at most `w × h` inside `area`.
pub fn centred(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width.saturating_sub(2));
    let h = h.min(area.height.saturating_sub(2));
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

impl DialogPopup<'_> {
    /// The size this popup wants.
    pub fn size(&self) -> (u16, u16) {
        match self.popup {
            Popup::ConfirmQuit => (60, 7),
            Popup::SaveAs { .. } => (76, 6),
            Popup::ConfirmOverwrite { .. } => (76, 7),
            Popup::Browser { .. } => (90, 20),
            Popup::RestoreAutosave { .. } => (70, 8),
            Popup::Message { text, .. } => (90, (text.lines().count() as u16 + 5).min(20)),
            Popup::Help { .. } => (100, 40),
            Popup::ResumeSweep { .. } => (90, 8),
        }
    }
}

impl Widget for DialogPopup<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let th = self.theme;
        Clear.render(area, buf);
        let (title, lines): (String, Vec<Line>) = match self.popup {
            Popup::ConfirmQuit => (
                " Unsaved changes ".into(),
                vec![
                    Line::from("This session has unsaved changes."),
                    Line::from(""),
                    Line::from(vec![
                        Span::styled("s", th.style("hint.key")),
                        Span::raw(" save and quit   "),
                        Span::styled("y", th.style("hint.key")),
                        Span::raw(" quit (an autosave is kept)   "),
                        Span::styled("n/Esc", th.style("hint.key")),
                        Span::raw(" stay"),
                    ]),
                ],
            ),
            Popup::SaveAs { input } => {
                let block = pane_block(" Save session as · Enter saves · Esc cancels ", true, th)
                    .style(th.style("popup"));
                let inner = block.inner(area);
                block.render(area, buf);
                buf.set_string(inner.x, inner.y, "File:", th.style("muted"));
                input.render(Rect::new(inner.x, inner.y + 1, inner.width, 1), buf);
                buf.set_string(
                    inner.x,
                    inner.y + 2,
                    "~ expands to your home directory; folders are created.",
                    th.style("hint"),
                );
                return;
            }
            Popup::ResumeSweep {
                interrupted,
                requested,
            } => super::resume::lines(interrupted, *requested, th),
            Popup::Browser { entries, selected } => {
                let mut v = Vec::new();
                match entries {
                    None => v.push(Line::styled("reading the sessions directory…", th.style("muted"))),
                    Some(list) if list.is_empty() => v.push(Line::styled(
                        "No saved sessions yet (Ctrl-s saves one; `patchbench open FILE` opens any file).",
                        th.style("muted"),
                    )),
                    Some(list) => {
                        v.push(Line::styled(format!("  {}{}{}{}", fit("name", 34), fit("modified", 18), fit("model", 22), "sweeps"), th.style("axis")));
                        let room = area.height.saturating_sub(4) as usize;
                        let first = selected.saturating_sub(room.saturating_sub(1));
                        for (i, e) in list.iter().enumerate().skip(first).take(room) {
                            let st = match (i == *selected, &e.error) {
                                (true, _) => th.style("selection"),
                                (false, Some(_)) => th.style("muted"),
                                (false, None) => th.style("text"),
                            };
                            // A file that does not load is listed, so the
                            // user sees it; opening it shows why.
                            let model = e.model.clone().unwrap_or_else(|| "(does not load)".into());
                            v.push(Line::styled(
                                format!(
                                    "{}{}{}{}{}",
                                    if i == *selected { "▸ " } else { "  " },
                                    fit(&e.name, 34),
                                    fit(&e.modified.map(short).unwrap_or_default(), 18),
                                    fit(&model, 22),
                                    e.n_sweeps
                                ),
                                st,
                            ));
                        }
                    }
                }
                (" Open session · Enter opens · Esc closes ".into(), v)
            }
            Popup::ConfirmOverwrite { path } => (
                " File exists ".into(),
                vec![
                    Line::styled(
                        trunc(&path.display().to_string(), area.width as usize - 4),
                        th.style("muted"),
                    ),
                    Line::from("already exists. Replace it with this session?"),
                    Line::from(""),
                    Line::from(vec![
                        Span::styled("y", th.style("hint.key")),
                        Span::raw(" replace   "),
                        Span::styled("n", th.style("hint.key")),
                        Span::raw(" choose another name   "),
                        Span::styled("Esc", th.style("hint.key")),
                        Span::raw(" don't save"),
                    ]),
                ],
            ),
            Popup::RestoreAutosave { path, loaded, age } => (
                " Restore autosave? ".into(),
                vec![
                    Line::from(format!("Unsaved work from {age} was kept in")),
                    Line::styled(
                        trunc(&path.display().to_string(), area.width as usize - 4),
                        th.style("muted"),
                    ),
                    Line::from(format!(
                        "model {}, {} prompt pair(s), {} sweep(s).",
                        one_line(&loaded.session.model.source),
                        loaded.session.prompts.len(),
                        loaded.session.sweeps.len()
                    )),
                    Line::from(""),
                    Line::from(vec![
                        Span::styled("y", th.style("hint.key")),
                        Span::raw(" restore   "),
                        Span::styled("n", th.style("hint.key")),
                        Span::raw(" discard it   "),
                        Span::styled("Esc", th.style("hint.key")),
                        Span::raw(" decide later"),
                    ]),
                ],
            ),
            Popup::Message { title, text } => {
                let mut v: Vec<Line> = text
                    .lines()
                    .map(|l| Line::from(one_line(l).into_owned()))
                    .collect();
                v.push(Line::from(""));
                v.push(Line::styled("any key closes", th.style("hint")));
                (format!(" {} ", one_line(title)), v)
            }
            Popup::Help { .. } => return,
        };
        let block = pane_block(title, true, th).style(th.style("popup"));
        let inner = block.inner(area);
        block.render(area, buf);
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .render(inner, buf);
    }
}
