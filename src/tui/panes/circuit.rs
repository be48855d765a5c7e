//! The circuit pane, in the heatmap's place while shown: a summary line
//! (or the running search's progress), then the ranked edge list, the
//! layered drawing of the top edges and the faithfulness curve
//! (`circuit_graph.rs`). Wide panes show the three at once (list left,
//! drawing and curve right); narrower ones one at a time, switched with
//! `<` / `>`.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::app::circuit::{far_from_exact, metric_of, CircuitRunning, CircuitTab};
use crate::app::{AppState, Focus};
use crate::circuits::EdgeScore;
use crate::patching::metrics::MetricId;
use crate::session::circuit::StoredCircuit;

use super::circuit_graph::{draw_curve, draw_layered};
use super::status::fmt_dur;
use crate::tui::theme::Theme;
use crate::tui::widgets::{fit, fit_right, num, pane_block, trunc};

/// Panes at least this wide show the list, the drawing and the curve together.
pub const WIDE: u16 = 110;

/// The edge list's width in a wide pane.
const LIST_W: u16 = 70;

pub struct CircuitPane<'a> {
    pub state: &'a AppState,
    pub theme: &'a Theme,
}

impl Widget for CircuitPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (s, th) = (self.state, self.theme);
        let c = &s.circuit;
        let view = c.view();
        let mut title = vec![Span::raw(" Circuit")];
        match view {
            Some(v) => {
                title.push(Span::raw(format!(
                    " · {} · {} {} {}",
                    v.spec.method.name(),
                    v.spec.metric,
                    v.spec.direction,
                    v.spec.corruption.name()
                )));
                if v.spec.positions {
                    title.push(Span::raw(" · per position"));
                }
                if c.views.len() > 1 {
                    title.push(Span::raw(format!(
                        " · {}/{}",
                        c.selected + 1,
                        c.views.len()
                    )));
                }
            }
            None => title.push(Span::raw(format!(
                " · next: {}{}",
                c.method.name(),
                if c.positions { " per position" } else { "" }
            ))),
        }
        title.push(Span::raw(" "));
        let stale = view
            .and_then(|v| v.stale.as_ref())
            .filter(|_| c.running_shown().is_none());
        if stale.is_some() {
            title.push(Span::styled("STALE ", th.style("stale")));
        }
        let block = pane_block(Line::from(title), s.focus == Focus::Heatmap, th);
        let inner = block.inner(area);
        block.render(area, buf);
        if inner.height < 3 || inner.width < 20 {
            return;
        }
        let mut y = inner.y;
        let mut put = |l: Line<'_>, y: &mut u16| {
            if *y < inner.bottom() {
                buf.set_line(inner.x, *y, &l, inner.width);
                *y += 1;
            }
        };
        if let Some(r) = c.running_shown() {
            put(progress(r, inner.width as usize, th), &mut y);
        }
        if let Some(why) = stale {
            put(
                Line::styled(
                    trunc(&format!("stale: {why}; c recomputes"), inner.width as usize),
                    th.style("stale"),
                ),
                &mut y,
            );
        }
        let Some(stored) = c.stored() else {
            let msg = if c.running_shown().is_some() {
                "the edges appear when the search is done"
            } else {
                "No circuit yet: c finds the circuit of the prompt pairs (t: method, m: metric; direction and corruption as the sweep settings)."
            };
            Paragraph::new(Line::styled(msg, th.style("muted")))
                .wrap(ratatui::widgets::Wrap { trim: true })
                .render(Rect::new(inner.x, y, inner.width, inner.bottom() - y), buf);
            return;
        };
        let Some(mi) = metric_of(stored) else { return };
        put(summary(stored, mi, inner.width as usize, th), &mut y);
        let rest = Rect::new(inner.x, y, inner.width, inner.bottom().saturating_sub(y));
        if rest.height < 2 {
            return;
        }
        if inner.width >= WIDE {
            let list = Rect::new(rest.x, rest.y, LIST_W, rest.height);
            draw_list(s, stored, mi, list, th, buf);
            let rx = rest.x + LIST_W + 1;
            let rw = rest.right().saturating_sub(rx);
            let gh = rest.height / 2 + 1;
            draw_layered(s, stored, mi, Rect::new(rx, rest.y, rw, gh), th, buf);
            let ch = rest.height - gh;
            draw_curve(stored, Rect::new(rx, rest.y + gh, rw, ch), th, buf);
        } else {
            let mut tabs = vec![];
            for t in CircuitTab::ALL {
                let st = if t == c.tab {
                    th.style("selection")
                } else {
                    th.style("muted")
                };
                tabs.push(Span::styled(format!(" {} ", t.name()), st));
            }
            tabs.push(Span::styled(
                "  < > switch · Enter drills into an edge",
                th.style("hint"),
            ));
            buf.set_line(rest.x, rest.y, &Line::from(tabs), rest.width);
            let body = Rect::new(rest.x, rest.y + 1, rest.width, rest.height - 1);
            match c.tab {
                CircuitTab::Edges => draw_list(s, stored, mi, body, th, buf),
                CircuitTab::Graph => draw_layered(s, stored, mi, body, th, buf),
                CircuitTab::Curve => draw_curve(stored, body, th, buf),
            }
        }
    }
}

fn progress<'a>(r: &CircuitRunning, w: usize, th: &Theme) -> Line<'a> {
    let stage = r.stage.map_or("starting", |s| s.name());
    let frac = if r.total > 0 {
        r.done as f32 / r.total as f32
    } else {
        0.0
    };
    let bw = 12;
    let filled = ((frac * bw as f32).round() as usize).min(bw);
    let what = if r.cancelling {
        "cancelling…".to_string()
    } else {
        "Esc cancels".to_string()
    };
    Line::from(vec![
        Span::styled("█".repeat(filled), th.style("progress.done")),
        Span::styled("░".repeat(bw - filled), th.style("progress.todo")),
        Span::styled(
            trunc(
                &format!(
                    " {stage} {}/{} · {} · {what}",
                    r.done,
                    r.total,
                    fmt_dur(r.elapsed)
                ),
                w.saturating_sub(bw),
            ),
            th.style("text"),
        ),
    ])
}

fn summary<'a>(c: &StoredCircuit, mi: MetricId, w: usize, th: &Theme) -> Line<'a> {
    let r = &c.result;
    let reach = |k: Option<usize>| k.map_or("–".to_string(), |k| k.to_string());
    // The baselines: clean → corrupted.
    let text = format!(
        "{} edges · {} {} → {} · 80% at {}, 90% at {} edges",
        r.n_edges,
        r.metric,
        num(r.baselines.clean[mi]),
        num(r.baselines.corrupted[mi]),
        reach(r.edges_for_80),
        reach(r.edges_for_90)
    );
    Line::styled(trunc(&text, w), th.style("muted"))
}

/// Blue/red by sign where the theme has colour, plain text otherwise.
pub fn sign_style(v: f32, th: &Theme) -> Style {
    let t = if v >= 0.0 { 1.0 } else { -1.0 };
    match th.heat(t) {
        Some(c) if v.is_finite() => Style::default().fg(c),
        _ => th.style("text"),
    }
}

/// The ranked edges: rank, sender → receiver, score with a bar, the exact
/// value where checked and `!` where the estimate is far from it; the
/// cursor's row highlighted and kept in view.
fn draw_list(
    s: &AppState,
    c: &StoredCircuit,
    mi: MetricId,
    area: Rect,
    th: &Theme,
    buf: &mut Buffer,
) {
    if area.height < 2 {
        return;
    }
    let edges = &c.result.edges;
    let (sw, rw, bw) = (7usize, 11usize, 8usize);
    // Position-aware edges: the receiver's position (its label, where
    // labelled pairs name it) and token beside it.
    let label_w = c
        .position_labels
        .iter()
        .flatten()
        .map(|l| l.chars().count().min(12) + 1)
        .max()
        .unwrap_or(0);
    let pw = if c.result.positions { 11 + label_w } else { 0 };
    let far = edges
        .iter()
        .any(|e| e.exact.is_some_and(|x| far_from_exact(e.scores[mi], x[mi])));
    let head = format!(
        "{} {} {} {}{} {} {}{}",
        fit_right("#", 3),
        fit("sender", sw + 2),
        fit("receiver", rw),
        if pw > 0 {
            format!("{} ", fit("position", pw))
        } else {
            String::new()
        },
        fit_right("score", 7),
        fit("", bw),
        fit_right("exact", 7),
        if far { "  ! far from exact" } else { "" }
    );
    buf.set_line(
        area.x,
        area.y,
        &Line::styled(head, th.style("axis")),
        area.width,
    );
    let rows = (area.height - 1) as usize;
    let cur = s.circuit.cursor.min(edges.len().saturating_sub(1));
    let first = cur.saturating_sub(rows.saturating_sub(1));
    let max = edges
        .iter()
        .map(|e| e.scores[mi].abs())
        .filter(|v| v.is_finite())
        .fold(0f32, f32::max)
        .max(1e-12);
    for (row, (i, e)) in edges.iter().enumerate().skip(first).take(rows).enumerate() {
        let at = e.dst_pos.map(|p| {
            let tok = c.clean_tokens.strings.get(p).map(String::as_str);
            let label = c.position_labels.get(p).and_then(|l| l.as_deref());
            fit(
                &crate::circuits::positions::describe_labelled(p, label, tok),
                pw,
            )
        });
        let line = edge_row(i, (e, at), mi, max, (sw, rw, bw), i == cur, th);
        buf.set_line(area.x, area.y + 1 + row as u16, &line, area.width);
    }
}

fn edge_row<'a>(
    i: usize,
    (e, at): (&EdgeScore, Option<String>),
    mi: MetricId,
    max: f32,
    (sw, rw, bw): (usize, usize, usize),
    selected: bool,
    th: &Theme,
) -> Line<'a> {
    let v = e.scores[mi];
    let filled = if v.is_finite() {
        ((v.abs() / max) * bw as f32).round() as usize
    } else {
        0
    };
    let exact = e.exact.map(|x| x[mi]);
    let far = exact.is_some_and(|x| far_from_exact(v, x));
    let base = if selected {
        th.style("selection")
    } else {
        th.style("text")
    };
    let mut spans = vec![
        Span::styled(format!("{} ", fit_right(&(i + 1).to_string(), 3)), base),
        Span::styled(format!("{} → ", fit(&e.sender, sw)), base),
        Span::styled(format!("{} ", fit(&e.receiver, rw)), base),
        Span::styled(at.map(|a| format!("{a} ")).unwrap_or_default(), base),
        Span::styled(format!("{} ", fit_right(&num(v), 7)), base),
        Span::styled(
            fit(&"█".repeat(filled.min(bw)), bw),
            if selected { base } else { sign_style(v, th) },
        ),
        Span::styled(
            format!(" {}", fit_right(&exact.map_or("–".to_string(), num), 7)),
            base,
        ),
    ];
    if far {
        spans.push(Span::styled(" !", th.style("warning")));
    }
    Line::from(spans)
}
