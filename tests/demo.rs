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

#[test]
fn explore() {
    let Ok(dir) = std::env::var("DEMO_DIR") else { return };
    let m = LoadedModel::load(&dir, &cpu()).unwrap();
    let span = eval::INDUCTION_EVAL_SPAN;
    let mut rng = patchbench::demo::rng::Rng::fork(3, "x");
    let rows: Vec<Vec<u32>> = (0..200)
        .map(|_| m.tokenizer.encode(&patchbench::demo::corpus::induction_sequence(&mut rng, span).join(" "), None).unwrap())
        .collect();
    let top = eval::top_tokens(&m.model, &rows).unwrap();
    for p in span..2 * span - 1 {
        let right = rows.iter().zip(&top).filter(|(r, t)| t[p] == r[p + 1]).count();
        println!("pos {p}: {right}/200");
    }
    let (ind, prev) = circuits::induction_scores(&m.model, &m.tokenizer, 100, 1).unwrap();
    show("induction scores", &ind.values.chunks(4).map(|c| c.to_vec()).collect::<Vec<_>>());
    show("prev scores", &prev.values.chunks(4).map(|c| c.to_vec()).collect::<Vec<_>>());
    for t in 0..6 {
        let pairs = circuits::ioi_pairs(t, 16, 1);
        let prepared = prepare_pairs(&m.tokenizer, &pairs, None).unwrap();
        let r = run_sweep(&m.model, &prepared, &SweepSpec::new(Target::HeadOut), &EngineOptions::default(), None, &mut |_| {}).unwrap();
        println!("template {t} baselines clean {:.2} corrupted {:.2}", r.baselines.clean.logit_diff, r.baselines.corrupted.logit_diff);
        show("ioi head_out", &grid(&r));
    }
    let pairs = circuits::fact_pairs(0);
    let prepared = prepare_pairs(&m.tokenizer, &pairs, None).unwrap();
    let r = run_sweep(&m.model, &prepared, &SweepSpec::new(Target::ResidPre), &EngineOptions::default(), None, &mut |_| {}).unwrap();
    show("fact resid_pre", &grid(&r));
    for t in [Target::AttnOut, Target::MlpOut, Target::HeadOut] {
        let r = run_sweep(&m.model, &prepared, &SweepSpec::new(t), &EngineOptions::default(), None, &mut |_| {}).unwrap();
        show(&format!("fact {t}"), &grid(&r));
    }
    {
        use patchbench::model::{HookSpec, HookPoint, ForwardOptions};
        let pairs = circuits::ioi_pairs(0, 32, 1);
        let prepared = prepare_pairs(&m.tokenizer, &pairs, None).unwrap();
        let rows: Vec<u32> = prepared.iter().flat_map(|p| p.clean.clone()).collect();
        let t = candle_core::Tensor::from_vec(rows, (32, 14), &Device::Cpu).unwrap();
        let mut spec = HookSpec::new();
        for l in 0..4 { spec = spec.capture(HookPoint::Pattern(l)); }
        let out = m.model.forward(Some(&t), &spec, &ForwardOptions::default()).unwrap();
        println!("IOI END attention (mean over 32 prompts), tokens {:?}", m.tokenizer.token_strs(&prepared[0].clean));
        for l in 0..4 {
            let pat = out.cache.get(HookPoint::Pattern(l)).unwrap();
            let mut acc = [[0f32; 3]; 4];
            let mut acc2 = [[0f32; 3]; 4];
            for (i, pp) in prepared.iter().enumerate() {
                let io = if pp.clean[1] == pp.answer { 1 } else { 3 };
                let s1 = 4 - io;
                let v = pat.get(i).unwrap().to_vec3::<f32>().unwrap();
                for h in 0..4 {
                    acc[h][0] += v[h][13][io] / 32.0; acc[h][1] += v[h][13][s1] / 32.0; acc[h][2] += v[h][13][9] / 32.0;
                    acc2[h][0] += v[h][9][io] / 32.0; acc2[h][1] += v[h][9][s1] / 32.0; acc2[h][2] += v[h][9][9] / 32.0;
                }
            }
            for h in 0..4 { println!("  L{l}H{h}  END->IO {:.2} S1 {:.2} S2 {:.2}   S2->IO {:.2} S1 {:.2} self {:.2}", acc[h][0], acc[h][1], acc[h][2], acc2[h][0], acc2[h][1], acc2[h][2]); }
        }
    }
    let (ind, prev) = circuits::induction_scores(&m.model, &m.tokenizer, 100, 1).unwrap();
    show("induction scores", &ind.values.chunks(4).map(|c| c.to_vec()).collect::<Vec<_>>());
    show("prev scores", &prev.values.chunks(4).map(|c| c.to_vec()).collect::<Vec<_>>());
    for t in 0..6 {
        let pairs = circuits::ioi_pairs(t, 16, 1);
        let prepared = prepare_pairs(&m.tokenizer, &pairs, None).unwrap();
        let r = run_sweep(&m.model, &prepared, &SweepSpec::new(Target::HeadOut), &EngineOptions::default(), None, &mut |_| {}).unwrap();
        println!("template {t} baselines clean {:.2} corrupted {:.2}", r.baselines.clean.logit_diff, r.baselines.corrupted.logit_diff);
        show("ioi head_out", &grid(&r));
    }
    let pairs = circuits::fact_pairs(0);
    let prepared = prepare_pairs(&m.tokenizer, &pairs, None).unwrap();
    let r = run_sweep(&m.model, &prepared, &SweepSpec::new(Target::ResidPre), &EngineOptions::default(), None, &mut |_| {}).unwrap();
    show("fact resid_pre", &grid(&r));
    for t in [Target::AttnOut, Target::MlpOut, Target::HeadOut] {
        let r = run_sweep(&m.model, &prepared, &SweepSpec::new(t), &EngineOptions::default(), None, &mut |_| {}).unwrap();
        show(&format!("fact {t}"), &grid(&r));
    }
    {
        use patchbench::model::{HookSpec, HookPoint, ForwardOptions};
        let pairs = circuits::ioi_pairs(0, 32, 1);
        let prepared = prepare_pairs(&m.tokenizer, &pairs, None).unwrap();
        let rows: Vec<u32> = prepared.iter().flat_map(|p| p.clean.clone()).collect();
        let t = candle_core::Tensor::from_vec(rows, (32, 14), &Device::Cpu).unwrap();
        let mut spec = HookSpec::new();
        for l in 0..4 { spec = spec.capture(HookPoint::Pattern(l)); }
        let out = m.model.forward(Some(&t), &spec, &ForwardOptions::default()).unwrap();
        println!("IOI END attention (mean over 32 prompts), tokens {:?}", m.tokenizer.token_strs(&prepared[0].clean));
        for l in 0..4 { for h in 0..4 {
            let p = out.cache.get(HookPoint::Pattern(l)).unwrap().mean(0).unwrap().get(h).unwrap().to_vec2::<f32>().unwrap();
            println!("  L{l}H{h} END: {}", p[13].iter().map(|v| format!("{:3.0}", v*100.0)).collect::<Vec<_>>().join(""));
            println!("  L{l}H{h} S2 : {}", p[9].iter().map(|v| format!("{:3.0}", v*100.0)).collect::<Vec<_>>().join(""));
        }}
    }
    let pairs = circuits::ioi_pairs(0, 16, 1);
    let prepared = prepare_pairs(&m.tokenizer, &pairs, None).unwrap();
    for t in [Target::ResidPre, Target::AttnOut, Target::MlpOut] {
        let r = run_sweep(&m.model, &prepared, &SweepSpec::new(t), &EngineOptions::default(), None, &mut |_| {}).unwrap();
        show(&format!("ioi {t}"), &grid(&r));
    }
}
