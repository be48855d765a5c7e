//! The real Gemma 3 270M (Q4_K_M GGUF, fetched by scripts/fetch-gemma3.sh,
//! path in `PATCHBENCH_GEMMA3_GGUF`): its 262k-entry SentencePiece
//! tokenizer, rebuilt from the GGUF metadata, splits awkward strings as
//! transformers' tokenizer for the same file does
//! (tools/gemma3_tokenizer_reference.py, tests/fixtures/gemma3-270m/tokens.json)
//! and prepends `<bos>`,
//! it says " Paris" after the Eiffel prompt, its logits match transformers'
//! GGUF loader (tools/gemma3_reference.py,
//! tests/fixtures/gemma3-270m/reference.json) within 1e-3, and a resid_pre
//! sweep Eiffel -> Colosseum shows the factual-recall picture. The model is
//! loaded once for both tests.

mod common;

use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::{ForwardOptions, HookSpec, LoadedModel};
use patchbench::patching::{
    prepare_pairs, run_sweep, EngineOptions, PromptPair, SweepSpec, Target,
};

fn model() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = common::gemma3_gguf();
        let start = std::time::Instant::now();
        let m = LoadedModel::load(path.to_str().unwrap(), &LoadOptions::cpu())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!(
            "gemma3-270m: loaded in {:.1} s",
            start.elapsed().as_secs_f64()
        );
        m
    })
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The tokenizer rebuilt from the 262k-entry vocabulary (some 515k merges,
/// ranked by file position as for every Gemma file) against transformers on
/// the awkward strings.
#[test]
fn gemma3_270m_tokenizer_matches_transformers() {
    let m = model();
    let (config, t) = (m.config(), &m.tokenizer);
    let rj = common::reference_json_named("gemma3-270m", "tokens.json");
    assert_eq!(config.d_vocab, 262144);
    assert_eq!(
        t.vocab_size(),
        rj["vocabulary"]["size"].as_u64().unwrap() as usize
    );
    let cases = rj["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 26);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want = common::ids_of(&case["ids"]);
        let got = t.encode(text, Some(false)).unwrap();
        assert_eq!(
            got,
            want,
            "{text:?}: {:?}, transformers {:?}",
            t.token_strs(&got),
            case["pieces"]
        );
        assert_eq!(t.decode(&got), text, "{got:?} does not decode back");
    }
    // Gemma adds <bos> (id 2) by default, and nothing at the end.
    let bos = &rj["bos_prompt"];
    let ids = t.encode(bos["text"].as_str().unwrap(), None).unwrap();
    assert_eq!(ids, common::ids_of(&bos["ids"]));
    assert_eq!((t.bos_token_id(), t.adds_bos_by_default()), (Some(2), true));
}

/// Tokens, top-1 and logits against transformers for both prompts: one
/// forward each.
#[test]
fn gemma3_270m_says_paris_and_matches_transformers() {
    let m = model();
    assert_eq!(m.config().family, "gemma3");
    let rj = common::reference_json("gemma3-270m");
    let mut worst = 0f32;
    for key in ["eiffel", "colosseum"] {
        let p = &rj["prompts"][key];
        let ids = m
            .tokenizer
            .encode(p["text"].as_str().unwrap(), None)
            .unwrap();
        assert_eq!(
            ids,
            common::ids_of(&p["input_ids"]),
            "{key}: tokenisation differs from transformers"
        );
        assert_eq!(
            Some(ids[0]),
            m.tokenizer.bos_token_id(),
            "Gemma prepends <bos>"
        );
        let t = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = m
            .model
            .forward(Some(&t), &HookSpec::new(), &ForwardOptions::default())
            .unwrap()
            .logits
            .unwrap()
            .squeeze(0)
            .unwrap();
        let last = logits.get(ids.len() - 1).unwrap().to_vec1::<f32>().unwrap();
        let first = logits.get(1).unwrap().to_vec1::<f32>().unwrap();
        let mut err = |row: &[f32], id: u64, want: f64| {
            worst = worst.max((row[id as usize] - want as f32).abs());
        };
        for e in p["top_k"].as_array().unwrap() {
            err(
                &last,
                e["id"].as_u64().unwrap(),
                e["logit"].as_f64().unwrap(),
            );
        }
        let sample = &p["sample"];
        let sample_ids = common::ids_of(&sample["ids"]);
        for (row, want) in [
            (&last, floats(&sample["last"])),
            (&first, floats(&sample["position_1"])),
        ] {
            for (&id, w) in sample_ids.iter().zip(want) {
                err(row, id.into(), w.into());
            }
        }
        let top = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .unwrap();
        assert_eq!(
            top as u64,
            p["top_k"][0]["id"].as_u64().unwrap(),
            "{key}: top-1"
        );
        if key == "eiffel" {
            assert_eq!(m.tokenizer.token_str(top as u32), " Paris");
        }
    }
    eprintln!("gemma3-270m: max |logit - transformers| = {worst:.2e}");
    assert!(worst <= 1e-3, "logits differ from transformers by {worst}");
}

/// Denoising resid_pre sweep, Eiffel (clean, " Paris") -> Colosseum
/// (corrupted, " Rome"): 18 layers x 10 positions.
#[test]
fn gemma3_270m_resid_pre_sweep_has_the_factual_recall_shape() {
    let m = model();
    let pair = PromptPair {
        clean: "The Eiffel Tower is located in the city of".into(),
        corrupted: Some("The Colosseum is located in the city of".into()),
        answer: " Paris".into(),
        wrong: " Rome".into(),
    };
    let prepared = prepare_pairs(&m.tokenizer, &[pair], None).unwrap();
    let tokens = m.tokenizer.token_strs(&prepared[0].clean);
    let start = std::time::Instant::now();
    let r = run_sweep(
        &m.model,
        &prepared,
        &SweepSpec::new(Target::ResidPre),
        &EngineOptions::default(),
        None,
        &mut |_| {},
    )
    .unwrap();
    eprintln!("resid_pre sweep: {:.1} s", start.elapsed().as_secs_f64());
    let (n_layers, n_pos) = (r.shape[0], r.shape[1]);
    assert_eq!((n_layers, n_pos), (18, 10));
    assert_eq!(tokens[2..4], [" Eiffel".to_string(), " Tower".to_string()]);
    // The baselines are transformers' logit differences.
    let rj = common::reference_json("gemma3-270m");
    for (key, got) in [
        ("eiffel", r.baselines.clean.logit_diff()),
        ("colosseum", r.baselines.corrupted.logit_diff()),
    ] {
        let p = &rj["prompts"][key];
        let want = p["logit_paris"].as_f64().unwrap() - p["logit_rome"].as_f64().unwrap();
        assert!(
            (f64::from(got) - want).abs() < 1e-3,
            "{key}: logit diff {got}, transformers {want}"
        );
    }
    let norm = &r.metrics["logit_diff_normalized"];
    let at = |l: usize, p: usize| norm[l * n_pos + p];
    for l in 0..n_layers {
        let row: Vec<String> = (0..n_pos).map(|p| format!("{:+.2}", at(l, p))).collect();
        eprintln!("layer {l:2}: {}", row.join(" "));
    }
    let (subject_last, last) = (3, n_pos - 1);
    let argmax = |l: usize| {
        (0..n_pos)
            .max_by(|&a, &b| at(l, a).total_cmp(&at(l, b)))
            .unwrap()
    };
    for l in 0..n_layers {
        // <bos> and "The" are the same in both prompts and see nothing later.
        for (p, token) in tokens.iter().enumerate().take(2) {
            assert!(at(l, p).abs() < 1e-4, "layer {l}, {token:?}: {}", at(l, p));
        }
    }
    // Early and middle layers (0-11): the subject (" Eiffel", " Tower")
    // carries the answer, its last token most of it from layer 1 on; the
    // final position nothing yet.
    for l in 0..12 {
        let want: &[usize] = if l == 0 { &[2, 3] } else { &[subject_last] };
        assert!(
            want.contains(&argmax(l)),
            "layer {l}: {:?}",
            tokens[argmax(l)]
        );
        assert!(
            at(l, subject_last) > 0.5,
            "layer {l}: subject {}",
            at(l, subject_last)
        );
        assert!(
            at(l, last).abs() < 0.1,
            "layer {l}: final position {}",
            at(l, last)
        );
    }
    // Late layers (13-17): the answer has moved to the final position and
    // patching the subject no longer matters.
    for l in 13..n_layers {
        assert_eq!(argmax(l), last, "layer {l}: {:?}", tokens[argmax(l)]);
        assert!(
            at(l, last) > 0.6,
            "layer {l}: final position {}",
            at(l, last)
        );
        for p in [2, subject_last] {
            assert!(
                at(l, p).abs() < 0.1,
                "layer {l}: {:?} still {}",
                tokens[p],
                at(l, p)
            );
        }
    }
    // In the last two layers the final position restores the clean answer.
    for l in n_layers - 2..n_layers {
        assert!(
            (at(l, last) - 1.0).abs() < 0.05,
            "layer {l}: {}",
            at(l, last)
        );
    }
}
