//! Edits of `attn.hook_attn_scores`: masked scores are −inf, so a `Replace`
//! or `Zero` written as `x * (1 - mask) + value * mask` gave NaN (−inf × 0)
//! and every logit after it NaN. Replacing scores must act exactly like
//! replacing the softmaxed pattern they produce, and an edit must never
//! unmask a key the causal mask hides.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{fixture, max_abs_diff};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::{Edit, ForwardOptions, HookPoint, HookSpec, LoadedModel};

const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const CORRUPTED: &str = "When John and Mary went to the store, John gave a drink to";

fn load(name: &str) -> LoadedModel {
    let opts = LoadOptions::cpu();
    LoadedModel::load(fixture(name).to_str().unwrap(), &opts).unwrap()
}

fn tokens(m: &LoadedModel, text: &str) -> Tensor {
    let ids = m.tokenizer.encode(text, None).unwrap();
    Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

fn logits(m: &LoadedModel, t: &Tensor, spec: &HookSpec) -> Tensor {
    m.model
        .forward(Some(t), spec, &ForwardOptions::default())
        .unwrap()
        .logits
        .unwrap()
}

fn all_finite(t: &Tensor) -> bool {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|x| x.is_finite())
}

/// A `[1, heads, T, 1]` mask selecting `head` (all heads if `None`) at
/// query position `pos` (all if `None`).
fn mask(heads: usize, n: usize, head: Option<usize>, pos: Option<usize>) -> Tensor {
    let mut v = vec![0f32; heads * n];
    for h in 0..heads {
        for p in 0..n {
            if head.is_none_or(|x| x == h) && pos.is_none_or(|x| x == p) {
                v[h * n + p] = 1.0;
            }
        }
    }
    Tensor::from_vec(v, (1, heads, n, 1), &Device::Cpu).unwrap()
}

#[test]
fn replacing_scores_matches_replacing_the_pattern_and_stays_finite() {
    for family in ["gpt2-tiny", "llama-tiny", "pythia-tiny"] {
        let m = load(family);
        let (clean, corrupted) = (tokens(&m, CLEAN), tokens(&m, CORRUPTED));
        let n = clean.dim(1).unwrap();
        let heads = m.model.cfg.n_heads;
        for layer in 0..m.model.cfg.n_layers {
            let (hs, hp) = (HookPoint::AttnScores(layer), HookPoint::Pattern(layer));
            let src = m
                .model
                .forward(
                    Some(&corrupted),
                    &HookSpec::new().capture(hs).capture(hp),
                    &ForwardOptions::default(),
                )
                .unwrap()
                .cache;
            for (head, pos) in [(None, None), (Some(1), None), (Some(0), Some(n - 1))] {
                let mk = mask(heads, n, head, pos);
                let by_scores = logits(
                    &m,
                    &clean,
                    &HookSpec::new().intervene(
                        hs,
                        Edit::Replace {
                            mask: mk.clone(),
                            value: src.get(hs).unwrap().clone(),
                        },
                    ),
                );
                let by_pattern = logits(
                    &m,
                    &clean,
                    &HookSpec::new().intervene(
                        hp,
                        Edit::Replace {
                            mask: mk,
                            value: src.get(hp).unwrap().clone(),
                        },
                    ),
                );
                let what = format!("{family} L{layer} head {head:?} pos {pos:?}");
                assert!(all_finite(&by_scores), "{what}: NaN logits");
                let d = max_abs_diff(&by_scores, &by_pattern);
                assert!(d < 1e-4, "{what}: scores vs pattern differ by {d}");
            }
        }
    }
}

#[test]
fn edited_scores_never_unmask_later_positions() {
    let m = load("gpt2-tiny");
    let clean = tokens(&m, CLEAN);
    let n = clean.dim(1).unwrap();
    let heads = m.model.cfg.n_heads;
    // Scores of 0 everywhere attend uniformly to the keys the causal mask
    // allows: the pattern row q is 1/(q+1) on keys 0..=q.
    let mut uniform = vec![0f32; heads * n * n];
    for h in 0..heads {
        for q in 0..n {
            for k in 0..=q {
                uniform[(h * n + q) * n + k] = 1.0 / (q + 1) as f32;
            }
        }
    }
    let uniform = Tensor::from_vec(uniform, (1, heads, n, n), &Device::Cpu).unwrap();
    let all = mask(heads, n, None, None);
    let zeros = Tensor::zeros((1, heads, n, n), DType::F32, &Device::Cpu).unwrap();
    let hs = HookPoint::AttnScores(0);
    let expected = logits(
        &m,
        &clean,
        &HookSpec::new().intervene(
            HookPoint::Pattern(0),
            Edit::Replace {
                mask: all.clone(),
                value: uniform,
            },
        ),
    );
    let edits = [
        Edit::Replace {
            mask: all.clone(),
            value: zeros,
        },
        Edit::Zero { mask: all },
    ];
    for edit in edits {
        let what = format!("{edit:?}").chars().take(7).collect::<String>();
        let got = logits(&m, &clean, &HookSpec::new().intervene(hs, edit));
        assert!(all_finite(&got), "{what}: NaN logits");
        let d = max_abs_diff(&got, &expected);
        assert!(
            d < 1e-4,
            "{what}: differs from causal uniform attention by {d}"
        );
    }
}
