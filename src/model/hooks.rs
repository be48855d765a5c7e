//! Hook points, captures and interventions.
//!
//! Hook names and meanings are TransformerLens's, so a researcher can read
//! `blocks.3.attn.hook_z` and know exactly which tensor it is. Every hook site
//! in the forward pass calls [`HookSpec::apply`] once: it applies any
//! interventions registered for that point and records a capture if asked.
//! An empty spec is a single `is_empty` check per site.
//!
//! Interventions are dense and batched: a `Replace` carries a 0/1 mask and a
//! value tensor, both broadcastable to the activation, so one forward pass can
//! patch a different cell in every batch row (the sweep engine builds such
//! masks). Position dimensions are always given in absolute positions
//! `0..T`; when the forward pass only computes positions `p0..T` (causal
//! reuse), `apply` narrows full-length tensors to the computed range.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use candle_core::{Result as CResult, Tensor};

/// A named activation inside the canonical transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    /// Token embedding `[batch, pos, d_model]`.
    Embed,
    /// Learned position embedding `[batch, pos, d_model]` (learned positions only).
    PosEmbed,
    /// Residual stream entering block `l` `[batch, pos, d_model]`.
    ResidPre(usize),
    /// Residual stream after attention, before the MLP (sequential blocks only).
    ResidMid(usize),
    /// Residual stream leaving block `l`.
    ResidPost(usize),
    /// Attention output added to the residual stream `[batch, pos, d_model]`.
    AttnOut(usize),
    /// MLP output added to the residual stream `[batch, pos, d_model]`.
    MlpOut(usize),
    /// Queries before rotary `[batch, pos, n_heads, d_head]`.
    Q(usize),
    /// Keys before rotary `[batch, pos, n_kv_heads, d_head]`.
    K(usize),
    /// Values `[batch, pos, n_kv_heads, d_head]`.
    V(usize),
    /// Per-head attention output before `W_O` `[batch, pos, n_heads, d_head]`.
    Z(usize),
    /// Scaled, masked scores `[batch, n_heads, q_pos, k_pos]`.
    AttnScores(usize),
    /// Softmaxed attention `[batch, n_heads, q_pos, k_pos]`.
    Pattern(usize),
    /// MLP pre-activation (the gate projection for gated MLPs) `[batch, pos, d_mlp]`.
    MlpPre(usize),
    /// MLP hidden activation after the nonlinearity (and gating) `[batch, pos, d_mlp]`.
    MlpPost(usize),
    /// Final normalised residual `[batch, pos, d_model]`.
    LnFinal,
    /// The residual stream as each query head reads it, before `ln1`
    /// `[batch, pos, n_heads, d_model]` (TransformerLens `hook_q_input`).
    /// A split-input hook: see [`HookPoint::is_split`].
    QInput(usize),
    /// The residual stream as each KV head's keys read it `[batch, pos, n_kv_heads, d_model]`.
    KInput(usize),
    /// The residual stream as each KV head's values read it `[batch, pos, n_kv_heads, d_model]`.
    VInput(usize),
    /// The residual stream as the MLP reads it, before `ln2` `[batch, pos, d_model]`.
    MlpIn(usize),
    /// Each head's output `z_h W_O^h` (without `b_O`) `[batch, pos, n_heads, d_model]`.
    AttnResult(usize),
    /// `ln1`'s scale of block `l`'s shared input: the divisor
    /// `sqrt(mean((x − μ)²) + ε)` (RMSNorm: `μ = 0`) `[batch, pos, 1]`, f32
    /// (TransformerLens `ln1.hook_scale`). A named-only hook: see
    /// [`HookPoint::is_named_only`].
    Ln1Scale(usize),
    /// `ln2`'s scale, of the MLP's input `[batch, pos, 1]`.
    Ln2Scale(usize),
    /// `ln_final`'s scale `[batch, pos, 1]` (last positions only when only
    /// last-position logits are computed).
    LnFinalScale,
}

/// The per-layer hook kinds, in forward order, with their TransformerLens suffixes.
/// Builds a per-layer hook point from its layer index.
type LayerHook = fn(usize) -> HookPoint;

const LAYER_HOOKS: &[(&str, LayerHook)] = &[
    ("hook_resid_pre", HookPoint::ResidPre),
    ("attn.hook_q", HookPoint::Q),
    ("attn.hook_k", HookPoint::K),
    ("attn.hook_v", HookPoint::V),
    ("attn.hook_attn_scores", HookPoint::AttnScores),
    ("attn.hook_pattern", HookPoint::Pattern),
    ("attn.hook_z", HookPoint::Z),
    ("hook_attn_out", HookPoint::AttnOut),
    ("hook_resid_mid", HookPoint::ResidMid),
    ("mlp.hook_pre", HookPoint::MlpPre),
    ("mlp.hook_post", HookPoint::MlpPost),
    ("hook_mlp_out", HookPoint::MlpOut),
    ("hook_resid_post", HookPoint::ResidPost),
    ("hook_q_input", HookPoint::QInput),
    ("hook_k_input", HookPoint::KInput),
    ("hook_v_input", HookPoint::VInput),
    ("hook_mlp_in", HookPoint::MlpIn),
    ("attn.hook_result", HookPoint::AttnResult),
    ("ln1.hook_scale", HookPoint::Ln1Scale),
    ("ln2.hook_scale", HookPoint::Ln2Scale),
];

impl HookPoint {
    /// The block this hook belongs to, if any.
    pub fn layer(&self) -> Option<usize> {
        use HookPoint::*;
        match *self {
            Embed | PosEmbed | LnFinal | LnFinalScale => None,
            ResidPre(l) | ResidMid(l) | ResidPost(l) | AttnOut(l) | MlpOut(l) | Q(l) | K(l)
            | V(l) | Z(l) | AttnScores(l) | Pattern(l) | MlpPre(l) | MlpPost(l) | QInput(l)
            | KInput(l) | VInput(l) | MlpIn(l) | AttnResult(l) | Ln1Scale(l) | Ln2Scale(l) => {
                Some(l)
            }
        }
    }

    /// The TransformerLens suffix after `blocks.{l}.`, for per-layer hooks.
    fn suffix(&self) -> &'static str {
        use HookPoint::*;
        match self {
            ResidPre(_) => "hook_resid_pre",
            ResidMid(_) => "hook_resid_mid",
            ResidPost(_) => "hook_resid_post",
            AttnOut(_) => "hook_attn_out",
            MlpOut(_) => "hook_mlp_out",
            Q(_) => "attn.hook_q",
            K(_) => "attn.hook_k",
            V(_) => "attn.hook_v",
            Z(_) => "attn.hook_z",
            AttnScores(_) => "attn.hook_attn_scores",
            Pattern(_) => "attn.hook_pattern",
            MlpPre(_) => "mlp.hook_pre",
            MlpPost(_) => "mlp.hook_post",
            Embed => "hook_embed",
            PosEmbed => "hook_pos_embed",
            LnFinal => "ln_final.hook_normalized",
            QInput(_) => "hook_q_input",
            KInput(_) => "hook_k_input",
            VInput(_) => "hook_v_input",
            MlpIn(_) => "hook_mlp_in",
            AttnResult(_) => "attn.hook_result",
            Ln1Scale(_) => "ln1.hook_scale",
            Ln2Scale(_) => "ln2.hook_scale",
            LnFinalScale => "ln_final.hook_scale",
        }
    }

    /// Split-input hooks (`hook_q_input`, `hook_k_input`, `hook_v_input`,
    /// `hook_mlp_in`, `attn.hook_result`) exist only when a spec names them,
    /// as TransformerLens's `use_split_qkv_input` / `use_attn_result`: the
    /// per-head copies of the residual stream cost memory and a per-head
    /// norm, so `capture_all` does not visit them. They are what edge-level
    /// circuit methods edit: a receiver's input is the residual stream it
    /// reads, and a sender's output is what it writes.
    pub fn is_split(&self) -> bool {
        matches!(
            self,
            HookPoint::QInput(_)
                | HookPoint::KInput(_)
                | HookPoint::VInput(_)
                | HookPoint::MlpIn(_)
                | HookPoint::AttnResult(_)
        )
    }

    /// Norm scales (`ln1.hook_scale`, `ln2.hook_scale`,
    /// `ln_final.hook_scale`) are visited only when a spec names them
    /// (`capture_all` skips them, so caches and sweeps are as before):
    /// they exist so that an intervention can hold a norm's scale at
    /// another run's value (path patching with frozen LayerNorm). Only
    /// the block's shared norms have one: a split-input hook's per-head
    /// norm is not hooked.
    pub fn is_named_only(&self) -> bool {
        self.is_split()
            || matches!(
                self,
                HookPoint::Ln1Scale(_) | HookPoint::Ln2Scale(_) | HookPoint::LnFinalScale
            )
    }

    /// Every valid name pattern, for error messages.
    pub fn valid_names() -> Vec<String> {
        let mut v = vec!["hook_embed".to_string(), "hook_pos_embed".to_string()];
        v.extend(LAYER_HOOKS.iter().map(|(s, _)| format!("blocks.{{l}}.{s}")));
        v.push("ln_final.hook_normalized".into());
        v.push("ln_final.hook_scale".into());
        v
    }

    /// Which position axis (if any) this activation has, and whether the head
    /// axis comes before it (attention scores and patterns are
    /// `[batch, head, q_pos, k_pos]`).
    pub fn pos_dim(&self) -> usize {
        match self {
            HookPoint::AttnScores(_) | HookPoint::Pattern(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.layer() {
            Some(l) => write!(f, "blocks.{l}.{}", self.suffix()),
            None => f.write_str(self.suffix()),
        }
    }
}

/// A hook name that does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown hook point {name:?}; valid names are: {}", HookPoint::valid_names().join(", "))]
pub struct HookParseError {
    pub name: String,
}

impl FromStr for HookPoint {
    type Err = HookParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || HookParseError {
            name: s.to_string(),
        };
        match s {
            "hook_embed" => return Ok(HookPoint::Embed),
            "hook_pos_embed" => return Ok(HookPoint::PosEmbed),
            "ln_final.hook_normalized" => return Ok(HookPoint::LnFinal),
            "ln_final.hook_scale" => return Ok(HookPoint::LnFinalScale),
            _ => {}
        }
        let rest = s.strip_prefix("blocks.").ok_or_else(err)?;
        let (layer, suffix) = rest.split_once('.').ok_or_else(err)?;
        // Strict: digits only, no sign, no leading zeros (so names round-trip).
        if layer.is_empty()
            || !layer.bytes().all(|b| b.is_ascii_digit())
            || (layer.len() > 1 && layer.starts_with('0'))
        {
            return Err(err());
        }
        let l: usize = layer.parse().map_err(|_| err())?;
        LAYER_HOOKS
            .iter()
            .find(|(name, _)| *name == suffix)
            .map(|(_, make)| make(l))
            .ok_or_else(err)
    }
}

impl serde::Serialize for HookPoint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HookPoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What an intervention does to the activation at its hook point.
///
/// All tensors broadcast against the activation (see the module docs for
/// positions). Masks hold 1.0 where the edit applies and 0.0 elsewhere.
#[derive(Debug, Clone)]
pub enum Edit {
    /// `x <- x * (1 - mask) + value * mask`.
    Replace { mask: Tensor, value: Tensor },
    /// `x <- x + value`.
    Add(Tensor),
    /// `x <- x * factor` (a scalar or a broadcastable tensor).
    Scale(Tensor),
    /// `x <- x * (1 - mask)`.
    Zero { mask: Tensor },
}

/// One edit at one hook point.
#[derive(Debug, Clone)]
pub struct Intervention {
    pub hook: HookPoint,
    pub edit: Edit,
}

/// Captures and interventions for one forward pass.
#[derive(Debug, Clone, Default)]
pub struct HookSpec {
    captures: HashSet<HookPoint>,
    capture_all: bool,
    interventions: Vec<Intervention>,
}

impl HookSpec {
    pub fn new() -> Self {
        Self::default()
    }

    /// Record the activation at `hook` (after any intervention there).
    pub fn capture(mut self, hook: HookPoint) -> Self {
        self.captures.insert(hook);
        self
    }

    /// Record every hook point the forward pass visits.
    pub fn capture_all(mut self) -> Self {
        self.capture_all = true;
        self
    }

    pub fn intervene(mut self, hook: HookPoint, edit: Edit) -> Self {
        self.interventions.push(Intervention { hook, edit });
        self
    }

    pub fn push(&mut self, intervention: Intervention) {
        self.interventions.push(intervention);
    }

    pub fn is_empty(&self) -> bool {
        !self.capture_all && self.captures.is_empty() && self.interventions.is_empty()
    }

    pub fn interventions(&self) -> &[Intervention] {
        &self.interventions
    }

    /// Whether the forward pass must visit `hook` at all; lets it skip
    /// computing activations nobody reads (like full attention scores).
    pub fn wants(&self, hook: HookPoint) -> bool {
        if hook.is_named_only() {
            return self.names(hook);
        }
        self.capture_all
            || self.captures.contains(&hook)
            || self.interventions.iter().any(|i| i.hook == hook)
    }

    /// Whether `hook` is captured or edited by name (not through `capture_all`).
    pub fn names(&self, hook: HookPoint) -> bool {
        self.captures.contains(&hook) || self.edits(hook)
    }

    /// Whether an intervention edits `hook`.
    pub fn edits(&self, hook: HookPoint) -> bool {
        self.interventions.iter().any(|i| i.hook == hook)
    }

    /// Whether anything is captured or edited in block `l` after its keys
    /// and values (queries, scores, pattern, z, outputs, MLP, residuals
    /// after attention) — then the final block cannot be cut down to the
    /// last position.
    pub fn reads_past_kv(&self, l: usize) -> bool {
        if self.capture_all {
            return true;
        }
        let after_kv = |h: &HookPoint| {
            h.layer() == Some(l)
                && !matches!(
                    h,
                    HookPoint::ResidPre(_) | HookPoint::K(_) | HookPoint::V(_)
                )
        };
        self.captures.iter().any(after_kv) || self.interventions.iter().any(|i| after_kv(&i.hook))
    }

    /// Whether a capture or an intervention sits in block `l` before its
    /// `hook_z` (the block's input and its `ln1` scale, queries, keys,
    /// values, scores or pattern): a pass resumed from a given `hook_z` skips those sites.
    pub fn touches_attention_before_z(&self, l: usize) -> bool {
        self.touches(|h| h.layer() == Some(l) && before_z(h))
    }

    /// Whether anything is captured or edited in block `l` from `hook_z`
    /// on (what a pass stopping at the block's pattern would skip).
    pub fn touches_block_after_pattern(&self, l: usize) -> bool {
        self.touches(|h| h.layer() == Some(l) && !before_z(h))
    }

    fn touches(&self, f: impl Fn(&HookPoint) -> bool) -> bool {
        self.capture_all
            || self.captures.iter().any(&f)
            || self.interventions.iter().any(|i| f(&i.hook))
    }

    /// Applies this spec at one hook site.
    ///
    /// `pos_offset` and `n_pos_total` describe the computed position range
    /// `pos_offset..n_pos_total`; full-length edit tensors are narrowed to it.
    pub fn apply(
        &self,
        hook: HookPoint,
        mut x: Tensor,
        pos_offset: usize,
        n_pos_total: usize,
        cache: &mut ActivationCache,
    ) -> CResult<Tensor> {
        if self.is_empty() {
            return Ok(x);
        }
        for iv in self.interventions.iter().filter(|i| i.hook == hook) {
            let fit = |t: &Tensor| fit_positions(t, hook.pos_dim(), pos_offset, n_pos_total);
            x = match &iv.edit {
                // Selects rather than `x * (1 - mask) + value * mask`: the
                // arithmetic form turns an infinite entry (a masked attention
                // score, −inf) into NaN (−inf × 0) on either side.
                Edit::Replace { mask, value } => {
                    let (mask, value) = (fit(mask)?, fit(value)?.to_dtype(x.dtype())?);
                    let shape = x
                        .shape()
                        .broadcast_shape_binary_op(mask.shape(), "replace")?
                        .broadcast_shape_binary_op(value.shape(), "replace")?;
                    mask.ne(0f64)?
                        .broadcast_as(&shape)?
                        .where_cond(&value.broadcast_as(&shape)?, &x.broadcast_as(&shape)?)?
                }
                Edit::Add(v) => x.broadcast_add(&fit(v)?.to_dtype(x.dtype())?)?,
                Edit::Scale(f) => x.broadcast_mul(&fit(f)?.to_dtype(x.dtype())?)?,
                Edit::Zero { mask } => {
                    let mask = fit(mask)?;
                    let shape = x.shape().broadcast_shape_binary_op(mask.shape(), "zero")?;
                    let x = x.broadcast_as(&shape)?;
                    mask.ne(0f64)?
                        .broadcast_as(&shape)?
                        .where_cond(&x.zeros_like()?, &x)?
                }
            };
        }
        if self.capture_all || self.captures.contains(&hook) {
            cache.insert(hook, x.clone());
        }
        Ok(x)
    }
}

/// Narrows `t` along `dim` to `offset..total` when it spans all positions.
fn fit_positions(t: &Tensor, dim: usize, offset: usize, total: usize) -> CResult<Tensor> {
    if offset > 0 && t.rank() > dim && t.dim(dim)? == total {
        t.narrow(dim, offset, total - offset)
    } else {
        Ok(t.clone())
    }
}

/// Captured activations by hook point.
#[derive(Debug, Clone, Default)]
pub struct ActivationCache {
    map: HashMap<HookPoint, Tensor>,
}

impl ActivationCache {
    pub fn insert(&mut self, hook: HookPoint, t: Tensor) {
        self.map.insert(hook, t);
    }

    pub fn get(&self, hook: HookPoint) -> Option<&Tensor> {
        self.map.get(&hook)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn hooks(&self) -> impl Iterator<Item = &HookPoint> {
        self.map.keys()
    }
}

/// Hooks of a block up to its attention pattern (before `hook_z`).
fn before_z(h: &HookPoint) -> bool {
    matches!(
        h,
        HookPoint::ResidPre(_)
            | HookPoint::Ln1Scale(_)
            | HookPoint::QInput(_)
            | HookPoint::KInput(_)
            | HookPoint::VInput(_)
            | HookPoint::Q(_)
            | HookPoint::K(_)
            | HookPoint::V(_)
            | HookPoint::AttnScores(_)
            | HookPoint::Pattern(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let hooks = [
            HookPoint::Embed,
            HookPoint::PosEmbed,
            HookPoint::LnFinal,
            HookPoint::ResidPre(0),
            HookPoint::Z(11),
            HookPoint::Pattern(3),
            HookPoint::MlpPost(23),
            HookPoint::ResidMid(7),
            HookPoint::Ln1Scale(2),
            HookPoint::Ln2Scale(0),
            HookPoint::LnFinalScale,
        ];
        for h in hooks {
            assert_eq!(h.to_string().parse::<HookPoint>().unwrap(), h);
        }
        assert_eq!(HookPoint::Z(2).to_string(), "blocks.2.attn.hook_z");
        assert_eq!(HookPoint::MlpOut(0).to_string(), "blocks.0.hook_mlp_out");
        assert_eq!(HookPoint::QInput(3).to_string(), "blocks.3.hook_q_input");
        assert_eq!(
            HookPoint::Ln2Scale(4).to_string(),
            "blocks.4.ln2.hook_scale"
        );
        assert_eq!(HookPoint::LnFinalScale.to_string(), "ln_final.hook_scale");
        assert_eq!(
            HookPoint::AttnResult(1).to_string(),
            "blocks.1.attn.hook_result"
        );
    }

    #[test]
    fn parsing_is_strict() {
        for bad in [
            "blocks.x.hook_resid_pre",
            "blocks.01.hook_resid_pre",
            "blocks.-1.hook_resid_pre",
            "blocks.1.hook_z",
            "blocks.1.attn.hook_q.extra",
            "hook_resid_pre",
            "",
        ] {
            let e = bad.parse::<HookPoint>().unwrap_err();
            assert!(e.to_string().contains("blocks.{l}.attn.hook_z"), "{e}");
            assert!(e.to_string().contains(&format!("{bad:?}")));
        }
    }
}
