//! Shared helpers: forward passes with captures and tensor-to-`Vec` moves.

use candle_core::{DType, Result as CResult, Tensor};

use crate::model::config::NormKind;
use crate::model::{ForwardOptions, ForwardOutput, HookPoint, HookSpec, Transformer};

use super::Scored;

/// One full forward of `tokens` capturing `hooks` (batch 1).
pub fn run(model: &Transformer, tokens: &[u32], hooks: &[HookPoint]) -> CResult<ForwardOutput> {
    let mut spec = HookSpec::new();
    for h in hooks {
        spec = spec.capture(*h);
    }
    let t = Tensor::new(tokens, model.device())?.unsqueeze(0)?;
    model.forward(Some(&t), &spec, &ForwardOptions::default())
}

/// A tensor's values as `f32`, row-major.
pub fn flat(t: &Tensor) -> CResult<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// The captured activation `hook`, `[1, pos, ...]` flattened, or an error
/// naming the hook.
pub fn captured(out: &ForwardOutput, hook: HookPoint) -> CResult<Tensor> {
    out.cache
        .get(hook)
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg(format!("{hook} was not captured")))
}

/// Row `pos` of a `[1, pos, d]` activation.
pub fn at_pos(t: &Tensor, pos: usize) -> CResult<Vec<f32>> {
    flat(&t.squeeze(0)?.narrow(0, pos, 1)?)
}

/// The final norm's scale `s` of a residual vector (LayerNorm: std after
/// centring; RMSNorm: root mean square), `eps` included.
pub fn norm_scale(model: &Transformer, x: &[f32]) -> f32 {
    let n = x.len().max(1) as f32;
    let eps = model.ln_final.eps as f32;
    match model.ln_final.kind {
        NormKind::LayerNorm => {
            let mean = x.iter().sum::<f32>() / n;
            let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n;
            (var + eps).sqrt()
        }
        NormKind::RmsNorm => (x.iter().map(|v| v * v).sum::<f32>() / n + eps).sqrt(),
    }
}

/// The effective direction `d` with `c · d` = the direct contribution of a
/// residual component `c` to `logit(answer) − logit(wrong)`, under the final
/// norm frozen at scale `s` (see the module docs of `analysis`).
pub fn logit_diff_direction(
    model: &Transformer,
    answer: u32,
    wrong: u32,
    scale: f32,
) -> CResult<Vec<f32>> {
    let col = |id: u32| flat(&model.w_u.narrow(1, id as usize, 1)?);
    let (ua, uw) = (col(answer)?, col(wrong)?);
    let w = flat(&model.ln_final.w)?;
    let mut g: Vec<f32> = (0..w.len()).map(|i| w[i] * (ua[i] - uw[i])).collect();
    if model.ln_final.kind == NormKind::LayerNorm {
        let mean = g.iter().sum::<f32>() / g.len().max(1) as f32;
        g.iter_mut().for_each(|v| *v -= mean);
    }
    g.iter_mut().for_each(|v| *v /= scale);
    Ok(g)
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The logits a residual component `c` adds directly, through the frozen
/// final norm (scale `s`) and the unembedding, without the bias.
pub fn direct_logits(model: &Transformer, c: &[f32], scale: f32) -> CResult<Vec<f32>> {
    let w = flat(&model.ln_final.w)?;
    let mean = match model.ln_final.kind {
        NormKind::LayerNorm => c.iter().sum::<f32>() / c.len().max(1) as f32,
        NormKind::RmsNorm => 0.0,
    };
    let g: Vec<f32> = c
        .iter()
        .zip(&w)
        .map(|(x, w)| (x - mean) / scale * w)
        .collect();
    let g = Tensor::from_vec(g, (1, c.len()), model.device())?.to_dtype(model.w_u.dtype())?;
    flat(&g.matmul(&model.w_u)?)
}

/// The `k` largest values (by `key`) with their indices, largest first.
pub fn top_k(values: &[f32], k: usize, key: impl Fn(f32) -> f32) -> Vec<(usize, f32)> {
    let mut idx: Vec<usize> = (0..values.len())
        .filter(|&i| values[i].is_finite())
        .collect();
    idx.sort_by(|&a, &b| key(values[b]).total_cmp(&key(values[a])));
    idx.into_iter().take(k).map(|i| (i, values[i])).collect()
}

/// Top `k` tokens of a vocabulary-sized vector.
pub fn top_tokens(
    tok: &crate::model::Tokenizer,
    values: &[f32],
    k: usize,
    key: impl Fn(f32) -> f32,
) -> Vec<Scored> {
    top_k(values, k, key)
        .into_iter()
        .map(|(i, v)| Scored {
            index: i,
            token: tok.token_str(i as u32),
            value: v,
        })
        .collect()
}

/// Softmax of a logit vector.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|x| (x - max).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// 1-based rank of `id` in `logits`.
pub fn rank(logits: &[f32], id: u32) -> usize {
    let a = logits[id as usize];
    1 + logits.iter().filter(|&&x| x > a).count()
}
