//! Themes: named styles and the heatmap palette, read from YAML.
//!
//! The dark theme is embedded and is the base of every other theme; a
//! theme file names only what it changes (`inherits`, then `palette`,
//! `styles`, `heatmap` entries merged over its parent's, helix-style).
//! Style keys are dotted and fall back to their parent: `title.focused`
//! falls back to `title`. A theme that does not parse, names an unknown key
//! or an unknown colour is reported and the default is used instead.
//!
//! Colours are resolved for the terminal: true colour, the xterm 256-colour
//! cube, or none at all (`NO_COLOR`), where styles keep only bold/underline/
//! reverse and the heatmap switches to shade glyphs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

use super::colour::{convert, rgb};
pub use super::colour::{nearest_256, ColorMode};

use crate::util::fs::{limits, read_text_capped, ReadError};

/// Built-in themes, by name.
pub const BUILTIN: &[(&str, &str)] = &[
    ("dark", include_str!("../../themes/dark.yaml")),
    ("light", include_str!("../../themes/light.yaml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.yaml"),
    ),
    ("colorblind", include_str!("../../themes/colorblind.yaml")),
];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    fg: Option<String>,
    bg: Option<String>,
    bold: Option<bool>,
    italic: Option<bool>,
    underline: Option<bool>,
    reversed: Option<bool>,
    dim: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    inherits: Option<String>,
    #[serde(default)]
    palette: BTreeMap<String, String>,
    #[serde(default)]
    styles: BTreeMap<String, StyleSpec>,
    #[serde(default)]
    heatmap: BTreeMap<String, String>,
}

/// A resolved theme.
#[derive(Debug, Clone)]
pub struct Theme {
    pub name: String,
    pub mode: ColorMode,
    styles: BTreeMap<String, Style>,
    heat: [(u8, u8, u8); 4],
}

const HEAT_KEYS: [&str; 4] = ["negative", "neutral", "positive", "pending"];

fn parse_file(text: &str) -> Result<ThemeFile, String> {
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

impl Theme {
    /// The default theme.
    pub fn default_theme(mode: ColorMode) -> Theme {
        Theme::from_text("dark", BUILTIN[0].1, None, mode)
            .expect("the embedded dark theme is valid")
    }

    /// Resolves a theme from its YAML text; `user_dir` is searched for
    /// inherited themes before the built-in ones.
    pub fn from_text(
        name: &str,
        text: &str,
        user_dir: Option<&Path>,
        mode: ColorMode,
    ) -> Result<Theme, String> {
        let mut chain = vec![parse_file(text)?];
        while let Some(parent) = chain.last().and_then(|f| f.inherits.clone()) {
            if chain.len() > 8 {
                return Err(format!(
                    "`inherits` goes deeper than 8 themes (at {parent:?}); is there a cycle?"
                ));
            }
            let (ptext, _) = find(&parent, user_dir)?
                .ok_or_else(|| format!("inherits unknown theme {parent:?}"))?;
            chain.push(parse_file(&ptext).map_err(|e| format!("theme {parent:?}: {e}"))?);
        }
        // The dark base defines every key; each theme in the chain overrides it.
        let base = parse_file(BUILTIN[0].1)?;
        let mut merged = base.clone();
        for f in chain.into_iter().rev() {
            merged.palette.extend(f.palette);
            merged.styles.extend(f.styles);
            merged.heatmap.extend(f.heatmap);
        }
        for k in merged.styles.keys() {
            if !base.styles.contains_key(k) {
                let known: Vec<&str> = base.styles.keys().map(String::as_str).collect();
                return Err(format!(
                    "unknown style {k:?}; known styles: {}",
                    known.join(", ")
                ));
            }
        }
        let mut heat = [(0, 0, 0); 4];
        for (i, k) in HEAT_KEYS.iter().enumerate() {
            let v = merged
                .heatmap
                .get(*k)
                .ok_or_else(|| format!("heatmap.{k} is missing"))?;
            heat[i] = rgb(v, &merged.palette, 0).map_err(|e| format!("heatmap.{k}: {e}"))?;
        }
        if let Some(k) = merged
            .heatmap
            .keys()
            .find(|k| !HEAT_KEYS.contains(&k.as_str()))
        {
            return Err(format!(
                "unknown heatmap key {k:?}; known: {}",
                HEAT_KEYS.join(", ")
            ));
        }
        let mut styles = BTreeMap::new();
        for (k, spec) in &merged.styles {
            let colour = |c: &Option<String>| -> Result<Option<Option<Color>>, String> {
                c.as_ref()
                    .map(|v| rgb(v, &merged.palette, 0).map(|c| convert(c, mode)))
                    .transpose()
                    .map_err(|e| format!("styles.{k}: {e}"))
            };
            let mut st = Style::default();
            if let Some(c) = colour(&spec.fg)?.flatten() {
                st = st.fg(c);
            }
            if let Some(c) = colour(&spec.bg)?.flatten() {
                st = st.bg(c);
            }
            for (on, m) in [
                (spec.bold, Modifier::BOLD),
                (spec.italic, Modifier::ITALIC),
                (spec.underline, Modifier::UNDERLINED),
                (spec.reversed, Modifier::REVERSED),
                (spec.dim, Modifier::DIM),
            ] {
                if on == Some(true) {
                    st = st.add_modifier(m);
                }
            }
            // Without colour, a coloured background is the only mark some
            // styles have (cursor, selection, mode badges): reverse instead.
            if mode == ColorMode::NoColor
                && spec.bg.is_some()
                && !k.starts_with("status")
                && k != "popup"
            {
                st = st.add_modifier(Modifier::REVERSED);
            }
            styles.insert(k.clone(), st);
        }
        Ok(Theme {
            name: name.to_string(),
            mode,
            styles,
            heat,
        })
    }

    /// Loads the theme `name_or_path` (a built-in name, a name in the user
    /// themes directory, or a path to a YAML file). On any problem: the
    /// default theme and a warning naming the file and the problem.
    pub fn load(
        name_or_path: &str,
        user_dir: Option<&Path>,
        mode: ColorMode,
    ) -> (Theme, Option<String>) {
        let found = match find(name_or_path, user_dir) {
            Ok(found) => found,
            Err(e) => return (Theme::default_theme(mode), Some(format!("{e}; using dark"))),
        };
        let Some((text, origin)) = found else {
            let names: Vec<&str> = BUILTIN.iter().map(|b| b.0).collect();
            return (
                Theme::default_theme(mode),
                Some(format!(
                    "theme {name_or_path:?} not found (built in: {}; user themes go in {}); using dark",
                    names.join(", "),
                    user_dir.map_or("the config directory".into(), |d| d.display().to_string())
                )),
            );
        };
        match Theme::from_text(name_or_path, &text, user_dir, mode) {
            Ok(t) => (t, None),
            Err(e) => (
                Theme::default_theme(mode),
                Some(format!("theme {origin}: {e}; using the default theme")),
            ),
        }
    }

    /// The style for a dotted key, falling back to its parents, then `text`.
    pub fn style(&self, key: &str) -> Style {
        let mut k = key;
        loop {
            if let Some(s) = self.styles.get(k) {
                return *s;
            }
            match k.rfind('.') {
                Some(i) => k = &k[..i],
                None => return self.styles.get("text").copied().unwrap_or_default(),
            }
        }
    }

    pub fn has_color(&self) -> bool {
        self.mode != ColorMode::NoColor
    }

    /// The heatmap colour for `t` in `[-1, 1]` (0 = no effect); `None` without colour.
    pub fn heat(&self, t: f32) -> Option<Color> {
        let t = if t.is_finite() {
            t.clamp(-1.0, 1.0)
        } else {
            0.0
        };
        let [neg, mid, pos, _] = self.heat;
        let end = if t < 0.0 { neg } else { pos };
        let a = t.abs();
        let mix = |x: u8, y: u8| (x as f32 + (y as f32 - x as f32) * a).round() as u8;
        convert(
            (mix(mid.0, end.0), mix(mid.1, end.1), mix(mid.2, end.2)),
            self.mode,
        )
    }

    /// The colour of cells not computed yet.
    pub fn pending(&self) -> Option<Color> {
        convert(self.heat[3], self.mode)
    }

    /// Black or white, whichever reads on the heat colour for `t`.
    pub fn heat_text(&self, t: f32) -> Color {
        let [neg, mid, pos, _] = self.heat;
        let end = if t < 0.0 { neg } else { pos };
        let a = t.abs().min(1.0);
        let lum = |x: u8, y: u8| x as f32 + (y as f32 - x as f32) * a;
        let l = 0.299 * lum(mid.0, end.0) + 0.587 * lum(mid.1, end.1) + 0.114 * lum(mid.2, end.2);
        if l > 140.0 {
            Color::Black
        } else {
            Color::White
        }
    }
}

/// A theme's text and where it came from: a path, a user theme, a built-in;
/// `Ok(None)` when there is no such theme. Files are read as user files
/// (`util::fs`): a FIFO, a device or a huge file is an error at once, not
/// a hang, and a BOM is accepted.
fn find(name: &str, user_dir: Option<&Path>) -> Result<Option<(String, String)>, String> {
    let read = |p: &Path| read_text_capped(p, limits::CONFIG, "theme file");
    let looks_like_path = name.contains('/') || name.ends_with(".yaml");
    if looks_like_path {
        let p = PathBuf::from(name);
        return match read(&p) {
            Ok(t) => Ok(Some((t, p.display().to_string()))),
            Err(ReadError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        };
    }
    if let Some(dir) = user_dir {
        let p = dir.join(format!("{name}.yaml"));
        match read(&p) {
            Ok(t) => return Ok(Some((t, p.display().to_string()))),
            Err(ReadError::NotFound { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(n, t)| (t.to_string(), format!("built-in theme {n}"))))
}
