//! The cells of each target, written from TransformerLens `patching.py` and
//! ROME's `trace_with_patch`, and the replace masks that patch one cell.
//!
//! Deliberately naive: a cell is a list of [`Site`]s; the mask of a site is
//! built element by element over the full activation shape from the hook's
//! documented layout (`[batch, pos, head, d_head]` for q/k/v/z, `[batch,
//! head, dest_pos, src_pos]` for patterns, `[batch, pos, d_model]` for the
//! rest), so it shares nothing with the engine's planner or mask builder.

use candle_core::{Device, Result as CResult, Tensor};

use crate::model::HookPoint;

use super::super::spec::Target;

/// Part of one activation a cell replaces: everything at `hook`, narrowed
/// to one position (the destination position for patterns) and/or one head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    pub hook: HookPoint,
    pub pos: Option<usize>,
    pub head: Option<usize>,
}

/// The axes of a target's result and its cells in row-major order (`None`
/// where a cell does not exist, as for key/value heads beyond `n_kv_heads`).
#[derive(Debug, Clone)]
pub struct Cells {
    pub axes: Vec<&'static str>,
    pub shape: Vec<usize>,
    pub components: Vec<&'static str>,
    pub cells: Vec<Option<Vec<Site>>>,
}

/// Model sizes the cells depend on.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub n_pos: usize,
}

fn site(hook: HookPoint, pos: Option<usize>, head: Option<usize>) -> Site {
    Site { hook, pos, head }
}

type LayerHook = fn(usize) -> HookPoint;

/// `get_act_patch_{resid_pre,resid_mid,resid_post,attn_out,mlp_out}`:
/// `[layer, pos]`, one (layer, position) of the hook per cell.
fn layer_pos(d: Dims, hook: LayerHook) -> Vec<Option<Vec<Site>>> {
    let mut out = Vec::new();
    for l in 0..d.n_layers {
        for p in 0..d.n_pos {
            out.push(Some(vec![site(hook(l), Some(p), None)]));
        }
    }
    out
}

/// `get_act_patch_attn_head_*_all_pos`: `[layer, head]`, one head at every
/// position. Heads at or beyond `heads` (key/value heads under grouped-query
/// attention, in `heads_every`) do not exist.
fn layer_head(d: Dims, hook: LayerHook, heads: usize, width: usize) -> Vec<Option<Vec<Site>>> {
    let mut out = Vec::new();
    for l in 0..d.n_layers {
        for h in 0..width {
            out.push((h < heads).then(|| vec![site(hook(l), None, Some(h))]));
        }
    }
    out
}

/// `get_act_patch_attn_head_{out,q,k,v}_by_pos`: `[layer, pos, head]`.
fn layer_pos_head(d: Dims, hook: LayerHook, heads: usize) -> Vec<Option<Vec<Site>>> {
    let mut out = Vec::new();
    for l in 0..d.n_layers {
        for p in 0..d.n_pos {
            for h in 0..heads {
                out.push(Some(vec![site(hook(l), Some(p), Some(h))]));
            }
        }
    }
    out
}

/// ROME's layer window for a cell at `layer`, as `trace_important_window`
/// writes it: `range(max(0, layer - window // 2), min(num_layers, layer - (-window // 2)))`.
pub fn rome_window(layer: usize, window: usize, n_layers: usize) -> Vec<usize> {
    let (layer, window, n) = (layer as i64, window as i64, n_layers as i64);
    let lo = (layer - window.div_euclid(2)).max(0);
    let hi = n.min(layer - (-window).div_euclid(2));
    (lo..hi).map(|l| l as usize).collect()
}

/// ROME traces: `[pos, layer]`; each cell restores the hook at one token in
/// the layers of `window(layer)`.
fn trace(d: Dims, hook: LayerHook, window: impl Fn(usize) -> Vec<usize>) -> Vec<Option<Vec<Site>>> {
    let mut out = Vec::new();
    for p in 0..d.n_pos {
        for l in 0..d.n_layers {
            out.push(Some(
                window(l)
                    .into_iter()
                    .map(|l2| site(hook(l2), Some(p), None))
                    .collect(),
            ));
        }
    }
    out
}

/// The cells of `target`. `window` is ROME's window for `trace_mlp` and
/// `trace_attn` (`trace_hidden` restores one layer).
pub fn cells(target: Target, d: Dims, window: usize) -> Cells {
    use HookPoint as H;
    let (nl, nh, nkv, np) = (d.n_layers, d.n_heads, d.n_kv_heads, d.n_pos);
    // patchbench calls the key/value head axis `kv_head` when grouped-query
    // attention makes it shorter than the query head axis.
    let kv = if nkv < nh { "kv_head" } else { "head" };
    let simple = |axes: Vec<&'static str>, shape: Vec<usize>, cells| Cells {
        axes,
        shape,
        components: vec![],
        cells,
    };
    let lp = |hook| simple(vec!["layer", "pos"], vec![nl, np], layer_pos(d, hook));
    let lh = |hook, heads, axis| {
        simple(
            vec!["layer", axis],
            vec![nl, heads],
            layer_head(d, hook, heads, heads),
        )
    };
    let lph = |hook, heads, axis| {
        simple(
            vec!["layer", "pos", axis],
            vec![nl, np, heads],
            layer_pos_head(d, hook, heads),
        )
    };
    let tr = |hook, w: Option<usize>| {
        let cells = trace(d, hook, |l| match w {
            Some(w) => rome_window(l, w, nl),
            None => vec![l],
        });
        simple(vec!["pos", "layer"], vec![np, nl], cells)
    };
    match target {
        Target::ResidPre => lp(H::ResidPre),
        Target::ResidMid => lp(H::ResidMid),
        Target::ResidPost => lp(H::ResidPost),
        Target::AttnOut => lp(H::AttnOut),
        Target::MlpOut => lp(H::MlpOut),
        Target::HeadOut => lh(H::Z, nh, "head"),
        Target::HeadQ => lh(H::Q, nh, "head"),
        Target::HeadK => lh(H::K, nkv, kv),
        Target::HeadV => lh(H::V, nkv, kv),
        Target::HeadPattern => lh(H::Pattern, nh, "head"),
        Target::HeadOutByPos => lph(H::Z, nh, "head"),
        Target::HeadQByPos => lph(H::Q, nh, "head"),
        Target::HeadKByPos => lph(H::K, nkv, kv),
        Target::HeadVByPos => lph(H::V, nkv, kv),
        // get_act_patch_attn_head_pattern_by_pos: [layer, head, dest_pos].
        Target::HeadPatternByPos => {
            let mut out = Vec::new();
            for l in 0..nl {
                for h in 0..nh {
                    for p in 0..np {
                        out.push(Some(vec![site(H::Pattern(l), Some(p), Some(h))]));
                    }
                }
            }
            simple(vec!["layer", "head", "dest_pos"], vec![nl, nh, np], out)
        }
        // get_act_patch_attn_head_all_pos_every: output, query, key, value,
        // pattern stacked, each [layer, head].
        Target::HeadsEvery => {
            let mut out = layer_head(d, H::Z, nh, nh);
            out.extend(layer_head(d, H::Q, nh, nh));
            out.extend(layer_head(d, H::K, nkv, nh));
            out.extend(layer_head(d, H::V, nkv, nh));
            out.extend(layer_head(d, H::Pattern, nh, nh));
            Cells {
                axes: vec!["component", "layer", "head"],
                shape: vec![5, nl, nh],
                components: vec!["output", "query", "key", "value", "pattern"],
                cells: out,
            }
        }
        // get_act_patch_block_every: resid_pre, attn_out, mlp_out stacked,
        // each [layer, pos].
        Target::BlockEvery => {
            let mut out = layer_pos(d, H::ResidPre);
            out.extend(layer_pos(d, H::AttnOut));
            out.extend(layer_pos(d, H::MlpOut));
            Cells {
                axes: vec!["component", "layer", "pos"],
                shape: vec![3, nl, np],
                components: vec!["resid_pre", "attn_out", "mlp_out"],
                cells: out,
            }
        }
        Target::TraceHidden => tr(H::ResidPost, None),
        Target::TraceMlp => tr(H::MlpOut, Some(window)),
        Target::TraceAttn => tr(H::AttnOut, Some(window)),
    }
}

/// Which axes of the activation at `hook` hold positions and heads.
fn pos_head_axes(hook: HookPoint) -> (usize, Option<usize>) {
    match hook {
        HookPoint::Q(_) | HookPoint::K(_) | HookPoint::V(_) | HookPoint::Z(_) => (1, Some(2)),
        HookPoint::Pattern(_) | HookPoint::AttnScores(_) => (2, Some(1)),
        _ => (1, None),
    }
}

/// The position axis of the activation at `hook` (destination positions for
/// patterns), over which mean ablation averages.
pub fn pos_axis(hook: HookPoint) -> usize {
    pos_head_axes(hook).0
}

/// A 0/1 mask of the activation's full `shape`, 1 exactly where `site`
/// selects, checked element by element.
pub fn site_mask(s: &Site, shape: &[usize], dev: &Device) -> CResult<Tensor> {
    let (pos_axis, head_axis) = pos_head_axes(s.hook);
    let n: usize = shape.iter().product();
    let mut index = vec![0usize; shape.len()];
    let mut v = Vec::with_capacity(n);
    for flat in 0..n {
        let mut rest = flat;
        for (ax, &len) in shape.iter().enumerate().rev() {
            index[ax] = rest % len;
            rest /= len;
        }
        let pos_ok = s.pos.is_none_or(|p| index[pos_axis] == p);
        let head_ok = match (s.head, head_axis) {
            (Some(h), Some(ax)) => index[ax] == h,
            _ => true,
        };
        v.push(if pos_ok && head_ok { 1f32 } else { 0f32 });
    }
    Tensor::from_vec(v, shape, dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rome_window_is_the_python_range() {
        assert_eq!(rome_window(0, 10, 12), (0..5).collect::<Vec<_>>());
        assert_eq!(rome_window(6, 10, 12), (1..11).collect::<Vec<_>>());
        assert_eq!(rome_window(11, 10, 12), (6..12).collect::<Vec<_>>());
        assert_eq!(rome_window(4, 3, 12), vec![3, 4, 5]);
        assert_eq!(rome_window(3, 1, 12), vec![3]);
        assert_eq!(rome_window(1, 2, 2), vec![0, 1]);
    }

    #[test]
    fn pattern_masks_select_head_and_destination_row() {
        let s = site(HookPoint::Pattern(0), Some(2), Some(1));
        let m = site_mask(&s, &[1, 2, 3, 3], &Device::Cpu).unwrap();
        let v: Vec<f32> = m.flatten_all().unwrap().to_vec1().unwrap();
        let ones: Vec<usize> = (0..v.len()).filter(|&i| v[i] == 1.0).collect();
        // [0, head 1, dest 2, src 0..3] = 9 + 6 + {0, 1, 2}
        assert_eq!(ones, vec![15, 16, 17]);
    }

    #[test]
    fn head_masks_cover_every_position_and_dimension() {
        let s = site(HookPoint::K(1), None, Some(0));
        let m = site_mask(&s, &[1, 3, 2, 4], &Device::Cpu).unwrap();
        let v: Vec<f32> = m.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v.iter().sum::<f32>(), 12.0);
        assert!((0..3).all(|p| v[p * 8] == 1.0 && v[p * 8 + 4] == 0.0));
    }
}
