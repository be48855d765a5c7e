//! Terminal events to actions, through the keymap.
//!
//! Which keymap contexts apply depends on the state: an open popup's own
//! context only; in edit mode the `edit` context, and any other key is text
//! for the field; otherwise the focused pane's context, then `global`.

use crossterm::event::{Event, KeyEventKind, MouseEventKind};

use crate::app::state::Popup;
use crate::app::{Action, AppState, Focus, Intent, Mode};

use super::keymap::{Context, Key, Keymap};
use super::layout::Areas;

/// The contexts consulted for a key, in order.
pub fn contexts(s: &AppState) -> Vec<Context> {
    match (&s.popup, s.mode) {
        (Some(Popup::Help { .. }), _) => vec![Context::Help],
        (Some(Popup::Browser { .. }), _) => vec![Context::Browser],
        (Some(Popup::SaveAs { .. }), _) => vec![Context::Edit],
        (Some(_), _) => vec![Context::Dialog],
        (None, Mode::Edit) => vec![Context::Edit],
        (None, Mode::Nav) => {
            let pane = match s.focus {
                Focus::Prompts => Context::Prompts,
                Focus::Settings => Context::Settings,
                Focus::Heatmap if s.dataset.shown => Context::Dataset,
                Focus::Heatmap if s.circuit.shown => Context::Circuit,
                Focus::Heatmap => Context::Heatmap,
                Focus::Drill => Context::Drill,
            };
            vec![pane, Context::Global]
        }
    }
}

/// The action for a terminal event, if any.
pub fn action_for(
    s: &AppState,
    keymap: &Keymap,
    ev: &Event,
    areas: Option<&Areas>,
) -> Option<Action> {
    match ev {
        Event::Key(k) if k.kind != KeyEventKind::Release => {
            let key = Key::from_event(k);
            if let Some(i) = key.and_then(|key| keymap.lookup(&contexts(s), &key)) {
                return Some(Action::Intent(i));
            }
            let editing = s.mode == Mode::Edit || matches!(s.popup, Some(Popup::SaveAs { .. }));
            if editing {
                return Some(Action::EditKey((*k).into()));
            }
            // A message popup closes on any key.
            if matches!(s.popup, Some(Popup::Message { .. })) {
                return Some(Action::Intent(Intent::Back));
            }
            None
        }
        Event::Resize(w, h) => Some(Action::Resize(*w, *h)),
        Event::Paste(text) => Some(Action::Paste(text.clone())),
        Event::Mouse(m) => match m.kind {
            MouseEventKind::Down(_) => areas?.hit(m.column, m.row).map(Action::MouseFocus),
            MouseEventKind::ScrollDown => Some(Action::MouseScroll { down: true }),
            MouseEventKind::ScrollUp => Some(Action::MouseScroll { down: false }),
            _ => None,
        },
        _ => None,
    }
}
