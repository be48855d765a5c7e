//! Where each pane goes for a terminal size. A pure function of the size
//! and of what is open, shared by drawing and by mouse hit-testing.
//!
//! Prompts and sweep settings share the top band, the heatmap fills the
//! rest, the status bar takes the last two rows. An open drill-down sits
//! beside the heatmap on wide terminals and takes the whole main area on
//! narrow ones (Esc returns).

use ratatui::layout::Rect;

use crate::app::{AppState, Focus};

/// The smallest terminal the workbench draws in.
pub const MIN_W: u16 = 64;
pub const MIN_H: u16 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Areas {
    pub prompts: Option<Rect>,
    pub settings: Option<Rect>,
    pub heatmap: Option<Rect>,
    pub drill: Option<Rect>,
    pub status: Rect,
}

impl Areas {
    /// The pane under a screen position.
    pub fn hit(&self, x: u16, y: u16) -> Option<Focus> {
        let inside = |r: Option<Rect>| {
            r.is_some_and(|r| x >= r.x && x < r.right() && y >= r.y && y < r.bottom())
        };
        [
            (self.prompts, Focus::Prompts),
            (self.settings, Focus::Settings),
            (self.heatmap, Focus::Heatmap),
            (self.drill, Focus::Drill),
        ]
        .into_iter()
        .find(|(r, _)| inside(*r))
        .map(|(_, f)| f)
    }
}

/// The pane areas, or `None` when the terminal is too small.
pub fn areas(r: Rect, s: &AppState) -> Option<Areas> {
    if r.width < MIN_W || r.height < MIN_H {
        return None;
    }
    let status = Rect::new(r.x, r.bottom() - 2, r.width, 2);
    let main = Rect::new(r.x, r.y, r.width, r.height - 2);
    let mut a = Areas {
        status,
        ..Default::default()
    };
    let wide = r.width >= 150;
    if s.drill.is_some() && !wide {
        a.drill = Some(main);
        return Some(a);
    }
    let top_h = (main.height / 3).clamp(9, 14);
    let settings_w = (r.width * 2 / 5).clamp(35, 46);
    a.prompts = Some(Rect::new(main.x, main.y, main.width - settings_w, top_h));
    a.settings = Some(Rect::new(
        main.x + main.width - settings_w,
        main.y,
        settings_w,
        top_h,
    ));
    let bottom = Rect::new(main.x, main.y + top_h, main.width, main.height - top_h);
    if s.drill.is_some() {
        let hw = bottom.width / 2;
        a.heatmap = Some(Rect::new(bottom.x, bottom.y, hw, bottom.height));
        a.drill = Some(Rect::new(
            bottom.x + hw,
            bottom.y,
            bottom.width - hw,
            bottom.height,
        ));
    } else {
        a.heatmap = Some(bottom);
    }
    Some(a)
}
