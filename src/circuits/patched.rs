//! Patched runs with any set of edges patched at once: circuits.
//!
//! Row `b` of a batch carries a weight `W_b[u, v]` per edge (1 = the edge
//! carries the source run's value, 0 = this run's own). Receiver `v` reads
//! `resid + Σ_u W_b[u, v] · (out_u(source) − out_u(this run))`, where
//! `out_u(this run)` is what `u` wrote *in this patched run* — upstream
//! patches change it — so the pass goes block by block, capturing every
//! head's and MLP's output (`attn.hook_result`, `hook_mlp_out`) before
//! computing the edits of the next block's receivers. An MLP reads the
//! heads of its own block (sequential blocks), so those blocks run in two
//! halves ([`Transformer::attention_half`], then
//! [`Transformer::mlp_half`] with the MLP's input edited by what the heads
//! wrote); a parallel block is one pass.
//! This is the construction of the EAP-IG library's evaluation (Hanna et
//! al. 2024): a circuit's faithfulness is a real forward pass.
//!
//! The pass is one skeleton ([`run_rows`]) over a [`RowEdits`], which
//! turns what the senders wrote into each receiver's edit: dense weights
//! here (any weights, one matrix product per block), or the sparse edits
//! of [`super::sparse`] (a circuit as its few edges that differ from the
//! nearer of the unpatched and the all-patched run).
//!
//! A row with one weight set is exact edge patching; tests hold it equal
//! to [`super::exact`].

use std::ops::Range;

use candle_core::{DType, Result as CResult, Tensor};

use crate::model::{Edit, ForwardOptions, HookPoint, HookSpec, StartState, Transformer};
use crate::patching::metrics::{self, Metrics};
use crate::patching::runs::RunPair;

use super::graph::Graph;
use super::runs::base_and_source;

/// What each receiver adds to its input in a patched pass, from what the
/// senders wrote in it so far.
pub(crate) trait RowEdits {
    /// The next senders in graph order, as this pass computed them:
    /// `[rows, senders, pos·d_model]` (f32).
    fn push(&mut self, written: Tensor) -> CResult<()>;
    /// Receivers `recv`'s edits, `[rows, recv.len(), pos·d_model]` (f32);
    /// every sender upstream of them has been pushed.
    fn edits(&self, recv: Range<usize>) -> CResult<Tensor>;
}

/// Dense weights: one product `W[:, senders so far, recv]ᵀ ×
/// (source − actual)` per block.
struct Dense {
    /// The source run's sender outputs, `[1, senders, pos·d]`.
    src: Tensor,
    /// `[rows, senders, receivers]`, or `[rows, senders, receivers, pos]`
    /// position-aware.
    w: Tensor,
    /// `(pos, d_model)` when position-aware.
    positions: Option<(usize, usize)>,
    /// This run's sender outputs so far, `[rows, senders so far, pos·d]`.
    actual: Option<Tensor>,
}

impl RowEdits for Dense {
    fn push(&mut self, written: Tensor) -> CResult<()> {
        self.actual = Some(match self.actual.take() {
            Some(a) => Tensor::cat(&[&a, &written], 1)?,
            None => written,
        });
        Ok(())
    }

    fn edits(&self, recv: Range<usize>) -> CResult<Tensor> {
        let actual = self.actual.as_ref().expect("the input was pushed");
        let n = actual.dim(1)?;
        let diff = self.src.narrow(1, 0, n)?.broadcast_sub(actual)?;
        let wl = self.w.narrow(1, 0, n)?.narrow(2, recv.start, recv.len())?;
        let Some((t, d)) = self.positions else {
            return wl.transpose(1, 2)?.contiguous()?.matmul(&diff); // [rows, receivers, t*d]
        };
        // One product per (row, position): [rows·t, receivers, n] × [rows·t, n, d].
        let (rows, nrc) = (diff.dim(0)?, recv.len());
        let wp = wl
            .permute((0, 3, 2, 1))?
            .contiguous()?
            .reshape((rows * t, nrc, n))?;
        let dp = diff
            .reshape((rows, n, t, d))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((rows * t, n, d))?;
        wp.matmul(&dp)?
            .reshape((rows, t, nrc, d))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((rows, nrc, t * d))
    }
}

/// Every registry metric (normalised ones NaN) of each row's patched run.
/// `weights[b]` is dense `[sender][receiver]`.
pub fn patched_runs(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    weights: &[Vec<f32>],
) -> CResult<Vec<Metrics>> {
    patched_runs_at(model, graph, run, weights, None)
}

/// [`patched_runs`] with position-aware weights when `positions` is the
/// run's token count: `weights[b]` dense `[sender][receiver][position]`,
/// receiver `v` at position `p` reading `Σ_u W_b[u, v, p] · Δ_u[p]`.
pub fn patched_runs_at(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    weights: &[Vec<f32>],
    positions: Option<usize>,
) -> CResult<Vec<Metrics>> {
    let dev = model.device();
    let rows = weights.len();
    let (ns, nr) = (graph.n_senders(), graph.n_receivers());
    let (_, src) = base_and_source(graph, run)?;
    let (t, d) = (src.dim(1)?, src.dim(2)?);
    if positions.is_some_and(|p| p != t) {
        candle_core::bail!("position-aware weights for {positions:?} positions, run of {t}");
    }
    let flat: Vec<f32> = weights.iter().flatten().copied().collect();
    let w = match positions {
        // [rows, senders, receivers, pos]
        Some(_) => Tensor::from_vec(flat, (rows, ns, nr, t), dev)?,
        None => Tensor::from_vec(flat, (rows, ns, nr), dev)?,
    };
    let mut dense = Dense {
        src: src.reshape((1, ns, t * d))?,
        w,
        positions: positions.map(|_| (t, d)),
        actual: None,
    };
    run_rows(model, graph, run, rows, &mut dense)
}

/// The patched pass of `rows` rows, block by block, each receiver's input
/// edited by `edits`; every registry metric of each row.
pub(crate) fn run_rows(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    rows: usize,
    edits: &mut dyn RowEdits,
) -> CResult<Vec<Metrics>> {
    let dtype = model.dtype();
    let (h, hkv) = (graph.n_heads, graph.n_kv_heads);
    let input = run
        .base
        .get(HookPoint::ResidPre(0))
        .expect("base run captured resid_pre");
    let (t, d) = (input.dim(1)?, input.dim(2)?);
    // The input is every row's own (no receiver upstream of it).
    edits.push(
        input
            .to_dtype(DType::F32)?
            .reshape((1, 1, t * d))?
            .broadcast_as((rows, 1, t * d))?
            .contiguous()?,
    )?;
    let mut x = input.broadcast_as((rows, t, d))?.contiguous()?;
    let per_head = |e: Tensor| -> CResult<Tensor> {
        let n = e.dim(1)?;
        e.reshape((rows, n, t, d))?
            .transpose(1, 2)?
            .contiguous()?
            .to_dtype(dtype)
    };
    for l in 0..graph.n_layers {
        let recv = graph.receivers_of(l);
        let attn = edits.edits(recv.start..recv.end - 1)?;
        let q = per_head(attn.narrow(1, 0, h)?)?;
        let k = per_head(attn.narrow(1, h, hkv)?)?;
        let v = per_head(attn.narrow(1, h + hkv, hkv)?)?;
        let qkv = HookSpec::new()
            .intervene(HookPoint::QInput(l), Edit::Add(q))
            .intervene(HookPoint::KInput(l), Edit::Add(k))
            .intervene(HookPoint::VInput(l), Edit::Add(v))
            .capture(HookPoint::AttnResult(l))
            .capture(HookPoint::MlpOut(l))
            .capture(HookPoint::ResidPost(l));
        let block = |spec: &HookSpec| {
            let opts = ForwardOptions {
                start: Some(StartState {
                    layer: l,
                    resid: x.clone(),
                    pos_offset: 0,
                    past: None,
                    batch: rows,
                    packing: None,
                }),
                last_pos_only: true,
                stop_before_layer: Some(l + 1),
                ..Default::default()
            };
            model.forward(None, spec, &opts)
        };
        let heads_of = |c: &crate::model::ActivationCache| -> CResult<Tensor> {
            let r = c.get(HookPoint::AttnResult(l)).expect("captured");
            r.to_dtype(DType::F32)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((rows, h, t * d))
        };
        let mlp_recv = recv.end - 1..recv.end;
        let mlp_of = |c: &crate::model::ActivationCache| -> CResult<Tensor> {
            c.get(HookPoint::MlpOut(l))
                .expect("captured")
                .to_dtype(DType::F32)?
                .reshape((rows, 1, t * d))
        };
        if graph.parallel {
            let m = edits.edits(mlp_recv)?.reshape((rows, t, d))?;
            let out = block(&qkv.intervene(HookPoint::MlpIn(l), Edit::Add(m.to_dtype(dtype)?)))?;
            edits.push(Tensor::cat(
                &[&heads_of(&out.cache)?, &mlp_of(&out.cache)?],
                1,
            )?)?;
            x = out
                .cache
                .get(HookPoint::ResidPost(l))
                .expect("captured")
                .clone();
        } else {
            // The heads first, then the MLP with its input edited by what
            // they wrote in this pass (each half computed once).
            let (mid, heads) = model.attention_half(l, &x, &qkv)?;
            edits.push(heads_of(&heads)?)?;
            let m = edits.edits(mlp_recv)?.reshape((rows, t, d))?;
            let spec = HookSpec::new()
                .intervene(HookPoint::MlpIn(l), Edit::Add(m.to_dtype(dtype)?))
                .capture(HookPoint::MlpOut(l));
            let (post, mlp) = model.mlp_half(l, &mid, &spec)?;
            edits.push(mlp_of(&mlp)?)?;
            x = post;
        }
    }
    let e = edits
        .edits(graph.receivers_of(graph.n_layers))?
        .reshape((rows, t, d))?;
    let last = (x.to_dtype(DType::F32)? + e)?
        .narrow(1, t - 1, 1)?
        .to_dtype(dtype)?;
    let logits = model
        .unembed(&model.ln_final.forward(&last)?)?
        .reshape((rows, model.cfg.d_vocab))?;
    metrics::compute_with(
        &logits.to_dtype(DType::F32)?,
        &run.clean_logprobs,
        run.answer,
        run.wrong,
        &run.sets,
    )
}
