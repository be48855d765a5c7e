//! Resuming a block from its attention's `hook_z` (`ForwardOptions::resume_z`),
//! the fast path of `head_out` cells: the block's queries, keys, values and
//! pattern are not recomputed, the patched `z` goes straight into the output
//! projection. Checked at the model level (a resumed pass equals a full
//! pass with the same patch, dense and from a later position, on GPT-2 and
//! on grouped-query Llama; hooks the resumed pass would skip are refused)
//! and through the engine (head_out and head_out_by_pos sweeps of several
//! pairs in shared batches, packed and dense, denoising and noising, equal
//! the independent reference on the demo model and the GQA fixture).

mod common;

use candle_core::{Device, Tensor};
use common::fixture;
use patchbench::data::gen::{generate, GenOptions, Style, Task};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::{Edit, ForwardOptions, HookPoint, HookSpec, LoadedModel, StartState};
use patchbench::patching::reference::reference_sweep;
use patchbench::patching::{
    prepare_each, prepare_pairs, run_sweep, Direction, EngineOptions, PreparedPair, PromptPair,
    SweepSpec, Target, METRICS,
};

/// Both paths run float32 on the CPU and differ only in summation order.
const TOL: f32 = 1e-5;

fn load(name: &str) -> LoadedModel {
    LoadedModel::load(name, &LoadOptions::cpu()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// For every layer and a few heads: the logits of a full pass whose
/// `hook_z` head is replaced by other values equal those of a pass resumed
/// at that layer from the unpatched `hook_z`, from position 0 and from a
/// later position (reading the earlier keys/values from the cache).
fn resumed_equals_full(name: &str) {
    let m = load(name);
    let (model, cfg) = (&m.model, &m.model.cfg);
    let tokens: Vec<u32> = (0..9u32)
        .map(|i| (i * 7 + 3) % cfg.d_vocab as u32)
        .collect();
    let t = tokens.len();
    let ids = Tensor::new(tokens.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut capture = HookSpec::new();
    for l in 0..cfg.n_layers {
        capture = capture
            .capture(HookPoint::ResidPre(l))
            .capture(HookPoint::Z(l));
    }
    let base_opts = ForwardOptions {
        return_kv: true,
        ..Default::default()
    };
    let base = model.forward(Some(&ids), &capture, &base_opts).unwrap();
    let kv = base.kv.as_ref().unwrap();
    let mut worst = 0f32;
    for l in 0..cfg.n_layers {
        let z = base.cache.get(HookPoint::Z(l)).unwrap();
        let resid = base.cache.get(HookPoint::ResidPre(l)).unwrap();
        for head in [0, cfg.n_heads - 1] {
            // Replace one head at every position from 2 on by scaled values.
            let mut mask = vec![0f32; t * cfg.n_heads];
            for p in 2..t {
                mask[p * cfg.n_heads + head] = 1.0;
            }
            let mask = Tensor::from_vec(mask, (1, t, cfg.n_heads, 1), &Device::Cpu).unwrap();
            let value = ((z * 1.5).unwrap() + 0.25).unwrap();
            let spec = HookSpec::new().intervene(HookPoint::Z(l), Edit::Replace { mask, value });
            let full = model
                .forward(Some(&ids), &spec, &ForwardOptions::default())
                .unwrap()
                .logits
                .unwrap();
            for p0 in [0, 2] {
                let opts = ForwardOptions {
                    start: Some(StartState {
                        layer: l,
                        resid: resid.narrow(1, p0, t - p0).unwrap(),
                        pos_offset: p0,
                        past: Some(kv),
                        batch: 1,
                        packing: None,
                    }),
                    resume_z: Some(z.narrow(1, p0, t - p0).unwrap()),
                    ..Default::default()
                };
                let got = model.forward(None, &spec, &opts).unwrap().logits.unwrap();
                let want = full.narrow(1, p0, t - p0).unwrap();
                let d = common::max_abs_diff(&got, &want);
                assert!(d <= TOL, "{name} layer {l} head {head} from {p0}: {d:e}");
                worst = worst.max(d);
            }
        }
    }
    eprintln!("{name}: max |resumed - full| {worst:e}");
}

#[test]
fn resumed_from_z_equals_full_pass_gpt2() {
    resumed_equals_full(fixture("gpt2-tiny").to_str().unwrap());
}

#[test]
fn resumed_from_z_equals_full_pass_llama_gqa() {
    resumed_equals_full(fixture("llama-tiny").to_str().unwrap());
}

/// A resumed pass skips the block's attention: a hook there, return_kv, or
/// no start state is refused rather than silently ignored.
#[test]
fn resumed_from_z_refuses_what_it_would_skip() {
    let m = load(fixture("gpt2-tiny").to_str().unwrap());
    let model = &m.model;
    let ids = Tensor::new(&[[1u32, 2, 3, 4]], &Device::Cpu).unwrap();
    let spec = HookSpec::new()
        .capture(HookPoint::ResidPre(1))
        .capture(HookPoint::Z(1));
    let base = model
        .forward(Some(&ids), &spec, &ForwardOptions::default())
        .unwrap();
    let z = base.cache.get(HookPoint::Z(1)).unwrap();
    let resid = base.cache.get(HookPoint::ResidPre(1)).unwrap();
    let start = || StartState {
        layer: 1,
        resid: resid.clone(),
        pos_offset: 0,
        past: None,
        batch: 1,
        packing: None,
    };
    let run = |hooks: &HookSpec, with_start: bool, return_kv: bool| {
        let opts = ForwardOptions {
            start: with_start.then(start),
            resume_z: Some(z.clone()),
            return_kv,
            ..Default::default()
        };
        model
            .forward(Some(&ids), hooks, &opts)
            .err()
            .map(|e| e.to_string())
    };
    let empty = HookSpec::new();
    assert!(run(&empty, true, false).is_none());
    let e = run(&empty, false, false).unwrap();
    assert!(e.contains("needs a start state"), "{e}");
    let e = run(&empty, true, true).unwrap();
    assert!(e.contains("keys/values"), "{e}");
    for hook in [HookPoint::K(1), HookPoint::Pattern(1), HookPoint::QInput(1)] {
        let e = run(&HookSpec::new().capture(hook), true, false).unwrap();
        assert!(e.contains("blocks.1.attn.hook_z"), "{hook}: {e}");
    }
    // Hooks in later blocks, or from hook_z on, are fine.
    assert!(run(&HookSpec::new().capture(HookPoint::K(2)), true, false).is_none());
    assert!(run(&HookSpec::new().capture(HookPoint::AttnOut(1)), true, false).is_none());
}

/// Pairs of one token length from the IOI generator (their corrupted
/// prompts differ at different positions, so batches mix start positions).
fn ioi_pairs(m: &LoadedModel, style: Style, n: usize) -> Vec<PreparedPair> {
    let g = generate(
        &m.tokenizer,
        &GenOptions {
            task: Task::Ioi,
            style,
            n: 4 * n,
            seed: 3,
            prepend_bos: None,
            tokens: None,
        },
    )
    .unwrap();
    let pairs = prepare_each(&m.tokenizer, &g.dataset.prompt_pairs(), None).unwrap();
    let mut lengths: Vec<usize> = pairs.iter().map(|p| p.n_pos()).collect();
    lengths.sort_unstable();
    let len = *lengths
        .iter()
        .max_by_key(|&&l| lengths.iter().filter(|&&x| x == l).count())
        .unwrap();
    let same: Vec<PreparedPair> = pairs
        .into_iter()
        .filter(|p| p.n_pos() == len)
        .take(n)
        .collect();
    assert!(
        same.len() >= 2,
        "need pairs sharing a length, got {}",
        same.len()
    );
    same
}

/// head_out and head_out_by_pos through the engine equal the reference,
/// per pair, denoising and noising, packed and dense batches.
fn engine_equals_reference(m: &LoadedModel, pairs: &[PreparedPair], what: &str) {
    let mut worst = 0f32;
    for target in [Target::HeadOut, Target::HeadOutByPos] {
        for direction in [Direction::Denoise, Direction::Noise] {
            let spec = SweepSpec {
                direction,
                ..SweepSpec::new(target)
            };
            let want = reference_sweep(&m.model, pairs, &spec).unwrap();
            for packed in [true, false] {
                let opts = EngineOptions {
                    max_batch_tokens: 48,
                    packed,
                    ..Default::default()
                };
                let got = run_sweep(&m.model, pairs, &spec, &opts, None, &mut |_| {}).unwrap();
                assert_eq!(got.shape, want.shape);
                let label = format!("{what} {target} {direction} packed {packed}");
                for (i, cells) in want.per_pair.iter().enumerate() {
                    for (c, w) in cells.iter().enumerate() {
                        let Some(w) = w else { continue };
                        for (k, name) in METRICS.iter().enumerate() {
                            let (x, y) = (got.per_pair[i][*name][c], w.values()[k]);
                            // Normalised metrics divide by the baselines'
                            // spread (compared in reference_equivalence.rs);
                            // a metric without answer sets is NaN on both.
                            if name.ends_with("normalized") || (x.is_nan() && y.is_nan()) {
                                continue;
                            }
                            let d = (x - y).abs();
                            assert!(d <= TOL, "{label} pair {i} cell {c} {name}: {x} vs {y}");
                            worst = worst.max(d);
                        }
                    }
                }
            }
        }
    }
    eprintln!("{what}: max |engine - reference| {worst:e}");
}

#[test]
fn head_out_shared_batches_equal_reference_demo() {
    let m = load("demo");
    let pairs = ioi_pairs(&m, Style::Demo, 3);
    engine_equals_reference(&m, &pairs, "demo");
}

#[test]
fn head_out_shared_batches_equal_reference_llama_gqa() {
    let m = load(fixture("llama-tiny").to_str().unwrap());
    let pair = |clean: &str, corrupted: &str| PromptPair {
        clean: clean.into(),
        corrupted: Some(corrupted.into()),
        answer: " Mary".into(),
        wrong: " John".into(),
    };
    // Corrupted prompts that differ first at different positions.
    let clean = "When Mary and John went, John gave it to";
    let pairs = [
        pair(clean, "When John and Mary went, John gave it to"),
        pair(clean, "When Mary and John went, Mary gave it to"),
    ];
    let pairs = prepare_pairs(&m.tokenizer, &pairs, None).unwrap();
    engine_equals_reference(&m, &pairs, "llama-tiny");
}
