//! Building the transformer from canonical weights: every tensor is taken
//! by name and checked against the shape the config implies, and tensors
//! left over are an error (a wrong family mapping cannot pass silently).

use super::super::config::{ModelConfig, NormKind, Positions};
use super::super::layers::{Attention, Block, Linear, Mlp, Norm};
use super::super::rotary::Rotary;
use super::super::weights::CanonicalWeights;
use super::super::ModelError;
use super::Transformer;

impl Transformer {
    /// Builds the model from canonical weights; every tensor is checked
    /// against the config's shapes, and unused tensors are an error.
    pub fn new(cfg: ModelConfig, mut w: CanonicalWeights) -> Result<Self, ModelError> {
        cfg.validate().map_err(|m| ModelError::BadConfig {
            origin: w.origin.clone(),
            message: m,
        })?;
        let (d, dh, h, hkv, dm) = (
            cfg.d_model,
            cfg.d_head,
            cfg.n_heads,
            cfg.n_kv_heads,
            cfg.d_mlp,
        );
        let w_e = w.take("embed.W_E", &[cfg.d_vocab, d])?;
        let device = w_e.device().clone();
        let w_pos = match cfg.positions {
            Positions::Learned => Some(w.take("pos_embed.W_pos", &[cfg.n_ctx, d])?),
            Positions::Rotary(_) => None,
        };
        let norm_of = |w: &mut CanonicalWeights, p: &str, d: usize| -> Result<Norm, ModelError> {
            let weight = w.take(&format!("{p}.w"), &[d])?;
            let weight = if cfg.norm_weight_offset != 0.0 {
                (weight + cfg.norm_weight_offset as f64)?
            } else {
                weight
            };
            let b = match cfg.norm {
                NormKind::LayerNorm => w.take_opt(&format!("{p}.b"), &[d])?,
                NormKind::RmsNorm => None,
            };
            Ok(Norm {
                kind: cfg.norm,
                w: weight,
                b,
                eps: cfg.norm_eps,
            })
        };
        let norm = |w: &mut CanonicalWeights, p: &str| norm_of(w, p, d);
        // Optional norms the config asks for (Gemma 2/3's post-norms and
        // Gemma 3's q/k norms), each over `width`.
        let extra = |w: &mut CanonicalWeights, on: bool, p: &str, width: usize| {
            on.then(|| norm_of(w, p, width)).transpose()
        };
        let x = &cfg.extras;
        let linear = |w: &mut CanonicalWeights, wn: &str, bn: &str, i: usize, o: usize| {
            Ok::<_, ModelError>(Linear {
                w: w.take_matrix(wn, i, o)?,
                b: w.take_opt(bn, &[o])?,
            })
        };
        let mut blocks = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let p = format!("blocks.{l}");
            let a = format!("{p}.attn");
            let m = format!("{p}.mlp");
            let attn = Attention {
                q: linear(&mut w, &format!("{a}.W_Q"), &format!("{a}.b_Q"), d, h * dh)?,
                k: linear(
                    &mut w,
                    &format!("{a}.W_K"),
                    &format!("{a}.b_K"),
                    d,
                    hkv * dh,
                )?,
                v: linear(
                    &mut w,
                    &format!("{a}.W_V"),
                    &format!("{a}.b_V"),
                    d,
                    hkv * dh,
                )?,
                o: linear(&mut w, &format!("{a}.W_O"), &format!("{a}.b_O"), h * dh, d)?,
                q_norm: extra(&mut w, x.qk_norm, &format!("{a}.q_norm"), dh)?,
                k_norm: extra(&mut w, x.qk_norm, &format!("{a}.k_norm"), dh)?,
            };
            let mlp = Mlp {
                w_in: linear(&mut w, &format!("{m}.W_in"), &format!("{m}.b_in"), d, dm)?,
                w_gate: if cfg.gated_mlp {
                    Some(linear(
                        &mut w,
                        &format!("{m}.W_gate"),
                        &format!("{m}.b_gate"),
                        d,
                        dm,
                    )?)
                } else {
                    None
                },
                w_out: linear(&mut w, &format!("{m}.W_out"), &format!("{m}.b_out"), dm, d)?,
            };
            blocks.push(Block {
                ln1: norm(&mut w, &format!("{p}.ln1"))?,
                ln2: norm(&mut w, &format!("{p}.ln2"))?,
                ln1_post: extra(&mut w, x.post_norms, &format!("{p}.ln1_post"), d)?,
                ln2_post: extra(&mut w, x.post_norms, &format!("{p}.ln2_post"), d)?,
                attn,
                mlp,
            });
        }
        let ln_final = norm(&mut w, "ln_final")?;
        let (w_u, b_u) = if cfg.tied_unembed {
            (w_e.t()?, w.take_opt("unembed.b_U", &[cfg.d_vocab])?)
        } else {
            (
                w.take("unembed.W_U", &[d, cfg.d_vocab])?,
                w.take_opt("unembed.b_U", &[cfg.d_vocab])?,
            )
        };
        let left = w.leftover();
        if !left.is_empty() {
            return Err(ModelError::UnusedTensors {
                origin: w.origin.clone(),
                names: left,
            });
        }
        let rotary = match &cfg.positions {
            Positions::Rotary(r) => Some(Rotary::new(r, cfg.n_ctx, w_e.dtype(), &device)?),
            Positions::Learned => None,
        };
        let rotary_local = match &cfg.extras.local_rotary {
            Some(r) => Some(Rotary::new(r, cfg.n_ctx, w_e.dtype(), &device)?),
            None => None,
        };
        Ok(Self {
            cfg,
            w_e,
            w_pos,
            blocks,
            ln_final,
            w_u,
            b_u,
            rotary,
            rotary_local,
            device,
        })
    }
}
