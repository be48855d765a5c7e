//! One attention head: its pattern on the clean and the corrupted prompt,
//! where the final position looks, and its direct logit attribution.

use crate::model::{HookPoint, LoadedModel};
use crate::patching::PreparedPair;

use super::util::{at_pos, captured, dot, flat, logit_diff_direction, norm_scale, run, top_k};
use super::{AnalysisError, Scored};

/// Everything the head drill-down shows.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadDrill {
    pub layer: usize,
    pub head: usize,
    pub clean_tokens: Vec<String>,
    pub corrupted_tokens: Vec<String>,
    /// `[q_pos, k_pos]` row-major attention weights, `n_pos × n_pos`.
    pub pattern_clean: Vec<f32>,
    pub pattern_corrupted: Vec<f32>,
    /// Keys the final position attends to most, on each prompt.
    pub top_clean: Vec<Scored>,
    pub top_corrupted: Vec<Scored>,
    /// Direct logit attribution of the head's output at the final position
    /// to `logit(answer) − logit(wrong)`, on each prompt.
    pub dla_clean: f32,
    pub dla_corrupted: f32,
    /// The full logit differences of the unpatched runs, for scale.
    pub logit_diff_clean: f32,
    pub logit_diff_corrupted: f32,
}

impl HeadDrill {
    pub fn n_pos(&self) -> usize {
        self.clean_tokens.len()
    }

    /// Clean minus corrupted pattern.
    pub fn pattern_diff(&self) -> Vec<f32> {
        self.pattern_clean
            .iter()
            .zip(&self.pattern_corrupted)
            .map(|(a, b)| a - b)
            .collect()
    }
}

/// Per-prompt results of one head.
struct HeadRun {
    pattern: Vec<f32>,
    top: Vec<Scored>,
    dla: f32,
    logit_diff: f32,
}

fn head_run(
    m: &LoadedModel,
    tokens: &[u32],
    pair: &PreparedPair,
    layer: usize,
    head: usize,
) -> Result<HeadRun, AnalysisError> {
    let model = &m.model;
    let cfg = &model.cfg;
    let n = tokens.len();
    let last_layer = cfg.n_layers - 1;
    let out = run(
        model,
        tokens,
        &[
            HookPoint::Pattern(layer),
            HookPoint::Z(layer),
            HookPoint::ResidPost(last_layer),
        ],
    )?;
    // [1, head, q, k] -> [q, k] of this head
    let pattern = flat(
        &captured(&out, HookPoint::Pattern(layer))?
            .squeeze(0)?
            .narrow(0, head, 1)?,
    )?;
    let last_row = &pattern[(n - 1) * n..n * n];
    let strs = m.tokenizer.token_strs(tokens);
    let top = top_k(last_row, 5, |v| v)
        .into_iter()
        .map(|(i, v)| Scored {
            index: i,
            token: strs[i].clone(),
            value: v,
        })
        .collect();
    // z[last, head] @ W_O[head rows] -> the head's write to the residual stream.
    let z = captured(&out, HookPoint::Z(layer))?
        .squeeze(0)?
        .narrow(0, n - 1, 1)?
        .squeeze(0)?
        .narrow(0, head, 1)?; // [1, d_head]
    let dh = cfg.d_head;
    let w_o = model.blocks[layer]
        .attn
        .o
        .w
        .to_dense()?
        .narrow(0, head * dh, dh)?;
    let write = flat(&z.to_dtype(w_o.dtype())?.matmul(&w_o)?)?;
    let resid = at_pos(&captured(&out, HookPoint::ResidPost(last_layer))?, n - 1)?;
    let dir = logit_diff_direction(model, pair.answer, pair.wrong, norm_scale(model, &resid))?;
    let logits = flat(
        &out.logits
            .expect("full forward has logits")
            .squeeze(0)?
            .narrow(0, n - 1, 1)?,
    )?;
    Ok(HeadRun {
        pattern,
        top,
        dla: dot(&write, &dir),
        logit_diff: logits[pair.answer as usize] - logits[pair.wrong as usize],
    })
}

/// The head drill-down for head `head` of block `layer`.
pub fn head(
    m: &LoadedModel,
    pair: &PreparedPair,
    layer: usize,
    head: usize,
) -> Result<HeadDrill, AnalysisError> {
    let cfg = m.config();
    if layer >= cfg.n_layers || head >= cfg.n_heads {
        return Err(AnalysisError::Invalid(format!(
            "no head L{layer}H{head}: the model has {} layers of {} heads",
            cfg.n_layers, cfg.n_heads
        )));
    }
    let c = head_run(m, &pair.clean, pair, layer, head)?;
    let k = head_run(m, &pair.corrupted, pair, layer, head)?;
    Ok(HeadDrill {
        layer,
        head,
        clean_tokens: m.tokenizer.token_strs(&pair.clean),
        corrupted_tokens: m.tokenizer.token_strs(&pair.corrupted),
        pattern_clean: c.pattern,
        pattern_corrupted: k.pattern,
        top_clean: c.top,
        top_corrupted: k.top,
        dla_clean: c.dla,
        dla_corrupted: k.dla,
        logit_diff_clean: c.logit_diff,
        logit_diff_corrupted: k.logit_diff,
    })
}
