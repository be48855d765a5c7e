//! The embedded demo model: it loads through the GPT-2 path, it does its
//! three tasks on held-out prompts, retraining is deterministic, and the
//! circuits patchbench finds in it (written up in `src/demo/README.md`) are
//! still there. Run with `--nocapture` to see the numbers.

use std::sync::OnceLock;

use candle_core::{DType, Device};
use patchbench::demo::{circuits, eval, train};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::{
    prepare_pairs, run_sweep, EngineOptions, PromptPair, SweepResult, SweepSpec, Target,
};

fn cpu() -> LoadOptions {
    LoadOptions {
        device: Device::Cpu,
        dtype: DType::F32,
    }
}

fn demo() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| LoadedModel::load("demo", &cpu()).expect("the embedded demo model loads"))
}

fn sweep(pairs: &[PromptPair], target: Target) -> SweepResult {
    let m = demo();
    let prepared = prepare_pairs(&m.tokenizer, pairs, None).expect("demo prompts prepare");
    run_sweep(
        &m.model,
        &prepared,
        &SweepSpec::new(target),
        &EngineOptions::default(),
        None,
        &mut |_| {},
    )
    .expect("the sweep runs")
}

/// `[rows][cols]` of a two-axis result's normalised logit difference.
fn grid(r: &SweepResult) -> Vec<Vec<f32>> {
    r.metrics["logit_diff_normalized"]
        .chunks(r.shape[1])
        .map(<[f32]>::to_vec)
        .collect()
}

fn show(name: &str, rows: &[Vec<f32>]) {
    println!("{name}");
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:6.2}")).collect();
        println!("  {i}: {}", cells.join(" "));
    }
}

#[test]
fn embedded_model_loads_through_the_gpt2_path_in_well_under_a_second() {
    let t = std::time::Instant::now();
    let m = LoadedModel::load("demo", &cpu()).unwrap();
    let ms = t.elapsed().as_millis();
    println!("demo loaded in {ms} ms ({:.0} ms by its own clock)", m.load_ms);
    assert!(ms < 1000, "loading the demo model took {ms} ms");
    let cfg = m.config();
    assert_eq!(
        (cfg.family.as_str(), cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_ctx),
        ("gpt2", 4, 128, 4, 64)
    );
    assert!(cfg.tied_unembed);
    assert!(!m.tokenizer.adds_bos_by_default());
    // The same files read from disk as a Hugging Face directory give the same model.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo");
    let from_disk = LoadedModel::load(dir, &cpu()).unwrap();
    assert_eq!(from_disk.fingerprint, m.fingerprint);
    let size = patchbench::demo::embedded::WEIGHTS.len();
    assert!(size <= 5 << 20, "weights are {size} bytes, over 5 MB");
}

#[test]
fn ioi_on_held_out_name_pairs() {
    let m = demo();
    let acc = eval::ioi_accuracy(&m.model, &m.tokenizer, 300, 11).unwrap();
    println!("IOI accuracy on held-out name pairs: {:.1}%", acc * 100.0);
    assert!(acc >= 0.95, "IOI accuracy {acc}");
}

#[test]
fn every_capital_in_the_table() {
    let m = demo();
    let acc = eval::fact_accuracy(&m.model, &m.tokenizer).unwrap();
    assert_eq!(acc, 1.0, "fact accuracy {acc}");
    let ids = m.tokenizer.encode("the capital of france is", None).unwrap();
    let top = eval::top_tokens(&m.model, &[ids]).unwrap();
    assert_eq!(m.tokenizer.token_str(*top[0].last().unwrap()), "paris");
}

#[test]
fn induction_on_fresh_random_spans() {
    let m = demo();
    let acc = eval::induction_accuracy(&m.model, &m.tokenizer, 200, 11).unwrap();
    println!("induction accuracy on the second copy: {:.1}%", acc * 100.0);
    assert!(acc >= 0.9, "induction accuracy {acc}");
}

#[test]
fn retraining_is_deterministic() {
    let opts = train::TrainOptions {
        steps: 3,
        batch: 8,
        seed: 5,
        ..Default::default()
    };
    let losses = |o: &train::TrainOptions| train::train(o, &mut |_| {}).unwrap().losses;
    let a = losses(&opts);
    assert_eq!(a, losses(&opts), "same seed, different loss trace");
    assert_ne!(a, losses(&train::TrainOptions { seed: 6, ..opts.clone() }));
    // An untrained model is near-uniform over the vocabulary.
    let uniform = (patchbench::demo::vocab::vocabulary().len() as f32).ln();
    assert!((a[0] - uniform).abs() < 0.3, "first loss {} vs ln(vocab) {uniform}", a[0]);
}

// ---- Circuits (see src/demo/README.md). Positions below are those of the
// templates used: IOI template 0 "when A and B went to the P , S gave a O to"
// (names at 1 and 3, S2 at 9, END at 13) and "the capital of C is"
// (country at 3, last position 4).

/// Heads by descending normalised logit difference: `(layer, head, value)`.
fn ranked(g: &[Vec<f32>]) -> Vec<(usize, usize, f32)> {
    let mut v: Vec<_> = g
        .iter()
        .enumerate()
        .flat_map(|(l, row)| row.iter().enumerate().map(move |(h, &x)| (l, h, x)))
        .collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2));
    v
}

#[test]
fn ioi_circuit_layer1_heads_carry_the_repeated_name_to_the_end() {
    let m = demo();
    let pairs = circuits::ioi_pairs(0, 16, 3);
    let (s2, end) = (9, 13);

    let resid = grid(&sweep(&pairs, Target::ResidPre));
    show("IOI resid_pre (layer x pos)", &resid);
    for (l, row) in resid.iter().enumerate() {
        let (pos, what) = if l <= 1 { (s2, "S2") } else { (end, "END") };
        assert!(row[pos] > 0.9, "layer {l}: {what} restores {}", row[pos]);
    }

    let heads = grid(&sweep(&pairs, Target::HeadOut));
    show("IOI head_out (layer x head)", &heads);
    let top = ranked(&heads);
    let mut two = [(top[0].0, top[0].1), (top[1].0, top[1].1)];
    two.sort();
    assert_eq!(two, [(1, 1), (1, 2)], "top heads {:?}", &top[..3]);
    assert!(top[1].2 > 0.3 && top[0].2 + top[1].2 > 0.8, "{:?}", &top[..2]);
    for (l, row) in heads.iter().enumerate().skip(2) {
        assert!(row.iter().all(|x| x.abs() < 0.1), "layer {l}: {row:?}");
    }

    let prepared = prepare_pairs(&m.tokenizer, &pairs, None).unwrap();
    let rows: Vec<Vec<u32>> = prepared.iter().map(|p| p.clean.clone()).collect();
    let pat = circuits::mean_patterns(&m.model, &rows).unwrap();
    for h in [1, 2] {
        let a = pat[1][h][end][s2];
        println!("L1H{h} attends END -> S2 with {a:.2}");
        assert!(a > 0.9, "L1H{h} attends END -> S2 with {a}");
    }
}

#[test]
fn fact_circuit_layer0_head_moves_the_country_and_mlp0_recalls_the_capital() {
    let m = demo();
    let pairs = circuits::fact_pairs(0);
    let (country, last) = (3, 4);

    let resid = grid(&sweep(&pairs, Target::ResidPre));
    show("facts resid_pre (layer x pos)", &resid);
    assert!(resid[0][country] > 0.9, "{:?}", resid[0]);
    for (l, row) in resid.iter().enumerate().skip(1) {
        assert!(row[last] > 0.9, "layer {l}: {row:?}");
    }

    let heads = grid(&sweep(&pairs, Target::HeadOut));
    show("facts head_out (layer x head)", &heads);
    let top = ranked(&heads);
    assert_eq!((top[0].0, top[0].1), (0, 2), "top head {:?}", top[0]);
    assert!(top[0].2 > 0.9 && top[1].2 < 0.1, "{:?}", &top[..2]);

    let mlp = grid(&sweep(&pairs, Target::MlpOut));
    show("facts mlp_out (layer x pos)", &mlp);
    assert!(mlp[0][last] > 0.8, "MLP0 at the last position restores {}", mlp[0][last]);

    let prepared = prepare_pairs(&m.tokenizer, &pairs, None).unwrap();
    let rows: Vec<Vec<u32>> = prepared.iter().map(|p| p.clean.clone()).collect();
    let a = circuits::mean_patterns(&m.model, &rows).unwrap()[0][2][last][country];
    println!("L0H2 attends is -> country with {a:.2}");
    assert!(a > 0.9, "L0H2 attends is -> country with {a}");
}

#[test]
fn explore() {
    let Ok(dir) = std::env::var("DEMO_DIR") else { return };
    let m = LoadedModel::load(&dir, &cpu()).unwrap();
    println!("induction acc {}", eval::induction_accuracy(&m.model, &m.tokenizer, 200, 11).unwrap());
    println!("ioi acc {}", eval::ioi_accuracy(&m.model, &m.tokenizer, 300, 11).unwrap());
    for (span, j) in [(8usize, 3usize), (8, 5), (6, 2)] {
        let pairs = circuits::induction_pairs(span, j, 32, 1);
        let prepared = prepare_pairs(&m.tokenizer, &pairs, None).unwrap();
        for t in [Target::ResidPre, Target::HeadOut] {
            let r = run_sweep(&m.model, &prepared, &SweepSpec::new(t), &EngineOptions::default(), None, &mut |_| {}).unwrap();
            println!("span {span} j {j}: baselines {:.2} {:.2}", r.baselines.clean.logit_diff, r.baselines.corrupted.logit_diff);
            show(&format!("induction {t}"), &grid(&r));
        }
        let rows: Vec<Vec<u32>> = prepared.iter().map(|p| p.clean.clone()).collect();
        let n = rows[0].len();
        let pat = circuits::mean_patterns(&m.model, &rows).unwrap();
        for l in 0..4 { for h in 0..4 {
            println!("  L{l}H{h} last row: {}", pat[l][h][n - 1].iter().map(|v| format!("{:3.0}", v * 100.0)).collect::<Vec<_>>().join(""));
        }}
    }
    let (ind, prev) = circuits::induction_scores(&m.model, &m.tokenizer, 100, 1).unwrap();
    show("induction scores", &ind.values.chunks(4).map(|c| c.to_vec()).collect::<Vec<_>>());
    show("prev scores", &prev.values.chunks(4).map(|c| c.to_vec()).collect::<Vec<_>>());
}
