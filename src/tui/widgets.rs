//! Small drawing helpers shared by the panes.

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders};

use crate::util::text::one_line;

use super::theme::Theme;

/// A pane's frame: rounded border and title, highlighted when focused.
pub fn pane_block<'a>(title: impl Into<Line<'a>>, focused: bool, theme: &Theme) -> Block<'a> {
    let (b, t) = if focused {
        ("border.focused", "title.focused")
    } else {
        ("border", "title")
    };
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(theme.style(b))
        .title(title.into().style(theme.style(t)))
}

/// `s` cut to `w` characters, with `…` when cut. Control characters are
/// escaped first (`\e`, `\n`): text shown in a pane may come from a file.
pub fn trunc(s: &str, w: usize) -> String {
    let s = one_line(s);
    let n = s.chars().count();
    if n <= w {
        s.to_string()
    } else if w == 0 {
        String::new()
    } else {
        let mut t: String = s.chars().take(w - 1).collect();
        t.push('…');
        t
    }
}

/// `s` padded or cut to exactly `w` characters.
pub fn fit(s: &str, w: usize) -> String {
    let t = trunc(s, w);
    let n = t.chars().count();
    format!("{t}{}", " ".repeat(w.saturating_sub(n)))
}

/// Right-aligned in `w` characters.
pub fn fit_right(s: &str, w: usize) -> String {
    let t = trunc(s, w);
    let n = t.chars().count();
    format!("{}{t}", " ".repeat(w.saturating_sub(n)))
}

/// A token or text in double quotes, control characters escaped.
pub fn quote(s: &str) -> String {
    format!("\"{}\"", one_line(s))
}

/// A compact number: `+1.23`, `-0.05`, `1.2e3`.
pub fn num(v: f32) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.1e}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Key hints: `key` styled, then its meaning.
pub fn hints<'a>(items: &[(String, &'a str)], theme: &Theme) -> Line<'a> {
    let mut spans = Vec::new();
    for (i, (k, what)) in items.iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(" · ", theme.style("hint")));
        }
        spans.push(Span::styled(k.clone(), theme.style("hint.key")));
        spans.push(Span::styled(format!(" {what}"), theme.style("hint")));
    }
    Line::from(spans)
}

/// A shade glyph for a magnitude in `[0, 1]` (colour-free heatmaps).
pub fn shade(a: f32) -> char {
    match a {
        a if a < 0.08 => '·',
        a if a < 0.3 => '░',
        a if a < 0.55 => '▒',
        a if a < 0.8 => '▓',
        _ => '█',
    }
}

/// A heatmap cell's text and style for `t` in `[-1, 1]`, `w` wide; `value`
/// is printed when the cell is wide enough.
pub fn heat_cell(t: f32, value: Option<f32>, w: usize, theme: &Theme) -> (String, Style) {
    match theme.heat(t) {
        Some(bg) => {
            let text = match value {
                Some(v) if w >= 5 => fit_right(&format!("{v:+.2}"), w - 1) + " ",
                _ => " ".repeat(w),
            };
            (text, Style::default().bg(bg).fg(theme.heat_text(t)))
        }
        None => {
            // No colour: sign, then shade glyphs for the magnitude.
            let g = shade(t.abs());
            let sign = if g == '·' {
                ' '
            } else if t < 0.0 {
                '-'
            } else {
                '+'
            };
            let text = match (w, value) {
                (1, _) => g.to_string(),
                // The sign of the effect before the shade: the printed
                // value has its own sign (a rise in KL is a fall in effect).
                (w, Some(v)) if w >= 8 => {
                    format!("{sign}{g}{}", fit_right(&format!("{v:+.2}"), w - 3)) + " "
                }
                (w, Some(v)) if w >= 7 => {
                    format!("{g}{}", fit_right(&format!("{v:+.2}"), w - 2)) + " "
                }
                (w, _) => format!("{sign}{}", g.to_string().repeat(w - 1)),
            };
            (text, Style::default())
        }
    }
}
