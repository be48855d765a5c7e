//! Interventions for batches of patched runs: one `Replace` per hook, whose
//! 0/1 mask selects each row's cell (positions and heads) and whose value is
//! the source run's activation, in the dense `[rows, T, ...]` layout or the
//! packed one-entry-per-token layout.

use candle_core::{Device, Result as CResult, Tensor};

use crate::model::{Edit, HookPoint, HookSpec, Transformer};

use super::plan::PatchOp;
use super::runs::RunPair;

/// Activation shape facts used to build masks for a hook.
pub(crate) struct MaskLayout {
    /// Number of heads on the head axis, or 0 for head-less activations.
    pub(crate) heads: usize,
    /// Attention patterns put heads before positions.
    pub(crate) head_first: bool,
}

pub(crate) fn mask_layout(model: &Transformer, hook: HookPoint) -> MaskLayout {
    let c = &model.cfg;
    match hook {
        HookPoint::Q(_) | HookPoint::Z(_) => MaskLayout {
            heads: c.n_heads,
            head_first: false,
        },
        HookPoint::K(_) | HookPoint::V(_) => MaskLayout {
            heads: c.n_kv_heads,
            head_first: false,
        },
        HookPoint::Pattern(_) | HookPoint::AttnScores(_) => MaskLayout {
            heads: c.n_heads,
            head_first: true,
        },
        _ => MaskLayout {
            heads: 0,
            head_first: false,
        },
    }
}

/// Builds a `[rows, ...]` 0/1 mask for `hook` over all `n_pos` positions:
/// `[rows, T, 1]`, `[rows, T, H, 1]` or, for patterns, `[rows, H, T, 1]`.
fn build_mask(
    model: &Transformer,
    hook: HookPoint,
    rows: &[Vec<&PatchOp>],
    n_pos: usize,
    dev: &Device,
) -> CResult<Tensor> {
    let lay = mask_layout(model, hook);
    let nh = lay.heads.max(1);
    let mut v = vec![0f32; rows.len() * n_pos * nh];
    for (r, ops) in rows.iter().enumerate() {
        for op in ops {
            for p in 0..n_pos {
                if op.pos.is_some_and(|q| q != p) {
                    continue;
                }
                for h in 0..nh {
                    if lay.heads > 0 && op.head.is_some_and(|g| g != h) {
                        continue;
                    }
                    let idx = if lay.head_first {
                        (r * nh + h) * n_pos + p
                    } else {
                        (r * n_pos + p) * nh + h
                    };
                    v[idx] = 1.0;
                }
            }
        }
    }
    let b = rows.len();
    match (lay.heads, lay.head_first) {
        (0, _) => Tensor::from_vec(v, (b, n_pos, 1), dev),
        (h, false) => Tensor::from_vec(v, (b, n_pos, h, 1), dev),
        (h, true) => Tensor::from_vec(v, (b, h, n_pos, 1), dev),
    }
}

/// The distinct hooks these cells patch, in order.
fn patched_hooks(cells: &[&Vec<PatchOp>]) -> Vec<HookPoint> {
    let mut hooks: Vec<HookPoint> = cells
        .iter()
        .flat_map(|ops| ops.iter().map(|o| o.hook))
        .collect();
    hooks.sort();
    hooks.dedup();
    hooks
}

/// Replace interventions for a batch: one per hook, one mask row per cell.
pub(crate) fn batch_hooks(
    model: &Transformer,
    run: &RunPair,
    cells: &[&Vec<PatchOp>],
    n_pos: usize,
) -> CResult<HookSpec> {
    batch_hooks_with(model, cells, n_pos, &|hook| Ok(run.source[&hook].clone()))
}

/// [`batch_hooks`] with the patched-in values given per hook (`[1 or
/// rows, T, ...]`): rows of different runs take their own run's values.
pub(crate) fn batch_hooks_with(
    model: &Transformer,
    cells: &[&Vec<PatchOp>],
    n_pos: usize,
    source: &dyn Fn(HookPoint) -> CResult<Tensor>,
) -> CResult<HookSpec> {
    let mut spec = HookSpec::new();
    for hook in patched_hooks(cells) {
        let rows: Vec<Vec<&PatchOp>> = cells
            .iter()
            .map(|ops| ops.iter().filter(|o| o.hook == hook).collect())
            .collect();
        let mask = build_mask(model, hook, &rows, n_pos, model.device())?;
        let value = source(hook)?;
        spec = spec.intervene(hook, Edit::Replace { mask, value });
    }
    Ok(spec)
}

/// Replace interventions in the packed layout: one mask entry per packed
/// token `(row, pos)`; the values, one entry per packed token (`[1,
/// n_tokens, ...]`, gathered from each row's source run by position), are
/// given per hook.
pub(crate) fn packed_hooks_with(
    model: &Transformer,
    cells: &[&Vec<PatchOp>],
    tokens: &[(usize, usize)],
    source: &dyn Fn(HookPoint) -> CResult<Tensor>,
) -> CResult<HookSpec> {
    let mut spec = HookSpec::new();
    for hook in patched_hooks(cells) {
        let heads = mask_layout(model, hook).heads;
        let nh = heads.max(1);
        let mut v = vec![0f32; tokens.len() * nh];
        for (n, &(r, p)) in tokens.iter().enumerate() {
            for op in cells[r]
                .iter()
                .filter(|o| o.hook == hook && o.pos.is_none_or(|q| q == p))
            {
                for h in 0..nh {
                    if heads == 0 || op.head.is_none_or(|g| g == h) {
                        v[n * nh + h] = 1.0;
                    }
                }
            }
        }
        let dev = model.device();
        let mask = if heads == 0 {
            Tensor::from_vec(v, (1, tokens.len(), 1), dev)?
        } else {
            Tensor::from_vec(v, (1, tokens.len(), heads, 1), dev)?
        };
        let value = source(hook)?;
        spec = spec.intervene(hook, Edit::Replace { mask, value });
    }
    Ok(spec)
}
