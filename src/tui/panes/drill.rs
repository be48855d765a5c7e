//! The drill-down pane: what one head, MLP layer, attention layer or
//! residual cell does, from the worker's `analysis` results. The content is
//! a list of lines scrolled with j/k.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Widget};

use crate::analysis::{AttnDrill, HeadDrill, LensDrill, MlpDrill, Scored};
use crate::app::drill::DrillState;
use crate::app::messages::DrillData;
use crate::app::{AppState, Focus};

use crate::tui::theme::Theme;
use crate::tui::widgets::{fit, fit_right, heat_cell, num, pane_block, quote, trunc};
use crate::util::text::one_line;

pub struct DrillPane<'a> {
    pub state: &'a AppState,
    pub theme: &'a Theme,
}

impl Widget for DrillPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (s, th) = (self.state, self.theme);
        let Some(d) = &s.drill else { return };
        let title = format!(
            " Drill-down · {} · pair {} · Esc back ",
            d.target.title(),
            s.prompts.selected + 1
        );
        let block = pane_block(title, s.focus == Focus::Drill, th);
        let inner = block.inner(area);
        block.render(area, buf);
        let lines = lines(s, d, inner.width as usize, th);
        Paragraph::new(lines)
            .scroll((d.scroll, 0))
            .render(inner, buf);
    }
}

fn lines<'a>(s: &AppState, d: &DrillState, w: usize, th: &Theme) -> Vec<Line<'a>> {
    match &d.result {
        None => vec![Line::styled("computing on the worker…", th.style("muted"))],
        Some(Err(e)) => vec![Line::styled(
            format!("⚠ {}", one_line(e)),
            th.style("error"),
        )],
        Some(Ok(DrillData::Head(h))) => head(h, w, th),
        Some(Ok(DrillData::Mlp(m))) => mlp(m, d.effect_row.as_deref(), w, th),
        Some(Ok(DrillData::Attn(a))) => attn(a, d.effect_row.as_deref(), th),
        Some(Ok(DrillData::Lens(l))) => lens(l, w, th),
        Some(Ok(DrillData::Edge(e))) => super::circuit_drill::lines(s, d, e, w, th),
    }
}

fn heading<'a>(text: impl Into<String>, th: &Theme) -> Line<'a> {
    Line::styled(text.into(), th.style("title"))
}

fn scored_line<'a>(label: &str, items: &[Scored], with_pos: bool, th: &Theme) -> Line<'a> {
    let mut spans = vec![Span::styled(fit(label, 11), th.style("muted"))];
    for s in items {
        let name = if with_pos {
            format!("{}@{}", quote(&s.token), s.index)
        } else {
            quote(&s.token)
        };
        spans.push(Span::styled(name, th.style("text")));
        spans.push(Span::styled(
            format!(" {}  ", num(s.value)),
            th.style("muted"),
        ));
    }
    Line::from(spans)
}

pub(super) fn head<'a>(h: &HeadDrill, w: usize, th: &Theme) -> Vec<Line<'a>> {
    let n = h.n_pos();
    let mut out = vec![
        Line::from(vec![
            Span::styled(
                "direct logit attribution to answer − wrong: ",
                th.style("muted"),
            ),
            Span::styled(
                format!("clean {:+.3}", h.dla_clean),
                th.style("field.selected"),
            ),
            Span::styled(
                format!("  corrupted {:+.3}", h.dla_corrupted),
                th.style("text"),
            ),
        ]),
        Line::styled(
            format!(
                "  (the whole model's logit diff: clean {:+.2}, corrupted {:+.2})",
                h.logit_diff_clean, h.logit_diff_corrupted
            ),
            th.style("muted"),
        ),
        heading(
            format!(
                "top attended tokens from the final position {}",
                quote(h.clean_tokens.last().map_or("", |t| t.as_str()))
            ),
            th,
        ),
        scored_line("  clean", &h.top_clean, true, th),
        scored_line("  corrupted", &h.top_corrupted, true, th),
        heading("attention patterns (rows: query, columns: key)", th),
    ];
    // Three matrices side by side; show the last positions if they don't fit.
    let label = 7;
    let cw = if label + 3 * (2 * n + 2) <= w { 2 } else { 1 };
    let fit_n = ((w.saturating_sub(label)) / 3).saturating_sub(2) / cw;
    let m = n.min(fit_n.max(1));
    let p0 = n - m;
    let titles = if m * cw + 2 >= 19 {
        ["clean", "corrupted", "clean − corrupted"]
    } else {
        ["clean", "corr.", "diff"]
    };
    let mut hdr = vec![Span::raw(" ".repeat(label))];
    for t in titles {
        hdr.push(Span::styled(fit(t, m * cw + 2), th.style("axis")));
    }
    out.push(Line::from(hdr));
    let mut idx = vec![Span::raw(" ".repeat(label))];
    for _ in 0..3 {
        let digits: String = (p0..n).map(|k| fit(&(k % 10).to_string(), cw)).collect();
        idx.push(Span::styled(digits + "  ", th.style("axis")));
    }
    out.push(Line::from(idx));
    let diff = h.pattern_diff();
    for q in p0..n {
        let mut spans = vec![Span::styled(
            fit(&trunc(&h.clean_tokens[q], label - 1), label),
            th.style("axis"),
        )];
        for (mi, mat) in [&h.pattern_clean, &h.pattern_corrupted, &diff]
            .into_iter()
            .enumerate()
        {
            for k in p0..n {
                let v = mat[q * n + k];
                let (text, st) = if k > q {
                    (" ".repeat(cw), th.style("muted"))
                } else {
                    heat_cell(v, None, cw, th)
                };
                let text = if mi < 2 && k <= q && !th.has_color() {
                    crate::tui::widgets::shade(v).to_string().repeat(cw)
                } else {
                    text
                };
                spans.push(Span::styled(text, st));
            }
            spans.push(Span::raw("  "));
        }
        out.push(Line::from(spans));
    }
    if p0 > 0 {
        out.push(Line::styled(
            format!(
                "(showing positions {p0}..{}; widen the terminal for all)",
                n - 1
            ),
            th.style("hint"),
        ));
    }
    out
}

fn bar(v: f32, max: f32, width: usize) -> String {
    let k = if max > 0.0 {
        ((v.abs() / max) * width as f32).round() as usize
    } else {
        0
    };
    "█".repeat(k.min(width))
}

fn mlp<'a>(m: &MlpDrill, effect: Option<&[(String, f32)]>, w: usize, th: &Theme) -> Vec<Line<'a>> {
    let mut out = vec![Line::from(vec![
        Span::styled(
            "direct logit attribution of hook_mlp_out (final position): ",
            th.style("muted"),
        ),
        Span::styled(
            format!("clean {:+.3}", m.dla_clean),
            th.style("field.selected"),
        ),
        Span::styled(
            format!("  corrupted {:+.3}", m.dla_corrupted),
            th.style("text"),
        ),
    ])];
    out.push(heading(
        "per position: ‖Δ mlp_out‖ (clean − corrupted) and the sweep's effect",
        th,
    ));
    let max = m.delta_norm.iter().cloned().fold(0.0f32, f32::max);
    let bw = w.saturating_sub(40).clamp(4, 30);
    for (p, tok) in m.tokens.iter().enumerate() {
        let d = m.delta_norm.get(p).copied().unwrap_or(f32::NAN);
        let mut spans = vec![
            Span::styled(
                format!("{p:>3} {} ", fit(&quote(tok), 10)),
                th.style("axis"),
            ),
            Span::styled(fit_right(&num(d), 7), th.style("text")),
            Span::styled(
                format!(" {}", fit(&bar(d, max, bw), bw)),
                th.style("progress.done"),
            ),
        ];
        if let Some((_, e)) = effect.and_then(|e| e.get(p)) {
            spans.push(Span::styled(
                format!("  effect {}", num(*e)),
                th.style("muted"),
            ));
        }
        out.push(Line::from(spans));
    }
    out.push(heading("top neurons by effect on answer − wrong", th));
    out.push(Line::styled(format!("  {}", m.method), th.style("hint")));
    out.push(Line::styled(
        format!(
            "  {:>6} {:>9} {:>9} {:>9} {:>9}",
            "neuron", "act clean", "act corr", "direct", "effect"
        ),
        th.style("axis"),
    ));
    for n in &m.neurons {
        out.push(Line::styled(
            format!(
                "  {:>6} {:>9} {:>9} {:>9} {:>9}",
                n.index,
                num(n.act_clean),
                num(n.act_corrupted),
                num(n.direct),
                num(n.effect)
            ),
            th.style("text"),
        ));
    }
    out.push(heading(
        "tokens its output promotes (direct logits, clean, final position)",
        th,
    ));
    out.push(scored_line("  promotes", &m.promoted, false, th));
    out.push(scored_line("  suppresses", &m.suppressed, false, th));
    out
}

fn attn<'a>(a: &AttnDrill, effect: Option<&[(String, f32)]>, th: &Theme) -> Vec<Line<'a>> {
    let mut out = vec![heading(
        "direct logit attribution of each head (final position)",
        th,
    )];
    let max = a
        .head_dla_clean
        .iter()
        .chain(&a.head_dla_corrupted)
        .fold(0.0f32, |m, v| m.max(v.abs()));
    for (h, (c, k)) in a
        .head_dla_clean
        .iter()
        .zip(&a.head_dla_corrupted)
        .enumerate()
    {
        out.push(Line::from(vec![
            Span::styled(format!("  H{h:<3}"), th.style("axis")),
            Span::styled(format!("clean {:>7}", num(*c)), th.style("text")),
            Span::styled(
                format!(" {}", fit(&bar(*c, max, 12), 12)),
                th.style("progress.done"),
            ),
            Span::styled(format!("  corrupted {:>7}", num(*k)), th.style("muted")),
        ]));
    }
    if let Some(e) = effect {
        out.push(heading(
            "the sweep's effect at this layer, per position",
            th,
        ));
        for (p, (tok, v)) in e.iter().enumerate() {
            out.push(Line::styled(
                format!("  {p:>3} {} {}", fit(&quote(tok), 10), num(*v)),
                th.style("text"),
            ));
        }
    }
    out.push(heading(
        "tokens the layer's output promotes (clean, final position)",
        th,
    ));
    out.push(scored_line("  promotes", &a.promoted, false, th));
    out
}

fn lens<'a>(l: &LensDrill, w: usize, th: &Theme) -> Vec<Line<'a>> {
    let mut out = vec![
        heading(
            format!(
                "logit lens: {} at position {} ({} / {})",
                l.hook,
                l.pos,
                quote(&l.token_clean),
                quote(&l.token_corrupted)
            ),
            th,
        ),
        Line::styled(
            format!(
                "  answer {}: clean p={:.3} rank {}   corrupted p={:.3} rank {}",
                quote(&l.answer),
                l.answer_clean.0,
                l.answer_clean.1,
                l.answer_corrupted.0,
                l.answer_corrupted.1
            ),
            th.style("field.selected"),
        ),
        Line::styled(
            format!(
                "  wrong  {}: clean p={:.3} rank {}   corrupted p={:.3} rank {}",
                quote(&l.wrong),
                l.wrong_clean.0,
                l.wrong_clean.1,
                l.wrong_corrupted.0,
                l.wrong_corrupted.1
            ),
            th.style("text"),
        ),
        heading("top next tokens", th),
    ];
    let col = (w / 2).clamp(16, 40);
    out.push(Line::styled(
        format!("  {}{}", fit("clean", col), "corrupted"),
        th.style("axis"),
    ));
    for i in 0..l.top_clean.len().max(l.top_corrupted.len()) {
        let cell = |v: &[Scored]| {
            v.get(i).map_or(String::new(), |s| {
                format!("{} {:.3}", quote(&s.token), s.value)
            })
        };
        out.push(Line::styled(
            format!(
                "  {}{}",
                fit(&cell(&l.top_clean), col),
                cell(&l.top_corrupted)
            ),
            th.style("text"),
        ));
    }
    out
}
