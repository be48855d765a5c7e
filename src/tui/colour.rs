//! Colours for the terminal: names, `#rrggbb` and xterm-256 indexes read
//! from theme files, and their conversion to what the terminal can show
//! (true colour, the nearest of the 256-colour palette, or none).

use std::collections::BTreeMap;

use ratatui::style::Color;

/// What the terminal can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorMode {
    TrueColor,
    Ansi256,
    NoColor,
}

impl ColorMode {
    /// From the environment: `NO_COLOR` (any value) wins, then `COLORTERM`.
    pub fn detect() -> Self {
        if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            ColorMode::NoColor
        } else if std::env::var("COLORTERM").is_ok_and(|v| v == "truecolor" || v == "24bit") {
            ColorMode::TrueColor
        } else {
            ColorMode::Ansi256
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "truecolor" | "24bit" => Ok(ColorMode::TrueColor),
            "256" => Ok(ColorMode::Ansi256),
            "none" | "no" | "mono" => Ok(ColorMode::NoColor),
            _ => Err(format!(
                "unknown colour mode {s:?}; use truecolor, 256 or none"
            )),
        }
    }
}

pub(crate) fn ansi(name: &str) -> Option<(u8, u8, u8)> {
    Some(match name {
        "black" => (0, 0, 0),
        "red" => (205, 49, 49),
        "green" => (13, 188, 121),
        "yellow" => (229, 229, 16),
        "blue" => (36, 114, 200),
        "magenta" => (188, 63, 188),
        "cyan" => (17, 168, 205),
        "gray" | "grey" => (128, 128, 128),
        "white" => (229, 229, 229),
        "lightred" => (241, 76, 76),
        "lightgreen" => (35, 209, 139),
        "lightyellow" => (245, 245, 67),
        "lightblue" => (59, 142, 234),
        "lightmagenta" => (214, 112, 214),
        "lightcyan" => (41, 184, 219),
        _ => return None,
    })
}

pub(crate) fn rgb(
    value: &str,
    palette: &BTreeMap<String, String>,
    depth: usize,
) -> Result<(u8, u8, u8), String> {
    if let Some(hex) = value.strip_prefix('#') {
        if hex.len() == 6 {
            if let Ok(v) = u32::from_str_radix(hex, 16) {
                return Ok(((v >> 16) as u8, (v >> 8) as u8, v as u8));
            }
        }
        return Err(format!("bad colour {value:?}: write #rrggbb"));
    }
    if let Ok(i) = value.parse::<u8>() {
        return Ok(indexed_rgb(i));
    }
    if let Some(c) = ansi(value) {
        return Ok(c);
    }
    match palette.get(value) {
        Some(v) if depth < 8 => rgb(v, palette, depth + 1),
        _ => Err(format!(
            "unknown colour {value:?}: use #rrggbb, an ANSI name, a 0-255 index or a palette name"
        )),
    }
}

/// The RGB value of an xterm-256 index.
fn indexed_rgb(i: u8) -> (u8, u8, u8) {
    const BASE: [(u8, u8, u8); 16] = [
        (0, 0, 0),
        (128, 0, 0),
        (0, 128, 0),
        (128, 128, 0),
        (0, 0, 128),
        (128, 0, 128),
        (0, 128, 128),
        (192, 192, 192),
        (128, 128, 128),
        (255, 0, 0),
        (0, 255, 0),
        (255, 255, 0),
        (0, 0, 255),
        (255, 0, 255),
        (0, 255, 255),
        (255, 255, 255),
    ];
    match i {
        0..=15 => BASE[i as usize],
        16..=231 => {
            let i = i - 16;
            let lvl = |v: u8| if v == 0 { 0 } else { 55 + 40 * v };
            (lvl(i / 36), lvl(i / 6 % 6), lvl(i % 6))
        }
        _ => {
            let g = 8 + 10 * (i - 232);
            (g, g, g)
        }
    }
}

/// The nearest xterm-256 colour (cube or grey ramp) to an RGB value.
pub fn nearest_256(c: (u8, u8, u8)) -> u8 {
    let dist = |a: (u8, u8, u8)| {
        let d = |x: u8, y: u8| (x as i32 - y as i32).pow(2);
        d(a.0, c.0) + d(a.1, c.1) + d(a.2, c.2)
    };
    (16..=255u8)
        .min_by_key(|&i| dist(indexed_rgb(i)))
        .unwrap_or(16)
}

pub(crate) fn convert(c: (u8, u8, u8), mode: ColorMode) -> Option<Color> {
    match mode {
        ColorMode::TrueColor => Some(Color::Rgb(c.0, c.1, c.2)),
        ColorMode::Ansi256 => Some(Color::Indexed(nearest_256(c))),
        ColorMode::NoColor => None,
    }
}
