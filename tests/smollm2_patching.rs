//! Factual recall in the real SmolLM2-135M-Instruct (GGUF Q4_1): the
//! resid_pre denoising sweep shows the classic picture — the answer-relevant
//! information sits on the subject tokens through the early and middle
//! layers and moves to the last position in the final layers.

mod common;

use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::{
    prepare_pairs, run_sweep, EngineOptions, PromptPair, SweepSpec, Target,
};

#[test]
fn eiffel_tower_resid_pre_sweep_has_the_factual_recall_shape() {
    let path = common::smollm2_gguf();
    let opts = LoadOptions::cpu();
    let m = LoadedModel::load(path.to_str().unwrap(), &opts).unwrap();
    let pair = PromptPair {
        clean: "The Eiffel Tower is located in the city of".into(),
        corrupted: Some("The Colosseum is located in the city of".into()),
        answer: " Paris".into(),
        wrong: " Rome".into(),
    };
    let prepared = prepare_pairs(&m.tokenizer, &[pair], None).unwrap();
    let tokens = m.tokenizer.token_strs(&prepared[0].clean);
    assert_eq!(tokens[1..3], [" E".to_string(), "iffel".to_string()]);
    let r = run_sweep(
        &m.model,
        &prepared,
        &SweepSpec::new(Target::ResidPre),
        &EngineOptions::default(),
        None,
        &mut |_| {},
    )
    .unwrap();
    // Reference values from transformers (tests/fixtures/smollm2/reference.json): +4.81 and -9.06.
    assert!(
        (r.baselines.clean.logit_diff() - 4.81).abs() < 0.05,
        "{:?}",
        r.baselines.clean
    );
    assert!(
        (r.baselines.corrupted.logit_diff() + 9.06).abs() < 0.05,
        "{:?}",
        r.baselines.corrupted
    );

    let (n_layers, n_pos) = (r.shape[0], r.shape[1]);
    let norm = &r.metrics["logit_diff_normalized"];
    let argmax = |l: usize| {
        (0..n_pos)
            .max_by(|&a, &b| norm[l * n_pos + a].total_cmp(&norm[l * n_pos + b]))
            .unwrap()
    };
    let subject = [1, 2, 3]; // " E", "iffel", " Tower"
    for l in 0..n_layers / 2 {
        let p = argmax(l);
        assert!(
            subject.contains(&p),
            "layer {l}: strongest effect at {:?}, not the subject",
            tokens[p]
        );
        assert!(
            norm[l * n_pos + p] > 0.5,
            "layer {l}: subject effect only {}",
            norm[l * n_pos + p]
        );
    }
    for l in n_layers - 3..n_layers {
        assert_eq!(
            argmax(l),
            n_pos - 1,
            "layer {l}: the effect should sit on the last position"
        );
        assert!(norm[l * n_pos + n_pos - 1] > 0.7);
        assert!(
            norm[l * n_pos + 2].abs() < 0.1,
            "layer {l}: the subject still matters"
        );
    }
}
