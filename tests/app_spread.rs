//! The workbench shows the spread of a sweep over many pairs: a real
//! head_out sweep of 16 generated IOI pairs on the demo model, handed to
//! the app as the worker would, then driven by intents and rendered at
//! 80×24 and at a wide size. The numbers on screen are checked against the
//! CLI's statistics (`data::sweep_stats`) and the result's per-pair values.

mod app_support;

use std::sync::OnceLock;

use app_support::*;
use patchbench::app::messages::{SweepStart, WorkerMsg};
use patchbench::app::spread::difference;
use patchbench::app::spread_keys::{ranked, unindex};
use patchbench::app::state::StartOptions;
use patchbench::app::{AppState, Intent};
use patchbench::data::gen::{generate, GenOptions, Style, Task};
use patchbench::data::{sweep_stats, Dataset, StatsOptions, SweepStats};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::{
    prepare_each, run_sweep_labeled, Direction, EngineOptions, SweepResult, SweepSpec, Target,
};
use patchbench::tui::keymap::Keymap;
use patchbench::tui::render::render;
use patchbench::tui::theme::{ColorMode, Theme};
use patchbench::tui::widgets::num;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

const NORM: &str = "logit_diff_normalized";

struct Fixture {
    dataset: Dataset,
    denoise: SweepResult,
    noise: SweepResult,
}

/// 16 IOI pairs for the demo, swept on head_out both ways (a second or
/// two in a debug build).
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let m = LoadedModel::load("demo", &LoadOptions::cpu()).expect("the demo model loads");
        let g = generate(
            &m.tokenizer,
            &GenOptions {
                task: Task::Ioi,
                style: Style::Demo,
                n: 16,
                seed: 3,
                prepend_bos: None,
                tokens: None,
            },
        )
        .expect("16 IOI pairs");
        let pairs = prepare_each(&m.tokenizer, &g.dataset.prompt_pairs(), None).unwrap();
        let sweep = |direction| {
            let mut spec = SweepSpec::new(Target::HeadOut);
            spec.direction = direction;
            run_sweep_labeled(
                &m.model,
                &pairs,
                None,
                &spec,
                &EngineOptions::default(),
                None,
                &mut |_| {},
            )
            .expect("the sweep runs")
        };
        Fixture {
            denoise: sweep(Direction::Denoise),
            noise: sweep(Direction::Noise),
            dataset: g.dataset,
        }
    })
}

fn stats(r: &SweepResult) -> SweepStats {
    sweep_stats(r, &StatsOptions::default())
}

/// A workbench whose prompts are the dataset's pairs, the model loaded.
fn bench() -> AppState {
    let mut s = AppState::new(StartOptions {
        pairs: fixture().dataset.prompt_pairs(),
        ..start_options()
    });
    s.settings.spec.target = Target::HeadOut;
    worker(
        &mut s,
        WorkerMsg::ModelLoaded(Box::new(patchbench::app::messages::ModelInfo {
            source: "demo".into(),
            ..info()
        })),
    );
    s
}

fn start_options() -> StartOptions {
    let s = state();
    StartOptions {
        load: s.model.load.clone(),
        pairs: vec![],
        autosave: None,
        sessions_dir: None,
        data_dir: None,
    }
}

/// Runs the sweep of the settings and hands back `r` as its result.
fn finish(s: &mut AppState, r: &SweepResult) {
    key(s, Intent::RunSweep);
    let job = s.running.as_ref().expect("running").job;
    let st = SweepStart {
        axes: r.axes.clone(),
        shape: r.shape.clone(),
        ..start(&["layer", "head"], &r.shape)
    };
    worker(
        s,
        WorkerMsg::SweepStarted {
            job,
            start: Box::new(st),
        },
    );
    worker(
        s,
        WorkerMsg::SweepDone {
            job,
            result: Box::new(r.clone()),
            computed_at: format!("2025-01-01T00:00:0{}Z", s.sweeps.len()),
        },
    );
}

fn draw(s: &AppState, w: u16, h: u16) -> String {
    let area = Rect::new(0, 0, w, h);
    let mut buf = Buffer::empty(area);
    render(
        s,
        &Theme::default_theme(ColorMode::NoColor),
        &Keymap::defaults(),
        area,
        &mut buf,
    );
    let a = buf.area;
    (0..a.height)
        .map(|y| {
            (0..a.width)
                .map(|x| buf[(x, y)].symbol().to_string())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn cell_of(s: &AppState) -> usize {
    let shape = &fixture().denoise.shape;
    s.heatmap
        .cursor
        .iter()
        .zip(shape)
        .fold(0, |a, (i, n)| a * n + i)
}

#[test]
fn the_cursor_starts_on_the_strongest_effect_and_steps_down_the_ranking() {
    let f = fixture();
    let mut s = bench();
    finish(&mut s, &f.denoise);
    // By hand: the largest |value − corrupted baseline| of the shown metric.
    let vals = &f.denoise.metrics[NORM];
    let centre = f.denoise.baselines.corrupted.get(NORM).unwrap();
    let mut order: Vec<usize> = (0..vals.len()).collect();
    order.sort_by(|&a, &b| {
        (vals[b] - centre)
            .abs()
            .total_cmp(&(vals[a] - centre).abs())
    });
    assert_eq!(cell_of(&s), order[0]);
    // The demo's IOI head.
    assert_eq!(s.heatmap.cursor, vec![0, 0]);
    key(&mut s, Intent::StrongestNext);
    assert_eq!(cell_of(&s), order[1]);
    key(&mut s, Intent::StrongestNext);
    assert_eq!(cell_of(&s), order[2]);
    key(&mut s, Intent::StrongestPrev);
    key(&mut s, Intent::StrongestPrev);
    assert_eq!(cell_of(&s), order[0]);
    key(&mut s, Intent::StrongestPrev);
    assert_eq!(cell_of(&s), *order.last().unwrap(), "wraps around");
    let g = s.grid().unwrap();
    assert_eq!(ranked(&g, NORM), order);
    assert_eq!(unindex(order[1], g.shape).len(), 2);
}

#[test]
fn the_readout_shows_the_cells_mean_interval_n_and_per_pair_histogram() {
    let f = fixture();
    let st = stats(&f.denoise);
    let m = &st.metrics[NORM];
    let mut s = bench();
    finish(&mut s, &f.denoise);
    for (w, h) in [(80u16, 24u16), (160, 40)] {
        let screen = draw(&s, w, h);
        let want = format!(
            "n 16 per-pair mean {} ±{} [{}, {}] 95%",
            num(m.mean[0]),
            num((m.ci_high[0] - m.ci_low[0]) / 2.0),
            num(m.ci_low[0]),
            num(m.ci_high[0])
        );
        assert!(screen.contains(&want), "{w}×{h}: no {want:?}:\n{screen}");
        // The grid shows the TransformerLens form, and says so.
        assert!(
            screen.contains(&format!("grid: {}", num(f.denoise.metrics[NORM][0]))) || w < 100,
            "{screen}"
        );
        // The per-pair histogram: block characters between the range.
        let line = screen
            .lines()
            .find(|l| l.contains("per-pair mean"))
            .unwrap();
        assert!(line.chars().any(|c| ('▁'..='█').contains(&c)), "{line}");
    }
    // Another metric, raw: "mean", no normalisation note.
    key(&mut s, Intent::MetricPrev);
    assert_eq!(s.heatmap.metric_name(), "logit_diff");
    let ld = &st.metrics["logit_diff"];
    let screen = draw(&s, 160, 40);
    assert!(
        screen.contains(&format!("n 16 mean {} ±", num(ld.mean[0]))),
        "{screen}"
    );
}

#[test]
fn shading_marks_exactly_the_cells_whose_interval_crosses_zero() {
    let f = fixture();
    let st = stats(&f.denoise);
    let m = &st.metrics[NORM];
    let mut s = bench();
    finish(&mut s, &f.denoise);
    assert!(s.heatmap.spread.uncertain.is_none());
    key(&mut s, Intent::ShadeUncertain);
    let got = s.heatmap.spread.uncertain.clone().expect("computed");
    // Denoising the normalised metric: "no effect" is 0, so the effect's
    // interval is the per-pair values' interval.
    let want: Vec<Option<bool>> = (0..m.mean.len())
        .map(|c| Some(m.ci_low[c] <= 0.0 && m.ci_high[c] >= 0.0))
        .collect();
    assert_eq!(got, want);
    assert_eq!(got[0], Some(false), "the IOI head is clear of zero");
    let crossing = got.iter().filter(|x| **x == Some(true)).count();
    assert!(crossing > 0, "some head's interval crosses zero");
    // On screen: crossing cells are marked `~`, the rest keep their shade.
    let screen = draw(&s, 160, 40);
    let grid: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains("layer↓") || l.starts_with("│     "))
        .collect();
    let marked = grid.iter().map(|l| l.matches('~').count()).sum::<usize>();
    assert_eq!(marked, crossing, "{}", grid.join("\n"));
    key(&mut s, Intent::ShadeUncertain);
    assert!(s.heatmap.spread.uncertain.is_none());
}

#[test]
fn the_dataset_pane_flags_failing_pairs_filters_them_and_opens_one_alone() {
    let f = fixture();
    let st = stats(&f.denoise);
    let mut s = bench();
    finish(&mut s, &f.denoise);
    key(&mut s, Intent::PairList);
    assert!(s.dataset.shown && s.popup.is_none());
    let screen = draw(&s, 80, 24);
    let header = format!("16 pairs · {} failing", st.flagged.len());
    assert!(screen.contains(&header), "{screen}");
    // The first pair's clean and corrupted logit differences (the sweep's,
    // until the model thread's measurement arrives).
    let b = &f.denoise.pair_baselines[0];
    let first = screen.lines().find(|l| l.contains("▸ 1 ")).unwrap();
    assert!(
        first.contains(&num(b.clean.logit_diff()))
            && first.contains(&num(b.corrupted.logit_diff())),
        "{first}"
    );
    key(&mut s, Intent::FilterFailing);
    let rows = patchbench::app::dataset::rows(&s, true);
    assert_eq!(rows.iter().map(|r| r.index).collect::<Vec<_>>(), st.flagged);
    key(&mut s, Intent::FilterFailing);
    // Open pair 3 alone: the editor holds it, the grid shows its own values.
    key(&mut s, Intent::Down);
    key(&mut s, Intent::Down);
    key(&mut s, Intent::Select);
    assert!(!s.dataset.shown);
    assert_eq!(s.dataset.alone, Some(2));
    assert_eq!(
        s.prompts.to_pairs(),
        vec![f.dataset.prompt_pairs()[2].clone()]
    );
    assert_eq!(s.heatmap.spread.pair, Some(2));
    let g = s.grid().unwrap();
    for c in 0..g.n_cells() {
        let want = f.denoise.per_pair[2][NORM][c];
        assert_eq!(g.value(NORM, c), Some(want).filter(|v| v.is_finite()));
    }
    let screen = draw(&s, 80, 24);
    assert!(screen.contains("pair 3/16 alone"), "{screen}");
    // One pair: no spread line.
    assert!(!screen.contains("per-pair mean"), "{screen}");
    key(&mut s, Intent::Back);
    assert_eq!(s.heatmap.spread.pair, None);
    assert_eq!(
        s.grid().unwrap().value(NORM, 0),
        Some(f.denoise.metrics[NORM][0])
    );
}

#[test]
fn the_difference_of_two_sweeps_is_shown_with_paired_intervals() {
    let f = fixture();
    let mut s = bench();
    finish(&mut s, &f.denoise);
    key(&mut s, Intent::CompareNext);
    assert_eq!(s.heatmap.spread.compare, None, "only one sweep so far");
    s.settings.spec.direction = Direction::Noise;
    finish(&mut s, &f.noise);
    assert_eq!(s.sweeps.len(), 2);
    assert_eq!(s.selected_sweep, 1);
    key(&mut s, Intent::SweepPrev);
    key(&mut s, Intent::CompareNext);
    assert_eq!(s.heatmap.spread.compare, Some(1));
    let diff = difference(&f.denoise, &f.noise).unwrap();
    let g = s.grid().unwrap();
    for c in 0..g.n_cells() {
        let want = f.denoise.metrics["logit_diff"][c] - f.noise.metrics["logit_diff"][c];
        assert_eq!(g.value("logit_diff", c), Some(want));
        assert_eq!(diff.per_pair[5]["logit_diff"][c], {
            f.denoise.per_pair[5]["logit_diff"][c] - f.noise.per_pair[5]["logit_diff"][c]
        });
    }
    let screen = draw(&s, 120, 30);
    assert!(screen.contains("minus sweep 2"), "{screen}");
    // The readout's interval is that of the paired differences.
    let d = stats(&diff);
    assert!(
        screen.contains(&format!(
            "[{}, {}] 95%",
            num(d.metrics[NORM].ci_low[cell_of(&s)]),
            num(d.metrics[NORM].ci_high[cell_of(&s)])
        )),
        "{screen}"
    );
    key(&mut s, Intent::CompareNext);
    assert_eq!(s.heatmap.spread.compare, None, "off after the last");
    key(&mut s, Intent::CompareNext);
    key(&mut s, Intent::Back);
    assert_eq!(s.heatmap.spread.compare, None);
}

#[test]
fn two_sweeps_side_by_side_share_the_scale_and_cursor_and_fall_back_when_narrow() {
    use patchbench::app::grid::GridRef;
    let f = fixture();
    let mut s = bench();
    finish(&mut s, &f.denoise);
    key(&mut s, Intent::SideBySide);
    assert_eq!(s.heatmap.spread.beside, None, "only one sweep so far");
    s.settings.spec.direction = Direction::Noise;
    finish(&mut s, &f.noise);
    key(&mut s, Intent::SideBySide);
    assert_eq!(s.heatmap.spread.beside, Some(0));
    // One half-range for both, each centred on its own "no effect".
    let gn = GridRef::from_result(&f.noise, &[], &[], Direction::Noise);
    let gd = GridRef::from_result(&f.denoise, &[], &[], Direction::Denoise);
    let half = gn.scale(NORM).1.max(gd.scale(NORM).1);
    for w in [80u16, 160] {
        let screen = draw(&s, w, 30);
        assert!(
            screen.contains("sweep 2: head_out noise")
                && screen.contains("sweep 1: head_out denoise"),
            "{screen}"
        );
        for g in [&gn, &gd] {
            let c = g.centre(NORM).unwrap();
            let legend = format!("{} ", num(c - half));
            assert!(screen.contains(&legend), "{legend} {screen}");
        }
        // One cursor: both readouts name the same cell.
        let cur = &s.heatmap.cursor;
        let at = format!("layer {} · head {}", cur[0], cur[1]);
        assert_eq!(screen.matches(&at).count(), 2, "{screen}");
    }
    // Too narrow for two: the shown sweep alone, with a message.
    let screen = draw(&s, 64, 20);
    assert!(screen.contains("too narrow for side by side"), "{screen}");
    assert!(!screen.contains("sweep 1: head_out denoise"), "{screen}");
    // No size panics.
    for (w, h) in [
        (1, 1),
        (10, 5),
        (63, 19),
        (64, 20),
        (73, 24),
        (75, 21),
        (200, 60),
    ] {
        draw(&s, w, h);
    }
    // V steps on (no third sweep: off), Esc turns it off.
    key(&mut s, Intent::SideBySide);
    assert_eq!(s.heatmap.spread.beside, None);
    key(&mut s, Intent::SideBySide);
    key(&mut s, Intent::Back);
    assert_eq!(s.heatmap.spread.beside, None);
}

#[test]
fn cells_widen_to_use_a_wide_pane() {
    let f = fixture();
    let mut s = bench();
    finish(&mut s, &f.denoise);
    let n_heads = f.denoise.shape[1];
    for w in [80u16, 118] {
        let screen = draw(&s, w, 30);
        let row0 = screen.lines().find(|l| l.contains("     0 ")).unwrap();
        // The last head's label sits beyond half the pane on either size
        // (on 80 columns as at 200: cells are as wide as the pane allows).
        let labels = screen.lines().find(|l| l.contains("layer↓")).unwrap();
        let last = labels
            .rfind(&format!(" {}", n_heads - 1))
            .map(|i| labels[..i].chars().count())
            .unwrap();
        assert!(
            last > (w as usize) * 3 / 5,
            "{w}: the last column at {last}:\n{labels}\n{row0}"
        );
    }
}
