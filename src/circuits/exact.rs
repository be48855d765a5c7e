//! Exact edge patching: the reference every estimate is measured against.
//!
//! Patching the edge `u -> v` alone changes one thing: the input `v`
//! reads becomes `resid − out_u(base) + out_u(source)`, normalised by `v`'s
//! own norm (recomputed on the edited input, as in the EAP literature);
//! every other component reads the residual stream as it is, so the
//! change flows on through `v`'s output. Nothing upstream of `v` changes,
//! so `out_u(base)` is the base run's and the edit is the fixed tensor
//! `Δ_u = out_u(source) − out_u(base)` added at `v`'s split-input hook
//! (`hook_q_input` / `hook_k_input` / `hook_v_input` for that head only,
//! `hook_mlp_in`, or the final residual for `logits`).
//!
//! Batched and with prefix reuse: edges are grouped by the block of
//! their receiver, each batch row patches one edge, and the pass starts at
//! that block from the base run's cached `resid_pre` (the logits receiver
//! starts at the last block). [`super::patched`] computes the same numbers
//! by a different route (a layer-by-layer pass with a per-row edge mask);
//! tests hold the two equal.

use candle_core::{DType, Result as CResult, Tensor};

use crate::model::{HookSpec, Transformer};
use crate::patching::metrics::{self, Metrics};
use crate::patching::runs::RunPair;

use super::graph::{Graph, ReceiverId, SenderId};
use super::runs::{base_and_source, edge_row_edits, resume_from_base};

/// One exact patched run per edge: every registry metric of the base run
/// with that edge alone carrying the source run's value (normalised
/// metrics are left NaN for the caller, who knows the baselines).
pub fn exact_edges(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    edges: &[(SenderId, ReceiverId)],
    max_rows: usize,
) -> CResult<Vec<Metrics>> {
    exact_edges_at(model, graph, run, (edges, None), max_rows)
}

/// [`exact_edges`], position-aware where `at` is given: edge `i` patched
/// at token position `at[i]` only (`Δ_u ⊙ 1[at[i]]`).
pub fn exact_edges_at(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    (edges, at): (&[(SenderId, ReceiverId)], Option<&[usize]>),
    max_rows: usize,
) -> CResult<Vec<Metrics>> {
    let (base, src) = base_and_source(graph, run)?;
    let delta = (src - base)?.to_dtype(model.dtype())?; // [senders, pos, d]
    let mut order: Vec<usize> = (0..edges.len()).collect();
    let start = |i: usize| graph.receiver_layer(edges[i].1).min(graph.n_layers - 1);
    order.sort_by_key(|&i| start(i));
    let mut out = vec![Metrics::nan(); edges.len()];
    let mut i = 0;
    while i < order.len() {
        let l = start(order[i]);
        let mut j = i;
        while j < order.len() && j - i < max_rows.max(1) && start(order[j]) == l {
            j += 1;
        }
        let chunk: Vec<(SenderId, ReceiverId)> = order[i..j].iter().map(|&k| edges[k]).collect();
        let chunk_at: Option<Vec<usize>> = at.map(|a| order[i..j].iter().map(|&k| a[k]).collect());
        let m = run_chunk(model, graph, run, &delta, l, (&chunk, chunk_at.as_deref()))?;
        for (&k, v) in order[i..j].iter().zip(m) {
            out[k] = v;
        }
        i = j;
    }
    Ok(out)
}

/// Patched runs of edges whose receivers are in (or, for logits, after) block `l`.
fn run_chunk(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    delta: &Tensor,
    l: usize,
    (chunk, at): (&[(SenderId, ReceiverId)], Option<&[usize]>),
) -> CResult<Vec<Metrics>> {
    let spec = edge_row_edits(model, graph, delta, (chunk, at), HookSpec::new())?;
    let out = resume_from_base(model, run, l, chunk.len(), &spec, None)?;
    let logits = out.logits.expect("logits");
    metrics::compute_with(
        &logits.to_dtype(DType::F32)?,
        &run.clean_logprobs,
        run.answer,
        run.wrong,
        &run.sets,
    )
}
