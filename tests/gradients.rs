//! The forward pass is differentiable end to end: gradients reach every
//! parameter (candle's fused softmax/norm kernels would silently drop them),
//! and they are the right gradients (finite differences agree).

use candle_core::{DType, Device, Tensor, Var};
use patchbench::model::random::{preset_config, random_weights};
use patchbench::model::weights::CanonicalWeights;
use patchbench::model::{ForwardOptions, HookSpec, Transformer};

/// Sum of squares of a gradient, in f64 whatever its dtype.
fn squared_norm(g: &Tensor) -> f64 {
    g.sqr()
        .and_then(|x| x.sum_all())
        .and_then(|x| x.to_dtype(DType::F64))
        .and_then(|x| x.to_scalar::<f64>())
        .unwrap()
}

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
        let norm = squared_norm(g);
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

/// Cross-entropy of a fixed next-token sequence under `model`.
fn loss_of(model: &Transformer) -> Tensor {
    let dev = Device::Cpu;
    let tokens = Tensor::new(&[[3u32, 17, 9, 250, 4, 11], [8, 8, 40, 2, 17, 9]], &dev).unwrap();
    let targets = Tensor::new(&[17u32, 9, 250, 4, 11, 3, 8, 40, 2, 17, 9, 1], &dev).unwrap();
    let logits = model
        .forward(Some(&tokens), &HookSpec::new(), &ForwardOptions::default())
        .unwrap()
        .logits
        .unwrap();
    let lp = candle_nn::ops::log_softmax(&logits.flatten_to(1).unwrap(), 1).unwrap();
    lp.gather(&targets.unsqueeze(1).unwrap(), 1)
        .unwrap()
        .neg()
        .unwrap()
        .mean_all()
        .unwrap()
}

/// The gradients are the right ones, not just present: for every parameter,
/// the loss's change along its gradient `g` (central differences, in f64)
/// equals `|g|^2`. Weights are scaled up from the N(0, 0.02) of a fresh model
/// so attention patterns and norms are far from their trivial regime.
fn finite_differences(preset: &str) {
    let cfg = preset_config(preset).unwrap();
    let mut w = random_weights(&cfg, 5, &Device::Cpu, DType::F64).unwrap();
    let names: Vec<String> = w.names().cloned().collect();
    let mut vars = Vec::new();
    for n in &names {
        let t = w.take_any(n).unwrap();
        let t = if t.rank() == 2 { (t * 8.0).unwrap() } else { t };
        vars.push((n.clone(), Var::from_tensor(&t).unwrap()));
    }
    let model_of = |vars: &[(String, Var)]| {
        let mut tracked = CanonicalWeights::new("vars");
        for (n, v) in vars {
            tracked.insert(n.clone(), v.as_tensor().clone());
        }
        Transformer::new(cfg.clone(), tracked).unwrap()
    };
    let grads = loss_of(&model_of(&vars)).backward().unwrap();
    let mut checked = 0;
    for (name, v) in &vars {
        let g = grads.get(v.as_tensor()).unwrap().clone();
        let g2 = squared_norm(&g);
        if g2 < 1e-12 {
            continue;
        }
        let orig = v.as_tensor().copy().unwrap();
        let eps = 1e-3 / g2.sqrt();
        let at = |sign: f64| {
            v.set(&(&orig + (&g * (sign * eps)).unwrap()).unwrap())
                .unwrap();
            loss_of(&model_of(&vars)).to_scalar::<f64>().unwrap()
        };
        let fd = (at(1.0) - at(-1.0)) / (2.0 * eps);
        v.set(&orig).unwrap();
        assert!(
            (fd / g2 - 1.0).abs() < 1e-3,
            "{preset}: {name}: directional derivative {fd:e} vs |g|^2 {g2:e}"
        );
        checked += 1;
    }
    assert!(
        checked * 10 >= vars.len() * 9,
        "{preset}: only {checked} of {} parameters had a usable gradient",
        vars.len()
    );
}

#[test]
fn gpt2_gradients_match_finite_differences() {
    finite_differences("gpt2-tiny");
}

#[test]
fn llama_gradients_match_finite_differences() {
    finite_differences("llama-tiny");
}
