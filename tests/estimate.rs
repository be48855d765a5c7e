//! The estimate shown before a sweep plans the batches the engine runs, so
//! its counts are the engine's; its time is checked against measured times
//! in `patchbench bench estimate`, never here. `bench` refuses arguments
//! that cannot run, with words instead of tensor errors.

mod common;

use std::process::Command;

use common::fixture;
use patchbench::analysis::estimate::measure;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::{
    prepare_pairs, run_sweep, Corruption, Direction, EngineOptions, Method, PromptPair, SweepSpec,
    Target,
};

#[test]
fn the_estimate_counts_the_passes_the_engine_runs() {
    let opts = LoadOptions::cpu();
    for family in ["gpt2-tiny", "llama-tiny"] {
        let m = LoadedModel::load(fixture(family).to_str().unwrap(), &opts).unwrap();
        let pair = PromptPair {
            clean: "When Mary and John went to the store, John gave a drink to".into(),
            corrupted: Some("When John and Mary went to the store, John gave a drink to".into()),
            answer: " Mary".into(),
            wrong: " John".into(),
        };
        let pairs = prepare_pairs(&m.tokenizer, &[pair.clone(), pair], None).unwrap();
        let gaussian = |target| SweepSpec {
            corruption: Corruption::Gaussian {
                positions: vec![],
                scale: None,
                samples: 3,
                seed: 1,
            },
            ..SweepSpec::new(target)
        };
        let specs = [
            SweepSpec::new(Target::ResidPre),
            SweepSpec::new(Target::HeadOut),
            SweepSpec::new(Target::HeadPatternByPos),
            SweepSpec {
                direction: Direction::Noise,
                ..SweepSpec::new(Target::BlockEvery)
            },
            gaussian(Target::TraceHidden),
            gaussian(Target::TraceMlp),
        ];
        for spec in specs {
            for method in [Method::Fast, Method::Naive] {
                let eo = EngineOptions {
                    method,
                    max_batch_tokens: 40,
                    ..Default::default()
                };
                let est = measure(&m.model, &pairs, &spec, &eo).unwrap();
                let r = run_sweep(&m.model, &pairs, &spec, &eo, None, &mut |_| {}).unwrap();
                let what = format!("{family} {} {method:?}", spec.target);
                assert_eq!(est.passes, r.timing.forward_passes, "{what}");
                assert_eq!(est.cells, r.n_cells(), "{what}");
                assert!(est.seconds.is_finite() && est.seconds > 0.0, "{what}");
            }
        }
    }
}

#[test]
fn bench_refuses_arguments_that_cannot_run() {
    let bench = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_patchbench"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let tiny = fixture("gpt2-tiny");
    let model = tiny.to_str().unwrap();
    for (args, want) in [
        (
            vec!["forward", "--model", model, "--batch", "0"],
            "batch must be at least 1",
        ),
        (
            vec!["forward", "--model", model, "--iters", "0"],
            "--iters 0",
        ),
        (
            vec!["forward", "--model", model, "--iters", "100000000"],
            "between 1 and 100000",
        ),
        (
            vec!["forward", "--model", model, "--tokens", "0"],
            "--tokens 0",
        ),
        (
            vec![
                "forward",
                "--model",
                model,
                "--batch",
                "4611686018427387904",
            ],
            "--batch x --tokens",
        ),
    ] {
        let err = bench(&args);
        assert!(err.contains(want), "{args:?}: {want:?} missing from: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("empty tensor"),
            "{err}"
        );
    }
}
