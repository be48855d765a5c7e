//! The dataset in the workbench, end to end on the demo model with the real
//! worker: a session naming a labelled dataset of IOI pairs of different
//! lengths (by path) opens with the dataset's pairs in the editor, sweeps
//! resid_pre by label (the heatmap's columns are the labels, the values
//! those of the CLI's labelled sweep, the result current, not stale); the
//! dataset pane's baselines are measured on the model thread and equal the
//! sweep's per-pair baselines; one pair opens alone in the editor, sweeps
//! by itself beside the dataset's sweep, and every pair comes back.

mod app_support;

use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

use patchbench::app::messages::{Request, WorkerMsg};
use patchbench::app::sessions::to_session;
use patchbench::app::worker::Worker;
use patchbench::app::{update, Action, AppState, Command, Intent};
use patchbench::data::gen::{generate, GenOptions, Style, Task};
use patchbench::data::{self, Dataset};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::{prepare_each, run_sweep_labeled, EngineOptions, SweepSpec, Target};
use patchbench::session::dataset::DatasetRef;
use patchbench::session::{self, Session};
use patchbench::tui::keymap::Keymap;
use patchbench::tui::render::render;
use patchbench::tui::run::{initial_state, TuiOptions};
use patchbench::tui::theme::{ColorMode, Theme};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

/// Six labelled IOI pairs for the demo, two of each of three lengths.
fn mixed(m: &LoadedModel) -> Dataset {
    let g = generate(
        &m.tokenizer,
        &GenOptions {
            task: Task::Ioi,
            style: Style::Demo,
            n: 60,
            seed: 1,
            prepend_bos: None,
            tokens: None,
        },
    )
    .expect("IOI pairs for the demo");
    let prepared = prepare_each(&m.tokenizer, &g.dataset.prompt_pairs(), None).unwrap();
    let mut by_len: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, p) in prepared.iter().enumerate() {
        by_len.entry(p.n_pos()).or_default().push(i);
    }
    assert!(by_len.len() >= 2, "the generator gives several lengths");
    let pick: Vec<usize> = by_len
        .values()
        .take(3)
        .flat_map(|v| v.iter().take(2).copied())
        .collect();
    Dataset::from_pairs(pick.iter().map(|&i| g.dataset.pairs[i].clone()).collect())
}

/// A session naming `ds` by path (`ioi.jsonl` beside it) in a fresh
/// directory: the directory, the dataset file, the session and its file.
fn session_on_file(
    ds: &Dataset,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Session,
    std::path::PathBuf,
) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ioi.jsonl");
    std::fs::write(&file, ds.to_jsonl()).unwrap();
    let mut sess = Session::new("demo", ds.pairs[0].prompt_pair());
    sess.dataset = Some(DatasetRef {
        path: Some("ioi.jsonl".into()),
        digest: data::digest(ds.to_jsonl().as_bytes()),
        pairs: vec![],
    });
    let path = dir.path().join("s.yaml");
    session::save_as(&sess, &path, false).unwrap();
    (dir, file, sess, path)
}

struct Bench {
    s: AppState,
    worker: Worker,
    rx: Receiver<WorkerMsg>,
}

impl Bench {
    fn new(s: AppState) -> Self {
        let (tx, rx) = channel();
        let worker = Worker::spawn(Arc::new(move |m| {
            let _ = tx.send(m);
        }));
        worker.send(Request::Load(s.model.load.clone()));
        Bench { s, worker, rx }
    }

    fn carry_out(&mut self, cmds: Vec<Command>) {
        for c in cmds {
            match c {
                Command::Worker(r) => self.worker.send(r),
                Command::Cancel(j) => self.worker.cancel(j),
                Command::CancelBaselines(j) => self.worker.cancel_baselines(j),
                _ => {}
            }
        }
    }

    fn act(&mut self, a: Action) {
        let cmds = update(&mut self.s, a);
        self.carry_out(cmds);
    }

    fn key(&mut self, i: Intent) {
        self.act(Action::Intent(i));
    }

    /// Feeds worker replies to the app until `done` holds.
    fn until(&mut self, what: &str, done: impl Fn(&AppState) -> bool) {
        while !done(&self.s) {
            let m = self
                .rx
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| panic!("waiting for {what}"));
            self.act(Action::Worker(m));
        }
    }
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
    (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_labelled_mixed_length_dataset_sweeps_by_label_in_the_workbench() {
    let m = LoadedModel::load("demo", &LoadOptions::cpu()).expect("the demo loads");
    let ds = mixed(&m);
    let (_dir, _, _, path) = session_on_file(&ds);

    // Opening the session reads its dataset: every pair in the editor.
    let opts = TuiOptions {
        open: Some(path.clone()),
        device: "cpu".into(),
        weights: "f32".into(),
        ..Default::default()
    };
    let s = initial_state(&opts, vec![]).expect("the session opens");
    assert_eq!(s.prompts.to_pairs(), ds.prompt_pairs());
    assert_eq!(s.dataset.labels.len(), ds.len());
    assert!(
        !s.session.dirty,
        "reading the session's own dataset changes nothing"
    );
    let mut b = Bench::new(s);
    b.until("the model", |s| s.model.info().is_some());
    b.until("the tokens", |s| s.prompts.tokens.is_some());
    assert_eq!(
        b.s.prompts.problems(),
        Vec::<String>::new(),
        "lengths may differ"
    );

    // resid_pre by label.
    assert_eq!(b.s.settings.spec.target, Target::ResidPre);
    b.key(Intent::RunSweep);
    b.until("the sweep", |s| s.running.is_none());
    let v = b.s.sweep().expect("a sweep");
    assert!(v.stale.is_none(), "{:?}", v.stale);
    let r = &v.stored.as_ref().expect("a result").result;
    let prepared = prepare_each(&m.tokenizer, &ds.prompt_pairs(), None).unwrap();
    let labels = data::align(&ds, &prepared).unwrap().expect("labelled");
    let want = run_sweep_labeled(
        &m.model,
        &prepared,
        Some(&labels),
        &SweepSpec::new(Target::ResidPre),
        &EngineOptions::default(),
        None,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(r.position_labels, labels.names);
    assert_eq!(r.shape, want.shape);
    for (a, w) in r.metrics["logit_diff"]
        .iter()
        .zip(&want.metrics["logit_diff"])
    {
        assert!((a - w).abs() <= 1e-5, "{a} vs {w}");
    }
    let g = b.s.grid().unwrap();
    let cols: Vec<String> = (0..g.shape[1]).map(|j| g.label(1, j)).collect();
    assert_eq!(cols, labels.names);
    let screen = draw(&b.s, 80, 24);
    let header = screen.lines().find(|l| l.contains("pos→")).unwrap_or("");
    let second = screen
        .lines()
        .skip_while(|l| !l.contains("pos→"))
        .nth(1)
        .unwrap_or("");
    for name in &labels.names {
        assert!(
            header.contains(name.as_str()) || second.contains(name.as_str()),
            "{screen}"
        );
    }
    // A label column has no single token to drill into.
    b.key(Intent::DrillDown);
    assert!(b.s.drill.is_none());

    // The dataset pane: baselines measured on the model thread, equal to
    // the sweep's per-pair baselines.
    b.key(Intent::PairList);
    assert!(b.s.dataset.shown && b.s.dataset.measuring.is_some());
    b.until("the baselines", |s| s.dataset.measuring.is_none());
    let rows = patchbench::app::dataset::rows(&b.s, false);
    assert_eq!(rows.len(), ds.len());
    for (row, pb) in rows.iter().zip(&want.pair_baselines) {
        let (c, k) = (row.clean.unwrap(), row.corrupted.unwrap());
        assert!((c - pb.clean.logit_diff()).abs() <= 1e-5, "{row:?}");
        assert!((k - pb.corrupted.logit_diff()).abs() <= 1e-5, "{row:?}");
    }
    let screen = draw(&b.s, 80, 24);
    assert!(screen.contains("Dataset · ioi.jsonl · 6 pairs"), "{screen}");
    let hints = screen.lines().last().unwrap();
    assert!(hints.contains("enter open alone · f failing"), "{hints}");
    // Sorted by the clean logit difference, lowest first, and back.
    b.key(Intent::SortPairs);
    let sorted: Vec<usize> = patchbench::app::dataset::rows(&b.s, false)
        .iter()
        .map(|r| r.index)
        .collect();
    let mut want_order: Vec<usize> = (0..ds.len()).collect();
    want_order.sort_by(|&a, &c| rows[a].clean.unwrap().total_cmp(&rows[c].clean.unwrap()));
    assert_eq!(sorted, want_order);
    b.key(Intent::SortPairs);
    // The export names the label columns too.
    let stored = b.s.sweeps[0].stored.as_ref().unwrap();
    let svg = session::heatmap_svg("demo", &b.s.sweeps[0].spec, stored, "logit_diff").unwrap();
    for name in &labels.names {
        assert!(svg.contains(&format!(">{name}<")), "{name}");
    }

    // Pair 4 alone: in the editor by itself, swept as a sweep of its own;
    // the dataset's sweep stays current.
    for _ in 0..3 {
        b.key(Intent::Down);
    }
    b.key(Intent::Select);
    assert_eq!(b.s.dataset.alone, Some(3));
    assert_eq!(b.s.prompts.to_pairs(), vec![ds.pairs[3].prompt_pair()]);
    b.until("the tokens", |s| s.prompts.tokens.is_some());
    b.key(Intent::RunSweep);
    b.until("the sweep of one pair", |s| s.running.is_none());
    assert_eq!(b.s.sweeps.len(), 2);
    assert_eq!(b.s.sweeps[1].pairs, Some(vec![3]));
    let one = &b.s.sweeps[1].stored.as_ref().unwrap().result;
    assert_eq!(one.per_pair.len(), 1);
    assert_eq!(one.shape[1], prepared[3].n_pos(), "by token, alone");
    assert!(draw(&b.s, 80, 24).contains("2/2 · of pair 4"));
    assert!(b.s.sweeps.iter().all(|v| v.stale.is_none()));
    let saved = to_session(&b.s);
    assert_eq!(saved.prompts, ds.prompt_pairs(), "the whole set is saved");
    assert_eq!(saved.sweeps[1].pairs, Some(vec![3]));

    // The pair alone stays alone: no pair is added beside it.
    b.key(Intent::FocusPrev);
    b.key(Intent::FocusPrev);
    assert_eq!(b.s.focus, patchbench::app::Focus::Prompts);
    b.key(Intent::PairAdd);
    assert_eq!(b.s.prompts.pairs.len(), 1);

    // Every pair back, with their labels.
    b.key(Intent::PairList);
    b.key(Intent::AllPairs);
    assert_eq!(b.s.dataset.alone, None);
    assert_eq!(b.s.prompts.to_pairs(), ds.prompt_pairs());
    assert!(b.s.sweeps.iter().all(|v| v.stale.is_none()));
}

#[test]
fn measuring_baselines_is_cancelled_with_esc() {
    let mut s = app_support::ready();
    s.prompts = patchbench::app::prompts::PromptsState::new(
        &vec![patchbench::app::example_pair("random:gpt2-tiny"); 3],
        None,
    );
    let out = update(&mut s, Action::Intent(Intent::PairList));
    let job = match out.iter().find_map(|c| match c {
        Command::Worker(Request::Baselines { job, input }) => Some((*job, input.pairs.len())),
        _ => None,
    }) {
        Some((job, 3)) => job,
        other => panic!("{other:?} {out:?}"),
    };
    update(
        &mut s,
        Action::Worker(WorkerMsg::BaselinesProgress {
            job,
            done: 1,
            total: 3,
            values: vec![(0, Err("no".into()))],
        }),
    );
    let screen = draw(&s, 80, 24);
    assert!(screen.contains("measuring baselines 1/3"), "{screen}");
    assert!(
        screen.contains("can't run"),
        "a pair that cannot run says so: {screen}"
    );
    for (w, h) in [(1, 1), (20, 8), (64, 20), (65, 21), (300, 80)] {
        draw(&s, w, h);
    }
    let out = update(&mut s, Action::Intent(Intent::Back));
    assert!(out.contains(&Command::CancelBaselines(job)), "{out:?}");
    assert!(s.dataset.shown, "the first Esc cancels, the pane stays");
    update(
        &mut s,
        Action::Worker(WorkerMsg::BaselinesDone {
            job,
            cancelled: true,
            error: None,
        }),
    );
    update(&mut s, Action::Intent(Intent::Back));
    assert!(!s.dataset.shown);
    // The dataset pane and the circuit pane take turns in the heatmap's place.
    update(&mut s, Action::Intent(Intent::PairList));
    update(&mut s, Action::Intent(Intent::ToggleCircuit));
    assert!(s.circuit.shown && !s.dataset.shown);
    update(&mut s, Action::Intent(Intent::PairList));
    assert!(s.dataset.shown && !s.circuit.shown);
}

#[test]
fn the_help_screen_lists_the_dataset_pane_and_side_by_side_keys() {
    let th = Theme::default_theme(ColorMode::NoColor);
    let text: Vec<String> = patchbench::tui::panes::help::help_lines(&Keymap::defaults(), &th)
        .iter()
        .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
        .collect();
    let at = |ctx: &str| text.iter().position(|l| l == ctx).expect(ctx);
    let in_ctx = |ctx: &str, key: &str, intent: &str| {
        text[at(ctx) + 1..]
            .iter()
            .take_while(|l| !l.is_empty())
            .any(|l| l.trim_start().starts_with(key) && l.contains(intent))
    };
    for (key, intent) in [
        ("enter", "select"),
        ("f", "filter_failing"),
        ("s", "sort_pairs"),
        ("a", "all_pairs"),
    ] {
        assert!(in_ctx("dataset", key, intent), "{key} {intent}: {text:#?}");
    }
    assert!(in_ctx("heatmap", "V", "side_by_side"), "{text:#?}");
    assert!(in_ctx("global", "D", "pair_list"), "{text:#?}");
}

#[test]
fn edits_to_a_pair_alone_go_back_into_the_set() {
    use patchbench::app::prompts::{PairFields, PromptsState};
    let mut s = app_support::ready();
    let pairs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|w| patchbench::patching::PromptPair {
            clean: format!("{w} clean"),
            ..patchbench::app::example_pair("random:gpt2-tiny")
        })
        .collect();
    s.prompts = PromptsState::new(&pairs, None);
    let open = |s: &mut AppState, i: usize| {
        update(s, Action::Intent(Intent::PairList));
        for _ in 0..3 {
            update(s, Action::Intent(Intent::Up));
        }
        for _ in 0..i {
            update(s, Action::Intent(Intent::Down));
        }
        update(s, Action::Intent(Intent::Select));
    };
    open(&mut s, 0);
    assert_eq!(s.prompts.to_pairs(), vec![pairs[0].clone()]);
    let edited = patchbench::patching::PromptPair {
        clean: "a edited".into(),
        ..pairs[0].clone()
    };
    s.prompts.pairs[0] = PairFields::from_pair(&edited);
    // Saved as the whole set, with the edit.
    assert_eq!(
        to_session(&s).prompts,
        vec![edited.clone(), pairs[1].clone(), pairs[2].clone()]
    );
    open(&mut s, 2);
    assert_eq!(s.prompts.to_pairs(), vec![pairs[2].clone()]);
    update(&mut s, Action::Intent(Intent::PairList));
    update(&mut s, Action::Intent(Intent::AllPairs));
    assert_eq!(
        s.prompts.to_pairs(),
        vec![edited, pairs[1].clone(), pairs[2].clone()]
    );
}

#[test]
fn a_session_whose_dataset_file_is_missing_opens_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut sess = Session::new("demo", patchbench::app::example_pair("demo"));
    sess.dataset = Some(DatasetRef {
        path: Some("gone.jsonl".into()),
        digest: "sha256:00".into(),
        pairs: vec![],
    });
    let path = dir.path().join("s.yaml");
    session::save_as(&sess, &path, false).unwrap();
    let opts = TuiOptions {
        open: Some(path),
        device: "cpu".into(),
        weights: "f32".into(),
        ..Default::default()
    };
    let s = initial_state(&opts, vec![]).expect("the session still opens");
    let st = s.status.as_ref().expect("a message");
    assert!(
        st.text.contains("cannot read the dataset gone.jsonl"),
        "{}",
        st.text
    );
    assert_eq!(
        s.prompts.to_pairs(),
        sess.prompts,
        "the session's prompts stay"
    );
    assert!(!s.dataset.loaded());
}

/// An edit to a pair of the session's dataset file: the sweep computed on
/// the file's pairs turns stale, the session keeps the edited pairs inline
/// (the other pairs as they were, ids and labels included; the edited
/// one's labels dropped with its old clean prompt), the file is left as it
/// was, and the edit is there when the saved session is opened again.
#[test]
fn editing_a_pair_of_a_dataset_file_stales_its_results_and_keeps_the_edit() {
    let m = LoadedModel::load("demo", &LoadOptions::cpu()).expect("the demo loads");
    let ds = mixed(&m);
    let (dir, file, sess, path) = session_on_file(&ds);
    let opts = |open| TuiOptions {
        open: Some(open),
        device: "cpu".into(),
        weights: "f32".into(),
        ..Default::default()
    };
    let mut b = Bench::new(initial_state(&opts(path.clone()), vec![]).unwrap());
    b.until("the model", |s| s.model.info().is_some());
    b.until("the tokens", |s| s.prompts.tokens.is_some());
    b.key(Intent::RunSweep);
    b.until("the sweep", |s| s.running.is_none());
    assert!(b.s.sweep().unwrap().stale.is_none());

    b.act(Action::MouseFocus(patchbench::app::state::Focus::Prompts));
    b.key(Intent::Edit);
    b.act(Action::EditKey(tui_textarea::Input {
        key: tui_textarea::Key::Char('!'),
        ..Default::default()
    }));
    let edited = format!("{}!", ds.pairs[0].clean);
    assert_eq!(b.s.prompts.to_pairs()[0].clean, edited);
    let stale = b.s.sweep().unwrap().stale.as_ref().map(|w| w.to_string());
    assert!(stale.is_some(), "the sweep ran on the file's pairs");
    let r = b.s.session.dataset.clone().expect("still a dataset");
    assert_eq!(r.path, None, "kept inline");
    assert_eq!(r.pairs.len(), ds.len());
    assert_eq!(r.pairs[0].clean, edited);
    assert!(r.pairs[0].labels.is_empty());
    assert_eq!(r.pairs[1..], ds.pairs[1..]);
    assert_ne!(r.digest, sess.dataset.as_ref().unwrap().digest);
    let st = b.s.status.as_ref().expect("a message");
    assert!(st.text.contains("ioi.jsonl is unchanged"), "{}", st.text);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), ds.to_jsonl());
    // A second keystroke edits the copy; nothing more to say.
    b.act(Action::EditKey(tui_textarea::Input {
        key: tui_textarea::Key::Char('?'),
        ..Default::default()
    }));
    let r2 = b.s.session.dataset.clone().unwrap();
    assert_eq!(r2.pairs[0].clean, format!("{edited}?"));

    let again = dir.path().join("again.yaml");
    session::save_as(&to_session(&b.s), &again, false).unwrap();
    let s = initial_state(&opts(again), vec![]).expect("the saved session opens");
    assert_eq!(s.prompts.to_pairs()[0].clean, format!("{edited}?"));
    assert_eq!(s.prompts.to_pairs()[1..], ds.prompt_pairs()[1..]);
    assert!(s.sweeps[0].stale.is_some(), "still stale after reopening");
}

/// A position-aware circuit search over labelled pairs of one length
/// names each edge's position by its label, as the CLI's `pos_label`
/// does: the worker's result carries the labels, the edge list shows
/// them, and the session keeps them.
#[test]
fn a_position_aware_circuit_over_labelled_pairs_shows_the_labels() {
    let m = LoadedModel::load("demo", &LoadOptions::cpu()).expect("the demo loads");
    let g = generate(
        &m.tokenizer,
        &GenOptions {
            task: Task::Ioi,
            style: Style::Demo,
            n: 40,
            seed: 1,
            prepend_bos: None,
            tokens: None,
        },
    )
    .expect("IOI pairs for the demo");
    let prepared = prepare_each(&m.tokenizer, &g.dataset.prompt_pairs(), None).unwrap();
    let n0 = prepared[0].n_pos();
    let same: Vec<usize> = (0..prepared.len())
        .filter(|&i| prepared[i].n_pos() == n0)
        .take(3)
        .collect();
    assert!(same.len() >= 2, "pairs of one length");
    let ds = Dataset::from_pairs(same.iter().map(|&i| g.dataset.pairs[i].clone()).collect());
    let (_dir, _, _, path) = session_on_file(&ds);
    let opts = TuiOptions {
        open: Some(path),
        device: "cpu".into(),
        weights: "f32".into(),
        ..Default::default()
    };
    let s = initial_state(&opts, vec![]).expect("the session opens");
    let mut b = Bench::new(s);
    b.until("the model", |s| s.model.info().is_some());
    b.until("the tokens", |s| s.prompts.tokens.is_some());
    b.key(Intent::ToggleCircuit);
    b.key(Intent::CircuitPositions);
    b.key(Intent::RunCircuit);
    b.until("the circuit", |s| {
        s.circuit.running.is_none() && s.circuit.stored().is_some()
    });
    let stored = b.s.circuit.stored().unwrap();
    let sub: Vec<_> = same.iter().map(|&i| prepared[i].clone()).collect();
    let labels = data::align(&ds, &sub).unwrap().expect("labelled");
    let want = patchbench::circuits::positions::label_names(&labels, n0);
    assert!(want.iter().any(Option::is_some), "{want:?}");
    assert_eq!(stored.position_labels, want);
    // The strongest unit's position, with its label where it has one.
    let e = &stored.result.edges[0];
    let p = e.dst_pos.expect("a position-aware unit");
    let screen = draw(&b.s, 100, 30);
    let shown = match &want[p] {
        Some(l) => format!("@{p} {l} "),
        None => format!("@{p} '"),
    };
    assert!(screen.contains(&shown), "{shown} in\n{screen}");
    let yaml = session::to_yaml(&to_session(&b.s));
    assert!(yaml.contains("position_labels:"), "{yaml}");
}
