//! The help popup, generated from the resolved keymap: every context's
//! keys with the intent's name and description, so user remaps show up.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Widget};

use crate::tui::keymap::Keymap;
use crate::tui::theme::Theme;
use crate::tui::widgets::{fit, pane_block};

pub struct HelpPopup<'a> {
    pub keymap: &'a Keymap,
    pub theme: &'a Theme,
    pub scroll: u16,
}

/// The help text as lines (also used by tests and the README).
pub fn help_lines<'a>(keymap: &Keymap, theme: &Theme) -> Vec<Line<'a>> {
    let mut out = vec![Line::styled(
        "Navigation mode: single keys are commands. Enter or i edits a prompt field; Esc leaves editing.",
        theme.style("muted"),
    )];
    for (ctx, rows) in keymap.help() {
        out.push(Line::from(""));
        out.push(Line::styled(ctx.name().to_string(), theme.style("title")));
        for (keys, intent) in rows {
            out.push(Line::from(vec![
                Span::styled(fit(&format!("  {keys}"), 22), theme.style("hint.key")),
                Span::styled(fit(intent.name(), 14), theme.style("muted")),
                Span::styled(intent.description().to_string(), theme.style("text")),
            ]));
        }
    }
    out
}

impl Widget for HelpPopup<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        Clear.render(area, buf);
        let block = pane_block(" Keys · j/k scroll · Esc closes ", true, self.theme)
            .style(self.theme.style("popup"));
        let inner = block.inner(area);
        block.render(area, buf);
        Paragraph::new(help_lines(self.keymap, self.theme))
            .scroll((self.scroll, 0))
            .render(inner, buf);
    }
}
