//! One MLP layer (and, alongside, one attention layer): how its output
//! changes between the prompts, which neurons drive the logit difference,
//! and which tokens its output promotes.
//!
//! Neuron effects are a gradient-free attribution at the final position:
//! `(act_clean[n] − act_corrupted[n]) × (W_out[n] · d)`, where `d` is the
//! logit-difference direction through the final norm frozen at the clean
//! run's scale (see the `analysis` module docs). It is the neuron's *direct*
//! effect on `logit(answer) − logit(wrong)`; effects through later layers
//! are not counted.

use candle_core::Tensor;

use crate::model::{HookPoint, LoadedModel};
use crate::patching::PreparedPair;

use super::util::{
    at_pos, captured, direct_logits, dot, flat, logit_diff_direction, norm_scale, run, top_k,
    top_tokens,
};
use super::{AnalysisError, Scored};

/// How the neuron effects were computed, for the pane to say.
pub const NEURON_METHOD: &str =
    "direct effect: Δact × W_out[n]·(W_U[:,answer]−W_U[:,wrong]) / ln_final scale, final position";

#[derive(Debug, Clone, PartialEq)]
pub struct NeuronEffect {
    pub index: usize,
    pub act_clean: f32,
    pub act_corrupted: f32,
    /// `W_out[n] · d`: logit difference per unit of activation.
    pub direct: f32,
    /// `(act_clean − act_corrupted) × direct`.
    pub effect: f32,
}

/// Everything the MLP drill-down shows.
#[derive(Debug, Clone, PartialEq)]
pub struct MlpDrill {
    pub layer: usize,
    pub tokens: Vec<String>,
    /// `‖mlp_out_clean[p] − mlp_out_corrupted[p]‖` per position.
    pub delta_norm: Vec<f32>,
    /// Direct logit-difference contribution of `hook_mlp_out` at the final
    /// position, clean and corrupted.
    pub dla_clean: f32,
    pub dla_corrupted: f32,
    /// Neurons with the largest |effect|.
    pub neurons: Vec<NeuronEffect>,
    pub method: &'static str,
    /// Tokens the clean output at the final position promotes and suppresses
    /// most (direct logits).
    pub promoted: Vec<Scored>,
    pub suppressed: Vec<Scored>,
}

/// The MLP drill-down for block `layer`.
pub fn mlp(m: &LoadedModel, pair: &PreparedPair, layer: usize) -> Result<MlpDrill, AnalysisError> {
    let model = &m.model;
    let cfg = &model.cfg;
    if layer >= cfg.n_layers {
        return Err(AnalysisError::Invalid(format!(
            "no MLP layer {layer}: the model has {} layers",
            cfg.n_layers
        )));
    }
    let n = pair.n_pos();
    let last_layer = cfg.n_layers - 1;
    let hooks = [
        HookPoint::MlpOut(layer),
        HookPoint::MlpPost(layer),
        HookPoint::ResidPost(last_layer),
    ];
    let c = run(model, &pair.clean, &hooks)?;
    let k = run(model, &pair.corrupted, &hooks)?;
    let out_c = captured(&c, HookPoint::MlpOut(layer))?;
    let out_k = captured(&k, HookPoint::MlpOut(layer))?;
    let delta_norm = flat(&(&out_c - &out_k)?.sqr()?.sum_keepdim(2)?.sqrt()?)?;

    let scale_c = norm_scale(
        model,
        &at_pos(&captured(&c, HookPoint::ResidPost(last_layer))?, n - 1)?,
    );
    let scale_k = norm_scale(
        model,
        &at_pos(&captured(&k, HookPoint::ResidPost(last_layer))?, n - 1)?,
    );
    let dir_c = logit_diff_direction(model, pair.answer, pair.wrong, scale_c)?;
    let dir_k = logit_diff_direction(model, pair.answer, pair.wrong, scale_k)?;
    let last_c = at_pos(&out_c, n - 1)?;
    let last_k = at_pos(&out_k, n - 1)?;

    let act_c = at_pos(&captured(&c, HookPoint::MlpPost(layer))?, n - 1)?;
    let act_k = at_pos(&captured(&k, HookPoint::MlpPost(layer))?, n - 1)?;
    let w_out = &model.blocks[layer].mlp.w_out.w.to_dense()?; // [d_mlp, d_model]
    let d = Tensor::from_vec(dir_c.clone(), (cfg.d_model, 1), model.device())?
        .to_dtype(w_out.dtype())?;
    let direct = flat(&w_out.matmul(&d)?)?;
    let effects: Vec<f32> = (0..cfg.d_mlp)
        .map(|i| (act_c[i] - act_k[i]) * direct[i])
        .collect();
    let neurons = top_k(&effects, 10, f32::abs)
        .into_iter()
        .map(|(i, e)| NeuronEffect {
            index: i,
            act_clean: act_c[i],
            act_corrupted: act_k[i],
            direct: direct[i],
            effect: e,
        })
        .collect();
    let logits = direct_logits(model, &last_c, scale_c)?;
    Ok(MlpDrill {
        layer,
        tokens: m.tokenizer.token_strs(&pair.clean),
        delta_norm,
        dla_clean: dot(&last_c, &dir_c),
        dla_corrupted: dot(&last_k, &dir_k),
        neurons,
        method: NEURON_METHOD,
        promoted: top_tokens(&m.tokenizer, &logits, 8, |v| v),
        suppressed: top_tokens(&m.tokenizer, &logits, 5, |v| -v),
    })
}

/// Per-head direct attribution of one attention layer.
#[derive(Debug, Clone, PartialEq)]
pub struct AttnDrill {
    pub layer: usize,
    /// Direct logit-difference attribution of each head at the final position.
    pub head_dla_clean: Vec<f32>,
    pub head_dla_corrupted: Vec<f32>,
    /// Tokens the clean `hook_attn_out` at the final position promotes.
    pub promoted: Vec<Scored>,
}

/// The attention-layer drill-down for block `layer`.
pub fn attn_layer(
    m: &LoadedModel,
    pair: &PreparedPair,
    layer: usize,
) -> Result<AttnDrill, AnalysisError> {
    let model = &m.model;
    let cfg = &model.cfg;
    if layer >= cfg.n_layers {
        return Err(AnalysisError::Invalid(format!(
            "no attention layer {layer}: the model has {} layers",
            cfg.n_layers
        )));
    }
    let n = pair.n_pos();
    let last_layer = cfg.n_layers - 1;
    let hooks = [
        HookPoint::Z(layer),
        HookPoint::AttnOut(layer),
        HookPoint::ResidPost(last_layer),
    ];
    let per_head = |tokens: &[u32]| -> Result<(Vec<f32>, Vec<f32>, f32), AnalysisError> {
        let out = run(model, tokens, &hooks)?;
        let scale = norm_scale(
            model,
            &at_pos(&captured(&out, HookPoint::ResidPost(last_layer))?, n - 1)?,
        );
        let dir = logit_diff_direction(model, pair.answer, pair.wrong, scale)?;
        let z = captured(&out, HookPoint::Z(layer))?
            .squeeze(0)?
            .narrow(0, n - 1, 1)?
            .squeeze(0)?;
        let w_o = &model.blocks[layer].attn.o.w.to_dense()?;
        let dh = cfg.d_head;
        let mut dla = Vec::with_capacity(cfg.n_heads);
        for h in 0..cfg.n_heads {
            let write = z
                .narrow(0, h, 1)?
                .to_dtype(w_o.dtype())?
                .matmul(&w_o.narrow(0, h * dh, dh)?)?;
            dla.push(dot(&flat(&write)?, &dir));
        }
        Ok((
            dla,
            at_pos(&captured(&out, HookPoint::AttnOut(layer))?, n - 1)?,
            scale,
        ))
    };
    let (dla_c, attn_c, scale_c) = per_head(&pair.clean)?;
    let (dla_k, _, _) = per_head(&pair.corrupted)?;
    let logits = direct_logits(model, &attn_c, scale_c)?;
    Ok(AttnDrill {
        layer,
        head_dla_clean: dla_c,
        head_dla_corrupted: dla_k,
        promoted: top_tokens(&m.tokenizer, &logits, 8, |v| v),
    })
}
