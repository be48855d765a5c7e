//! Patched runs of circuits given as their few differences from the
//! unpatched or the all-patched run: the faithfulness curve's rows.
//!
//! A curve point patches every edge outside the top-k circuit. With dense
//! weights ([`super::patched::patched_runs`]) each of its blocks costs a
//! product over every upstream sender for every receiver, and most of
//! those weights are the same for all points: small circuits patch almost
//! everything, large ones almost nothing. So a row names its *base* — no
//! edge patched, or every edge patched — and the edges where it differs
//! from that base, whichever list is shorter:
//!
//! - unpatched base: `v` reads `resid + Σ_{u∈D} Δ_u`,
//! - all-patched base: `v` reads `resid + S − Σ_{u∈D} Δ_u`,
//!
//! with `Δ_u = out_u(source) − out_u(this run)` and `S = Σ_u Δ_u` over every
//! sender upstream of `v` (a running sum: every sender is upstream of
//! every later block's receivers). That is the dense sum with weights 1
//! outside `D` (or inside it), term for term; only the order of the
//! additions differs. Each `Δ_u` is computed once, when `u` has run, and
//! each difference edge costs one gather-and-add of `pos · d_model`
//! numbers (`index_add`) instead of a share of every block's product.

use std::ops::Range;

use candle_core::{DType, Result as CResult, Tensor};
use rayon::prelude::*;

use crate::model::Transformer;
use crate::patching::metrics::Metrics;
use crate::patching::runs::RunPair;

use super::graph::{Graph, ReceiverId, SenderId};
use super::patched::{run_rows, RowEdits};
use super::runs::base_and_source;

/// One patched run: `differ`'s edges are patched (unpatched base) or are
/// the only ones not patched (all-patched base). Position-aware edges
/// (`at[i]`: `differ[i]` at that position only) patch one position's
/// slice; the all-patched base is then every edge at every position.
#[derive(Debug, Clone, Copy)]
pub struct SparseRow<'a> {
    pub all_patched: bool,
    pub differ: &'a [(SenderId, ReceiverId)],
    pub at: Option<&'a [usize]>,
}

impl<'a> SparseRow<'a> {
    /// The top-`k` circuit of `ranked` (at positions `at`, when given):
    /// every edge after the first `k` patched, as the shorter difference
    /// when `ranked` is `complete` (every edge of the graph — at every
    /// position, position-aware — once; otherwise the edges it lacks are
    /// never patched, and the base is the unpatched run).
    pub fn circuit(
        (ranked, at): (&'a [(SenderId, ReceiverId)], Option<&'a [usize]>),
        k: usize,
        complete: bool,
    ) -> Self {
        let k = k.min(ranked.len());
        if !complete || ranked.len() - k <= k {
            SparseRow {
                all_patched: false,
                differ: &ranked[k..],
                at: at.map(|a| &a[k..]),
            }
        } else {
            SparseRow {
                all_patched: true,
                differ: &ranked[..k],
                at: at.map(|a| &a[..k]),
            }
        }
    }
}

/// Where the `Δ_u` and `S` live: plain memory on the CPU (each difference
/// edge one slice added into the edit, nothing gathered), tensors on other
/// devices (gathered with `index_select`, added with `index_add`).
enum Store {
    /// `deltas`: `[senders pushed][rows][pos·d]`; `sum`: `[rows][pos·d]`.
    Host { deltas: Vec<f32>, sum: Vec<f32> },
    /// `deltas`: `[senders, rows, pos·d]`, written in place as senders
    /// run (the rest zeros); `sum`: `[rows, pos·d]`.
    Device { deltas: Tensor, sum: Tensor },
}

struct Sparse<'a> {
    rows: &'a [SparseRow<'a>],
    /// The source run's sender outputs, `[senders, pos·d]`.
    src: Tensor,
    /// Width of one sender's output, `pos·d`, and `d_model`.
    td: usize,
    d: usize,
    done: usize,
    store: Store,
}

impl Sparse<'_> {
    /// Row `b`'s difference edges into `recv`: (sender, receiver −
    /// start, the span of `pos·d` they patch).
    fn edges_into(
        &self,
        b: usize,
        recv: &Range<usize>,
    ) -> impl Iterator<Item = (usize, usize, Range<usize>)> + '_ {
        let (start, recv, td, d) = (recv.start, recv.clone(), self.td, self.d);
        let row = self.rows[b];
        row.differ
            .iter()
            .enumerate()
            .filter(move |(_, (_, r))| recv.contains(&(r.0 as usize)))
            .map(move |(i, &(s, r))| {
                let span = match row.at {
                    Some(at) => at[i] * d..(at[i] + 1) * d,
                    None => 0..td,
                };
                (s.0 as usize, r.0 as usize - start, span)
            })
    }
}

impl RowEdits for Sparse<'_> {
    fn push(&mut self, written: Tensor) -> CResult<()> {
        let n = written.dim(1)?;
        let delta = self
            .src
            .narrow(0, self.done, n)?
            .unsqueeze(0)?
            .broadcast_sub(&written)?; // [rows, n, pos·d]
        match &mut self.store {
            Store::Host { deltas, sum } => {
                let by_sender = delta.transpose(0, 1)?.contiguous()?.flatten_all()?;
                let by_sender = by_sender.to_vec1::<f32>()?;
                for (i, x) in by_sender.chunks(self.td).enumerate() {
                    // Sender-major: chunk i is sender i / rows, row i % rows.
                    let b = i % self.rows.len();
                    for (s, v) in sum[b * self.td..(b + 1) * self.td].iter_mut().zip(x) {
                        *s += v;
                    }
                }
                deltas.extend_from_slice(&by_sender);
            }
            Store::Device { deltas, sum } => {
                deltas.slice_set(&delta.transpose(0, 1)?.contiguous()?, 0, self.done)?;
                *sum = (&*sum + delta.sum(1)?)?;
            }
        }
        self.done += n;
        Ok(())
    }

    fn edits(&self, recv: Range<usize>) -> CResult<Tensor> {
        let (rows, nrc, td) = (self.rows.len(), recv.len(), self.td);
        match &self.store {
            Store::Host { deltas, sum } => {
                let mut out = vec![0f32; rows * nrc * td];
                out.par_chunks_mut(nrc * td)
                    .enumerate()
                    .for_each(|(b, out)| {
                        let row = &self.rows[b];
                        if row.all_patched {
                            for o in out.chunks_mut(td) {
                                o.copy_from_slice(&sum[b * td..(b + 1) * td]);
                            }
                        }
                        let sign = if row.all_patched { -1.0 } else { 1.0 };
                        for (u, v, span) in self.edges_into(b, &recv) {
                            debug_assert!(u < self.done, "sender not run yet");
                            let du = &deltas[(u * rows + b) * td..][span.clone()];
                            let o = &mut out[v * td..][span];
                            for (o, x) in o.iter_mut().zip(du) {
                                *o += sign * x;
                            }
                        }
                    });
                Tensor::from_vec(out, (rows, nrc, td), self.src.device())
            }
            Store::Device { deltas, sum } => {
                // Slices of `d_model`: position p of a span is slice p.
                let (d, t) = (self.d, td / self.d);
                let (mut from, mut to, mut sign) = (Vec::new(), Vec::new(), Vec::new());
                for b in 0..rows {
                    let row = &self.rows[b];
                    sign.push(if row.all_patched { -1f32 } else { 1.0 });
                    for (u, v, span) in self.edges_into(b, &recv) {
                        for p in span.start / d..span.end / d {
                            from.push(((u * rows + b) * t + p) as u32);
                            to.push(((b * nrc + v) * t + p) as u32);
                        }
                    }
                }
                let dev = sum.device();
                let mut out = Tensor::zeros((rows * nrc * t, d), DType::F32, dev)?;
                if !from.is_empty() {
                    let n = from.len();
                    let picked = deltas
                        .reshape((deltas.dim(0)? * rows * t, d))?
                        .index_select(&Tensor::from_vec(from, n, dev)?, 0)?;
                    out = out.index_add(&Tensor::from_vec(to, n, dev)?, &picked, 0)?;
                }
                let all: Vec<f32> = self
                    .rows
                    .iter()
                    .map(|r| f32::from(u8::from(r.all_patched)))
                    .collect();
                let all = Tensor::from_vec(all, (rows, 1, 1), dev)?;
                let sign = Tensor::from_vec(sign, (rows, 1, 1), dev)?;
                let out = out.reshape((rows, nrc, td))?.broadcast_mul(&sign)?;
                out.broadcast_add(&sum.unsqueeze(1)?.broadcast_mul(&all)?)
            }
        }
    }
}

/// Every registry metric (normalised ones NaN) of each row's patched run;
/// equal to [`super::patched::patched_runs`] with the rows' dense weights
/// up to the order of additions.
pub fn sparse_runs(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    rows: &[SparseRow<'_>],
) -> CResult<Vec<Metrics>> {
    sparse_runs_on(model, graph, run, rows, model.device().is_cpu())
}

/// [`sparse_runs`] with the sums in plain memory (`host`, CPU models
/// only) or in tensors (any device; tests compare the two on the CPU).
pub fn sparse_runs_on(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    rows: &[SparseRow<'_>],
    host: bool,
) -> CResult<Vec<Metrics>> {
    // A row that patches nothing is the base run itself (the full graph):
    // its metrics are the base run's, no pass needed.
    let unpatched = |r: &SparseRow<'_>| !r.all_patched && r.differ.is_empty();
    let todo: Vec<SparseRow<'_>> = rows.iter().filter(|r| !unpatched(r)).copied().collect();
    let mut done = if todo.is_empty() {
        Vec::new()
    } else {
        patched_pass(model, graph, run, &todo, host)?
    }
    .into_iter();
    Ok(rows
        .iter()
        .map(|r| match unpatched(r) {
            true => run.base_metrics,
            false => done.next().expect("one result per row passed"),
        })
        .collect())
}

fn patched_pass(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    rows: &[SparseRow<'_>],
    host: bool,
) -> CResult<Vec<Metrics>> {
    let dev = model.device();
    let n = rows.len();
    let (_, src) = base_and_source(graph, run)?;
    let (ns, t, d) = src.dims3()?;
    let td = t * d;
    if let Some(p) = rows.iter().filter_map(|r| r.at?.iter().max()).max() {
        if *p >= t {
            candle_core::bail!("a position-aware edge at position {p}, run of {t} positions");
        }
    }
    let store = if host {
        Store::Host {
            deltas: Vec::with_capacity(ns * n * td),
            sum: vec![0f32; n * td],
        }
    } else {
        Store::Device {
            deltas: Tensor::zeros((ns, n, td), DType::F32, dev)?,
            sum: Tensor::zeros((n, td), DType::F32, dev)?,
        }
    };
    let mut sparse = Sparse {
        rows,
        src: src.reshape((ns, td))?,
        td,
        d,
        done: 0,
        store,
    };
    run_rows(model, graph, run, n, &mut sparse)
}
