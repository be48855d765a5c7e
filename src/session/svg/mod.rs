//! A stored sweep result as an SVG heatmap for papers and slides: a title
//! (target, direction, corruption, metric, model, baselines), labelled axes
//! (layer numbers, token strings, head numbers, component names), one panel
//! per slice of a three-axis result, and a diverging colour bar symmetric
//! around zero with its values at both ends. Plain string building, no
//! dependencies; the TUI's export key calls [`heatmap_svg`] too.
//!
//! Colours are the text heatmap's (`patching::output::diverging`), so the
//! figure matches what the terminal showed. Missing cells (NaN) are grey.
//! Every cell carries a `<title>` with its coordinates and value, which
//! browsers show on hover.

use std::fmt::Write as _;

use crate::patching::output::diverging;
use crate::patching::{SweepSpec, METRICS};

use super::model::StoredResult;

mod layout;

use layout::{Grid, Layout};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SvgError {
    #[error("unknown metric {name:?}; metrics are {}", METRICS.join(", "))]
    UnknownMetric { name: String },
    #[error("the stored result has no values of metric {name:?} (it was computed by a build without it); rerun the sweep: `patchbench sweep --session FILE --write --rerun-stale`")]
    MissingMetric { name: String },
    #[error("cannot draw a result with axes {0:?}: a heatmap needs 2 or 3 axes")]
    Shape(Vec<String>),
}

const FONT: &str = "font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\"";

/// The heatmap of `metric` of a stored result. `model` is the session's
/// model source, shown in the subtitle.
///
/// In steps: the metric's values and the grid they fill ([`Grid::of`]),
/// the axis labels, the sizes of everything ([`Layout::of`]), then the
/// header, one panel per slice and the colour bar.
pub fn heatmap_svg(
    model: &str,
    spec: &SweepSpec,
    stored: &StoredResult,
    metric: &str,
) -> Result<String, SvgError> {
    let r = &stored.result;
    let values = metric_values(stored, metric)?;
    let grid = Grid::of(stored, values)?;
    let label = |axis: usize, i: usize| axis_label(stored, &r.axes[axis], i);
    let row_labels: Vec<String> = (0..grid.nr).map(|i| label(grid.rows_axis, i)).collect();
    let col_labels: Vec<String> = (0..grid.nc).map(|j| label(grid.cols_axis, j)).collect();
    let scale = values
        .iter()
        .filter(|x| x.is_finite())
        .fold(0f32, |m, x| m.max(x.abs()))
        .max(1e-9);
    let layout = Layout::of(&grid, &row_labels, &col_labels);
    let (title, sub) = titles(model, spec, stored, metric);
    let fig = Figure {
        stored,
        values,
        grid,
        layout,
        row_labels,
        col_labels,
        scale,
    };
    let mut s = String::new();
    fig.header(&mut s, &title, &sub);
    for p in 0..fig.grid.n_panels {
        fig.panel(&mut s, p);
    }
    colour_bar(
        &mut s,
        fig.layout.bar_x,
        fig.layout.top,
        fig.layout.bar_h,
        scale,
        metric,
    );
    s.push_str("</svg>\n");
    Ok(s)
}

/// The values of `metric`, or why there are none.
fn metric_values<'a>(stored: &'a StoredResult, metric: &str) -> Result<&'a [f32], SvgError> {
    let values = stored.result.metrics.get(metric).ok_or_else(|| {
        let name = metric.to_string();
        if METRICS.contains(&metric) {
            SvgError::MissingMetric { name }
        } else {
            SvgError::UnknownMetric { name }
        }
    })?;
    Ok(values)
}

/// The title (what was patched, how, which metric) and the subtitle
/// (model, baselines, answers).
fn titles(model: &str, spec: &SweepSpec, stored: &StoredResult, metric: &str) -> (String, String) {
    let title = format!(
        "{} · {} · {} corruption — {}",
        spec.target,
        spec.direction,
        spec.corruption.name(),
        metric
    );
    let b = &stored.result.baselines;
    let sub = format!(
        "model {} · clean {}, corrupted {} · answer {} vs {}",
        model,
        fmt_val(b.clean.get(metric).unwrap_or(f32::NAN)),
        fmt_val(b.corrupted.get(metric).unwrap_or(f32::NAN)),
        quote(&stored.answer),
        quote(&stored.wrong)
    );
    (title, sub)
}

/// Everything a panel is drawn from.
struct Figure<'a> {
    stored: &'a StoredResult,
    values: &'a [f32],
    grid: Grid,
    layout: Layout,
    row_labels: Vec<String>,
    col_labels: Vec<String>,
    scale: f32,
}

impl Figure<'_> {
    /// The `<svg>` element, a white background, the title and subtitle.
    fn header(&self, s: &mut String, title: &str, sub: &str) {
        let l = &self.layout;
        let left = l.left;
        // Wide enough for the title and subtitle as well as the grid and bar.
        let text_w = |t: &str, px: f32| left + t.chars().count() as f32 * px + 20.0;
        let width = (l.bar_x + 130.0)
            .max(text_w(title, 9.0))
            .max(text_w(sub, 6.4));
        let height = l.height;
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
             viewBox=\"0 0 {width:.0} {height:.0}\" {FONT} font-size=\"11\">"
        );
        let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
        let _ = writeln!(
            s,
            "<text x=\"{left:.1}\" y=\"24\" font-size=\"15\" font-weight=\"bold\">{}</text>",
            esc(title)
        );
        let _ = writeln!(
            s,
            "<text x=\"{left:.1}\" y=\"44\" font-size=\"11\" fill=\"#444\">{}</text>",
            esc(sub)
        );
    }

    /// Panel `p`: its name (for three-axis results), rows of cells, column
    /// labels and axis titles.
    fn panel(&self, s: &mut String, p: usize) {
        let l = &self.layout;
        let r = &self.stored.result;
        let y0 = l.top + p as f32 * l.panel_h + l.panel_title;
        if self.grid.n_panels > 1 {
            let name = axis_label(self.stored, &r.axes[0], p);
            let name = if r.axes[0] == "component" {
                name
            } else {
                format!("{} {name}", r.axes[0])
            };
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" font-weight=\"bold\">{}</text>",
                l.left,
                y0 - 6.0,
                esc(&name)
            );
        }
        for i in 0..self.grid.nr {
            self.row(s, p, i, y0);
        }
        self.column_labels(s, y0);
        self.axis_titles(s, y0);
    }

    /// Row `i` of panel `p`: its label and its cells (colour, hover title,
    /// and the value when the cells are large enough to hold it).
    fn row(&self, s: &mut String, p: usize, i: usize, y0: f32) {
        let l = &self.layout;
        let (g, r) = (&self.grid, &self.stored.result);
        let (cw, ch) = (l.cw, l.ch);
        let rl = &self.row_labels[i];
        let show_values = cw >= 30.0 && ch >= 18.0 && g.nr * g.nc <= 900;
        let y = y0 + ch * i as f32;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" dominant-baseline=\"central\" xml:space=\"preserve\">{}</text>",
            l.left - 6.0,
            y + ch / 2.0,
            esc(rl)
        );
        for (j, cl) in self.col_labels.iter().enumerate() {
            let x = l.left + cw * j as f32;
            let v = self.values[(p * g.nr + i) * g.nc + j];
            let fill = if v.is_finite() {
                let (rr, gg, bb) = diverging(v / self.scale);
                format!("#{rr:02x}{gg:02x}{bb:02x}")
            } else {
                "#d9d9d9".into()
            };
            let tip = format!(
                "{} {rl}, {} {cl}: {}",
                r.axes[g.rows_axis],
                r.axes[g.cols_axis],
                fmt_val(v)
            );
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cw:.1}\" height=\"{ch:.1}\" fill=\"{fill}\" stroke=\"white\" stroke-width=\"0.5\"><title>{}</title></rect>",
                esc(&tip)
            );
            if show_values && v.is_finite() {
                let ink = if (v / self.scale).abs() > 0.6 {
                    "white"
                } else {
                    "#222"
                };
                let _ = writeln!(
                    s,
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" dominant-baseline=\"central\" font-size=\"8\" fill=\"{ink}\">{}</text>",
                    x + cw / 2.0,
                    y + ch / 2.0,
                    compact(v)
                );
            }
        }
    }

    /// Column labels under the grid, rotated when they are long.
    fn column_labels(&self, s: &mut String, y0: f32) {
        let l = &self.layout;
        let yb = y0 + l.grid_h + 4.0;
        for (j, cl) in self.col_labels.iter().enumerate() {
            let x = l.left + l.cw * (j as f32 + 0.5);
            if l.rotate {
                let _ = writeln!(
                    s,
                    "<text transform=\"translate({x:.1},{:.1}) rotate(-45)\" text-anchor=\"end\" xml:space=\"preserve\">{}</text>",
                    yb + 6.0,
                    esc(cl)
                );
            } else {
                let _ = writeln!(
                    s,
                    "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                    yb + 10.0,
                    esc(cl)
                );
            }
        }
    }

    /// The column axis title below the labels, the row axis title on the left.
    fn axis_titles(&self, s: &mut String, y0: f32) {
        let l = &self.layout;
        let (g, r) = (&self.grid, &self.stored.result);
        let yb = y0 + l.grid_h + 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\">{}</text>",
            l.left + l.grid_w / 2.0,
            yb + l.col_band + 12.0,
            esc(&axis_title(&r.axes[g.cols_axis]))
        );
        let _ = writeln!(
            s,
            "<text transform=\"translate(16,{:.1}) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\">{}</text>",
            y0 + l.grid_h / 2.0,
            esc(&axis_title(&r.axes[g.rows_axis]))
        );
    }
}

/// A vertical gradient from -scale (bottom) through 0 to +scale (top).
fn colour_bar(s: &mut String, x: f32, y: f32, h: f32, scale: f32, metric: &str) {
    let _ = writeln!(
        s,
        "<defs><linearGradient id=\"pb-bar\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">"
    );
    for k in 0..=10 {
        let t = k as f32 / 10.0;
        let (r, g, b) = diverging(t * 2.0 - 1.0);
        let _ = writeln!(
            s,
            "<stop offset=\"{t:.1}\" stop-color=\"#{r:02x}{g:02x}{b:02x}\"/>"
        );
    }
    let _ = writeln!(s, "</linearGradient></defs>");
    let _ = writeln!(s, "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"16\" height=\"{h:.1}\" fill=\"url(#pb-bar)\" stroke=\"#888\" stroke-width=\"0.5\"/>");
    let lx = x + 22.0;
    for (frac, v) in [(0.0, scale), (0.5, 0.0), (1.0, -scale)] {
        let _ = writeln!(
            s,
            "<text x=\"{lx:.1}\" y=\"{:.1}\" dominant-baseline=\"central\">{}</text>",
            y + h * frac,
            fmt_val(v)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\">{}</text>",
        y + h + 18.0,
        esc(metric)
    );
}

fn axis_label(stored: &StoredResult, axis: &str, i: usize) -> String {
    match axis {
        // Pairs aligned by label: the axis runs over the labels.
        "pos" | "dest_pos" if !stored.result.position_labels.is_empty() => stored
            .result
            .position_labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| i.to_string()),
        "pos" | "dest_pos" => match stored.clean_tokens.strings.get(i) {
            Some(t) => t.clone(),
            None => i.to_string(),
        },
        "component" => stored
            .result
            .components
            .get(i)
            .cloned()
            .unwrap_or_else(|| i.to_string()),
        _ => i.to_string(),
    }
}

fn axis_title(axis: &str) -> String {
    match axis {
        "pos" => "position (clean token)".into(),
        "dest_pos" => "destination position".into(),
        "kv_head" => "key/value head".into(),
        other => other.to_string(),
    }
}

fn quote(s: &str) -> String {
    format!("\u{201c}{s}\u{201d}")
}

fn fmt_val(v: f32) -> String {
    if v.is_finite() {
        // `+ 0.0` turns -0.0 into 0.0.
        format!("{:.3}", v + 0.0)
    } else {
        "n/a".into()
    }
}

/// A cell value in at most five characters.
fn compact(v: f32) -> String {
    if v.abs() < 0.005 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// XML text escaping; control characters (invalid in XML 1.0) become `?`.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if (c as u32) < 0x20 && c != '\t' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}
