//! The forward pass is differentiable end to end: gradients reach every
//! parameter (candle's fused softmax/norm kernels would silently drop them).

use candle_core::{DType, Device, Tensor, Var};
use patchbench::model::random::{preset_config, random_weights};
use patchbench::model::weights::CanonicalWeights;
use patchbench::model::{ForwardOptions, HookSpec, Transformer};

fn check(preset: &str) {
    let cfg = preset_config(preset).unwrap();
    let w = random_weights(&cfg, 3, &Device::Cpu, DType::F32).unwrap();
    let names: Vec<String> = w.names().cloned().collect();
    let mut vars = Vec::new();
    let mut tracked = CanonicalWeights::new("vars");
    let mut w = w;
    for n in &names {
        let t = w.take_any(n).unwrap();
        let v = Var::from_tensor(&t).unwrap();
        tracked.insert(n.clone(), v.as_tensor().clone());
        vars.push((n.clone(), v));
    }
    let model = Transformer::new(cfg.clone(), tracked).unwrap();
    let tokens = Tensor::new(&[[3u32, 17, 9, 250, 4, 11]], &Device::Cpu).unwrap();
    let out = model
        .forward(Some(&tokens), &HookSpec::new(), &ForwardOptions::default())
        .unwrap();
    let logits = out.logits.unwrap();
    // Cross-entropy of each next token.
    let lp = candle_nn::ops::log_softmax(&logits.squeeze(0).unwrap(), 1).unwrap();
    let targets = Tensor::new(&[17u32, 9, 250, 4, 11, 3], &Device::Cpu).unwrap();
    let loss = lp
        .gather(&targets.unsqueeze(1).unwrap(), 1)
        .unwrap()
        .neg()
        .unwrap()
        .mean_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for (name, v) in &vars {
        let g = grads
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("{preset}: no gradient for {name}"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            norm > 0.0 && norm.is_finite(),
            "{preset}: gradient of {name} is {norm}"
        );
    }
}

#[test]
fn gradients_reach_every_gpt2_parameter() {
    check("gpt2-tiny");
}

#[test]
fn gradients_reach_every_llama_parameter() {
    check("llama-tiny");
}
