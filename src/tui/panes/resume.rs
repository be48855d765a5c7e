//! The popup that offers to resume an interrupted sweep (`app::resume`):
//! which sweep, how far it got, and the three answers.

use ratatui::text::{Line, Span};

use crate::app::resume::Interrupted;
use crate::tui::theme::Theme;
use crate::util::text::one_line;

/// Title and lines of the popup.
pub fn lines(i: &Interrupted, requested: bool, th: &Theme) -> (String, Vec<Line<'static>>) {
    let spec = &i.spec;
    let done = match i.batches {
        Some(n) => format!("{n} finished batch(es) are kept in"),
        None => "its finished batches are kept in".into(),
    };
    let no = if requested {
        " discard it and run the new sweep   "
    } else {
        " discard it   "
    };
    let sweep = format!(
        "The {} {} sweep ({}) did not finish;",
        spec.target,
        spec.direction,
        spec.corruption.name()
    );
    (
        " Resume the interrupted sweep? ".into(),
        vec![
            Line::from(sweep),
            Line::from(done),
            Line::styled(
                one_line(&i.path.display().to_string()).into_owned(),
                th.style("muted"),
            ),
            Line::from(""),
            Line::from(vec![
                Span::styled("y", th.style("hint.key")),
                Span::raw(" resume it   "),
                Span::styled("n", th.style("hint.key")),
                Span::raw(no),
                Span::styled("Esc", th.style("hint.key")),
                Span::raw(" decide later"),
            ]),
        ],
    )
}
