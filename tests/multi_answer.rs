//! The multi-answer metric on the demo model: a dataset row's `answers` /
//! `wrongs` lists reach every sweep through the metric registry, and
//! `multi_logit_diff` equals, by hand, `ln Σ exp(answer logits) − ln Σ
//! exp(wrong logits)` of a plain forward; lists that are not one known
//! token each are refused with the pair's line and the field.

use std::sync::OnceLock;

use candle_core::Tensor;
use patchbench::data::gen::{generate, GenOptions, Style, Task};
use patchbench::data::{self, Dataset, DatasetPair, Format};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::{ForwardOptions, HookSpec, LoadedModel};
use patchbench::patching::{prepare_each, run_sweep, EngineOptions, SweepSpec, Target};

fn demo() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| LoadedModel::load("demo", &LoadOptions::cpu()).unwrap())
}

/// Four IOI pairs, each also listing the other pairs' names: two more
/// answers and one more wrong (none equal to the pair's own answer or wrong).
fn dataset() -> Dataset {
    let m = demo();
    let g = generate(
        &m.tokenizer,
        &GenOptions {
            task: Task::Ioi,
            style: Style::Demo,
            n: 4,
            seed: 9,
            prepend_bos: None,
            tokens: None,
        },
    )
    .unwrap();
    let names: Vec<String> = g
        .dataset
        .pairs
        .iter()
        .flat_map(|p| [p.answer.clone(), p.wrong.clone()])
        .collect();
    let pairs: Vec<DatasetPair> = g
        .dataset
        .pairs
        .iter()
        .map(|p| {
            let mut others = names.iter().filter(|n| **n != p.answer && **n != p.wrong);
            let mut q = p.clone();
            q.answers = vec![
                others.next().unwrap().clone(),
                others.next().unwrap().clone(),
            ];
            q.wrongs = vec![others.next().unwrap().clone()];
            q
        })
        .collect();
    data::parse(
        &data::dataset::to_jsonl(&pairs),
        Format::Jsonl,
        "multi.jsonl",
    )
    .unwrap()
}

/// The last-position logits of a plain forward of `tokens`.
fn last_logits(tokens: &[u32]) -> Vec<f32> {
    let m = demo();
    let t = Tensor::new(tokens, &candle_core::Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let out = m
        .model
        .forward(Some(&t), &HookSpec::default(), &ForwardOptions::default())
        .unwrap();
    let l: Vec<Vec<Vec<f32>>> = out.logits.unwrap().to_vec3().unwrap();
    l[0][tokens.len() - 1].clone()
}

/// `ln Σ exp` over the named tokens, written out in f64.
fn lse(logits: &[f32], ids: &[u32]) -> f64 {
    ids.iter()
        .map(|&i| (logits[i as usize] as f64).exp())
        .sum::<f64>()
        .ln()
}

#[test]
fn multi_logit_diff_is_the_log_odds_of_the_answer_set_by_hand() {
    let m = demo();
    let ds = dataset();
    let mut pairs = prepare_each(&m.tokenizer, &ds.prompt_pairs(), None).unwrap();
    data::answers::attach(&ds, &m.tokenizer, &mut pairs).unwrap();
    let tok = |s: &str| m.tokenizer.single_token(s).unwrap();
    for (d, p) in ds.pairs.iter().zip(&pairs) {
        assert_eq!(p.sets.answers, vec![tok(&d.answers[0]), tok(&d.answers[1])]);
        assert_eq!(p.sets.wrongs, vec![tok(&d.wrongs[0])]);
    }
    // Only the first length's pairs share a resid_pre grid; head_out takes all.
    let r = run_sweep(
        &m.model,
        &pairs,
        &SweepSpec::new(Target::HeadOut),
        &EngineOptions::default(),
        None,
        &mut |_| {},
    )
    .unwrap();
    let mut moved = 0f64;
    for (i, (d, p)) in ds.pairs.iter().zip(&pairs).enumerate() {
        let answers = [vec![p.answer], p.sets.answers.clone()].concat();
        let wrongs = [vec![p.wrong], p.sets.wrongs.clone()].concat();
        for (run, tokens) in [("clean", &p.clean), ("corrupted", &p.corrupted)] {
            let l = last_logits(tokens);
            let hand = lse(&l, &answers) - lse(&l, &wrongs);
            let b = &r.pair_baselines[i];
            let got = if run == "clean" {
                &b.clean
            } else {
                &b.corrupted
            }
            .get("multi_logit_diff")
            .unwrap();
            assert!(
                (got as f64 - hand).abs() < 1e-4 * (1.0 + hand.abs()),
                "pair {i} ({:?}) {run}: {got} vs by hand {hand}",
                d.clean
            );
            let ld = l[p.answer as usize] as f64 - l[p.wrong as usize] as f64;
            moved = moved.max((hand - ld).abs());
        }
    }
    // The lists make it a different number from the single-answer logit
    // difference (somewhere: the demo is confident, so other names' logits
    // are often far below).
    assert!(moved > 1e-2, "the lists changed nothing: {moved}");
    // Every cell has the metric, per pair and on average.
    let v = &r.metrics["multi_logit_diff"];
    assert_eq!(v.len(), r.n_cells());
    assert!(v.iter().all(|x| x.is_finite()));
    let mean0: f32 = r
        .per_pair
        .iter()
        .map(|p| p["multi_logit_diff"][0])
        .sum::<f32>()
        / pairs.len() as f32;
    assert!((v[0] - mean0).abs() < 1e-5);
}

#[test]
fn answer_lists_must_be_one_known_token_each() {
    let m = demo();
    let ds = dataset();
    for (field, bad, want) in [
        ("answers", "mary john", "answers[2]"),
        ("wrongs", "Zzyzx", "wrongs[1]"),
    ] {
        let mut pairs = ds.pairs.clone();
        match field {
            "answers" => pairs[2].answers.push(bad.into()),
            _ => pairs[2].wrongs.push(bad.into()),
        }
        let mut d = data::parse(
            &data::dataset::to_jsonl(&pairs),
            Format::Jsonl,
            "multi.jsonl",
        )
        .unwrap();
        d.path = Some("multi.jsonl".into());
        let mut prepared = prepare_each(&m.tokenizer, &d.prompt_pairs(), None).unwrap();
        let err = data::answers::attach(&d, &m.tokenizer, &mut prepared).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.line(), Some(3), "{msg}");
        assert!(
            msg.contains("multi.jsonl:3:") && msg.contains(want) && msg.contains(" — "),
            "{msg}"
        );
    }
}
