//! Datasets end to end on the demo model: a generated IOI dataset swept in
//! shared batches equals the same pairs swept one by one; intervals are
//! reproducible for a seed and separate the demo's IOI head from the rest;
//! position labels line up pairs of different lengths exactly as gathering
//! each pair's positions by hand does. Run with `--nocapture` for numbers.

use std::sync::OnceLock;

use patchbench::data::gen::{generate, GenOptions, Style, Task};
use patchbench::data::{self, sweep_stats, Dataset, StatsOptions};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::{
    prepare_each, run_sweep_labeled, EngineOptions, PositionLabels, PreparedPair, SweepResult,
    SweepSpec, Target,
};

fn demo() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let opts = LoadOptions::cpu();
        LoadedModel::load("demo", &opts).expect("the embedded demo model loads")
    })
}

/// 200 held-out IOI pairs for the demo, all six templates (several lengths).
fn ioi() -> &'static (Dataset, Vec<PreparedPair>, PositionLabels) {
    static DS: OnceLock<(Dataset, Vec<PreparedPair>, PositionLabels)> = OnceLock::new();
    DS.get_or_init(|| {
        let m = demo();
        let g = generate(
            &m.tokenizer,
            &GenOptions {
                task: Task::Ioi,
                style: Style::Demo,
                n: 200,
                seed: 1,
                prepend_bos: None,
                tokens: None,
            },
        )
        .expect("the demo gets 200 IOI pairs");
        let pairs = prepare_each(&m.tokenizer, &g.dataset.prompt_pairs(), None).unwrap();
        let labels = data::align(&g.dataset, &pairs)
            .unwrap()
            .expect("IOI pairs are labelled");
        (g.dataset, pairs, labels)
    })
}

fn sweep(pairs: &[PreparedPair], labels: Option<&PositionLabels>, target: Target) -> SweepResult {
    run_sweep_labeled(
        &demo().model,
        pairs,
        labels,
        &SweepSpec::new(target),
        &EngineOptions::default(),
        None,
        &mut |_| {},
    )
    .expect("the sweep runs")
}

/// The labels of pair `i` alone.
fn one(labels: &PositionLabels, i: usize) -> PositionLabels {
    PositionLabels {
        names: labels.names.clone(),
        spans: vec![labels.spans[i].clone()],
    }
}

fn assert_close(a: f32, b: f32, what: &str) {
    assert!(
        (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
        "{what}: {a} vs {b}"
    );
}

/// Every pair alone on resid_pre (the cheapest target) and a seeded
/// subset of 20 on head_out (200 single head_out sweeps would cost the
/// suite more than they add): each pair's values, and the mean over them,
/// equal the shared-batch sweep's.
#[test]
fn shared_batches_equal_separate_single_pair_sweeps() {
    let (ds, pairs, labels) = ioi();
    let lengths: std::collections::BTreeSet<usize> = pairs.iter().map(|p| p.n_pos()).collect();
    assert!(
        lengths.len() > 1,
        "the dataset should mix lengths: {lengths:?}"
    );
    assert_eq!(ds.len(), 200);
    for (target, every) in [(Target::ResidPre, 1), (Target::HeadOut, 10)] {
        let all = sweep(pairs, Some(labels), target);
        let n_cells = all.n_cells();
        let mut sum = vec![0f64; n_cells];
        let mut n = 0;
        for i in (0..pairs.len()).step_by(every) {
            let single = sweep(&pairs[i..=i], Some(&one(labels, i)), target);
            for (c, acc) in sum.iter_mut().enumerate() {
                let v = single.metrics["logit_diff"][c];
                assert_close(
                    all.per_pair[i]["logit_diff"][c],
                    v,
                    &format!("{target} pair {i} cell {c}"),
                );
                *acc += v as f64;
            }
            n += 1;
        }
        if every == 1 {
            for (c, acc) in sum.iter().enumerate() {
                assert_close(
                    all.metrics["logit_diff"][c],
                    (acc / n as f64) as f32,
                    &format!("{target} mean cell {c}"),
                );
            }
        }
        println!("{target}: {} pairs checked against single-pair sweeps", n);
    }
}

#[test]
fn intervals_are_seeded_and_single_out_the_ioi_head() {
    let (_, pairs, labels) = ioi();
    let r = sweep(pairs, Some(labels), Target::HeadOut);
    let opts = StatsOptions {
        resamples: 1000,
        seed: 7,
    };
    let s = sweep_stats(&r, &opts);
    // Debug text compares NaN (an undefined sign agreement) as equal.
    let again = sweep_stats(&r, &opts);
    assert_eq!(
        format!("{s:?}"),
        format!("{again:?}"),
        "same seed, same intervals"
    );
    let other = sweep_stats(&r, &StatsOptions { seed: 8, ..opts });
    let m = &s.metrics["logit_diff_normalized"];
    assert_ne!(m.ci_low, other.metrics["logit_diff_normalized"].ci_low);
    let nh = r.shape[1];
    for l in 0..r.shape[0] {
        let row: Vec<String> = (0..nh)
            .map(|h| {
                let c = l * nh + h;
                format!(
                    "{:+.3} [{:+.3}, {:+.3}]",
                    m.mean[c], m.ci_low[c], m.ci_high[c]
                )
            })
            .collect();
        println!("L{l}: {}", row.join("  "));
    }
    // L0H0 is the demo's IOI head: patched alone it restores nearly all of
    // the clean logit difference, its interval far from 0. Every other
    // head restores at most a few hundredths: with 200 pairs most of those
    // small effects are resolved (their intervals need not cross 0), but
    // all of them lie within ±0.05, an order of magnitude below L0H0's.
    assert!(
        m.ci_low[0] > 0.9,
        "L0H0 interval [{}, {}]",
        m.ci_low[0],
        m.ci_high[0]
    );
    for c in 1..r.n_cells() {
        assert!(
            m.ci_low[c] > -0.05 && m.ci_high[c] < 0.05,
            "L{}H{} interval [{}, {}]",
            c / nh,
            c % nh,
            m.ci_low[c],
            m.ci_high[c]
        );
    }
    let crossing = (1..r.n_cells())
        .filter(|&c| m.ci_low[c] <= 0.0 && m.ci_high[c] >= 0.0)
        .count();
    println!(
        "{crossing} of {} other heads' intervals cross 0",
        r.n_cells() - 1
    );
    // The stats' mean is the mean of the per-pair normalised values; the
    // sweep's own metric is TransformerLens's dataset-normalised value.
    let pp: f32 = r
        .per_pair
        .iter()
        .map(|p| p["logit_diff_normalized"][0])
        .sum::<f32>()
        / 200.0;
    assert_close(m.mean[0], pp, "per-pair normalised mean");
    assert_close(
        s.dataset_normalized["logit_diff_normalized"][0].value,
        r.metrics["logit_diff_normalized"][0],
        "dataset-normalised",
    );
}

/// Pairs of different lengths, resid_pre by label, against each pair swept
/// alone without labels, its values read at the label's position by hand.
#[test]
fn labels_align_pairs_of_different_lengths() {
    let (_, pairs, labels) = ioi();
    // Two pairs of each length.
    let mut pick = Vec::new();
    for n in pairs
        .iter()
        .map(|p| p.n_pos())
        .collect::<std::collections::BTreeSet<_>>()
    {
        pick.extend(
            pairs
                .iter()
                .enumerate()
                .filter(|(_, p)| p.n_pos() == n)
                .map(|(i, _)| i)
                .take(2),
        );
    }
    let sub: Vec<PreparedPair> = pick.iter().map(|&i| pairs[i].clone()).collect();
    let sub_labels = PositionLabels {
        names: labels.names.clone(),
        spans: pick.iter().map(|&i| labels.spans[i].clone()).collect(),
    };
    let mut names = labels.names.clone();
    names.sort();
    assert_eq!(names, ["END", "IO", "S1", "S2"]);
    assert_eq!(&labels.names[2..], ["S2", "END"], "ordered by position");
    let r = sweep(&sub, Some(&sub_labels), Target::ResidPre);
    assert_eq!(r.position_labels, labels.names);
    assert_eq!(r.shape[1], labels.names.len());
    for (k, &i) in pick.iter().enumerate() {
        let plain = sweep(&pairs[i..=i], None, Target::ResidPre);
        let n_pos = pairs[i].n_pos();
        for l in 0..r.shape[0] {
            for (j, span) in sub_labels.spans[k].iter().enumerate() {
                assert_eq!(span.len(), 1, "IOI labels are single tokens");
                let by_hand = plain.metrics["logit_diff"][l * n_pos + span.start];
                let labelled = r.per_pair[k]["logit_diff"][l * labels.names.len() + j];
                assert_close(
                    labelled,
                    by_hand,
                    &format!("pair {i} layer {l} {}", labels.names[j]),
                );
            }
        }
    }
}
