//! Rotary position embeddings: tables precomputed for every position, with
//! Llama 3 and linear frequency scaling, applied to contiguous position
//! ranges or to the arbitrary positions of packed rows.

use candle_core::{DType, Device, Result as CResult, Tensor};

use super::config::{RopeScaling, RotaryConfig, RotaryStyle};
use super::ModelError;

/// Precomputed rotary tables for every position up to `n_ctx`.
#[derive(Debug, Clone)]
pub(crate) struct Rotary {
    /// `[n_ctx, rotary_dim / 2]`
    cos: Tensor,
    sin: Tensor,
    rotary_dim: usize,
    style: RotaryStyle,
}

/// Which absolute positions the computed tokens of a pass have.
pub(crate) enum TokenPositions {
    /// Consecutive positions from this one.
    Range(usize),
    /// One position per token `[n_tokens]` (u32).
    Index(Tensor),
}

impl Rotary {
    pub(crate) fn new(
        r: &RotaryConfig,
        n_ctx: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let half = r.rotary_dim / 2;
        let mut inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / r.theta.powf(2.0 * i as f64 / r.rotary_dim as f64))
            .collect();
        let mut pos_scale = 1.0;
        match &r.scaling {
            None => {}
            Some(RopeScaling::Linear { factor }) => pos_scale = 1.0 / factor,
            Some(RopeScaling::Factors { factors }) => {
                for (f, d) in inv_freq.iter_mut().zip(factors) {
                    *f /= d;
                }
            }
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            }) => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                for f in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f64::consts::PI / *f;
                    if wavelen > low_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_wavelen {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
        }
        // Hugging Face computes the angles in f32; do the same for parity.
        let inv_freq: Vec<f32> = inv_freq.iter().map(|&f| f as f32).collect();
        let mut cos = Vec::with_capacity(n_ctx * half);
        let mut sin = Vec::with_capacity(n_ctx * half);
        for p in 0..n_ctx {
            for &f in &inv_freq {
                let a = (p as f32 * pos_scale as f32) * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let mk = |v: Vec<f32>| -> Result<Tensor, ModelError> {
            Ok(Tensor::from_vec(v, (n_ctx, half), device)?.to_dtype(dtype)?)
        };
        Ok(Self {
            cos: mk(cos)?,
            sin: mk(sin)?,
            rotary_dim: r.rotary_dim,
            style: r.style,
        })
    }

    /// # Shapes
    /// `x: [batch, head, t, d_head]` at the given absolute positions.
    pub(crate) fn apply(&self, x: &Tensor, positions: &TokenPositions) -> CResult<Tensor> {
        let (b, h, t, dh) = x.dims4()?;
        let rd = self.rotary_dim;
        let half = rd / 2;
        let (cos, sin) = match positions {
            TokenPositions::Range(p0) => (self.cos.narrow(0, *p0, t)?, self.sin.narrow(0, *p0, t)?),
            TokenPositions::Index(idx) => (
                self.cos.index_select(idx, 0)?,
                self.sin.index_select(idx, 0)?,
            ),
        };
        let rot = x.narrow(3, 0, rd)?;
        let rotated = match self.style {
            RotaryStyle::NeoX => {
                let x1 = rot.narrow(3, 0, half)?;
                let x2 = rot.narrow(3, half, half)?;
                let r1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
                let r2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
                Tensor::cat(&[&r1, &r2], 3)?
            }
            RotaryStyle::GptJ => {
                let pairs = rot.reshape((b, h, t, half, 2))?;
                let x1 = pairs.narrow(4, 0, 1)?.squeeze(4)?;
                let x2 = pairs.narrow(4, 1, 1)?.squeeze(4)?;
                let r1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
                let r2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
                Tensor::stack(&[&r1, &r2], 4)?.reshape((b, h, t, rd))?
            }
        };
        // Contiguous: a last-dim `cat` with `t = 1` (the last-token query of
        // partial rotary) has strides that matmul refuses.
        if rd == dh {
            rotated.contiguous()
        } else {
            Tensor::cat(&[&rotated, &x.narrow(3, rd, dh - rd)?], 3)?.contiguous()
        }
    }
}
