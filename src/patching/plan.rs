//! Turns a target into cells: each cell is the set of activations one
//! patched run replaces, laid out row-major over the target's axes.

use crate::model::{HookPoint, ModelConfig};

use super::spec::{SweepSpec, Target};

/// Builds a per-layer hook point from its layer index.
type LayerHook = fn(usize) -> HookPoint;

/// Replace the activation at `hook`, restricted to one position and/or one
/// head (`None` = all). For attention patterns the position is the
/// destination (query) position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PatchOp {
    pub hook: HookPoint,
    pub pos: Option<usize>,
    pub head: Option<usize>,
}

/// The cells of a sweep.
#[derive(Debug, Clone)]
pub struct Plan {
    pub axes: Vec<String>,
    pub shape: Vec<usize>,
    /// Labels of the `component` axis, when there is one.
    pub components: Vec<String>,
    /// Row-major; `None` where a cell does not exist (a key/value head index
    /// beyond `n_kv_heads` in `heads_every` under grouped-query attention).
    pub cells: Vec<Option<Vec<PatchOp>>>,
}

impl Plan {
    pub fn n_cells(&self) -> usize {
        self.cells.len()
    }
}

fn op(hook: HookPoint, pos: Option<usize>, head: Option<usize>) -> PatchOp {
    PatchOp { hook, pos, head }
}

/// Layers ROME restores together for a cell at `layer`: `window` layers
/// centred on it, clipped to the model (`range(l - w//2, l - (-w//2))`).
pub fn window_layers(layer: usize, window: usize, n_layers: usize) -> std::ops::Range<usize> {
    let lo = layer.saturating_sub(window / 2);
    let hi = (layer + window.div_ceil(2)).min(n_layers);
    lo..hi.max(lo + 1).min(n_layers)
}

/// Plans the cells of `spec` for a model and a prompt length.
pub fn plan(cfg: &ModelConfig, n_pos: usize, spec: &SweepSpec) -> Plan {
    let (nl, nh, nkv) = (cfg.n_layers, cfg.n_heads, cfg.n_kv_heads);
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let layer_pos = |hook: fn(usize) -> HookPoint| Plan {
        axes: strs(&["layer", "pos"]),
        shape: vec![nl, n_pos],
        components: vec![],
        cells: (0..nl)
            .flat_map(|l| (0..n_pos).map(move |p| Some(vec![op(hook(l), Some(p), None)])))
            .collect(),
    };
    let layer_head = |hook: fn(usize) -> HookPoint, heads: usize, axis: &str| Plan {
        axes: strs(&["layer", axis]),
        shape: vec![nl, heads],
        components: vec![],
        cells: (0..nl)
            .flat_map(|l| (0..heads).map(move |h| Some(vec![op(hook(l), None, Some(h))])))
            .collect(),
    };
    let layer_pos_head = |hook: fn(usize) -> HookPoint, heads: usize, axis: &str| Plan {
        axes: strs(&["layer", "pos", axis]),
        shape: vec![nl, n_pos, heads],
        components: vec![],
        cells: (0..nl)
            .flat_map(|l| {
                (0..n_pos).flat_map(move |p| {
                    (0..heads).map(move |h| Some(vec![op(hook(l), Some(p), Some(h))]))
                })
            })
            .collect(),
    };
    let trace = |hook: fn(usize) -> HookPoint, window: Option<usize>| Plan {
        axes: strs(&["pos", "layer"]),
        shape: vec![n_pos, nl],
        components: vec![],
        cells: (0..n_pos)
            .flat_map(|p| {
                (0..nl).map(move |l| {
                    let layers = match window {
                        Some(w) => window_layers(l, w, nl),
                        None => l..l + 1,
                    };
                    Some(layers.map(|l2| op(hook(l2), Some(p), None)).collect())
                })
            })
            .collect(),
    };
    match spec.target {
        Target::ResidPre => layer_pos(HookPoint::ResidPre),
        Target::ResidMid => layer_pos(HookPoint::ResidMid),
        Target::ResidPost => layer_pos(HookPoint::ResidPost),
        Target::AttnOut => layer_pos(HookPoint::AttnOut),
        Target::MlpOut => layer_pos(HookPoint::MlpOut),
        Target::HeadOut => layer_head(HookPoint::Z, nh, "head"),
        Target::HeadQ => layer_head(HookPoint::Q, nh, "head"),
        Target::HeadK => layer_head(HookPoint::K, nkv, kv_axis(cfg)),
        Target::HeadV => layer_head(HookPoint::V, nkv, kv_axis(cfg)),
        Target::HeadPattern => layer_head(HookPoint::Pattern, nh, "head"),
        Target::HeadOutByPos => layer_pos_head(HookPoint::Z, nh, "head"),
        Target::HeadQByPos => layer_pos_head(HookPoint::Q, nh, "head"),
        Target::HeadKByPos => layer_pos_head(HookPoint::K, nkv, kv_axis(cfg)),
        Target::HeadVByPos => layer_pos_head(HookPoint::V, nkv, kv_axis(cfg)),
        Target::HeadPatternByPos => Plan {
            axes: strs(&["layer", "head", "dest_pos"]),
            shape: vec![nl, nh, n_pos],
            components: vec![],
            cells: (0..nl)
                .flat_map(|l| {
                    (0..nh).flat_map(move |h| {
                        (0..n_pos)
                            .map(move |p| Some(vec![op(HookPoint::Pattern(l), Some(p), Some(h))]))
                    })
                })
                .collect(),
        },
        Target::HeadsEvery => {
            let comps: [(&str, LayerHook, usize); 5] = [
                ("output", HookPoint::Z, nh),
                ("query", HookPoint::Q, nh),
                ("key", HookPoint::K, nkv),
                ("value", HookPoint::V, nkv),
                ("pattern", HookPoint::Pattern, nh),
            ];
            Plan {
                axes: strs(&["component", "layer", "head"]),
                shape: vec![comps.len(), nl, nh],
                components: comps.iter().map(|c| c.0.to_string()).collect(),
                cells: comps
                    .iter()
                    .flat_map(|&(_, hook, heads)| {
                        (0..nl).flat_map(move |l| {
                            (0..nh)
                                .map(move |h| (h < heads).then(|| vec![op(hook(l), None, Some(h))]))
                        })
                    })
                    .collect(),
            }
        }
        Target::BlockEvery => {
            let comps: [(&str, LayerHook); 3] = [
                ("resid_pre", HookPoint::ResidPre),
                ("attn_out", HookPoint::AttnOut),
                ("mlp_out", HookPoint::MlpOut),
            ];
            Plan {
                axes: strs(&["component", "layer", "pos"]),
                shape: vec![comps.len(), nl, n_pos],
                components: comps.iter().map(|c| c.0.to_string()).collect(),
                cells: comps
                    .iter()
                    .flat_map(|&(_, hook)| {
                        (0..nl).flat_map(move |l| {
                            (0..n_pos).map(move |p| Some(vec![op(hook(l), Some(p), None)]))
                        })
                    })
                    .collect(),
            }
        }
        Target::TraceHidden => trace(HookPoint::ResidPost, None),
        Target::TraceMlp => trace(HookPoint::MlpOut, Some(spec.window)),
        Target::TraceAttn => trace(HookPoint::AttnOut, Some(spec.window)),
    }
}

/// Named token positions of each prompt pair: `spans[pair][label]` are the
/// positions of label `names[label]` in that pair's prompts. Pairs of
/// different lengths line up by label rather than by position.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PositionLabels {
    pub names: Vec<String>,
    pub spans: Vec<Vec<std::ops::Range<usize>>>,
}

/// Whether `spec`'s result has a position axis (`pos` or `dest_pos`).
pub fn has_position_axis(cfg: &ModelConfig, spec: &SweepSpec) -> bool {
    position_axis(&plan(cfg, 1, spec)).is_some()
}

fn position_axis(p: &Plan) -> Option<usize> {
    p.axes.iter().position(|a| a == "pos" || a == "dest_pos")
}

/// The plan of `spec` for a pair of `n_pos` tokens whose positions are
/// named: the position axis runs over the labels, and a label's cell
/// patches every position of its span together (in one patched run).
pub fn plan_labeled(
    cfg: &ModelConfig,
    n_pos: usize,
    spec: &SweepSpec,
    spans: &[std::ops::Range<usize>],
) -> Plan {
    let base = plan(cfg, n_pos, spec);
    let Some(k) = position_axis(&base) else {
        return base;
    };
    let mut shape = base.shape.clone();
    shape[k] = spans.len();
    let n: usize = shape.iter().product();
    let cells = (0..n)
        .map(|c| {
            let mut idx = vec![0; shape.len()];
            let mut rem = c;
            for (i, n) in idx.iter_mut().zip(&shape).rev() {
                *i = rem % n;
                rem /= n;
            }
            let mut ops = Vec::new();
            for p in spans[idx[k]].clone() {
                let mut b = idx.clone();
                b[k] = p;
                let bc = b.iter().zip(&base.shape).fold(0, |acc, (i, n)| acc * n + i);
                ops.extend(base.cells[bc].as_ref()?.iter().copied());
            }
            Some(ops)
        })
        .collect();
    Plan {
        axes: base.axes,
        shape,
        components: base.components,
        cells,
    }
}

fn kv_axis(cfg: &ModelConfig) -> &'static str {
    if cfg.n_kv_heads < cfg.n_heads {
        "kv_head"
    } else {
        "head"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rome_window_matches_python_ranges() {
        // range(max(0, l - w // 2), min(n, l - (-w // 2)))
        assert_eq!(window_layers(0, 10, 12), 0..5);
        assert_eq!(window_layers(6, 10, 12), 1..11);
        assert_eq!(window_layers(11, 10, 12), 6..12);
        assert_eq!(window_layers(4, 3, 12), 3..6);
        assert_eq!(window_layers(3, 1, 12), 3..4);
    }
}
