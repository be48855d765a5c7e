//! The status bar: the mode (NAV/EDIT, always visible), the model or the
//! running sweep's progress with elapsed time and ETA, the latest message,
//! and key hints for the focused pane taken from the keymap.

use std::time::Duration;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

use crate::app::state::{Level, ModelState, Popup};
use crate::app::{AppState, Focus, Intent, Mode};

use crate::tui::keymap::{Context, Keymap};
use crate::tui::theme::Theme;
use crate::tui::widgets::hints;
use crate::util::text::one_line;

pub struct StatusBar<'a> {
    pub state: &'a AppState,
    pub theme: &'a Theme,
    pub keymap: &'a Keymap,
}

pub fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, s as u64 % 60)
    }
}

impl Widget for StatusBar<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let (s, th) = (self.state, self.theme);
        buf.set_style(area, th.style("status"));
        let mode = match s.mode {
            Mode::Nav => Span::styled(" NAV ", th.style("mode.nav")),
            Mode::Edit => Span::styled(" EDIT ", th.style("mode.edit")),
        };
        let mut top = vec![mode, Span::styled(" ", th.style("status"))];
        if let Some(r) = &s.running {
            let frac = if r.total > 0 {
                r.done as f32 / r.total as f32
            } else {
                0.0
            };
            let width = 16;
            let filled = (frac * width as f32).round() as usize;
            top.push(Span::styled("█".repeat(filled), th.style("progress.done")));
            top.push(Span::styled(
                "░".repeat(width - filled),
                th.style("progress.todo"),
            ));
            let eta = r.eta.map_or("–".into(), fmt_dur);
            top.push(Span::styled(
                format!(
                    " {:>3.0}% {}/{} · {} elapsed · ETA {eta} · Esc cancels ",
                    frac * 100.0,
                    r.done,
                    r.total,
                    fmt_dur(r.elapsed)
                ),
                th.style("status"),
            ));
        } else if let Some(r) = &s.circuit.running {
            // A circuit search (the sweep's bar wins when both run).
            let frac = if r.total > 0 {
                r.done as f32 / r.total as f32
            } else {
                0.0
            };
            let width = 16;
            let filled = ((frac * width as f32).round() as usize).min(width);
            top.push(Span::styled("█".repeat(filled), th.style("progress.done")));
            top.push(Span::styled(
                "░".repeat(width - filled),
                th.style("progress.todo"),
            ));
            let stage = r.stage.map_or("starting", |st| st.name());
            top.push(Span::styled(
                format!(
                    " circuit: {stage} {}/{} · {} elapsed · Esc cancels ",
                    r.done,
                    r.total,
                    fmt_dur(r.elapsed)
                ),
                th.style("status"),
            ));
        } else {
            let model = match &s.model.state {
                ModelState::Loading => {
                    format!("⏳ loading {} ", one_line(short_name(&s.model.load.source)))
                }
                ModelState::Ready(i) => format!("{} ", one_line(short_name(&i.source))),
                ModelState::Failed(_) => {
                    format!("✗ {} ", one_line(short_name(&s.model.load.source)))
                }
            };
            top.push(Span::styled(model, th.style("status")));
            if s.session.dirty {
                top.push(Span::styled("● unsaved ", th.style("status.warn")));
            }
        }
        if let Some(m) = &s.status {
            let key = match m.level {
                Level::Info => "status.info",
                Level::Warn => "status.warn",
                Level::Error => "status.error",
            };
            top.push(Span::styled(
                format!("│ {}", one_line(&m.text)),
                th.style(key),
            ));
        }
        buf.set_line(area.x, area.y, &Line::from(top), area.width);
        if area.height > 1 {
            let line = hints(&self.hint_items(), th);
            buf.set_line(area.x + 1, area.y + 1, &line, area.width.saturating_sub(1));
        }
    }
}

/// A model source as the status line shows it: a path's last component
/// (a long path would push the status message off the line); hub ids
/// (`org/name`, one slash) and built-in sources as they are.
pub fn short_name(source: &str) -> &str {
    let trimmed = source.trim_end_matches('/');
    let path = trimmed.starts_with(['/', '.', '~']) || trimmed.matches('/').count() >= 2;
    if path && trimmed.contains('/') {
        trimmed.rsplit('/').next().unwrap_or(trimmed)
    } else {
        source
    }
}

impl StatusBar<'_> {
    fn key(&self, ctx: Context, i: Intent) -> Option<String> {
        let k = self.keymap.keys_for(ctx, i);
        (!k.is_empty()).then(|| k.into_iter().take(1).collect::<Vec<_>>().join("/"))
    }

    fn hint_items(&self) -> Vec<(String, &'static str)> {
        let s = self.state;
        let (ctx, wanted): (Context, &[(Intent, &'static str)]) = match (&s.popup, s.mode, s.focus)
        {
            (Some(Popup::Help { .. }), _, _) => (
                Context::Help,
                &[(Intent::Back, "close"), (Intent::Down, "scroll")],
            ),
            (Some(Popup::Browser { .. }), _, _) => (
                Context::Browser,
                &[
                    (Intent::Select, "open"),
                    (Intent::Down, "down"),
                    (Intent::Back, "close"),
                ],
            ),
            (Some(Popup::SaveAs { .. }), _, _) => (
                Context::Edit,
                &[(Intent::Select, "save"), (Intent::Back, "cancel")],
            ),
            (Some(_), _, _) => (
                Context::Dialog,
                &[
                    (Intent::Yes, "yes"),
                    (Intent::No, "no"),
                    (Intent::Back, "close"),
                ],
            ),
            (None, Mode::Edit, _) => (
                Context::Edit,
                &[
                    (Intent::Back, "done"),
                    (Intent::NextField, "next field"),
                    (Intent::Save, "save"),
                ],
            ),
            (None, Mode::Nav, Focus::Prompts) => (
                Context::Prompts,
                &[
                    (Intent::Edit, "edit"),
                    (Intent::Down, "field"),
                    (Intent::PairAdd, "add pair"),
                    (Intent::PairNext, "next pair"),
                    (Intent::ToggleBos, "BOS"),
                ],
            ),
            (None, Mode::Nav, Focus::Settings) => (
                Context::Settings,
                &[(Intent::Down, "row"), (Intent::Right, "change")],
            ),
            (None, Mode::Nav, Focus::Heatmap) if s.dataset.shown => (
                Context::Dataset,
                &[
                    (Intent::Select, "open alone"),
                    (Intent::FilterFailing, "failing"),
                    (Intent::SortPairs, "sort"),
                    (Intent::AllPairs, "all pairs"),
                ],
            ),
            (None, Mode::Nav, Focus::Heatmap) if s.circuit.shown => (
                Context::Circuit,
                &[
                    (Intent::Down, "edge"),
                    (Intent::DrillDown, "drill"),
                    (Intent::PageNext, "view"),
                    (Intent::CircuitMethod, "method"),
                ],
            ),
            (None, Mode::Nav, Focus::Heatmap) => (
                Context::Heatmap,
                &[
                    (Intent::Left, "move"),
                    (Intent::DrillDown, "drill"),
                    (Intent::ZoomIn, "zoom"),
                ],
            ),
            (None, Mode::Nav, Focus::Drill) => (Context::Drill, &[(Intent::Down, "scroll")]),
        };
        let global = s.popup.is_none() && s.mode == Mode::Nav;
        let mut items: Vec<(String, &'static str)> = Vec::new();
        let push_global = |items: &mut Vec<(String, &'static str)>,
                           list: &[(Intent, &'static str)]| {
            if global {
                for (i, what) in list {
                    if let Some(k) = self.key(Context::Global, *i) {
                        items.push((k, what));
                    }
                }
            }
        };
        // The essentials first, so they survive a narrow terminal.
        push_global(
            &mut items,
            &[
                (Intent::RunSweep, "run"),
                (Intent::RunCircuit, "circuit"),
                (Intent::Help, "help"),
                (Intent::Quit, "quit"),
            ],
        );
        items.extend(
            wanted
                .iter()
                .filter_map(|(i, what)| self.key(ctx, *i).map(|k| (k, *what))),
        );
        if s.focus == Focus::Heatmap {
            push_global(&mut items, &[(Intent::Export, "export SVG")]);
        }
        push_global(
            &mut items,
            &[
                (Intent::MetricNext, "metric"),
                (Intent::FocusNext, "pane"),
                (Intent::Save, "save"),
                (Intent::Open, "open"),
            ],
        );
        items
    }
}

#[cfg(test)]
mod tests {
    use super::short_name;

    #[test]
    fn long_paths_show_their_last_component() {
        assert_eq!(
            short_name("/home/me/models/SmolLM2-135M.Q4_1.gguf"),
            "SmolLM2-135M.Q4_1.gguf"
        );
        assert_eq!(short_name("./models/gpt2/"), "gpt2");
        assert_eq!(short_name("a/b/c"), "c");
        assert_eq!(
            short_name("HuggingFaceTB/SmolLM2-135M"),
            "HuggingFaceTB/SmolLM2-135M"
        );
        assert_eq!(short_name("random:gpt2-small"), "random:gpt2-small");
        assert_eq!(short_name("demo"), "demo");
    }
}
