//! The circuit pane without a terminal: a search started like a sweep
//! (`c`), its progress, cancel and result in the state, failures reported,
//! the edge drill-down; the real worker finding the demo model's circuit
//! and cancelling one; staleness; circuits saved in a session and
//! restored; and the pane rendered at 80×24 and at a wide size.

mod app_support;

use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

use app_support::*;
use patchbench::analysis::HeadDrill;
use patchbench::app::circuit::{far_from_exact, head_of, CircuitTab};
use patchbench::app::messages::{
    DrillData, DrillTarget, EdgeDrillData, LoadSpec, PairsInput, Request, WorkerMsg,
};
use patchbench::app::sessions::{apply_session, mark_stale, to_session};
use patchbench::app::state::Level;
use patchbench::app::worker::Worker;
use patchbench::app::{example_pair, AppState, Command, Focus, Intent};
use patchbench::circuits::circuit::{Baselines, CircuitTiming, FaithPoint};
use patchbench::circuits::{CircuitResult, EdgeScore, Method, Stage};
use patchbench::patching::output::TokenList;
use patchbench::patching::Direction;
use patchbench::session::circuit::{CircuitSpec, StoredCircuit};
use patchbench::tui::keymap::Keymap;
use patchbench::tui::render::render;
use patchbench::tui::theme::{ColorMode, Theme};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

fn edge(s: &str, r: &str, score: f32, exact: Option<f32>) -> EdgeScore {
    EdgeScore {
        sender: s.into(),
        receiver: r.into(),
        scores: metrics(score),
        exact: exact.map(metrics),
        plain: None,
        graddrop: None,
        src_pos: None,
        dst_pos: None,
    }
}

/// A finished circuit as the worker sends it: five edges, the third's
/// estimate far from its exact value, the fifth unchecked.
fn circuit() -> StoredCircuit {
    let curve = [
        (0, 0.0),
        (1, 0.05),
        (3, 0.4),
        (9, 0.85),
        (30, 0.97),
        (479, 1.0),
    ];
    StoredCircuit {
        fingerprint: "f00d".into(),
        inputs: String::new(),
        computed_at: "2026-11-30T10:00:00Z".into(),
        clean_tokens: TokenList {
            ids: vec![1, 2],
            strings: vec!["a".into(), "b".into()],
        },
        corrupted_tokens: TokenList {
            ids: vec![1, 3],
            strings: vec!["a".into(), "c".into()],
        },
        answer: " Mary".into(),
        wrong: " John".into(),
        position_labels: vec![],
        result: CircuitResult {
            method: Method::Eap,
            direction: Direction::Denoise,
            metric: "logit_diff".into(),
            n_edges: 479,
            positions: false,
            baselines: Baselines {
                clean: metrics(4.0),
                corrupted: metrics(-2.0),
            },
            edges: vec![
                edge("m3", "logits", 7.18, Some(21.7)),
                edge("a0.h0", "a1.h1<k>", 3.5, Some(3.1)),
                edge("input", "a0.h0<v>", -0.47, Some(31.8)),
                edge("m0", "a1.h0<q>", 0.49, Some(0.3)),
                edge("a1.h1", "m1", -0.2, None),
            ],
            faithfulness: curve
                .iter()
                .map(|&(k, r)| FaithPoint {
                    k,
                    recovered: r,
                    metrics: metrics(r),
                })
                .collect(),
            edges_for_80: Some(9),
            edges_for_90: Some(30),
            timing: CircuitTiming::default(),
        },
    }
}

/// A ready state with `c` pressed: the circuit request's job.
fn started(s: &mut AppState) -> u64 {
    let cmds = key(s, Intent::RunCircuit);
    let Some(Command::Worker(Request::Circuit { job, spec, input })) = cmds.last() else {
        panic!("c sends a circuit request: {cmds:?}");
    };
    assert_eq!(spec.method, Method::Eap);
    assert_eq!(spec.metric, "logit_diff_normalized", "the shown metric");
    assert_eq!(input.pairs.len(), 1);
    *job
}

fn with_circuit() -> AppState {
    let mut s = ready();
    let job = started(&mut s);
    worker(
        &mut s,
        WorkerMsg::CircuitDone {
            job,
            result: Box::new(circuit()),
        },
    );
    s
}

#[test]
fn a_circuit_search_runs_shows_progress_and_lands_in_the_state() {
    let mut s = ready();
    let job = started(&mut s);
    assert!(s.circuit.shown, "the pane comes up");
    assert_eq!(s.focus, Focus::Heatmap);
    let r = s.circuit.running.as_ref().unwrap();
    assert_eq!((r.job, r.stage), (job, None));
    worker(
        &mut s,
        WorkerMsg::CircuitProgress {
            job,
            stage: Stage::Exact,
            done: 3,
            total: 7,
            elapsed: Duration::from_millis(1500),
        },
    );
    let r = s.circuit.running.as_ref().unwrap();
    assert_eq!((r.stage, r.done, r.total), (Some(Stage::Exact), 3, 7));
    // A reply to another job changes nothing.
    worker(
        &mut s,
        WorkerMsg::CircuitDone {
            job: job + 100,
            result: Box::new(circuit()),
        },
    );
    assert!(s.circuit.stored().is_none());
    worker(
        &mut s,
        WorkerMsg::CircuitDone {
            job,
            result: Box::new(circuit()),
        },
    );
    assert!(s.circuit.running.is_none());
    let stored = s.circuit.stored().expect("the result is kept");
    assert_eq!(stored.result.edges[0].sender, "m3");
    assert!(!stored.inputs.is_empty(), "the inputs digest is recorded");
    assert!(s.circuit.view().unwrap().stale.is_none());
    let st = s.status.as_ref().unwrap();
    assert!(st.text.contains("circuit found: 479 edges"), "{}", st.text);
    assert!(st.text.contains("80% recovered at 9 edges"), "{}", st.text);
    assert!(s.session.dirty);
}

#[test]
fn esc_cancels_the_search_and_failures_are_reported() {
    let mut s = ready();
    let job = started(&mut s);
    let cmds = key(&mut s, Intent::Back);
    assert_eq!(cmds, [Command::CancelCircuit(job)]);
    assert!(s.circuit.running.as_ref().unwrap().cancelling);
    // A second Esc does not cancel twice.
    assert!(key(&mut s, Intent::Back).is_empty());
    worker(
        &mut s,
        WorkerMsg::CircuitFailed {
            job,
            error: "circuit search cancelled".into(),
            cancelled: true,
        },
    );
    assert!(s.circuit.running.is_none());
    assert_eq!(s.status.as_ref().unwrap().level, Level::Warn);
    assert!(s.status.as_ref().unwrap().text.contains("cancelled"));

    let job = started(&mut s);
    worker(
        &mut s,
        WorkerMsg::CircuitFailed {
            job,
            error: "metric rank has no gradient, so eap cannot estimate it".into(),
            cancelled: false,
        },
    );
    let st = s.status.as_ref().unwrap();
    assert_eq!(st.level, Level::Error);
    assert!(st
        .text
        .contains("circuit search failed: metric rank has no gradient"));
    // Starting again while one runs cancels the old one.
    let old = started(&mut s);
    let cmds = key(&mut s, Intent::RunCircuit);
    assert_eq!(cmds[0], Command::CancelCircuit(old));
}

#[test]
fn the_pane_moves_switches_views_and_methods_and_toggles() {
    let mut s = with_circuit();
    key(&mut s, Intent::Down);
    key(&mut s, Intent::Down);
    assert_eq!(s.circuit.edge().unwrap().sender, "input");
    for _ in 0..10 {
        key(&mut s, Intent::Down);
    }
    assert_eq!(s.circuit.cursor, 4, "the cursor stops at the last edge");
    key(&mut s, Intent::PageNext);
    assert_eq!(s.circuit.tab, CircuitTab::Graph);
    key(&mut s, Intent::PagePrev);
    key(&mut s, Intent::PagePrev);
    assert_eq!(s.circuit.tab, CircuitTab::Curve);
    let mut seen = vec![s.circuit.method];
    for _ in 1..Method::ALL.len() {
        key(&mut s, Intent::CircuitMethod);
        seen.push(s.circuit.method);
    }
    assert_eq!(seen, Method::ALL, "t visits every method");
    // e exports the shown circuit as the layered SVG drawing.
    let cmds = key(&mut s, Intent::Export);
    let Some(Command::Export { path, svg }) = cmds.last() else {
        panic!("e exports the circuit: {cmds:?}");
    };
    assert!(
        path.to_string_lossy().ends_with("-circuit1-eap.svg"),
        "{path:?}"
    );
    assert!(
        svg.contains("<title>#1 m3 \u{2192} logits: 7.1800</title>"),
        "{svg}"
    );
    key(&mut s, Intent::ToggleCircuit);
    assert!(!s.circuit.shown, "g shows the heatmap again");
    key(&mut s, Intent::ToggleCircuit);
    assert!(s.circuit.shown);
}

#[test]
fn enter_drills_into_the_edge_estimate_exact_and_heads() {
    let mut s = with_circuit();
    // An AtP* result carries the plain estimate beside the fixed one.
    let stored = s.circuit.views[0].stored.as_mut().unwrap();
    stored.result.edges[1].plain = Some(metrics(2.75));
    key(&mut s, Intent::Down);
    let cmds = key(&mut s, Intent::DrillDown);
    let Some(Command::Worker(Request::EdgeDrill {
        job,
        sender,
        receiver,
        exact,
        ..
    })) = cmds.last()
    else {
        panic!("Enter asks for the edge's drill-down: {cmds:?}");
    };
    assert_eq!((sender.as_str(), receiver.as_str()), ("a0.h0", "a1.h1<k>"));
    assert!(!exact, "the search checked this edge already");
    assert_eq!(s.focus, Focus::Drill);
    let d = s.drill.as_ref().unwrap();
    assert_eq!(d.target, DrillTarget::Edge { rank: 1 });
    let job = *job;
    worker(
        &mut s,
        WorkerMsg::Drilled {
            job,
            result: Ok(Box::new(DrillData::Edge(EdgeDrillData {
                exact: None,
                heads: vec![head_drill(0, 0), head_drill(1, 1)],
            }))),
        },
    );
    assert!(matches!(
        s.drill.as_ref().unwrap().result,
        Some(Ok(DrillData::Edge(_)))
    ));
    // The drill-down takes the main area below 150 columns; tall enough
    // for both heads.
    let text = screen(&draw(&s, 100, 70));
    for want in [
        "edge #2 a0.h0 → a1.h1<k>",
        "logit_diff",
        "3.50",
        "3.10",
        "plain",
        "2.75",
        "head L0H0 (a0.h0)",
        "head L1H1 (a1.h1)",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    // An unchecked edge is patched exactly by the drill-down.
    key(&mut s, Intent::Back);
    assert!(s.drill.is_none());
    for _ in 0..3 {
        key(&mut s, Intent::Down);
    }
    let cmds = key(&mut s, Intent::DrillDown);
    assert!(matches!(
        cmds.last(),
        Some(Command::Worker(Request::EdgeDrill { exact: true, .. }))
    ));
}

fn head_drill(layer: usize, head: usize) -> HeadDrill {
    let toks: Vec<String> = ["a", "b", "c"].iter().map(|t| t.to_string()).collect();
    HeadDrill {
        layer,
        head,
        clean_tokens: toks.clone(),
        corrupted_tokens: toks,
        pattern_clean: vec![1.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.2, 0.3, 0.5],
        pattern_corrupted: vec![1.0, 0.0, 0.0, 0.9, 0.1, 0.0, 0.6, 0.3, 0.1],
        top_clean: vec![],
        top_corrupted: vec![],
        dla_clean: 0.5,
        dla_corrupted: -0.1,
        logit_diff_clean: 4.0,
        logit_diff_corrupted: -2.0,
    }
}

#[test]
fn edits_and_another_model_turn_a_stored_circuit_stale() {
    let mut s = with_circuit();
    assert_eq!(mark_stale(&mut s), 0);
    s.prompts.bos = Some(true);
    mark_stale(&mut s);
    let why = s
        .circuit
        .view()
        .unwrap()
        .stale
        .as_ref()
        .unwrap()
        .to_string();
    assert!(why.contains("edited"), "{why}");
    s.prompts.bos = None;
    mark_stale(&mut s);
    assert!(s.circuit.view().unwrap().stale.is_none());
    let mut other = info();
    other.fingerprint = "beef".into();
    worker(&mut s, WorkerMsg::ModelLoaded(Box::new(other)));
    let why = s
        .circuit
        .view()
        .unwrap()
        .stale
        .as_ref()
        .unwrap()
        .to_string();
    assert!(why.contains("different model"), "{why}");
    let st = &s.status.as_ref().unwrap().text;
    assert!(st.contains("1 of 1 stored circuits stale"), "{st}");
    let text = screen(&draw(&s, 80, 24));
    assert!(text.contains("STALE"), "{text}");
}

#[test]
fn circuits_round_trip_through_a_session_file() {
    let s = with_circuit();
    let session = to_session(&s);
    assert_eq!(session.circuits.len(), 1);
    let yaml = patchbench::session::to_yaml(&session);
    assert!(yaml.contains("circuits:") && yaml.contains("method: eap"));
    let loaded = patchbench::session::parse_str(&yaml, "t.yaml".as_ref()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.session, session, "what is saved is what loads");
    let mut t = ready();
    apply_session(&mut t, loaded.session, None);
    mark_stale(&mut t);
    assert_eq!(t.circuit.views, s.circuit.views, "restored as it was");
    // `patchbench check` knows the section; a bad ranking metric is named.
    let report = patchbench::session::check::check_bytes(yaml.as_bytes(), "t.yaml".as_ref());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let bad = yaml.replacen(
        "metric: logit_diff_normalized\n    direction",
        "metric: accuracy\n    direction",
        1,
    );
    assert_ne!(bad, yaml);
    let report = patchbench::session::check::check_bytes(bad.as_bytes(), "t.yaml".as_ref());
    let p = &report.problems[0];
    assert_eq!(p.field, "circuits[0].spec.metric");
    assert!(
        p.message.contains("unknown metric") && p.hint.as_ref().unwrap().contains("logit_diff")
    );
    // A session without circuits (every one written before them) has none.
    let old = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/sessions/induction-demo.yaml"
    ))
    .unwrap();
    let old = patchbench::session::parse_str(&old, "old.yaml".as_ref()).unwrap();
    assert!(old.session.circuits.is_empty() && !old.session.sweeps.is_empty());
    assert!(!patchbench::session::to_yaml(&old.session).contains("circuits:"));
}

/// `p` makes the next search position-aware: the spec carries it (and
/// its digest differs, so a result turns stale when it is toggled), the
/// list shows each edge's position and token, the drill-down asks for
/// the edge at its position, and the session keeps the option.
#[test]
fn position_aware_searches_carry_the_option_to_the_list_drill_and_session() {
    let mut s = ready();
    key(&mut s, Intent::ToggleCircuit);
    key(&mut s, Intent::CircuitPositions);
    assert!(s.circuit.positions);
    let cmds = key(&mut s, Intent::RunCircuit);
    let Some(Command::Worker(Request::Circuit { job, spec, .. })) = cmds.last() else {
        panic!("c sends a circuit request: {cmds:?}");
    };
    assert!(spec.positions && spec.options().unwrap().positions);
    let job = *job;
    let mut stored = circuit();
    stored.result.positions = true;
    for (i, e) in stored.result.edges.iter_mut().enumerate() {
        (e.src_pos, e.dst_pos) = (Some(i % 2), Some(i % 2));
    }
    stored.clean_tokens.strings = vec!["When".into(), " Mary".into()];
    // Labelled pairs name position 1 (IO), not position 0.
    stored.position_labels = vec![None, Some("IO".into())];
    worker(
        &mut s,
        WorkerMsg::CircuitDone {
            job,
            result: Box::new(stored),
        },
    );
    let text = screen(&draw(&s, 80, 24));
    assert!(text.contains("per position"), "{text}");
    assert!(
        text.contains("@1 IO ' Mary'") && text.contains("@0 'When'"),
        "{text}"
    );
    key(&mut s, Intent::Down);
    let cmds = key(&mut s, Intent::DrillDown);
    assert!(
        matches!(
            cmds.last(),
            Some(Command::Worker(Request::EdgeDrill { at: Some(1), .. }))
        ),
        "{cmds:?}"
    );
    let session = to_session(&s);
    let yaml = patchbench::session::to_yaml(&session);
    assert!(
        yaml.contains("positions: true")
            && yaml.contains("src_pos: 1")
            && yaml.contains("position_labels: [null, \"IO\"]"),
        "{yaml}"
    );
    let loaded = patchbench::session::parse_str(&yaml, "t.yaml".as_ref()).unwrap();
    assert_eq!(loaded.session, session);
    // Position-free specs write no `positions` (older sessions digest the same).
    let free = CircuitSpec::new(Method::Eap);
    assert!(!serde_yaml::to_string(&free).unwrap().contains("positions"));
    let at = CircuitSpec {
        positions: true,
        ..free.clone()
    };
    let pairs = [example_pair("demo")];
    let pairs: Vec<_> = pairs.iter().collect();
    assert_ne!(
        patchbench::session::circuit::circuit_digest(&free, &pairs, None),
        patchbench::session::circuit::circuit_digest(&at, &pairs, None)
    );
}

#[test]
fn far_from_exact_marks_sign_flips_and_large_gaps() {
    assert!(far_from_exact(-0.47, 31.8));
    assert!(far_from_exact(7.18, 21.7));
    assert!(!far_from_exact(3.5, 3.1));
    assert!(!far_from_exact(0.0, 0.0));
    assert!(!far_from_exact(f32::NAN, 1.0));
    assert_eq!(head_of("a3.h1<q>", 4, 4), Some((3, 1)));
    assert_eq!(head_of("a3.kv1<k>", 8, 2), Some((3, 4)));
    assert_eq!(head_of("m3", 4, 4), None);
    assert_eq!(head_of("logits", 4, 4), None);
}

#[test]
fn the_methods_the_pane_cycles_are_the_cli_methods() {
    // clap lists the values it accepts when given one it does not.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args([
            "circuit", "--model", "demo", "--clean", "a", "--answer", "a",
        ])
        .args(["--wrong", "b", "--method", "none-such"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stderr);
    let line = help
        .lines()
        .find(|l| l.contains("[possible values: "))
        .unwrap_or_else(|| panic!("{help}"));
    let values = line[line.find("[possible values: ").unwrap() + 18..]
        .trim_end_matches(']')
        .split(", ")
        .collect::<Vec<_>>();
    let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(values, names);
}

// ---------------------------------------------------------------- render

fn draw(s: &AppState, w: u16, h: u16) -> Buffer {
    let area = Rect::new(0, 0, w, h);
    let mut buf = Buffer::empty(area);
    let theme = Theme::default_theme(ColorMode::TrueColor);
    render(s, &theme, &Keymap::defaults(), area, &mut buf);
    buf
}

fn screen(buf: &Buffer) -> String {
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

fn has_braille(text: &str) -> bool {
    text.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c))
}

#[test]
fn at_80x24_the_pane_shows_one_view_at_a_time() {
    let mut s = with_circuit();
    let text = screen(&draw(&s, 80, 24));
    for want in [
        "Circuit · eap · logit_diff_normalized denoise prompt",
        "479 edges · logit_diff 4.00 → -2.00 · 80% at 9, 90% at 30 edges",
        "exact  ! far from exact",
        " edges ",
        "sender",
        "  1 m3      → logits",
        "  3 input   → a0.h0<v>",
        "c circuit",
        "drill",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    // The far estimate is marked on its row, the close one is not.
    let row = |needle: &str| {
        let l = text.lines().find(|l| l.contains(needle)).unwrap();
        l.trim_end_matches(['│', ' ']).to_string()
    };
    assert!(row("input   → a0.h0<v>").ends_with('!'));
    assert!(!row("a0.h0   → a1.h1<k>").ends_with('!'));
    assert!(
        row("a1.h1   → m1").contains('–'),
        "unchecked: no exact value"
    );

    key(&mut s, Intent::PageNext);
    let text = screen(&draw(&s, 80, 24));
    for want in [
        "input",
        "L0",
        "L1",
        "L3",
        "logits",
        "k←a0.h0",
        "v←input",
        "←m3",
    ] {
        assert!(text.contains(want), "graph: {want:?} missing:\n{text}");
    }
    // Columns run left to right by layer.
    let graph_row = text
        .lines()
        .find(|l| l.contains("L0") && l.contains("L3"))
        .unwrap();
    assert!(graph_row.find("L0") < graph_row.find("L3"));
    assert!(!has_braille(&text));

    key(&mut s, Intent::PageNext);
    let text = screen(&draw(&s, 80, 24));
    assert!(has_braille(&text), "the curve is drawn in braille:\n{text}");
    assert!(text.contains("edges kept (log)") && text.contains("479"));
}

#[test]
fn a_wide_pane_shows_list_graph_and_curve_together() {
    let s = with_circuit();
    let text = screen(&draw(&s, 160, 48));
    for want in ["  1 m3      → logits", "k←a0.h0", "L3", "edges kept (log)"] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
    assert!(has_braille(&text));
    assert!(!text.contains("< > switch"), "no tabs when everything fits");
}

#[test]
fn a_running_search_draws_its_progress_and_an_empty_pane_says_what_to_do() {
    let mut s = ready();
    key(&mut s, Intent::ToggleCircuit);
    let text = screen(&draw(&s, 80, 24));
    assert!(
        text.contains("No circuit yet: c finds the circuit"),
        "{text}"
    );
    let job = started(&mut s);
    worker(
        &mut s,
        WorkerMsg::CircuitProgress {
            job,
            stage: Stage::Faithfulness,
            done: 2,
            total: 4,
            elapsed: Duration::from_millis(2500),
        },
    );
    let text = screen(&draw(&s, 80, 24));
    assert!(
        text.contains("faithfulness 2/4 · 2.5s · Esc cancels"),
        "{text}"
    );
    // The status bar shows it too, also over the heatmap.
    key(&mut s, Intent::ToggleCircuit);
    let text = screen(&draw(&s, 80, 24));
    assert!(
        text.contains("circuit: faithfulness 2/4 · 2.5s elapsed"),
        "{text}"
    );
}

// ----------------------------------------------------------- real worker

fn spawn() -> (Worker, Receiver<WorkerMsg>) {
    let (tx, rx) = channel();
    let w = Worker::spawn(Arc::new(move |m| {
        let _ = tx.send(m);
    }));
    (w, rx)
}

fn next(rx: &Receiver<WorkerMsg>) -> WorkerMsg {
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the worker answers")
}

#[test]
fn the_worker_finds_the_demo_circuit_cancels_one_and_drills_an_edge() {
    let (w, rx) = spawn();
    w.send(Request::Load(LoadSpec {
        source: "demo".into(),
        device: "cpu".into(),
        weights: "f32".into(),
    }));
    loop {
        match next(&rx) {
            WorkerMsg::ModelLoaded(_) => break,
            WorkerMsg::ModelFailed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    let input = PairsInput {
        pairs: vec![example_pair("demo")],
        prepend_bos: None,
        labels: vec![],
    };
    let spec = CircuitSpec {
        check_exact: 10,
        faithfulness_points: 4,
        ..CircuitSpec::new(Method::Eap)
    };
    // Cancelled before it starts: answered as cancelled.
    w.cancel_circuit(1);
    w.send(Request::Circuit {
        job: 1,
        input: input.clone(),
        spec: spec.clone(),
    });
    loop {
        match next(&rx) {
            WorkerMsg::CircuitFailed {
                job: 1, cancelled, ..
            } => {
                assert!(cancelled);
                break;
            }
            WorkerMsg::CircuitDone { job: 1, .. } => panic!("a cancelled search ran"),
            _ => {}
        }
    }
    w.send(Request::Circuit {
        job: 2,
        input: input.clone(),
        spec: spec.clone(),
    });
    let mut stages = Vec::new();
    let stored = loop {
        match next(&rx) {
            WorkerMsg::CircuitProgress { job: 2, stage, .. } => stages.push(stage),
            WorkerMsg::CircuitDone { job: 2, result } => break result,
            WorkerMsg::CircuitFailed { job: 2, error, .. } => panic!("{error}"),
            _ => {}
        }
    };
    for st in [
        Stage::Runs,
        Stage::Scores,
        Stage::Exact,
        Stage::Faithfulness,
    ] {
        assert!(stages.contains(&st), "{st:?} reported: {stages:?}");
    }
    let r = &stored.result;
    assert_eq!(r.method, Method::Eap);
    assert!(r.n_edges > r.edges.len() && !r.edges.is_empty());
    assert_eq!(r.edges.iter().filter(|e| e.exact.is_some()).count(), 10);
    assert_eq!(r.faithfulness.first().map(|p| p.k), Some(0));
    assert_eq!(stored.answer, "mary");

    // Cancelled while it runs: the next piece of work stops it.
    w.send(Request::Circuit {
        job: 3,
        input: input.clone(),
        spec: CircuitSpec::new(Method::Exact),
    });
    loop {
        match next(&rx) {
            WorkerMsg::CircuitProgress { job: 3, .. } => w.cancel_circuit(3),
            WorkerMsg::CircuitFailed {
                job: 3, cancelled, ..
            } => {
                assert!(cancelled);
                break;
            }
            WorkerMsg::CircuitDone { job: 3, .. } => panic!("the cancel was ignored"),
            _ => {}
        }
    }

    // An edge between two heads: its exact change and both heads' patterns.
    let e = r
        .edges
        .iter()
        .find(|e| e.sender.starts_with('a') && e.receiver.starts_with('a'))
        .expect("a head-to-head edge among the top edges");
    w.send(Request::EdgeDrill {
        job: 4,
        input,
        spec,
        sender: e.sender.clone(),
        receiver: e.receiver.clone(),
        at: None,
        exact: true,
    });
    let data = loop {
        if let WorkerMsg::Drilled { job: 4, result } = next(&rx) {
            break result.unwrap();
        }
    };
    let DrillData::Edge(d) = *data else {
        panic!("an edge drill-down")
    };
    let exact = d.exact.expect("asked for the exact change");
    if let Some(x) = e.exact {
        let (a, b) = (
            exact.get("logit_diff").unwrap(),
            x.get("logit_diff").unwrap(),
        );
        assert!((a - b).abs() <= 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
    }
    assert_eq!(d.heads.len(), 2);
}
