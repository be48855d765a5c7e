//! The edge drill-down: the estimate beside the exact change for every
//! metric (the search's exact value where it checked the edge, else the
//! one the worker just computed), a word on how far apart they are, and
//! the attention patterns of the heads at the edge's ends, drawn as the
//! head drill-down draws them.

use ratatui::text::{Line, Span};

use crate::app::circuit::far_from_exact;
use crate::app::drill::DrillState;
use crate::app::messages::{DrillTarget, EdgeDrillData};
use crate::app::AppState;
use crate::patching::metrics::REGISTRY;
use crate::patching::METRICS;

use super::drill::head;
use crate::tui::theme::Theme;
use crate::tui::widgets::{fit, fit_right, num};

pub fn lines<'a>(
    s: &AppState,
    d: &DrillState,
    data: &EdgeDrillData,
    w: usize,
    th: &Theme,
) -> Vec<Line<'a>> {
    let DrillTarget::Edge { rank } = d.target else {
        return vec![];
    };
    let Some((c, e)) = s
        .circuit
        .stored()
        .and_then(|c| c.result.edges.get(rank).map(|e| (c, e)))
    else {
        return vec![Line::styled(
            "the circuit changed; Esc closes",
            th.style("muted"),
        )];
    };
    let method = c.result.method;
    let exact = e.exact.or(data.exact);
    let mut out = vec![
        Line::styled(
            format!("edge #{} {} → {}", rank + 1, e.sender, e.receiver),
            th.style("title"),
        ),
        Line::styled(
            format!(
                "the change of each metric when this edge alone is patched ({})",
                c.result.direction
            ),
            th.style("muted"),
        ),
        Line::styled(
            format!(
                "{}{}{}{}",
                fit("metric", 24),
                fit_right(method.name(), 10),
                fit_right("exact", 10),
                // AtP*: the plain linear estimate beside the fixed one.
                if e.plain.is_some() {
                    fit_right("plain", 10)
                } else {
                    String::new()
                }
            ),
            th.style("axis"),
        ),
    ];
    for (k, name) in METRICS.iter().enumerate() {
        let est = e.scores.values()[k];
        let ex = exact.map(|x| x.values()[k]);
        let mut spans = vec![
            Span::styled(fit(name, 24), th.style("text")),
            Span::styled(fit_right(&num(est), 10), th.style("text")),
            Span::styled(
                fit_right(&ex.map_or("…".to_string(), num), 10),
                th.style("text"),
            ),
        ];
        if let Some(p) = e.plain {
            spans.push(Span::styled(
                fit_right(&num(p.values()[k]), 10),
                th.style("muted"),
            ));
        }
        if ex.is_some_and(|x| far_from_exact(est, x)) {
            spans.push(Span::styled("  ! far from exact", th.style("warning")));
        }
        if !est.is_finite() && REGISTRY[k].grad.is_none() && method.is_estimate() {
            spans.push(Span::styled(
                "  (no gradient: exact only)",
                th.style("muted"),
            ));
        }
        out.push(Line::from(spans));
    }
    if exact.is_none() {
        out.push(Line::styled(
            "patching the edge exactly…",
            th.style("muted"),
        ));
    }
    if data.heads.is_empty() {
        out.push(Line::styled(
            "(no attention head at either end of this edge)",
            th.style("muted"),
        ));
    }
    for h in &data.heads {
        out.push(Line::raw(""));
        out.push(Line::styled(
            format!("head L{}H{} (a{}.h{})", h.layer, h.head, h.layer, h.head),
            th.style("title"),
        ));
        out.extend(head(h, w, th));
    }
    out
}
