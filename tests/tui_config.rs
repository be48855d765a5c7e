//! Themes and keymaps: every file in `themes/` loads, a theme names only
//! what it changes, broken files warn and fall back; user keymaps override
//! only what they name.

use patchbench::app::Intent;
use patchbench::tui::keymap::{Context, Key, Keymap};
use patchbench::tui::theme::{nearest_256, ColorMode, Theme, BUILTIN};
use ratatui::style::{Color, Modifier};

#[test]
fn every_theme_file_loads_without_warnings() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("themes");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let (t, warn) = Theme::load(p.to_str().unwrap(), None, ColorMode::TrueColor);
        assert!(warn.is_none(), "{}: {warn:?}", p.display());
        assert!(t.heat(1.0).is_some());
        n += 1;
    }
    assert!(n >= 4);
    for (name, _) in BUILTIN {
        let (_, warn) = Theme::load(name, None, ColorMode::Ansi256);
        assert!(warn.is_none(), "{name}: {warn:?}");
    }
}

#[test]
fn a_theme_names_only_what_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mine.yaml"),
        "heatmap:\n  positive: \"#00ff00\"\n",
    )
    .unwrap();
    let (t, warn) = Theme::load("mine", Some(dir.path()), ColorMode::TrueColor);
    assert!(warn.is_none(), "{warn:?}");
    assert_eq!(t.heat(1.0), Some(Color::Rgb(0, 255, 0)));
    let dark = Theme::default_theme(ColorMode::TrueColor);
    assert_eq!(t.heat(-1.0), dark.heat(-1.0), "the rest is inherited");
    assert_eq!(t.style("border.focused"), dark.style("border.focused"));
}

#[test]
fn broken_themes_warn_and_fall_back_to_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("syntax", "styles: [unclosed", "syntax"),
        (
            "style",
            "styles:\n  bordr: { fg: red }\n",
            "unknown style \"bordr\"",
        ),
        (
            "colour",
            "palette:\n  x: \"#12\"\nheatmap:\n  positive: x\n",
            "bad colour",
        ),
        ("parent", "inherits: nosuch\n", "nosuch"),
    ];
    for (name, text, want) in cases {
        let p = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&p, text).unwrap();
        let (t, warn) = Theme::load(p.to_str().unwrap(), None, ColorMode::TrueColor);
        let warn = warn.unwrap_or_else(|| panic!("{name}: no warning"));
        assert!(warn.contains(want) || want == "syntax", "{name}: {warn}");
        assert!(warn.contains(&p.display().to_string()), "{warn}");
        assert_eq!(
            t.heat(1.0),
            Theme::default_theme(ColorMode::TrueColor).heat(1.0)
        );
    }
    let (_, warn) = Theme::load("no-such-theme", None, ColorMode::TrueColor);
    assert!(warn.unwrap().contains("not found"));
}

#[test]
fn styles_fall_back_to_their_parent_and_no_color_keeps_only_attributes() {
    let t = Theme::default_theme(ColorMode::TrueColor);
    assert_eq!(t.style("title.focused.extra"), t.style("title.focused"));
    let mono = Theme::default_theme(ColorMode::NoColor);
    let s = mono.style("cursor");
    assert_eq!(s.fg, None);
    assert!(s.add_modifier.contains(Modifier::REVERSED));
    assert_eq!(mono.heat(0.5), None);
    assert_eq!(nearest_256((255, 0, 0)), 196);
}

#[test]
fn the_colorblind_theme_avoids_red_green_in_the_heatmap() {
    let (t, _) = Theme::load("colorblind", None, ColorMode::TrueColor);
    let Some(Color::Rgb(r, g, b)) = t.heat(-1.0) else {
        panic!()
    };
    assert!(b > r && b > g, "negative end is blue");
    let Some(Color::Rgb(r, g, b)) = t.heat(1.0) else {
        panic!()
    };
    assert!(r > b && g > b, "positive end is orange");
}

#[test]
fn the_fixed_default_keys() {
    let k = Keymap::defaults();
    let nav = [Context::Heatmap, Context::Global];
    let key = |s: &str| Key::parse(s).unwrap();
    assert_eq!(k.lookup(&nav, &key("r")), Some(Intent::RunSweep));
    assert_eq!(k.lookup(&nav, &key("ctrl-s")), Some(Intent::Save));
    assert_eq!(k.lookup(&nav, &key("o")), Some(Intent::Open));
    assert_eq!(k.lookup(&nav, &key("tab")), Some(Intent::FocusNext));
    assert_eq!(k.lookup(&nav, &key("shift-tab")), Some(Intent::FocusPrev));
    assert_eq!(k.lookup(&nav, &key("enter")), Some(Intent::DrillDown));
    assert_eq!(k.lookup(&nav, &key("esc")), Some(Intent::Back));
    assert_eq!(k.lookup(&nav, &key("?")), Some(Intent::Help));
    assert_eq!(k.lookup(&nav, &key("q")), Some(Intent::Quit));
    assert_eq!(
        k.lookup(&[Context::Prompts, Context::Global], &key("i")),
        Some(Intent::Edit)
    );
    assert_eq!(
        k.lookup(&[Context::Prompts, Context::Global], &key("enter")),
        Some(Intent::Edit)
    );
    // While editing, letters are text.
    assert_eq!(k.lookup(&[Context::Edit], &key("q")), None);
    assert_eq!(k.lookup(&[Context::Edit], &key("esc")), Some(Intent::Back));
}

#[test]
fn a_user_keymap_overrides_only_what_it_names() {
    let k = Keymap::with_user_text(
        "heatmap:\n  x: drill_down\n  enter: none\nglobal:\n  R: run_sweep\n",
    )
    .unwrap();
    let key = |s: &str| Key::parse(s).unwrap();
    let nav = [Context::Heatmap, Context::Global];
    assert_eq!(k.lookup(&nav, &key("x")), Some(Intent::DrillDown));
    assert_eq!(k.lookup(&nav, &key("enter")), None);
    assert_eq!(k.lookup(&nav, &key("R")), Some(Intent::RunSweep));
    assert_eq!(
        k.lookup(&nav, &key("r")),
        Some(Intent::RunSweep),
        "untouched keys stay"
    );
    assert!(k
        .keys_for(Context::Heatmap, Intent::DrillDown)
        .contains(&"x".to_string()));
}

#[test]
fn bad_user_keymaps_are_reported_and_ignored() {
    assert!(Keymap::with_user_text("heatmap:\n  x: fly\n")
        .unwrap_err()
        .contains("unknown action \"fly\""));
    assert!(Keymap::with_user_text("nowhere:\n  x: quit\n")
        .unwrap_err()
        .contains("unknown context"));
    assert!(Keymap::with_user_text("global:\n  ctrl-: quit\n").is_err());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keymap.yaml"), "global: [").unwrap();
    let (k, warn) = Keymap::load(Some(dir.path()));
    assert!(warn.unwrap().contains("keymap.yaml"));
    assert_eq!(
        k.lookup(&[Context::Global], &Key::parse("q").unwrap()),
        Some(Intent::Quit)
    );
}

#[test]
fn every_intent_has_a_default_key_somewhere() {
    let k = Keymap::defaults();
    let help = k.help();
    for i in Intent::ALL {
        assert!(
            help.iter()
                .any(|(_, rows)| rows.iter().any(|(_, j)| j == i)),
            "{} has no default key",
            i.name()
        );
    }
}
