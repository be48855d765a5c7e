//! `update` tests: actions in, state and commands out. No terminal, no model.

mod app_support;

use std::time::Duration;

use app_support::*;
use patchbench::app::messages::{DrillData, DrillTarget, Request, WorkerMsg};
use patchbench::app::sessions::to_session;
use patchbench::app::settings::EstimateState;
use patchbench::app::state::{Level, ModelState, Popup};
use patchbench::app::{Action, Command, Focus, Intent, Mode, SaveKind};
use patchbench::patching::{Target, METRICS};
use patchbench::session::{Loaded, SessionListing};

fn loaded(session: patchbench::session::Session) -> Box<Loaded> {
    Box::new(Loaded {
        session,
        warnings: vec![],
    })
}

fn has_sweep_request(cmds: &[Command]) -> bool {
    cmds.iter()
        .any(|c| matches!(c, Command::Worker(Request::Sweep { .. })))
}

#[test]
fn starts_in_navigation_mode_and_refuses_to_run_before_the_model() {
    let mut s = state();
    assert_eq!(s.mode, Mode::Nav);
    assert_eq!(s.focus, Focus::Prompts);
    assert_eq!(s.model.state, ModelState::Loading);
    let cmds = key(&mut s, Intent::RunSweep);
    assert!(cmds.is_empty());
    assert!(s.running.is_none());
    let st = s.status.clone().unwrap();
    assert_eq!(st.level, Level::Warn);
    assert!(st.text.contains("still loading"), "{}", st.text);
}

#[test]
fn a_loaded_model_triggers_tokenisation_and_an_estimate() {
    let mut s = state();
    let cmds = worker(&mut s, WorkerMsg::ModelLoaded(Box::new(info())));
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::Worker(Request::Tokenize { .. }))));
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::Worker(Request::Estimate { .. }))));
    assert_eq!(s.settings.estimate, EstimateState::Pending);
    assert!(s.status.unwrap().text.contains("loaded"));
}

#[test]
fn model_failure_is_a_popup_and_a_status_message_not_stray_text() {
    let mut s = state();
    worker(
        &mut s,
        WorkerMsg::ModelFailed {
            source: "nope".into(),
            error: "no such directory".into(),
        },
    );
    assert!(matches!(s.model.state, ModelState::Failed(_)));
    assert!(
        matches!(&s.popup, Some(Popup::Message { text, .. }) if text.contains("no such directory"))
    );
    // Any key closes the message.
    key(&mut s, Intent::Back);
    assert!(s.popup.is_none());
}

#[test]
fn editing_a_prompt_is_explicit_and_retokenises() {
    let mut s = ready();
    // In navigation mode a letter is a command, not text.
    key(&mut s, Intent::Edit);
    assert_eq!(s.mode, Mode::Edit);
    let before = s.prompts.to_pairs()[0].clean.clone();
    let cmds = act(
        &mut s,
        Action::EditKey(tui_textarea::Input {
            key: tui_textarea::Key::Char('!'),
            ..Default::default()
        }),
    );
    assert_eq!(s.prompts.to_pairs()[0].clean, format!("{before}!"));
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::Worker(Request::Tokenize { .. }))));
    assert!(s.session.dirty);
    // Enter commits the single-line field instead of breaking it.
    act(
        &mut s,
        Action::EditKey(tui_textarea::Input {
            key: tui_textarea::Key::Enter,
            ..Default::default()
        }),
    );
    assert_eq!(s.mode, Mode::Nav);
    assert!(!s.prompts.to_pairs()[0].clean.contains('\n'));
    // Tab moves between fields while editing.
    key(&mut s, Intent::Edit);
    key(&mut s, Intent::NextField);
    assert_eq!(s.prompts.field, 1);
    assert_eq!(s.mode, Mode::Edit);
    key(&mut s, Intent::Back);
    assert_eq!(s.mode, Mode::Nav);
}

#[test]
fn replies_to_superseded_tokenisations_are_dropped() {
    let mut s = ready();
    key(&mut s, Intent::ToggleBos);
    let old = s.jobs.tokenize.unwrap();
    key(&mut s, Intent::ToggleBos);
    let new = s.jobs.tokenize.unwrap();
    assert!(new > old);
    let mut stale = tokens();
    stale.pairs[0].clean = vec!["STALE".into()];
    worker(
        &mut s,
        WorkerMsg::Tokenized {
            job: old,
            result: stale,
        },
    );
    assert_ne!(
        s.prompts.tokens.as_ref().unwrap().pairs[0].clean[0],
        "STALE"
    );
    worker(
        &mut s,
        WorkerMsg::Tokenized {
            job: new,
            result: tokens(),
        },
    );
    assert_eq!(s.prompts.tokens.as_ref().unwrap().pairs[0].clean[0], "When");
}

#[test]
fn problems_in_the_prompts_block_a_run_with_the_reason() {
    let mut s = ready();
    let mut t = tokens();
    t.pairs[0].answer = Some(Err("\"Maryx\" is 2 tokens".into()));
    let job = s.jobs.tokenize.unwrap();
    worker(&mut s, WorkerMsg::Tokenized { job, result: t });
    let cmds = key(&mut s, Intent::RunSweep);
    assert!(!has_sweep_request(&cmds));
    assert!(s.status.unwrap().text.contains("2 tokens"));
}

#[test]
fn running_a_sweep_sends_the_settings_and_a_new_run_supersedes_the_old() {
    let mut s = ready();
    let cmds = key(&mut s, Intent::RunSweep);
    let Some(Command::Worker(Request::Sweep {
        job: first, spec, ..
    })) = cmds.last()
    else {
        panic!("{cmds:?}")
    };
    assert_eq!(spec.target, Target::ResidPre);
    assert_eq!(s.focus, Focus::Heatmap);
    assert_eq!(s.sweeps.len(), 1);
    let first = *first;
    // Again: the running sweep is cancelled, the same sweep entry reused.
    let cmds = key(&mut s, Intent::RunSweep);
    assert_eq!(cmds[0], Command::Cancel(first));
    assert!(has_sweep_request(&cmds));
    let second = s.running.as_ref().unwrap().job;
    assert!(second > first);
    assert_eq!(s.sweeps.len(), 1);
    // Progress of the superseded job is ignored.
    worker(
        &mut s,
        WorkerMsg::SweepProgress {
            job: first,
            done: 5,
            total: 9,
            elapsed: Duration::ZERO,
            eta: None,
            finished: vec![],
            baselines: baselines(),
        },
    );
    assert_eq!(s.running.as_ref().unwrap().done, 0);
}

#[test]
fn partial_results_fill_the_heatmap_centred_on_the_progress_baselines() {
    // A noising sweep with Gaussian noise: no prompt pair to compute
    // baselines from up front; they arrive with the progress.
    let mut s = ready();
    s.settings.spec.direction = patchbench::patching::Direction::Noise;
    s.settings.spec.corruption = patchbench::patching::Corruption::Gaussian {
        positions: vec![1],
        scale: None,
        samples: 2,
        seed: 0,
    };
    key(&mut s, Intent::RunSweep);
    let job = s.running.as_ref().unwrap().job;
    worker(
        &mut s,
        WorkerMsg::SweepStarted {
            job,
            start: Box::new(start(&["layer", "pos"], &[2, 6])),
        },
    );
    let g = s.sweep().unwrap().grid().unwrap();
    assert_eq!(g.centre("logit_diff"), None, "no baselines before progress");
    worker(
        &mut s,
        WorkerMsg::SweepProgress {
            job,
            done: 6,
            total: 12,
            elapsed: Duration::from_millis(300),
            eta: Some(Duration::from_millis(300)),
            finished: vec![(3, metrics(1.0))],
            baselines: baselines(),
        },
    );
    let r = s.running.as_ref().unwrap();
    assert_eq!((r.done, r.total), (6, 12));
    let g = s.sweep().unwrap().grid().unwrap();
    assert_eq!(g.value("logit_diff", 3), Some(1.0));
    assert_eq!(g.value("logit_diff_normalized", 3), Some(0.5));
    assert_eq!(g.value("logit_diff", 4), None);
    // Noising: "no effect" is the clean run, for every metric.
    assert_eq!(g.centre("logit_diff"), Some(4.0));
    assert_eq!(g.centre("logit_diff_normalized"), Some(1.0));
    assert_eq!(g.centre("prob"), Some(0.37));
}

#[test]
fn a_finished_sweep_is_stored_and_metrics_switch_without_rerunning() {
    let mut s = ready();
    run_to_done(&mut s, &["layer", "pos"], &[2, 6]);
    assert!(s.running.is_none());
    let v = s.sweep().unwrap();
    assert!(v.partial.is_none());
    let stored = v.stored.as_ref().unwrap();
    assert_eq!(stored.fingerprint, "f00d");
    assert_eq!(stored.answer, " Mary");
    assert!(s.session.dirty);
    assert!(s.status.clone().unwrap().text.contains("sweep done"));
    let m0 = s.heatmap.metric;
    for _ in 0..METRICS.len() {
        assert!(
            key(&mut s, Intent::MetricNext).is_empty(),
            "switching metric must not recompute"
        );
    }
    assert_eq!(s.heatmap.metric, m0);
    key(&mut s, Intent::MetricPrev);
    assert_eq!(s.heatmap.metric, (m0 + METRICS.len() - 1) % METRICS.len());
}

#[test]
fn escape_cancels_a_running_sweep() {
    let mut s = ready();
    key(&mut s, Intent::RunSweep);
    let job = s.running.as_ref().unwrap().job;
    let cmds = key(&mut s, Intent::Back);
    assert_eq!(cmds, vec![Command::Cancel(job)]);
    assert!(s.running.as_ref().unwrap().cancelling);
    assert!(key(&mut s, Intent::Back).is_empty(), "one cancel is enough");
    worker(
        &mut s,
        WorkerMsg::SweepFailed {
            job,
            error: "sweep cancelled".into(),
            cancelled: true,
        },
    );
    assert!(s.running.is_none());
    assert_eq!(s.status.unwrap().level, Level::Warn);
}

#[test]
fn the_cursor_moves_and_clamps_and_pages_through_three_axes() {
    let mut s = ready();
    run_to_done(&mut s, &["layer", "pos"], &[2, 6]);
    // On the strongest effect: the fake result grows with the cell index.
    assert_eq!(s.heatmap.cursor, vec![1, 5]);
    key(&mut s, Intent::Right);
    assert_eq!(s.heatmap.cursor, vec![1, 5]);
    key(&mut s, Intent::Down);
    key(&mut s, Intent::Down);
    key(&mut s, Intent::Left);
    assert_eq!(s.heatmap.cursor, vec![1, 4]);
    key(&mut s, Intent::ZoomIn);
    assert_eq!(s.heatmap.zoom, 5);

    // A [layer, pos, head] result pages over layers.
    s.settings.spec.target = Target::HeadOutByPos;
    run_to_done(&mut s, &["layer", "pos", "head"], &[2, 6, 4]);
    assert_eq!(s.sweeps.len(), 2);
    assert_eq!(s.heatmap.cursor.len(), 3);
    key(&mut s, Intent::PageNext);
    key(&mut s, Intent::PageNext);
    assert_eq!(s.heatmap.cursor[0], 1);
    // Switching sweeps brings back its settings.
    key(&mut s, Intent::SweepPrev);
    assert_eq!(s.selected_sweep, 0);
    assert_eq!(s.settings.spec.target, Target::ResidPre);
    assert_eq!(s.heatmap.cursor.len(), 2);
}

#[test]
fn enter_on_a_head_cell_drills_into_that_head() {
    let mut s = ready();
    s.settings.spec.target = Target::HeadOut;
    run_to_done(&mut s, &["layer", "head"], &[2, 4]);
    key(&mut s, Intent::Down);
    key(&mut s, Intent::Left);
    let cmds = key(&mut s, Intent::DrillDown);
    let Some(Command::Worker(Request::Drill { job, target, .. })) = cmds.last() else {
        panic!("{cmds:?}")
    };
    assert_eq!(*target, DrillTarget::Head { layer: 1, head: 2 });
    assert_eq!(s.focus, Focus::Drill);
    let job = *job;
    // A stale reply is dropped, the current one shown.
    worker(
        &mut s,
        WorkerMsg::Drilled {
            job: job - 1,
            result: Err("old".into()),
        },
    );
    assert!(s.drill.as_ref().unwrap().result.is_none());
    worker(
        &mut s,
        WorkerMsg::Drilled {
            job,
            result: Err("boom".into()),
        },
    );
    assert_eq!(
        s.drill.as_ref().unwrap().result,
        Some(Err::<DrillData, _>("boom".into()))
    );
    key(&mut s, Intent::Back);
    assert!(s.drill.is_none());
    assert_eq!(s.focus, Focus::Heatmap);
}

#[test]
fn residual_and_mlp_cells_drill_into_the_logit_lens_and_the_layer() {
    let mut s = ready();
    run_to_done(&mut s, &["layer", "pos"], &[2, 6]);
    let cmds = key(&mut s, Intent::DrillDown);
    assert!(matches!(
        cmds.last(),
        Some(Command::Worker(Request::Drill {
            target: DrillTarget::Lens { pos: 5, .. },
            ..
        }))
    ));
    key(&mut s, Intent::Back);
    s.settings.spec.target = Target::MlpOut;
    run_to_done(&mut s, &["layer", "pos"], &[2, 6]);
    // The cursor starts on the strongest effect: the last layer's last position.
    let cmds = key(&mut s, Intent::DrillDown);
    assert!(matches!(
        cmds.last(),
        Some(Command::Worker(Request::Drill {
            target: DrillTarget::Mlp {
                layer: 1,
                pos: Some(5)
            },
            ..
        }))
    ));
    // The sweep's per-position effect at that layer travels with the drill.
    assert_eq!(
        s.drill.as_ref().unwrap().effect_row.as_ref().unwrap().len(),
        6
    );
}

#[test]
fn quitting_with_unsaved_changes_asks_and_keeps_an_autosave() {
    let mut s = ready();
    assert_eq!(
        key(&mut s, Intent::Quit),
        vec![Command::Quit],
        "nothing to lose: quit at once"
    );
    let mut s = ready();
    key(&mut s, Intent::PairAdd);
    assert!(key(&mut s, Intent::Quit).is_empty());
    assert!(matches!(s.popup, Some(Popup::ConfirmQuit)));
    key(&mut s, Intent::No);
    assert!(s.popup.is_none() && !s.quit);
    key(&mut s, Intent::Quit);
    let cmds = key(&mut s, Intent::Yes);
    assert!(matches!(
        &cmds[0],
        Command::Save {
            kind: SaveKind::Autosave,
            ..
        }
    ));
    assert_eq!(cmds.last(), Some(&Command::Quit));
    assert!(s.quit);
}

#[test]
fn save_asks_for_a_path_once_then_saves_there() {
    let mut s = ready();
    run_to_done(&mut s, &["layer", "pos"], &[2, 6]);
    assert!(key(&mut s, Intent::Save).is_empty());
    assert!(matches!(s.popup, Some(Popup::SaveAs { .. })));
    assert_eq!(s.mode, Mode::Edit);
    let cmds = key(&mut s, Intent::Select);
    let Some(Command::Save {
        path,
        session,
        kind: SaveKind::SaveAs { overwrite: false },
    }) = cmds.first()
    else {
        panic!("{cmds:?}")
    };
    assert!(path.starts_with("/tmp/patchbench-test-sessions"));
    assert_eq!(session.sweeps.len(), 1);
    assert!(session.sweeps[0].result.is_some());
    let path = path.clone();
    let cmds = act(
        &mut s,
        Action::Saved {
            path: path.clone(),
            kind: SaveKind::SaveAs { overwrite: false },
            result: Ok(()),
        },
    );
    assert_eq!(cmds, vec![Command::RemoveAutosave]);
    assert!(!s.session.dirty);
    assert_eq!(s.session.path.as_ref(), Some(&path));
    key(&mut s, Intent::PairAdd);
    let cmds = key(&mut s, Intent::Save);
    assert!(
        matches!(&cmds[0], Command::Save { path: p, kind: SaveKind::Save, .. } if *p == path),
        "second save goes over the same file"
    );
}

#[test]
fn autosave_writes_only_when_there_are_unsaved_changes() {
    let mut s = ready();
    assert!(act(&mut s, Action::AutosaveDue).is_empty());
    key(&mut s, Intent::ToggleBos);
    let cmds = act(&mut s, Action::AutosaveDue);
    assert!(matches!(
        &cmds[0],
        Command::Save {
            kind: SaveKind::Autosave,
            ..
        }
    ));
}

#[test]
fn opening_a_session_shows_stored_results_without_recomputing() {
    let mut s = ready();
    s.settings.spec.target = Target::HeadOut;
    run_to_done(&mut s, &["layer", "head"], &[2, 4]);
    key(&mut s, Intent::Down);
    let saved = to_session(&s);

    let mut t = ready();
    let cmds = key(&mut t, Intent::Open);
    assert_eq!(cmds, vec![Command::ListSessions]);
    let entry = SessionListing {
        path: "/tmp/x.yaml".into(),
        name: "x".into(),
        modified: None,
        model: Some("random:gpt2-tiny".into()),
        first_prompt: None,
        n_sweeps: 1,
        error: None,
    };
    act(&mut t, Action::SessionsListed(vec![entry]));
    let cmds = key(&mut t, Intent::Select);
    assert_eq!(cmds, vec![Command::LoadSession("/tmp/x.yaml".into())]);
    let cmds = act(
        &mut t,
        Action::SessionLoaded {
            path: "/tmp/x.yaml".into(),
            result: Ok(loaded(saved)),
        },
    );
    assert!(!has_sweep_request(&cmds), "no recomputation: {cmds:?}");
    assert!(
        !cmds
            .iter()
            .any(|c| matches!(c, Command::Worker(Request::Load(_)))),
        "same model: no reload"
    );
    let v = t.sweep().unwrap();
    assert_eq!(v.spec.target, Target::HeadOut);
    assert!(v.stored.is_some());
    assert_eq!(t.heatmap.cursor, vec![1, 3]);
    assert!(!t.session.dirty);
    assert_eq!(t.stale_reason(), None);
}

#[test]
fn results_from_other_weights_are_marked_stale() {
    let mut s = ready();
    run_to_done(&mut s, &["layer", "pos"], &[2, 6]);
    assert_eq!(s.stale_reason(), None);
    let mut other = info();
    other.fingerprint = "beef".into();
    worker(&mut s, WorkerMsg::ModelLoaded(Box::new(other)));
    assert!(s.stale_reason().unwrap().contains("different model"));
    assert_eq!(s.status.clone().unwrap().level, Level::Warn);
    assert!(s
        .status
        .unwrap()
        .text
        .contains("1 of 1 stored results stale"));
}

#[test]
fn pairs_can_be_added_switched_and_removed_but_not_the_last() {
    let mut s = ready();
    key(&mut s, Intent::PairAdd);
    assert_eq!(s.prompts.pairs.len(), 2);
    assert_eq!(s.prompts.selected, 1);
    key(&mut s, Intent::PairNext);
    assert_eq!(s.prompts.selected, 0);
    key(&mut s, Intent::PairRemove);
    key(&mut s, Intent::PairRemove);
    assert_eq!(s.prompts.pairs.len(), 1);
    assert_eq!(s.status.unwrap().level, Level::Warn);
    let mut s = ready();
    assert_eq!(s.prompts.bos, None);
    key(&mut s, Intent::ToggleBos);
    assert_eq!(s.prompts.bos, Some(true));
    key(&mut s, Intent::ToggleBos);
    assert_eq!(s.prompts.bos, Some(false));
}

#[test]
fn settings_cycle_values_and_reestimate_but_the_metric_row_does_not() {
    let mut s = ready();
    key(&mut s, Intent::FocusNext);
    assert_eq!(s.focus, Focus::Settings);
    let cmds = key(&mut s, Intent::Right);
    assert_eq!(s.settings.spec.target, Target::ResidMid);
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::Worker(Request::Estimate { .. }))));
    key(&mut s, Intent::Left);
    key(&mut s, Intent::Left);
    assert_eq!(s.settings.spec.target, Target::TraceAttn, "cycles around");
    // Corruption: prompt -> gaussian brings its options.
    key(&mut s, Intent::Down);
    key(&mut s, Intent::Down);
    key(&mut s, Intent::Right);
    assert_eq!(s.settings.spec.corruption.name(), "gaussian");
    assert!(s.settings.rows().len() > 5);
    // The metric row is last.
    for _ in 0..10 {
        key(&mut s, Intent::Down);
    }
    let m = s.heatmap.metric;
    let cmds = key(&mut s, Intent::Right);
    assert!(cmds.is_empty());
    assert_eq!(s.heatmap.metric, (m + 1) % METRICS.len());
}

#[test]
fn an_autosave_found_at_start_is_offered_and_can_be_restored() {
    let mut s = ready();
    let mut other = ready();
    key(&mut other, Intent::PairAdd);
    let session = to_session(&other);
    act(
        &mut s,
        Action::AutosaveFound {
            path: "/tmp/a.yaml".into(),
            loaded: loaded(session),
            age: "2025-01-01 10:00 UTC".into(),
        },
    );
    assert!(matches!(s.popup, Some(Popup::RestoreAutosave { .. })));
    key(&mut s, Intent::Yes);
    assert_eq!(s.prompts.pairs.len(), 2);
    assert!(s.session.dirty, "restored work is unsaved");
    let mut s = ready();
    act(
        &mut s,
        Action::AutosaveFound {
            path: "/tmp/a.yaml".into(),
            loaded: loaded(to_session(&other)),
            age: "x".into(),
        },
    );
    assert_eq!(key(&mut s, Intent::No), vec![Command::RemoveAutosave]);
}

#[test]
fn every_action_has_a_name_and_a_description() {
    for i in Intent::ALL {
        assert!(!i.name().is_empty() && !i.description().is_empty());
        assert_eq!(Intent::from_name(i.name()), Some(*i));
    }
    assert_eq!(Action::AutosaveDue.name(), "autosave_due");
    assert!(!Action::Resize(1, 1).description().is_empty());
}

/// Types `text` at the end of the selected prompt field.
fn type_into_prompt(s: &mut patchbench::app::AppState, text: &str) {
    s.focus = Focus::Prompts;
    key(s, Intent::Edit);
    for c in text.chars() {
        act(
            s,
            Action::EditKey(tui_textarea::Input {
                key: tui_textarea::Key::Char(c),
                ..Default::default()
            }),
        );
    }
    key(s, Intent::Back);
}

/// Deletes the last `n` characters of the selected prompt field.
fn backspace_prompt(s: &mut patchbench::app::AppState, n: usize) {
    s.focus = Focus::Prompts;
    key(s, Intent::Edit);
    for _ in 0..n {
        act(
            s,
            Action::EditKey(tui_textarea::Input {
                key: tui_textarea::Key::Backspace,
                ..Default::default()
            }),
        );
    }
    key(s, Intent::Back);
}

#[test]
fn a_result_records_its_inputs_and_goes_stale_when_the_prompts_are_edited() {
    let mut s = ready();
    run_to_done(&mut s, &["layer", "pos"], &[2, 6]);
    let pairs = s.prompts.to_pairs();
    let refs: Vec<_> = pairs.iter().collect();
    let want = patchbench::session::results::digest(&s.settings.spec, &refs, s.prompts.bos);
    let stored = s.sweep().unwrap().stored.clone().unwrap();
    assert_eq!(stored.inputs, want);
    // The session layer agrees it is current.
    assert!(patchbench::session::stale_results(&to_session(&s), Some("f00d")).is_empty());
    assert_eq!(s.stale_reason(), None);

    type_into_prompt(&mut s, "!");
    let why = s.stale_reason().expect("stale after editing the prompt");
    assert!(why.contains("edited"), "{why}");
    let saved = to_session(&s);
    assert_eq!(
        patchbench::session::stale_results(&saved, Some("f00d")).len(),
        1,
        "a saved session knows too"
    );
    // Undoing the edit makes it current again.
    backspace_prompt(&mut s, 1);
    assert_eq!(s.stale_reason(), None);
    // The BOS choice is part of the inputs too.
    key(&mut s, Intent::ToggleBos);
    assert!(s.stale_reason().is_some());
}

#[test]
fn prompts_edited_while_a_sweep_runs_leave_its_result_stale() {
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
    type_into_prompt(&mut s, "!");
    worker(
        &mut s,
        WorkerMsg::SweepDone {
            job,
            result: Box::new(result(&["layer", "pos"], &[2, 6])),
            computed_at: "2025-01-01T00:00:00Z".into(),
        },
    );
    assert!(s.sweep().unwrap().stored.is_some());
    assert!(
        s.stale_reason().is_some(),
        "computed from the prompts before the edit"
    );
}

#[test]
fn a_session_opens_with_results_of_other_weights_marked_stale_and_its_repairs_shown() {
    let mut s = ready();
    run_to_done(&mut s, &["layer", "pos"], &[2, 6]);
    let mut saved = to_session(&s);
    saved.sweeps[0].result.as_mut().unwrap().fingerprint = "0ld".into();
    let warning = patchbench::session::Problem::warning(
        "ui.selected_sweep",
        "points past the last sweep; set to 0",
    );

    let mut t = ready();
    act(
        &mut t,
        Action::SessionLoaded {
            path: "/tmp/x.yaml".into(),
            result: Ok(Box::new(Loaded {
                session: saved,
                warnings: vec![warning],
            })),
        },
    );
    let why = t.stale_reason().expect("marked stale at open");
    assert!(why.contains("0ld") && why.contains("f00d"), "{why}");
    let st = t.status.clone().unwrap();
    assert_eq!(st.level, Level::Warn);
    assert!(st.text.contains("opened /tmp/x.yaml"), "{}", st.text);
    assert!(
        st.text.contains("1 of 1 stored results stale"),
        "{}",
        st.text
    );
    assert!(
        st.text
            .contains("repaired on load: ui.selected_sweep: points past the last sweep"),
        "{}",
        st.text
    );
    // The stored result is still shown, marked; nothing recomputed.
    assert!(t.sweep().unwrap().grid().is_some());
}

#[test]
fn a_session_for_another_model_is_judged_by_that_model_once_it_loads() {
    let mut s = ready();
    run_to_done(&mut s, &["layer", "pos"], &[2, 6]);
    let mut saved = to_session(&s);
    saved.model.source = "tests/fixtures/other".into();
    saved.model.fingerprint = Some("0ther".into());
    saved.sweeps[0].result.as_mut().unwrap().fingerprint = "0ther".into();

    let mut t = ready();
    let cmds = act(
        &mut t,
        Action::SessionLoaded {
            path: "/tmp/x.yaml".into(),
            result: Ok(loaded(saved)),
        },
    );
    assert!(cmds.iter().any(
        |c| matches!(c, Command::Worker(Request::Load(l)) if l.source == "tests/fixtures/other")
    ));
    // The model being replaced does not judge the session's results.
    assert_eq!(t.stale_reason(), None);
    assert_eq!(t.status.clone().unwrap().level, Level::Info);
    // The recorded fingerprint is kept until a model is loaded.
    assert_eq!(to_session(&t).model.fingerprint.as_deref(), Some("0ther"));

    let mut same = info();
    same.fingerprint = "0ther".into();
    worker(&mut t, WorkerMsg::ModelLoaded(Box::new(same)));
    assert_eq!(t.stale_reason(), None);
    let mut other = info();
    other.fingerprint = "n3w".into();
    worker(&mut t, WorkerMsg::ModelLoaded(Box::new(other)));
    assert!(t.stale_reason().unwrap().contains("n3w"));
}

#[test]
fn rerunning_a_stale_sweep_clears_the_mark() {
    let mut s = ready();
    run_to_done(&mut s, &["layer", "pos"], &[2, 6]);
    type_into_prompt(&mut s, "!");
    assert!(s.stale_reason().is_some());
    run_to_done(&mut s, &["layer", "pos"], &[2, 6]);
    assert_eq!(s.stale_reason(), None);
}

#[test]
fn export_writes_the_shown_heatmap_as_svg_beside_the_session_or_in_the_data_dir() {
    let mut s = ready();
    key(&mut s, Intent::Export);
    assert_eq!(s.status.clone().unwrap().level, Level::Warn);

    // While running there is nothing final to export.
    key(&mut s, Intent::RunSweep);
    assert!(key(&mut s, Intent::Export).is_empty());
    assert!(s.status.clone().unwrap().text.contains("still running"));
    key(&mut s, Intent::Back);

    s.settings.spec.target = Target::HeadOut;
    run_to_done(&mut s, &["layer", "head"], &[2, 4]);
    let cmds = key(&mut s, Intent::Export);
    let Some(Command::Export { path, svg }) = cmds.first() else {
        panic!("{cmds:?}")
    };
    // Unsaved: into the data directory.
    assert_eq!(
        path,
        &std::path::PathBuf::from(
            "/tmp/patchbench-test-data/random-gpt2-tiny-sweep2-head_out-logit_diff_normalized.svg"
        )
    );
    assert!(svg.starts_with("<svg") && svg.contains("head_out"), "{svg}");

    // Saved: beside the session file, in the metric shown.
    act(
        &mut s,
        Action::Saved {
            path: "/work/ioi.yaml".into(),
            kind: SaveKind::SaveAs { overwrite: false },
            result: Ok(()),
        },
    );
    key(&mut s, Intent::MetricNext);
    let cmds = key(&mut s, Intent::Export);
    let Some(Command::Export { path, svg }) = cmds.first() else {
        panic!("{cmds:?}")
    };
    assert_eq!(
        path,
        &std::path::PathBuf::from("/work/ioi-sweep2-head_out-logprob.svg")
    );
    assert!(svg.contains("logprob"));
    let path = path.clone();
    act(
        &mut s,
        Action::Exported {
            path: path.clone(),
            result: Ok(()),
        },
    );
    let st = s.status.clone().unwrap();
    assert_eq!(st.level, Level::Info);
    assert!(st.text.contains("/work/ioi-sweep2-head_out-logprob.svg"));
    act(
        &mut s,
        Action::Exported {
            path,
            result: Err("permission denied".into()),
        },
    );
    let st = s.status.clone().unwrap();
    assert_eq!(st.level, Level::Error);
    assert!(st.text.contains("permission denied"));
}

#[test]
fn export_is_bound_and_described_for_the_help_screen() {
    assert_eq!(Intent::from_name("export"), Some(Intent::Export));
    assert!(Intent::Export.description().contains("SVG"));
}

#[test]
fn save_as_asks_before_replacing_an_existing_file() {
    let mut s = ready();
    key(&mut s, Intent::SaveAs);
    let cmds = key(&mut s, Intent::Select);
    let Some(Command::Save { path, .. }) = cmds.first() else {
        panic!("{cmds:?}")
    };
    let path = path.clone();
    act(&mut s, Action::SaveTargetExists { path: path.clone() });
    assert!(matches!(&s.popup, Some(Popup::ConfirmOverwrite { path: p }) if *p == path));
    // No: back to choosing a name.
    key(&mut s, Intent::No);
    assert!(matches!(s.popup, Some(Popup::SaveAs { .. })));
    assert_eq!(s.mode, Mode::Edit);
    key(&mut s, Intent::Select);
    act(&mut s, Action::SaveTargetExists { path: path.clone() });
    // Yes: replace it.
    let cmds = key(&mut s, Intent::Yes);
    assert!(matches!(
        &cmds[0],
        Command::Save { path: p, kind: SaveKind::SaveAs { overwrite: true }, .. } if *p == path
    ));
    assert!(s.popup.is_none());
}

#[test]
fn save_and_quit_quits_only_once_the_save_succeeded() {
    let mut s = ready();
    key(&mut s, Intent::PairAdd);
    key(&mut s, Intent::Quit);
    let cmds = key(&mut s, Intent::Save);
    let Some(Command::Save { path, kind, .. }) = cmds.first() else {
        panic!("{cmds:?}")
    };
    assert!(!cmds.contains(&Command::Quit) && !s.quit);
    let (path, kind) = (path.clone(), *kind);
    act(
        &mut s,
        Action::Saved {
            path: path.clone(),
            kind,
            result: Err("disk full".into()),
        },
    );
    assert!(!s.quit, "a failed save keeps the work open");
    assert_eq!(s.status.clone().unwrap().level, Level::Error);

    key(&mut s, Intent::Quit);
    key(&mut s, Intent::Save);
    let cmds = act(
        &mut s,
        Action::Saved {
            path,
            kind,
            result: Ok(()),
        },
    );
    assert_eq!(cmds.last(), Some(&Command::Quit));
    assert!(s.quit);
}
