//! Where everything of the heatmap goes: which axes are panels, rows and
//! columns ([`Grid`]), and the sizes and positions of cells, labels, panels
//! and the colour bar ([`Layout`]), in SVG user units.

use crate::session::model::StoredResult;

use super::SvgError;

/// Which axes are panels, rows and columns, and how many of each.
pub(super) struct Grid {
    pub(super) n_panels: usize,
    pub(super) rows_axis: usize,
    pub(super) cols_axis: usize,
    pub(super) nr: usize,
    pub(super) nc: usize,
}

impl Grid {
    /// Two axes are rows × columns; a third leading axis makes panels.
    /// The values must fill the grid.
    pub(super) fn of(stored: &StoredResult, values: &[f32]) -> Result<Self, SvgError> {
        let r = &stored.result;
        let bad = || SvgError::Shape(r.axes.clone());
        if r.axes.len() != r.shape.len() {
            return Err(bad());
        }
        let (n_panels, rows_axis) = match r.shape.len() {
            2 => (1, 0),
            3 => (r.shape[0], 1),
            _ => return Err(bad()),
        };
        let cols_axis = rows_axis + 1;
        let (nr, nc) = (r.shape[rows_axis], r.shape[cols_axis]);
        let cells = n_panels.checked_mul(nr).and_then(|x| x.checked_mul(nc));
        if cells.is_none_or(|c| values.len() < c) {
            return Err(bad());
        }
        Ok(Self {
            n_panels,
            rows_axis,
            cols_axis,
            nr,
            nc,
        })
    }
}

/// Sizes and positions, in SVG user units.
pub(super) struct Layout {
    pub(super) cw: f32,
    pub(super) ch: f32,
    pub(super) rotate: bool,
    pub(super) left: f32,
    pub(super) col_band: f32,
    pub(super) top: f32,
    pub(super) panel_title: f32,
    pub(super) grid_w: f32,
    pub(super) grid_h: f32,
    pub(super) panel_h: f32,
    pub(super) bar_x: f32,
    pub(super) bar_h: f32,
    pub(super) height: f32,
}

impl Layout {
    /// Cells shrink for wide or tall grids; long column labels are rotated
    /// and get a taller band; the left margin fits the longest row label.
    pub(super) fn of(grid: &Grid, row_labels: &[String], col_labels: &[String]) -> Self {
        let (nr, nc) = (grid.nr, grid.nc);
        let cw = if nc <= 40 {
            30.0
        } else {
            (1200.0 / nc as f32).max(8.0)
        };
        let ch = if nr <= 40 {
            22.0
        } else {
            (900.0 / nr as f32).max(6.0)
        };
        let rotate = col_labels.iter().any(|l| l.chars().count() > 3);
        let char_w = 6.6;
        let longest =
            |ls: &[String]| ls.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f32;
        let left = 56.0 + longest(row_labels) * char_w;
        let col_band = if rotate {
            longest(col_labels) * char_w * 0.75 + 16.0
        } else {
            18.0
        };
        let top = 64.0;
        let panel_title = if grid.n_panels > 1 { 20.0 } else { 0.0 };
        let grid_w = cw * nc as f32;
        let grid_h = ch * nr as f32;
        let panel_h = panel_title + grid_h + col_band + 28.0;
        let bar_x = left + grid_w + 30.0;
        let bar_h = grid_h.clamp(120.0, 320.0);
        let height = (top + panel_h * grid.n_panels as f32 + 10.0).max(top + bar_h + 40.0);
        Self {
            cw,
            ch,
            rotate,
            left,
            col_band,
            top,
            panel_title,
            grid_w,
            grid_h,
            panel_h,
            bar_x,
            bar_h,
            height,
        }
    }
}
