//! Every target on every family fixture either runs with finite results or
//! is refused before anything runs, with a message naming the family and the
//! hook; sweep specs with impossible values are refused by the library, the
//! CLI and `sweep --session` alike. Nothing panics.

mod common;

use std::process::{Command, Output};

use common::fixture;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::plan::plan;
use patchbench::patching::spec::ALL_TARGETS;
use patchbench::patching::{
    available_targets, prepare_pairs, run_sweep, Corruption, EngineOptions, Method, PromptPair,
    SpecError, SweepError, SweepSpec, Target, METRICS,
};

/// Every family the loaders know, in their tiny fixtures.
const FAMILIES: &[&str] = &[
    "gpt2-tiny",
    "pythia-tiny",
    "pythia-seq-tiny",
    "llama-tiny",
    "qwen2-tiny",
    "gemma-tiny",
    "gemma2-tiny",
    "gemma3-tiny",
];

const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const CORRUPTED: &str = "When John and Mary went to the store, John gave a drink to";

fn load(name: &str) -> LoadedModel {
    let opts = LoadOptions::cpu();
    LoadedModel::load(fixture(name).to_str().unwrap(), &opts).unwrap()
}

fn pair() -> PromptPair {
    PromptPair {
        clean: CLEAN.into(),
        corrupted: Some(CORRUPTED.into()),
        answer: " Mary".into(),
        wrong: " John".into(),
    }
}

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_target_on_every_family_runs_finite_or_is_refused_by_name() {
    for family in FAMILIES {
        let m = load(family);
        let pairs = prepare_pairs(&m.tokenizer, &[pair()], None).unwrap();
        let n_pos = pairs[0].n_pos();
        let available = available_targets(&m.model.cfg);
        for &target in ALL_TARGETS {
            // Both sequential and parallel blocks must be exercised.
            let spec = SweepSpec {
                window: 1,
                ..SweepSpec::new(target)
            };
            for method in [Method::Fast, Method::Naive] {
                let opts = EngineOptions {
                    method,
                    ..Default::default()
                };
                let what = format!("{family} {target} {method:?}");
                let got = run_sweep(&m.model, &pairs, &spec, &opts, None, &mut |_| {});
                if available.contains(&target) {
                    let r = got.unwrap_or_else(|e| panic!("{what}: {e}"));
                    let cells = plan(&m.model.cfg, n_pos, &spec).cells;
                    assert_eq!(r.n_cells(), cells.len(), "{what}");
                    for name in METRICS {
                        for (i, (v, cell)) in r.metrics[*name].iter().zip(&cells).enumerate() {
                            assert_eq!(
                                v.is_finite(),
                                cell.is_some(),
                                "{what}: {name}[{i}] = {v} (cells that exist are finite, \
                                 the others NaN)"
                            );
                        }
                    }
                } else {
                    let e = match got {
                        Err(SweepError::Spec(e @ SpecError::TargetUnavailable { .. })) => e,
                        Err(e) => panic!("{what}: refused with the wrong error: {e}"),
                        Ok(_) => panic!("{what}: ran although the model lacks the hook"),
                    };
                    let msg = e.to_string();
                    assert!(
                        msg.contains(&m.model.cfg.family) && msg.contains(target.name()),
                        "{what}: {msg}"
                    );
                    assert!(target.check_model(&m.model.cfg).is_err(), "{what}");
                }
            }
        }
    }
}

#[test]
fn only_parallel_blocks_lack_resid_mid() {
    for family in FAMILIES {
        let cfg = load(family).model.cfg;
        let missing: Vec<Target> = ALL_TARGETS
            .iter()
            .copied()
            .filter(|t| !t.available_for(&cfg))
            .collect();
        let expected = if cfg.parallel_attn_mlp {
            vec![Target::ResidMid]
        } else {
            vec![]
        };
        assert_eq!(missing, expected, "{family}");
    }
    let cfg = load("pythia-tiny").model.cfg;
    assert!(cfg.parallel_attn_mlp, "the fixture is the parallel one");
    let msg = SweepSpec::new(Target::ResidMid)
        .check_model(&cfg)
        .unwrap_err()
        .to_string();
    for part in [
        "resid_mid",
        "blocks.{l}.hook_resid_mid",
        "gpt_neox",
        "parallel",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
}

fn gaussian(samples: usize, scale: Option<f32>) -> SweepSpec {
    SweepSpec {
        corruption: Corruption::Gaussian {
            positions: vec![1],
            scale,
            samples,
            seed: 0,
        },
        ..SweepSpec::new(Target::TraceHidden)
    }
}

#[test]
fn impossible_spec_values_are_refused_with_the_value_and_the_fix() {
    let bad: Vec<(SweepSpec, &[&str])> = vec![
        (gaussian(0, None), &["samples is 0", "1 or more"]),
        (
            gaussian(1_000_000_000, None),
            &["1000000000", "at most 10000"],
        ),
        (gaussian(10, Some(0.0)), &["scale is 0", "positive"]),
        (
            gaussian(10, Some(-1.0)),
            &["scale is -1", "omit --noise-scale"],
        ),
        (gaussian(10, Some(f32::NAN)), &["scale is NaN"]),
        (gaussian(10, Some(f32::INFINITY)), &["scale is inf"]),
        (
            SweepSpec {
                window: 0,
                ..SweepSpec::new(Target::TraceMlp)
            },
            &["window is 0", "trace_mlp", "--window 1"],
        ),
    ];
    let m = load("gpt2-tiny");
    let pairs = prepare_pairs(&m.tokenizer, &[pair()], None).unwrap();
    for (spec, parts) in bad {
        let msg = spec.validate().unwrap_err().to_string();
        for part in parts {
            assert!(msg.contains(part), "{part:?} missing from: {msg}");
        }
        // The engine refuses it too, before running anything.
        let mut calls = 0;
        let e = run_sweep(
            &m.model,
            &pairs,
            &spec,
            &EngineOptions::default(),
            None,
            &mut |_| calls += 1,
        )
        .unwrap_err();
        assert!(matches!(e, SweepError::Spec(_)), "{e}");
        assert_eq!(calls, 0, "no progress before the refusal");
    }
    for ok in [
        gaussian(1, None),
        gaussian(10_000, Some(0.1)),
        SweepSpec {
            window: 0,
            ..SweepSpec::new(Target::ResidPre)
        },
        SweepSpec {
            window: 1000,
            ..SweepSpec::new(Target::TraceAttn)
        },
    ] {
        ok.validate().unwrap();
    }
}

#[test]
fn cli_sweep_refuses_a_missing_target_and_impossible_values() {
    let pythia = fixture("pythia-tiny");
    let base = [
        "sweep",
        "--model",
        pythia.to_str().unwrap(),
        "--clean",
        CLEAN,
        "--corrupted",
        CORRUPTED,
        "--answer",
        " Mary",
        "--wrong",
        " John",
    ];
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--target", "resid_mid"],
            &["resid_mid", "hook_resid_mid", "gpt_neox", "use resid_pre"],
        ),
        (
            &[
                "--target",
                "trace_hidden",
                "--corruption",
                "gaussian",
                "--samples",
                "0",
            ],
            &["--samples", "0"],
        ),
        (
            &[
                "--target",
                "trace_hidden",
                "--corruption",
                "gaussian",
                "--samples",
                "1000000000",
            ],
            &["1000000000", "10000"],
        ),
        (
            &[
                "--target",
                "trace_hidden",
                "--corruption",
                "gaussian",
                "--noise-scale=-2",
            ],
            &["scale", "-2"],
        ),
        (
            &[
                "--target",
                "trace_hidden",
                "--corruption",
                "gaussian",
                "--noise-scale",
                "NaN",
            ],
            &["scale", "NaN"],
        ),
        (
            &["--target", "trace_mlp", "--window", "0"],
            &["window", "0"],
        ),
    ];
    // Either the argument parser or `SweepSpec::validate` may refuse; both
    // name the argument and the value.
    for (extra, parts) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let out = bin(&args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{extra:?} succeeded");
        assert!(!err.contains("panicked"), "{extra:?}: {err}");
        assert!(out.stdout.is_empty(), "{extra:?}: no output on refusal");
        for part in *parts {
            assert!(
                err.contains(part),
                "{extra:?}: {part:?} missing from: {err}"
            );
        }
    }
    // The same sweep on the sequential NeoX fixture runs.
    let seq = fixture("pythia-seq-tiny");
    let mut args = base.to_vec();
    args[2] = seq.to_str().unwrap();
    args.extend_from_slice(&["--target", "resid_mid"]);
    let out = bin(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn sweep_session_refuses_a_target_the_model_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yaml");
    let yaml = format!(
        "version: 1\nmodel:\n  source: {}\nprompts:\n- clean: {CLEAN}\n  corrupted: {CORRUPTED}\n  \
         answer: ' Mary'\n  wrong: ' John'\nsweeps:\n- spec: {{target: resid_mid}}\n\
         - spec: {{target: resid_pre}}\n",
        fixture("pythia-tiny").display()
    );
    std::fs::write(&file, yaml).unwrap();
    let out = bin(&["sweep", "--session", file.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("sweep 0") && err.contains("hook_resid_mid") && err.contains("gpt_neox"),
        "{err}"
    );
    assert!(err.contains("1 of 2 sweeps failed"), "{err}");
}

#[test]
fn the_sweep_pane_offers_only_targets_the_model_has() {
    use patchbench::app::settings::SettingsState;
    let cfg = load("pythia-tiny").model.cfg;
    for delta in [1, -1] {
        let mut settings = SettingsState::new(SweepSpec::new(Target::ResidPre));
        let mut metric = 0;
        let mut seen = Vec::new();
        for _ in 0..ALL_TARGETS.len() {
            assert!(settings.change(delta, &mut metric, Some(&cfg)));
            seen.push(settings.spec.target);
        }
        assert!(!seen.contains(&Target::ResidMid), "{seen:?}");
        let expected = available_targets(&cfg);
        assert!(expected.iter().all(|t| seen.contains(t)), "{seen:?}");
    }
    // Without a loaded model every target is offered.
    let mut settings = SettingsState::new(SweepSpec::new(Target::ResidPre));
    settings.change(1, &mut 0, None);
    assert_eq!(settings.spec.target, Target::ResidMid);
}
