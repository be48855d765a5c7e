//! Draws the whole screen from the state: panes where the layout puts
//! them, then any popup on top; or a clear message when the terminal is too
//! small to be useful.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Widget, Wrap};

use crate::app::state::Popup;
use crate::app::AppState;

use super::keymap::Keymap;
use super::layout::{areas, Areas, MIN_H, MIN_W};
use super::panes::*;
use super::theme::Theme;

/// Renders the state into `buf`; returns the pane areas (for the mouse).
pub fn render(
    s: &AppState,
    theme: &Theme,
    keymap: &Keymap,
    area: Rect,
    buf: &mut Buffer,
) -> Option<Areas> {
    buf.set_style(area, theme.style("text"));
    let Some(a) = areas(area, s) else {
        let msg = vec![
            Line::styled("patchbench: the terminal is too small", theme.style("error")),
            Line::from(format!(
                "It is {}×{}; the workbench needs at least {MIN_W}×{MIN_H}. Enlarge the window (q quits).",
                area.width, area.height
            )),
        ];
        Paragraph::new(msg)
            .wrap(Wrap { trim: true })
            .render(area, buf);
        return None;
    };
    if let Some(r) = a.prompts {
        PromptsPane { state: s, theme }.render(r, buf);
    }
    if let Some(r) = a.settings {
        SettingsPane { state: s, theme }.render(r, buf);
    }
    if let Some(r) = a.heatmap {
        if s.dataset.shown {
            DatasetPane { state: s, theme }.render(r, buf);
        } else if s.circuit.shown {
            CircuitPane { state: s, theme }.render(r, buf);
        } else {
            HeatmapPane { state: s, theme }.render(r, buf);
        }
    }
    if let Some(r) = a.drill {
        DrillPane { state: s, theme }.render(r, buf);
    }
    StatusBar {
        state: s,
        theme,
        keymap,
    }
    .render(a.status, buf);
    draw_popup(s, theme, keymap, area, buf);
    sanitize(buf, area);
    Some(a)
}

/// Removes control characters that reached a cell. Text from files is
/// escaped where it is drawn (`widgets::trunc`, `widgets::quote`, the
/// state's messages); this is the net under that for widgets that draw
/// text themselves (the text editor's line), so that no escape sequence
/// ever reaches the terminal. A control character is zero-width, so it
/// sits appended to a cell's symbol; dropping it keeps the layout.
pub fn sanitize(buf: &mut Buffer, area: Rect) {
    let area = area.intersection(buf.area);
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            let cell = &mut buf[(x, y)];
            if cell.symbol().chars().any(is_unsafe) {
                let clean: String = cell.symbol().chars().filter(|c| !is_unsafe(*c)).collect();
                cell.set_symbol(if clean.is_empty() { " " } else { &clean });
            }
        }
    }
}

fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn draw_popup(s: &AppState, theme: &Theme, keymap: &Keymap, area: Rect, buf: &mut Buffer) {
    match &s.popup {
        None => {}
        Some(Popup::Help { scroll }) => {
            let r = dialogs::centred(area, 110, area.height.saturating_sub(2));
            HelpPopup {
                keymap,
                theme,
                scroll: *scroll,
            }
            .render(r, buf);
        }
        Some(p) => {
            let d = DialogPopup { popup: p, theme };
            let (w, h) = d.size();
            d.render(dialogs::centred(area, w, h), buf);
        }
    }
}
