//! Pane render tests: the whole screen rendered into a `Buffer` from a
//! state built by `update`, asserted line by line.

mod app_support;

use std::time::Duration;

use app_support::*;
use patchbench::analysis::{HeadDrill, Scored};
use patchbench::app::messages::{DrillData, PairTokens, Tokenized, WorkerMsg};
use patchbench::app::{AppState, Intent};
use patchbench::patching::Target;
use patchbench::tui::keymap::Keymap;
use patchbench::tui::render::render;
use patchbench::tui::theme::{ColorMode, Theme};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};

fn draw(s: &AppState, mode: ColorMode, w: u16, h: u16) -> Buffer {
    let area = Rect::new(0, 0, w, h);
    let mut buf = Buffer::empty(area);
    render(
        s,
        &Theme::default_theme(mode),
        &Keymap::defaults(),
        area,
        &mut buf,
    );
    buf
}

fn lines(buf: &Buffer) -> Vec<String> {
    let a = buf.area;
    (0..a.height)
        .map(|y| {
            (0..a.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .collect()
}

fn screen(buf: &Buffer) -> String {
    lines(buf).join("\n")
}

fn find(buf: &Buffer, needle: &str) -> (u16, u16) {
    for (y, l) in lines(buf).iter().enumerate() {
        if let Some(i) = l.find(needle) {
            return (l[..i].chars().count() as u16, y as u16);
        }
    }
    panic!("{needle:?} not on screen:\n{}", screen(buf));
}

fn with_sweep() -> AppState {
    let mut s = ready();
    run_to_done(&mut s, &["layer", "pos"], &[2, 6]);
    s
}

#[test]
fn the_workbench_at_80x24_shows_every_pane_and_the_mode() {
    let s = with_sweep();
    let buf = draw(&s, ColorMode::TrueColor, 80, 24);
    let text = screen(&buf);
    for want in [
        "Prompts · pair 1/1",
        "Sweep",
        "Heatmap · resid_pre denoise prompt",
        "layer↓",
        "pos→",
        "NAV",
        "no effect =",
        "ld ",
        "norm ",
        "rank ",
        "r run",
        "? help",
        "q quit",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    // Token labels on the column axis, layer numbers on the rows.
    assert!(text.contains("When"), "{text}");
    let l = lines(&buf);
    let row0 = l
        .iter()
        .find(|l| l.starts_with("│     0 "))
        .expect("layer 0 row");
    let row1 = l
        .iter()
        .find(|l| l.starts_with("│     1 "))
        .expect("layer 1 row");
    assert_eq!(row0.chars().count(), row1.chars().count());
}

#[test]
fn token_rows_are_aligned_and_differences_marked() {
    let mut s = ready();
    let mut t = tokens();
    t.pairs[0].corrupted.as_mut().unwrap()[3] = " Christopher".into();
    let job = s.jobs.tokenize.unwrap();
    worker(&mut s, WorkerMsg::Tokenized { job, result: t });
    let buf = draw(&s, ColorMode::TrueColor, 100, 30);
    let (xc, yc) = find(&buf, "clean When");
    let (xk, yk) = find(&buf, "corr. When");
    assert_eq!(xc, xk);
    assert_eq!(yk, yc + 1);
    let l = lines(&buf);
    // Separator columns inside the prompts pane (up to its right border).
    let seps = |row: &str| {
        let pane: String = row.split("││").next().unwrap().to_string();
        pane.chars()
            .enumerate()
            .filter(|(_, c)| *c == '│')
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seps(&l[yc as usize]),
        seps(&l[yk as usize]),
        "columns align:\n{}\n{}",
        l[yc as usize],
        l[yk as usize]
    );
    let (x, y) = find(&buf, " Christopher");
    assert!(
        buf[(x + 1, y)].modifier.contains(Modifier::UNDERLINED),
        "the differing token is marked"
    );
    let (x, y) = find(&buf, "corr. When");
    assert!(
        !buf[(x + 6, y)].modifier.contains(Modifier::UNDERLINED),
        "equal tokens are not"
    );
}

#[test]
fn length_mismatch_and_multi_token_answers_are_warned_inline() {
    let mut s = ready();
    let t = Tokenized {
        pairs: vec![PairTokens {
            clean: vec!["a".into(), "b".into()],
            corrupted: Some(vec!["a".into()]),
            answer: Some(Err("\" Maryx\" is 2 tokens [\" Mary\", \"x\"]".into())),
            wrong: Some(Ok(" John".into())),
            problems: vec!["clean has 2 tokens, corrupted 1: patching by position needs equal lengths; reword one prompt".into()],
        }],
        problems: vec![],
    };
    let job = s.jobs.tokenize.unwrap();
    worker(&mut s, WorkerMsg::Tokenized { job, result: t });
    let text = screen(&draw(&s, ColorMode::TrueColor, 120, 30));
    assert!(
        text.contains("⚠ pair 1: clean has 2 tokens, corrupted 1"),
        "{text}"
    );
    assert!(
        text.contains("⚠ pair 1: answer: \" Maryx\" is 2 tokens"),
        "{text}"
    );
    assert!(text.contains("answer ✗ not one token"), "{text}");
}

#[test]
fn too_small_a_terminal_says_so() {
    let s = with_sweep();
    let text = screen(&draw(&s, ColorMode::TrueColor, 50, 15));
    assert!(text.contains("too small"), "{text}");
    assert!(text.contains("50×15"), "{text}");
}

#[test]
fn without_colour_the_heatmap_uses_signs_and_shade_glyphs() {
    let s = with_sweep();
    let buf = draw(&s, ColorMode::NoColor, 80, 24);
    let l = lines(&buf);
    let row = l.iter().find(|l| l.starts_with("│     1 ")).unwrap();
    assert!(
        row.contains('+') && row.chars().any(|c| "░▒▓█".contains(c)),
        "{row}"
    );
    // The first cell is the corrupted baseline itself: no effect.
    let row0 = l.iter().find(|l| l.starts_with("│     0 ")).unwrap();
    assert!(row0.contains('·'), "{row0}");
    for cell in buf.content() {
        assert!(
            matches!(cell.fg, Color::Reset) && matches!(cell.bg, Color::Reset),
            "colour with NO_COLOR: {cell:?}"
        );
    }
}

/// Colours show a cell's effect on the task: for KL (lower is better) a
/// cell whose KL rose above the baseline is marked as a loss, as a fall in
/// logit difference is, and the legend says which way is better.
#[test]
fn a_lower_is_better_metric_is_coloured_by_its_effect() {
    let mut s = ready();
    key(&mut s, Intent::RunSweep);
    let job = s.running.as_ref().expect("running").job;
    let (axes, shape) = (["layer", "pos"], [2, 6]);
    let start = Box::new(start(&axes, &shape));
    worker(&mut s, WorkerMsg::SweepStarted { job, start });
    let mut result = result(&axes, &shape);
    let kl = result.metrics.get_mut("kl").unwrap();
    // The baseline is 0.1; every later cell is worse.
    for (i, x) in kl.iter_mut().enumerate() {
        *x = 0.1 + 0.2 * i as f32;
    }
    let done = WorkerMsg::SweepDone {
        job,
        result: Box::new(result),
        computed_at: "2025-01-01T00:00:00Z".into(),
    };
    worker(&mut s, done);
    s.heatmap.metric = patchbench::patching::metrics::id("kl").0;
    let buf = draw(&s, ColorMode::NoColor, 80, 24);
    let l = lines(&buf);
    let row = l.iter().find(|l| l.starts_with("│     1 ")).unwrap();
    // Each cell's sign glyph (before its shade) says "worse", whatever
    // the sign of the printed value.
    let signed = |sign: char| {
        let c: Vec<char> = row.chars().collect();
        c.windows(2).any(|w| w[0] == sign && "░▒▓█".contains(w[1]))
    };
    assert!(signed('-') && !signed('+'), "{row}");
    let text = screen(&buf);
    assert!(text.contains("(kl, lower is better)"), "{text}");
    // The better end of the scale (the baseline minus the range) is on the right.
    let legend = l.iter().find(|l| l.contains("no effect =")).unwrap();
    assert!(
        legend
            .trim_start_matches('│')
            .trim_start()
            .starts_with("2.3"),
        "{legend}"
    );

    s.heatmap.metric = patchbench::patching::metrics::id("logit_diff").0;
    let text = screen(&draw(&s, ColorMode::NoColor, 80, 24));
    assert!(text.contains("(logit_diff)"), "{text}");
}

#[test]
fn colour_modes_give_truecolor_or_256_colour_cells() {
    let s = with_sweep();
    let (x, y) = find(&draw(&s, ColorMode::TrueColor, 80, 24), "│     1 ");
    let buf = draw(&s, ColorMode::TrueColor, 80, 24);
    assert!(matches!(buf[(x + 8, y)].bg, Color::Rgb(..)));
    let buf = draw(&s, ColorMode::Ansi256, 80, 24);
    assert!(matches!(buf[(x + 8, y)].bg, Color::Indexed(_)));
}

#[test]
fn edit_mode_is_shown_in_the_status_bar() {
    let mut s = ready();
    key(&mut s, Intent::Edit);
    let text = screen(&draw(&s, ColorMode::TrueColor, 80, 24));
    assert!(text.contains(" EDIT "), "{text}");
    assert!(text.contains("esc done"), "{text}");
}

#[test]
fn a_running_sweep_shows_progress_elapsed_and_eta() {
    let mut s = ready();
    key(&mut s, Intent::RunSweep);
    let job = s.running.as_ref().unwrap().job;
    worker(
        &mut s,
        WorkerMsg::SweepStarted {
            job,
            start: Box::new(start(&["layer", "pos"], &[2, 6])),
        },
    );
    worker(
        &mut s,
        WorkerMsg::SweepProgress {
            job,
            done: 6,
            total: 12,
            elapsed: Duration::from_millis(1500),
            eta: Some(Duration::from_millis(1500)),
            finished: vec![(0, metrics(1.0))],
            baselines: baselines(),
        },
    );
    let text = screen(&draw(&s, ColorMode::TrueColor, 100, 30));
    assert!(text.contains("50% 6/12"), "{text}");
    assert!(text.contains("1.5s elapsed"), "{text}");
    assert!(text.contains("ETA 1.5s"), "{text}");
    assert!(text.contains("Esc cancels"), "{text}");
}

#[test]
fn help_is_generated_from_the_keymap_descriptions() {
    let mut s = ready();
    key(&mut s, Intent::Help);
    let text = screen(&draw(&s, ColorMode::TrueColor, 120, 50));
    assert!(text.contains("run_sweep"), "{text}");
    assert!(text.contains(Intent::RunSweep.description()), "{text}");
    assert!(text.contains("ctrl-s"), "{text}");
}

#[test]
fn stale_results_are_marked() {
    let mut s = with_sweep();
    let mut other = info();
    other.fingerprint = "beef".into();
    worker(&mut s, WorkerMsg::ModelLoaded(Box::new(other)));
    let text = screen(&draw(&s, ColorMode::TrueColor, 100, 30));
    assert!(text.contains("STALE"), "{text}");
    assert!(text.contains("different model"), "{text}");
}

#[test]
fn the_head_drill_down_shows_patterns_top_tokens_and_attribution() {
    let mut s = ready();
    s.settings.spec.target = Target::HeadOut;
    run_to_done(&mut s, &["layer", "head"], &[2, 4]);
    // From the strongest effect (L1H3) up to L0H3.
    key(&mut s, Intent::Up);
    key(&mut s, Intent::DrillDown);
    let job = s.drill.as_ref().unwrap().job;
    let n = 3;
    let toks: Vec<String> = ["When", " Mary", " to"]
        .iter()
        .map(|t| t.to_string())
        .collect();
    let pat = vec![1.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.1, 0.7, 0.2];
    let d = HeadDrill {
        layer: 0,
        head: 3,
        clean_tokens: toks.clone(),
        corrupted_tokens: toks,
        pattern_clean: pat.clone(),
        pattern_corrupted: vec![1.0 / n as f32; 9],
        top_clean: vec![Scored {
            index: 1,
            token: " Mary".into(),
            value: 0.7,
        }],
        top_corrupted: vec![],
        dla_clean: 1.25,
        dla_corrupted: -0.5,
        logit_diff_clean: 3.0,
        logit_diff_corrupted: -1.0,
    };
    worker(
        &mut s,
        WorkerMsg::Drilled {
            job,
            result: Ok(Box::new(DrillData::Head(d))),
        },
    );
    let text = screen(&draw(&s, ColorMode::TrueColor, 80, 24));
    for want in [
        "Drill-down · head L0H3",
        "clean +1.250",
        "corrupted -0.500",
        "\" Mary\"@1 0.70",
        "attention patterns",
        "diff",
        " Mary",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
}

#[test]
fn the_session_browser_lists_sessions_with_their_times_and_unreadable_files() {
    use patchbench::app::Action;
    use patchbench::session::SessionListing;
    use std::time::{Duration, UNIX_EPOCH};
    let mut s = ready();
    key(&mut s, Intent::Open);
    let row = |name: &str, model: Option<&str>, error: Option<&str>| SessionListing {
        path: format!("/tmp/{name}.yaml").into(),
        name: name.into(),
        modified: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        model: model.map(Into::into),
        first_prompt: None,
        n_sweeps: 2,
        error: error.map(Into::into),
    };
    act(
        &mut s,
        Action::SessionsListed(vec![
            row("ioi", Some("gpt2"), None),
            row("broken", None, Some("version: must be a whole number")),
        ]),
    );
    let text = screen(&draw(&s, ColorMode::TrueColor, 100, 30));
    assert!(text.contains("ioi") && text.contains("gpt2"), "{text}");
    assert!(text.contains("2023-11-14 22:13"), "{text}");
    assert!(
        text.contains("broken") && text.contains("(does not load)"),
        "{text}"
    );
}

#[test]
fn saving_over_an_existing_file_asks_first() {
    use patchbench::app::Action;
    let mut s = ready();
    act(
        &mut s,
        Action::SaveTargetExists {
            path: "/tmp/ioi.yaml".into(),
        },
    );
    let text = screen(&draw(&s, ColorMode::TrueColor, 100, 30));
    assert!(text.contains("/tmp/ioi.yaml"), "{text}");
    assert!(text.contains("already exists"), "{text}");
    assert!(text.contains("choose another name"), "{text}");
}

#[test]
fn the_heatmap_hints_offer_the_export_key() {
    let s = with_sweep();
    let text = screen(&draw(&s, ColorMode::TrueColor, 160, 30));
    assert!(text.contains("export SVG"), "{text}");
}
