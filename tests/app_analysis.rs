//! The drill-down computations (`analysis`) on the tiny GPT-2 fixture:
//! attention patterns are causal distributions, the logit lens at the last
//! residual is the model's own output, attributions are consistent.

use patchbench::analysis::{estimate, head, lens, mlp};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::{HookPoint, LoadedModel};
use patchbench::patching::{prepare_pairs, EngineOptions, SweepSpec, Target};

fn setup() -> (LoadedModel, Vec<patchbench::patching::PreparedPair>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gpt2-tiny");
    let opts = LoadOptions {
        device: candle_core::Device::Cpu,
        dtype: candle_core::DType::F32,
    };
    let m = LoadedModel::load(dir, &opts).expect("the gpt2-tiny fixture loads");
    let pair = patchbench::app::example_pair(dir);
    let pairs = prepare_pairs(&m.tokenizer, &[pair], None).unwrap();
    (m, pairs)
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
    let (c, k) = estimate::logit_diff_baselines(&m.model, &pairs).unwrap();
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
    let t = candle_core::Tensor::new(p.clean.as_slice(), m.model.device())
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
    let logits: Vec<f32> = out.logits.unwrap().squeeze(0).unwrap().to_vec1().unwrap();
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
