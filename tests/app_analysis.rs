//! The drill-down computations (`analysis`) and the worker on the tiny
//! GPT-2 fixture: attention patterns are causal distributions, the logit
//! lens at the last residual is the model's own output, attributions are
//! consistent, partial sweep results are normalised as the final ones.

use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::Duration;

use patchbench::analysis::{estimate, head, lens, mlp};
use patchbench::app::messages::{LoadSpec, PairsInput, Request, WorkerMsg};
use patchbench::app::worker::Worker;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::{HookPoint, LoadedModel};
use patchbench::patching::{
    prepare_pairs, Corruption, Direction, EngineOptions, SweepSpec, Target,
};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gpt2-tiny");

fn setup() -> (LoadedModel, Vec<patchbench::patching::PreparedPair>) {
    let opts = LoadOptions::cpu();
    let m = LoadedModel::load(FIXTURE, &opts).expect("the gpt2-tiny fixture loads");
    let pair = patchbench::app::example_pair(FIXTURE);
    let pairs = prepare_pairs(&m.tokenizer, &[pair], None).unwrap();
    (m, pairs)
}

/// The last position's logits of a plain forward of `tokens`.
fn last_logits(m: &LoadedModel, tokens: &[u32]) -> Vec<f32> {
    let t = candle_core::Tensor::new(tokens, m.model.device())
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let out = m
        .model
        .forward(
            Some(&t),
            &patchbench::model::HookSpec::new(),
            &patchbench::model::ForwardOptions {
                last_pos_only: true,
                ..Default::default()
            },
        )
        .unwrap();
    out.logits.unwrap().squeeze(0).unwrap().to_vec1().unwrap()
}

#[test]
fn head_patterns_are_causal_distributions() {
    let (m, pairs) = setup();
    let p = &pairs[0];
    let d = head::head(&m, p, 1, 2).unwrap();
    let n = p.n_pos();
    for q in 0..n {
        let row = &d.pattern_clean[q * n..(q + 1) * n];
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!(
            row[q + 1..].iter().all(|&v| v == 0.0),
            "no attention to the future"
        );
    }
    assert!(d.top_clean.windows(2).all(|w| w[0].value >= w[1].value));
    // The whole model's logit diff matches a plain forward.
    let ld = |tokens: &[u32]| {
        let l = last_logits(&m, tokens);
        l[p.answer as usize] - l[p.wrong as usize]
    };
    let (c, k) = (ld(&p.clean), ld(&p.corrupted));
    assert!((d.logit_diff_clean - c).abs() < 1e-4 && (d.logit_diff_corrupted - k).abs() < 1e-4);
    assert!(d.dla_clean.is_finite());
    assert!(head::head(&m, p, 9, 0).is_err());
}

#[test]
fn the_logit_lens_at_the_last_residual_is_the_models_output() {
    let (m, pairs) = setup();
    let p = &pairs[0];
    let last = m.config().n_layers - 1;
    let l = lens::logit_lens(&m, p, HookPoint::ResidPost(last), p.n_pos() - 1).unwrap();
    // Compare with the clean run's own softmax.
    let logits = last_logits(&m, &p.clean);
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let z: f32 = logits.iter().map(|x| (x - max).exp()).sum();
    let p_answer = (logits[p.answer as usize] - max).exp() / z;
    assert!(
        (l.answer_clean.0 - p_answer).abs() < 1e-4,
        "{} vs {p_answer}",
        l.answer_clean.0
    );
    assert!(l.top_clean.windows(2).all(|w| w[0].value >= w[1].value));
}

#[test]
fn mlp_neurons_are_ranked_by_effect_and_effects_add_up() {
    let (m, pairs) = setup();
    let d = mlp::mlp(&m, &pairs[0], 0).unwrap();
    assert_eq!(d.delta_norm.len(), pairs[0].n_pos());
    // Positions before the first difference are untouched.
    let first = pairs[0].differing_positions()[0];
    assert!(d.delta_norm[..first].iter().all(|&v| v < 1e-5));
    assert!(d
        .neurons
        .windows(2)
        .all(|w| w[0].effect.abs() >= w[1].effect.abs()));
    for n in &d.neurons {
        assert!((n.effect - (n.act_clean - n.act_corrupted) * n.direct).abs() < 1e-4);
    }
    assert!(!d.promoted.is_empty() && !d.method.is_empty());
    let a = mlp::attn_layer(&m, &pairs[0], 1).unwrap();
    assert_eq!(a.head_dla_clean.len(), m.config().n_heads);
}

#[test]
fn the_estimate_counts_the_planned_cells() {
    let (m, pairs) = setup();
    let t = estimate::measure_forward(&m.model, &pairs[0].clean).unwrap();
    let e = estimate::estimate(
        m.config(),
        &pairs,
        &SweepSpec::new(Target::ResidPre),
        &t,
        &EngineOptions::default(),
    );
    assert_eq!(e.cells, m.config().n_layers * pairs[0].n_pos());
    assert_eq!(e.naive_passes, e.cells + 2);
    assert!(e.passes <= e.naive_passes && e.seconds > 0.0);
}

#[test]
fn the_worker_streams_normalised_cells_for_every_corruption() {
    let (tx, rx) = channel();
    let worker = Worker::spawn(Arc::new(move |m| {
        let _ = tx.send(m);
    }));
    let next = || {
        rx.recv_timeout(Duration::from_secs(120))
            .expect("the worker answers")
    };
    worker.send(Request::Load(LoadSpec {
        source: FIXTURE.into(),
        device: "cpu".into(),
        weights: "f32".into(),
    }));
    loop {
        match next() {
            WorkerMsg::ModelLoaded(_) => break,
            WorkerMsg::ModelFailed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    let corruptions = [
        Corruption::Prompt,
        Corruption::Gaussian {
            positions: vec![],
            scale: None,
            samples: 2,
            seed: 1,
        },
        Corruption::Zero { positions: vec![] },
        Corruption::Mean { positions: vec![] },
    ];
    for (job, corruption) in (1..).zip(corruptions) {
        let name = corruption.name();
        let mut spec = SweepSpec::new(Target::ResidPre);
        spec.corruption = corruption;
        spec.direction = Direction::Noise;
        // One at a time: a queued sweep is superseded by a newer one.
        worker.send(Request::Sweep {
            job,
            input: PairsInput {
                pairs: vec![patchbench::app::example_pair(FIXTURE)],
                prepend_bos: None,
                labels: vec![],
            },
            spec,
            checkpoint: None,
        });
        let mut streamed = vec![];
        let mut progress_baselines = None;
        let result = loop {
            match next() {
                WorkerMsg::SweepProgress {
                    job: j,
                    finished,
                    baselines,
                    ..
                } if j == job => {
                    streamed.extend(finished);
                    progress_baselines = Some(baselines);
                }
                WorkerMsg::SweepDone { job: j, result, .. } if j == job => break result,
                WorkerMsg::SweepFailed { error, .. } => panic!("{name}: {error}"),
                _ => {}
            }
        };
        assert_eq!(
            streamed.len(),
            result.n_cells(),
            "{name}: every cell streamed"
        );
        assert_eq!(progress_baselines, Some(result.baselines), "{name}");
        for (c, m) in streamed {
            let norm = |m: &patchbench::patching::Metrics| m.get("logit_diff_normalized").unwrap();
            let (got, want) = (norm(&m), norm(&result.cell(c)));
            assert!(
                got.is_finite() && (got - want).abs() < 1e-4,
                "{name}: cell {c}: streamed {got} vs final {want}"
            );
        }
    }
}
