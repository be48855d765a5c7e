//! The building blocks of the canonical transformer: norms, the attention
//! and MLP weight sets (projections are [`Linear`], float or quantized, in
//! `linear.rs`), and small tensor helpers. All written with
//! gradient-carrying ops (see `forward.rs`).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp1, DType, Device, Layout, Shape, Storage};
use candle_core::{Result as CResult, Tensor, D};

use super::config::{Activation, NormKind};
pub use super::linear::{Linear, Matrix};

/// `x @ w` where `w` is a weight. When `x` carries a gradient and `w` is
/// not a variable, the product is a custom op whose backward yields only
/// `x`'s gradient: candle's own matmul backward always computes the
/// right-hand side's gradient too, which for a model's weights is a full
/// weight-sized tensor per matrix (hundreds of MB on gpt2-small, thrown
/// away) — circuit and attribution gradients are taken with respect to
/// activations only. Training (weights are `Var`s) and inference (nothing
/// tracked) take candle's matmul unchanged.
///
/// # Shapes
/// `x: [.., m, k]`, `w: [.., k, n]` (same leading dims) -> `[.., m, n]`
pub fn matmul_weight(x: &Tensor, w: &Tensor) -> CResult<Tensor> {
    if x.track_op() && !w.track_op() {
        x.apply_op1(WeightMatmul { w: w.clone() })
    } else {
        x.matmul(w)
    }
}

/// The op behind [`matmul_weight`]: a constant right-hand side.
struct WeightMatmul {
    w: Tensor,
}

impl WeightMatmul {
    /// `(batch, m, n, k)` and the output shape for an input of `x_shape`.
    fn dims(&self, x_shape: &Shape) -> CResult<((usize, usize, usize, usize), Shape)> {
        let (a, b) = (x_shape.dims(), self.w.dims());
        let r = a.len();
        if r < 2 || b.len() != r || a[r - 1] != b[r - 2] || a[..r - 2] != b[..r - 2] {
            candle_core::bail!("weight matmul: shapes {a:?} and {b:?} do not multiply");
        }
        let batch = a[..r - 2].iter().product();
        let out = Shape::from(&a[..r - 2]).extend(&[a[r - 2], b[r - 1]]);
        Ok(((batch, a[r - 2], b[r - 1], a[r - 1]), out))
    }
}

impl CustomOp1 for WeightMatmul {
    fn name(&self) -> &'static str {
        "weight-matmul"
    }

    fn cpu_fwd(&self, x: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let (bmnk, out) = self.dims(l.shape())?;
        let (w, wl) = self.w.storage_and_layout();
        match &*w {
            Storage::Cpu(w) => Ok((x.matmul(w, bmnk, l, wl)?, out)),
            _ => candle_core::bail!("weight matmul: the weight is not on the CPU"),
        }
    }

    fn cuda_fwd(&self, x: &CudaStorage, l: &Layout) -> CResult<(CudaStorage, Shape)> {
        let (bmnk, out) = self.dims(l.shape())?;
        let (w, wl) = self.w.storage_and_layout();
        match &*w {
            Storage::Cuda(w) => Ok((x.matmul(w, bmnk, l, wl)?, out)),
            _ => candle_core::bail!("weight matmul: the weight is not on the GPU"),
        }
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.w.t()?)?))
    }
}

#[derive(Debug, Clone)]
pub struct Norm {
    pub kind: NormKind,
    pub w: Tensor,
    pub b: Option<Tensor>,
    pub eps: f64,
}

impl Norm {
    /// # Shapes
    /// `x: [.., d_model]` -> same
    pub fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        self.forward_hooked(x, Ok)
    }

    /// The scale `x` is divided by: `sqrt(mean((x − μ)²) + ε)` (RMSNorm:
    /// `μ = 0`), in f32 (TransformerLens `hook_scale`).
    ///
    /// # Shapes
    /// `x: [.., d_model]` -> `[.., 1]`
    pub fn scale(&self, x: &Tensor) -> CResult<Tensor> {
        self.scale_of_centred(&self.centred(&x.to_dtype(DType::F32)?)?)
    }

    fn scale_of_centred(&self, xc: &Tensor) -> CResult<Tensor> {
        (xc.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?.sqrt()
    }

    /// [`Self::forward`] with the scale passed through `hook` (the forward's
    /// `hook_scale` site): what it returns divides the centred input.
    pub fn forward_hooked(
        &self,
        x: &Tensor,
        hook: impl FnOnce(Tensor) -> CResult<Tensor>,
    ) -> CResult<Tensor> {
        let xc = self.centred(&x.to_dtype(DType::F32)?)?;
        let scale = hook(self.scale_of_centred(&xc)?)?;
        self.finish(xc, &scale, x.dtype())
    }

    /// The norm with a given scale (`[.., 1]`, as [`Self::scale`] gives it)
    /// instead of the input's own: a frozen LayerNorm.
    pub fn forward_with_scale(&self, x: &Tensor, scale: &Tensor) -> CResult<Tensor> {
        let xc = self.centred(&x.to_dtype(DType::F32)?)?;
        self.finish(xc, scale, x.dtype())
    }

    fn finish(&self, xc: Tensor, scale: &Tensor, dtype: DType) -> CResult<Tensor> {
        let normed = xc.broadcast_div(&scale.to_dtype(DType::F32)?)?;
        let y = normed.to_dtype(dtype)?.broadcast_mul(&self.w)?;
        match &self.b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// LayerNorm centres its input; RMSNorm does not.
    fn centred(&self, x: &Tensor) -> CResult<Tensor> {
        match self.kind {
            NormKind::LayerNorm => x.broadcast_sub(&x.mean_keepdim(D::Minus1)?),
            NormKind::RmsNorm => Ok(x.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    /// RMSNorm over `d_head` of each query / key head, before rotary (Gemma 3).
    pub q_norm: Option<Norm>,
    pub k_norm: Option<Norm>,
}

#[derive(Debug, Clone)]
pub struct Mlp {
    /// `W_in`: the up projection, or for gated MLPs the `up` half.
    pub w_in: Linear,
    /// The gate projection of gated MLPs (`hook_pre` is its output).
    pub w_gate: Option<Linear>,
    pub w_out: Linear,
}

#[derive(Debug, Clone)]
pub struct Block {
    pub ln1: Norm,
    pub ln2: Norm,
    /// Norms of the attention and MLP outputs before they join the residual
    /// stream (Gemma 2/3); `hook_attn_out` / `hook_mlp_out` see their output.
    pub ln1_post: Option<Norm>,
    pub ln2_post: Option<Norm>,
    pub attn: Attention,
    pub mlp: Mlp,
}

impl Block {
    /// The attention output as it joins the residual stream.
    pub fn attn_post(&self, x: Tensor) -> CResult<Tensor> {
        match &self.ln1_post {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }

    /// The MLP output as it joins the residual stream.
    pub fn mlp_post(&self, x: Tensor) -> CResult<Tensor> {
        match &self.ln2_post {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }
}

/// `cap * tanh(x / cap)` (Gemma 2's soft-capping), or `x` unchanged.
pub fn softcap(x: Tensor, cap: Option<f64>) -> CResult<Tensor> {
    match cap {
        Some(c) => (x / c)?.tanh()? * c,
        None => Ok(x),
    }
}

/// Applies the MLP nonlinearity.
pub fn activate(x: &Tensor, act: Activation) -> CResult<Tensor> {
    match act {
        Activation::GeluTanh => super::gelu::gelu_tanh(x),
        Activation::Gelu => x.gelu_erf(),
        Activation::Silu => super::gelu::silu(x),
        Activation::Relu => x.relu(),
    }
}

/// Softmax built from differentiable primitives.
pub fn softmax_last_dim(x: &Tensor) -> CResult<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)?.to_dtype(dtype)
}

/// Whether a query at absolute position `q` may attend to the key at `k`:
/// causal, and with a sliding window only the last `window` positions
/// (`q - window < k <= q`, as transformers' sliding-window mask).
pub(crate) fn visible(q: usize, k: usize, window: Option<usize>) -> bool {
    k <= q && window.is_none_or(|w| q - k < w)
}

/// Additive causal mask `[t_local, p0 + t_local]`: query `i` (absolute
/// position `p0 + i`) sees keys `0..=p0 + i`, or only the last `window` of
/// them for local attention.
pub(crate) fn causal_mask(
    t_local: usize,
    p0: usize,
    window: Option<usize>,
    dtype: DType,
    device: &Device,
) -> CResult<Tensor> {
    let n = p0 + t_local;
    let data: Vec<f32> = (0..t_local)
        .flat_map(|i| {
            (0..n).map(move |j| {
                if visible(p0 + i, j, window) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(data, (t_local, n), device)?.to_dtype(dtype)
}

/// Expands `[b, n_kv, t, d]` to `[b, n_kv * group, t, d]` (query head `h`
/// reads kv head `h / group`, as Hugging Face's `repeat_kv`). candle-transformers'
/// version concatenates instead of broadcasting, which avoids a strided copy.
pub(crate) fn repeat_kv(x: &Tensor, group: usize) -> CResult<Tensor> {
    candle_transformers::utils::repeat_kv(x.clone(), group)
}

pub(crate) fn broadcast_rows(x: &Tensor, batch: usize) -> CResult<Tensor> {
    if x.dim(0)? == batch {
        return Ok(x.clone());
    }
    let mut shape = x.dims().to_vec();
    shape[0] = batch;
    x.broadcast_as(shape)?.contiguous()
}
