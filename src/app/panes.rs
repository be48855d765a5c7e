//! Pane intents (what a key means in the focused pane) and text editing.

use tui_textarea::{Input, Key};

use super::action::Intent;
use super::command::Command;
use super::drill::{effect_row, target_for, DrillState};
use super::messages::{DrillTarget, Request};
use super::prompts::{editor_text, FIELDS};
use super::saving::save;
use super::spread_keys;
use super::state::{AppState, Focus, Level, Mode, Popup};
use super::transitions::{input, prompts_changed, request_estimate};

pub(crate) fn pane_intent(s: &mut AppState, i: Intent, out: &mut Vec<Command>) {
    match s.focus {
        Focus::Prompts => prompts(s, i, out),
        Focus::Settings => settings(s, i, out),
        Focus::Heatmap if s.dataset.shown => super::dataset::pane_intent(s, i, out),
        Focus::Heatmap if s.circuit.shown => super::circuit::pane_intent(s, i, out),
        Focus::Heatmap => heatmap(s, i, out),
        Focus::Drill => {
            if let Some(d) = &mut s.drill {
                match i {
                    Intent::Up => d.scroll = d.scroll.saturating_sub(1),
                    Intent::Down => d.scroll += 1,
                    _ => {}
                }
            }
        }
    }
}

fn prompts(s: &mut AppState, i: Intent, out: &mut Vec<Command>) {
    if matches!(i, Intent::PairAdd | Intent::PairRemove) && s.dataset.alone.is_some() {
        // The editor holds one pair of the dataset; the set changes with
        // every pair in view.
        return s.set_status(
            Level::Warn,
            "one pair is open alone: bring every pair back first (D, then a)",
        );
    }
    let p = &mut s.prompts;
    let n_fields = FIELDS.len() as i32;
    match i {
        Intent::Up | Intent::Left => p.field = (p.field as i32 - 1).rem_euclid(n_fields) as usize,
        Intent::Down | Intent::Right => {
            p.field = (p.field as i32 + 1).rem_euclid(n_fields) as usize
        }
        Intent::Edit => s.mode = Mode::Edit,
        Intent::PairAdd => {
            p.add_pair();
            prompts_changed(s, out);
        }
        Intent::PairRemove => {
            if p.remove_pair() {
                prompts_changed(s, out);
            } else {
                s.set_status(Level::Warn, "the last prompt pair stays; edit it instead");
            }
        }
        Intent::PairNext | Intent::PairPrev => {
            let d = if i == Intent::PairNext { 1 } else { -1 };
            let n = p.pairs.len() as i32;
            p.selected = (p.selected as i32 + d).rem_euclid(n) as usize;
        }
        Intent::ToggleBos => {
            p.cycle_bos();
            prompts_changed(s, out);
        }
        _ => {}
    }
}

fn settings(s: &mut AppState, i: Intent, out: &mut Vec<Command>) {
    let cfg = s.model.info().map(|m| m.config.clone());
    let changed = match i {
        Intent::Up => {
            s.settings.move_row(-1);
            false
        }
        Intent::Down => {
            s.settings.move_row(1);
            false
        }
        Intent::Left => s.settings.change(-1, &mut s.heatmap.metric, cfg.as_ref()),
        Intent::Right => s.settings.change(1, &mut s.heatmap.metric, cfg.as_ref()),
        Intent::Edit => {
            if s.settings.current_row() == super::settings::Row::Positions {
                s.mode = Mode::Edit;
                false
            } else {
                s.settings.change(1, &mut s.heatmap.metric, cfg.as_ref())
            }
        }
        _ => false,
    };
    if changed {
        request_estimate(s, out);
    }
}

fn heatmap(s: &mut AppState, i: Intent, out: &mut Vec<Command>) {
    let Some(grid) = s.grid() else {
        if i == Intent::DrillDown {
            s.set_status(
                Level::Warn,
                "no result to drill into yet: press r to run a sweep",
            );
        }
        return;
    };
    let shape = grid.shape.to_vec();
    let (page, row, col) = grid.layout();
    let h = &mut s.heatmap;
    match i {
        Intent::Up => h.step(&shape, row, -1),
        Intent::Down => h.step(&shape, row, 1),
        Intent::Left => h.step(&shape, col, -1),
        Intent::Right => h.step(&shape, col, 1),
        Intent::PagePrev | Intent::PageNext => {
            if let Some(p) = page {
                h.step(&shape, p, if i == Intent::PageNext { 1 } else { -1 })
            }
        }
        Intent::ZoomIn => h.zoom = (h.zoom + 1).min(8),
        Intent::ZoomOut => h.zoom = h.zoom.saturating_sub(1).max(1),
        Intent::DrillDown | Intent::Edit => drill(s, out),
        Intent::StrongestNext | Intent::StrongestPrev => {
            if let Some(k) = spread_keys::step_strongest(s, i == Intent::StrongestNext) {
                s.set_status(Level::Info, format!("effect {} by size", k + 1));
            }
        }
        Intent::ShadeUncertain => spread_keys::toggle_shade(s),
        Intent::CompareNext => spread_keys::compare_next(s),
        Intent::SideBySide => spread_keys::beside_next(s),
        _ => {}
    }
}

fn drill(s: &mut AppState, out: &mut Vec<Command>) {
    if s.model.info().is_none() {
        s.set_status(
            Level::Warn,
            "drill-downs need the model; it is not loaded yet",
        );
        return;
    }
    let group = s
        .model
        .info()
        .map_or(1, |m| m.config.n_heads / m.config.n_kv_heads.max(1));
    let Some(v) = s.sweep() else { return };
    let Some(grid) = s.grid() else { return };
    let mut cursor = s.heatmap.cursor.clone();
    cursor.resize(grid.shape.len(), 0);
    let Some(target) = target_for(&v.spec, &grid, &cursor, group) else {
        s.set_status(Level::Warn, "this cell has no drill-down");
        return;
    };
    if grid.labelled && !matches!(target, DrillTarget::Head { .. }) {
        // A label is a span in each pair, not one token of the prompt shown.
        s.set_status(
            Level::Warn,
            "the columns are position labels: open a pair alone (D, Enter) and sweep it to drill into its tokens",
        );
        return;
    }
    let effect = match target {
        DrillTarget::Mlp { layer, .. } | DrillTarget::Attn { layer, .. } => {
            effect_row(&grid, s.heatmap.metric_name(), &cursor, layer)
        }
        _ => None,
    };
    let job = s.jobs.new_id();
    s.drill = Some(DrillState {
        target,
        job,
        result: None,
        effect_row: effect,
        scroll: 0,
    });
    s.focus = Focus::Drill;
    out.push(Command::Worker(Request::Drill {
        job,
        input: input(s),
        pair: s.prompts.selected,
        target,
    }));
}

/// Intents while a text field is being edited.
pub(crate) fn edit_intent(s: &mut AppState, i: Intent, out: &mut Vec<Command>) {
    match i {
        Intent::Back | Intent::Select => leave_edit(s, out),
        Intent::NextField | Intent::PrevField if s.focus == Focus::Prompts => {
            let d = if i == Intent::NextField { 1 } else { -1 };
            s.prompts.field = (s.prompts.field as i32 + d).rem_euclid(FIELDS.len() as i32) as usize;
        }
        Intent::Save => {
            leave_edit(s, out);
            save(s, out);
        }
        _ => {}
    }
}

fn leave_edit(s: &mut AppState, out: &mut Vec<Command>) {
    s.mode = Mode::Nav;
    if s.focus == Focus::Settings {
        match s.settings.commit_positions() {
            Ok(()) => request_estimate(s, out),
            Err(e) => s.set_status(Level::Error, e),
        }
    }
}

/// A key typed into the field being edited.
pub(crate) fn edit_key(s: &mut AppState, key: Input, out: &mut Vec<Command>) {
    // Fields are single lines: Enter commits instead of breaking the line.
    if key.key == Key::Enter || (key.ctrl && key.key == Key::Char('m')) {
        return edit_intent(s, Intent::Select, out);
    }
    if let Some(Popup::SaveAs { input }) = &mut s.popup {
        input.input(key);
        return;
    }
    if s.mode != Mode::Edit {
        return;
    }
    match s.focus {
        Focus::Prompts => {
            let before = editor_text(s.prompts.current_field_mut());
            s.prompts.current_field_mut().input(key);
            if editor_text(s.prompts.current_field_mut()) != before {
                prompts_changed(s, out);
            }
        }
        Focus::Settings => {
            s.settings.positions.input(key);
        }
        _ => {}
    }
}

/// The most characters one paste inserts; the rest is dropped with a
/// warning (a prompt is a sentence, not a book).
pub const MAX_PASTE_CHARS: usize = 100_000;

/// Pasted text, inserted into the field being edited in one step (one
/// retokenisation, however long). Fields are single lines, so line breaks
/// become spaces.
pub(crate) fn paste(s: &mut AppState, text: &str, out: &mut Vec<Command>) {
    let text = text.replace("\r\n", " ").replace(['\r', '\n'], " ");
    let clipped: String = text.chars().take(MAX_PASTE_CHARS).collect();
    if clipped.len() < text.len() {
        s.set_status(
            Level::Warn,
            format!("the paste was cut to its first {MAX_PASTE_CHARS} characters"),
        );
    }
    if let Some(Popup::SaveAs { input }) = &mut s.popup {
        input.insert_str(&clipped);
        return;
    }
    if s.mode != Mode::Edit || s.popup.is_some() {
        if s.popup.is_none() && s.focus == Focus::Prompts {
            s.set_status(
                Level::Info,
                "to paste into a prompt, edit it first (Enter or i)",
            );
        }
        return;
    }
    match s.focus {
        Focus::Prompts if s.prompts.current_field_mut().insert_str(&clipped) => {
            prompts_changed(s, out)
        }
        Focus::Settings => {
            s.settings.positions.insert_str(&clipped);
        }
        _ => {}
    }
}
