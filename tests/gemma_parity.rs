//! Gemma 1, 2 and 3 against Hugging Face transformers: logits at every
//! position and every hooked activation of the tiny random fixtures
//! (tools/make_fixtures.py, tools/gemma_fixtures.py), within 1e-4. The
//! Gemma 2 and 3 fixtures have a sliding window of 4 under a 21-token
//! prompt, soft-capping that bends their numbers, `head_dim` unrelated to
//! `d_model / n_heads`, and (Gemma 3) q/k norms and two rotary bases, so a
//! missing feature shows as a mismatch here.

mod common;

use candle_core::{Device, Tensor};
use common::*;
use patchbench::model::config::AttnKind;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::{ForwardOptions, HookPoint, HookSpec, LoadedModel};

const FIXTURES: [&str; 3] = ["gemma-tiny", "gemma2-tiny", "gemma3-tiny"];

fn load(name: &str) -> LoadedModel {
    LoadedModel::load(fixture(name).to_str().unwrap(), &LoadOptions::cpu())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn tokens(ids: &[u32]) -> Tensor {
    Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap()
}

/// Runs the fixture capturing every reference hook and compares all of
/// them and the logits; returns the largest difference.
fn check(name: &str) -> f32 {
    let m = load(name);
    let rj = reference_json(name);
    let ids = m
        .tokenizer
        .encode(rj["prompt"].as_str().unwrap(), None)
        .unwrap();
    assert_eq!(
        ids,
        ids_of(&rj["input_ids"]),
        "{name}: tokenisation differs from transformers"
    );
    let refs = reference(name);
    let mut spec = HookSpec::new();
    for k in refs.keys().filter(|k| *k != "logits") {
        spec = spec.capture(k.parse::<HookPoint>().unwrap());
    }
    let out = m
        .model
        .forward(Some(&tokens(&ids)), &spec, &ForwardOptions::default())
        .unwrap();
    let logits = out.logits.unwrap().squeeze(0).unwrap();
    let mut worst = max_abs_diff(&logits, &refs["logits"]);
    assert!(worst <= 1e-4, "{name}: logits differ by {worst}");
    let mut names: Vec<&String> = refs.keys().filter(|k| *k != "logits").collect();
    names.sort();
    for k in &names {
        let got = out
            .cache
            .get(k.parse().unwrap())
            .unwrap()
            .squeeze(0)
            .unwrap();
        let d = if k.ends_with("hook_attn_scores") {
            masked_scores_diff(&got, &refs[*k])
        } else {
            max_abs_diff(&got, &refs[*k])
        };
        assert!(d <= 1e-4, "{name}: {k} differs by {d}");
        worst = worst.max(d);
    }
    // Every kind of hook the fixture stores, in every layer.
    let n_layers = m.model.cfg.n_layers;
    assert!(
        names.len() >= 2 + 10 * n_layers,
        "{name}: only {} activations compared",
        names.len()
    );
    eprintln!(
        "{name}: max |diff| over logits and {} activations {worst:.2e}",
        names.len()
    );
    worst
}

/// Attention scores: masked entries (causal, outside the sliding window)
/// must be −inf in both, the others within the returned difference.
fn masked_scores_diff(got: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(got.dims(), want.dims());
    let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut worst = 0f32;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if w.is_infinite() {
            assert!(
                *g == f32::NEG_INFINITY,
                "score {i}: {g}, masked in the reference"
            );
        } else {
            worst = worst.max((g - w).abs());
        }
    }
    worst
}

#[test]
fn gemma1_matches_transformers() {
    check("gemma-tiny");
}

#[test]
fn gemma2_post_norms_softcaps_sliding_window_match_transformers() {
    check("gemma2-tiny");
}

#[test]
fn gemma3_qk_norms_two_rope_bases_match_transformers() {
    check("gemma3-tiny");
}

/// The fixtures test what they claim: the configs carry every Gemma feature.
#[test]
fn fixture_configs_have_the_gemma_features() {
    let g1 = load("gemma-tiny").model.cfg;
    assert_eq!(g1.norm_weight_offset, 1.0);
    assert_eq!(g1.embed_scale, Some(48f32.sqrt()));
    assert!(g1.n_heads * g1.d_head != g1.d_model && g1.tied_unembed);
    assert_eq!(g1.extras, Default::default());
    let g2 = load("gemma2-tiny").model.cfg;
    let x = &g2.extras;
    assert!(x.post_norms && !x.qk_norm);
    assert_eq!((x.attn_softcap, x.final_softcap), (Some(1.0), Some(0.5)));
    assert_eq!(x.sliding_window, Some(4));
    use AttnKind::{Global, Local};
    assert_eq!(x.layer_attn, vec![Local, Global, Local]);
    // query_pre_attn_scalar = 24: the scale is 24^-1/2 (computed in f64 when
    // loading, so compare to within f32 rounding).
    assert!((g2.attn_scale - 1.0 / 24f32.sqrt()).abs() < 1e-7);
    let g3 = load("gemma3-tiny").model.cfg;
    let x = &g3.extras;
    assert!(x.post_norms && x.qk_norm && !g3.tied_unembed);
    assert_eq!((x.attn_softcap, x.final_softcap), (None, Some(1.0)));
    assert_eq!(x.layer_attn, vec![Local, Local, Global]);
    assert_eq!(x.local_rotary.as_ref().unwrap().theta, 1e4);
}

/// Gemma's tokenizer always prepends `<bos>`; patchbench's default follows
/// it, and asking for no BOS drops it.
#[test]
fn gemma_tokenizer_adds_bos_by_default() {
    for name in FIXTURES {
        let m = load(name);
        let bos = m
            .tokenizer
            .bos_token_id()
            .expect("a Gemma tokenizer has <bos>");
        assert_eq!(m.tokenizer.token_str(bos), "<bos>");
        assert!(m.tokenizer.adds_bos_by_default(), "{name}");
        let with = m.tokenizer.encode(" Mary", None).unwrap();
        assert_eq!(with[0], bos, "{name}: default encoding lacks BOS");
        let explicit = m.tokenizer.encode(" Mary", Some(true)).unwrap();
        assert_eq!(explicit, with, "{name}: BOS twice?");
        let without = m.tokenizer.encode(" Mary", Some(false)).unwrap();
        assert_eq!(without, with[1..].to_vec(), "{name}");
    }
}

/// The final block's last-position shortcut reads the local mask of a
/// local last layer (gemma2-tiny) and the global one (gemma3-tiny).
#[test]
fn last_position_only_equals_full_logits() {
    for name in ["gemma2-tiny", "gemma3-tiny"] {
        let m = load(name);
        let ids = m
            .tokenizer
            .encode("When Mary and John went to the store, John gave", None)
            .unwrap();
        let t = tokens(&ids);
        let full = m
            .model
            .forward(Some(&t), &HookSpec::new(), &ForwardOptions::default())
            .unwrap()
            .logits
            .unwrap();
        let opts = ForwardOptions {
            last_pos_only: true,
            ..Default::default()
        };
        let last = m
            .model
            .forward(Some(&t), &HookSpec::new(), &opts)
            .unwrap()
            .logits
            .unwrap();
        let want = full.squeeze(0).unwrap().get(ids.len() - 1).unwrap();
        let d = max_abs_diff(&last.squeeze(0).unwrap(), &want);
        assert!(d < 1e-5, "{name}: last-position logits differ by {d}");
    }
}
