//! Which drill-down a heatmap cell leads to, from the sweep's target and
//! the cell's position on its axes.

use crate::model::HookPoint;
use crate::patching::{SweepSpec, Target};

use super::grid::GridRef;
use super::messages::{DrillData, DrillTarget, JobId};

/// An open drill-down.
#[derive(Debug, Clone, PartialEq)]
pub struct DrillState {
    pub target: DrillTarget,
    pub job: JobId,
    /// `None` while computing.
    pub result: Option<Result<DrillData, String>>,
    /// The sweep's values along the drilled layer, when the sweep has them
    /// (an MLP layer's per-position patching effect).
    pub effect_row: Option<Vec<(String, f32)>>,
    pub scroll: u16,
}

/// The drill-down for the cell at `idx`; `group` is query heads per KV head.
pub fn target_for(
    spec: &SweepSpec,
    grid: &GridRef<'_>,
    idx: &[usize],
    group: usize,
) -> Option<DrillTarget> {
    let at = |name: &str| {
        grid.axes
            .iter()
            .position(|a| a == name)
            .and_then(|i| idx.get(i).copied())
    };
    let layer = at("layer")?;
    let pos = at("pos").or(at("dest_pos"));
    let head = at("head").or(at("kv_head").map(|k| k * group.max(1)));
    let last = grid.tokens.len().saturating_sub(1);
    let lens = |hook: HookPoint| DrillTarget::Lens {
        hook,
        pos: pos.unwrap_or(last),
    };
    Some(match spec.target {
        Target::ResidPre => lens(HookPoint::ResidPre(layer)),
        Target::ResidMid => lens(HookPoint::ResidMid(layer)),
        Target::ResidPost | Target::TraceHidden => lens(HookPoint::ResidPost(layer)),
        Target::MlpOut | Target::TraceMlp => DrillTarget::Mlp { layer, pos },
        Target::AttnOut | Target::TraceAttn => DrillTarget::Attn { layer, pos },
        Target::BlockEvery => match at("component")
            .and_then(|c| grid.components.get(c))
            .map(String::as_str)
        {
            Some("attn_out") => DrillTarget::Attn { layer, pos },
            Some("mlp_out") => DrillTarget::Mlp { layer, pos },
            _ => lens(HookPoint::ResidPre(layer)),
        },
        _ => DrillTarget::Head { layer, head: head? },
    })
}

/// The sweep's values at `layer` across positions, for targets laid out
/// layer × position (or position × layer).
pub fn effect_row(
    grid: &GridRef<'_>,
    metric: &str,
    idx: &[usize],
    layer: usize,
) -> Option<Vec<(String, f32)>> {
    let li = grid.axes.iter().position(|a| a == "layer")?;
    let pi = grid.axes.iter().position(|a| a == "pos")?;
    let mut at = idx.to_vec();
    at[li] = layer;
    Some(
        (0..grid.shape[pi])
            .map(|p| {
                at[pi] = p;
                let v = grid.value(metric, grid.index(&at)).unwrap_or(f32::NAN);
                (grid.label(pi, p), v)
            })
            .collect(),
    )
}
