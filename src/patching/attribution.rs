//! Attribution patching: a first-order estimate of every cell at once.
//!
//! For a patched run the logit difference is approximated by
//! `ld(base) + Σ (source − base) · ∂ld/∂activation`, with the gradient
//! taken once on the base run. A zero-valued variable is added at every
//! patched hook so one backward pass yields the gradient with respect to
//! each activation. Cost: one forward and one backward per base run,
//! whatever the number of cells — a triage view whose error is measured by
//! patching its top cells exactly (see `run_sweep` with `EngineOptions::cells`).
//!
//! Only `logit_diff` (and the normalised value derived from it) is
//! estimated; the other metrics are left NaN. A cell that patches several
//! hooks at once (ROME's layer windows) gets the sum of their single-hook
//! estimates, which counts effects that flow from one patched hook through
//! another twice: exact patching of such cells overrides the downstream
//! hook, so expect larger errors there.

use std::collections::HashMap;

use candle_core::{Result as CResult, Tensor, Var};

use crate::model::{Edit, ForwardOptions, HookPoint, HookSpec, Transformer};

use super::metrics::{Metrics, LOGIT_DIFF};
use super::plan::Plan;
use super::runs::RunPair;

/// Estimates every cell of `plan` for one base run.
pub fn estimate(model: &Transformer, plan: &Plan, run: &RunPair) -> CResult<Vec<Metrics>> {
    let dev = model.device();
    // A zero variable at every patched hook: d ld / d var = d ld / d activation.
    let mut spec = HookSpec::new();
    let mut vars: HashMap<HookPoint, Var> = HashMap::new();
    for (hook, src) in &run.source {
        let var = Var::zeros(src.shape(), src.dtype(), dev)?;
        spec = spec.intervene(*hook, Edit::Add(var.as_tensor().clone()));
        vars.insert(*hook, var);
    }
    if let Some(e) = &run.base_embed_edit {
        spec = spec.intervene(HookPoint::Embed, e.clone());
    }
    let tokens = Tensor::new(run.base_tokens.as_slice(), dev)?.unsqueeze(0)?;
    let opts = ForwardOptions {
        last_pos_only: true,
        ..Default::default()
    };
    let logits = model
        .forward(Some(&tokens), &spec, &opts)?
        .logits
        .expect("logits")
        .squeeze(0)?;
    let ld = (logits.get(run.answer as usize)? - logits.get(run.wrong as usize)?)?;
    let grads = ld.backward()?;
    // Per hook: (source − base) · gradient, summed over the feature axis,
    // laid out [pos, head] (head axis of size 1 for head-less hooks).
    let mut contrib: HashMap<HookPoint, (Vec<f32>, usize)> = HashMap::new();
    for (hook, var) in &vars {
        let base = run
            .base
            .get(*hook)
            .expect("base run captured every patched hook");
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.clone(),
            None => var.as_tensor().zeros_like()?,
        };
        let prod = ((&run.source[hook] - base)? * g)?.squeeze(0)?;
        let per = match hook {
            // [head, q, k] -> [q, head]
            HookPoint::Pattern(_) | HookPoint::AttnScores(_) => prod.sum(2)?.transpose(0, 1)?,
            HookPoint::Q(_) | HookPoint::K(_) | HookPoint::V(_) | HookPoint::Z(_) => prod.sum(2)?,
            _ => prod.sum_keepdim(1)?,
        };
        let heads = per.dim(1)?;
        let flat = per
            .contiguous()?
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        contrib.insert(*hook, (flat, heads));
    }
    let n_pos = run.base_tokens.len();
    let nan = Metrics::nan();
    Ok(plan
        .cells
        .iter()
        .map(|cell| {
            let Some(ops) = cell else { return nan };
            let mut delta = 0f32;
            for op in ops {
                let (v, heads) = &contrib[&op.hook];
                for p in 0..n_pos {
                    if op.pos.is_some_and(|q| q != p) {
                        continue;
                    }
                    for h in 0..*heads {
                        if *heads > 1 && op.head.is_some_and(|g| g != h) {
                            continue;
                        }
                        delta += v[p * heads + h];
                    }
                }
            }
            let mut m = nan;
            m[LOGIT_DIFF] = run.base_metrics.logit_diff() + delta;
            m
        })
        .collect())
}

/// The `k` cells with the largest estimated effect `|logit_diff − base|`,
/// where the base is the run being patched (corrupted when denoising).
pub fn top_cells(result: &super::SweepResult, base_logit_diff: f32, k: usize) -> Vec<usize> {
    let ld = &result.metrics["logit_diff"];
    let mut idx: Vec<usize> = (0..ld.len()).filter(|&i| ld[i].is_finite()).collect();
    idx.sort_by(|&a, &b| {
        (ld[b] - base_logit_diff)
            .abs()
            .total_cmp(&(ld[a] - base_logit_diff).abs())
    });
    idx.truncate(k);
    idx
}
