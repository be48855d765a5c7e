//! Which cells the fast path recomputes and how they are batched.
//!
//! A cell whose patch writes what the base run already has changes nothing
//! and is not run; the others start at their first changed position and are
//! chunked into batches under token and memory budgets. The time estimate
//! (`analysis::estimate`) plans batches with the same functions, so it
//! prices the shapes the engine runs.

use std::collections::HashMap;

use candle_core::Result as CResult;

use crate::model::{HookPoint, ModelConfig};

use super::engine::EngineOptions;
use super::plan::{PatchOp, Plan};
use super::runs::RunPair;

/// Per-run memo of which positions differ between source and base at a
/// hook (for one head, or all).
#[derive(Default)]
pub(crate) struct ChangeCache(HashMap<(HookPoint, Option<usize>), Vec<bool>>);

/// The first position a cell's patch actually changes, or `None` if the
/// patch writes the values the base run already has.
pub(crate) fn first_changed(
    run: &RunPair,
    ops: &[PatchOp],
    memo: &mut ChangeCache,
) -> CResult<Option<usize>> {
    let mut first: Option<usize> = None;
    for op in ops {
        let key = (op.hook, op.head);
        let changed = match memo.0.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(changed_positions(run, op.hook, op.head)?)
            }
        };
        let p = match op.pos {
            Some(p) => changed[p].then_some(p),
            None => changed.iter().position(|&c| c),
        };
        if let Some(p) = p {
            first = Some(first.map_or(p, |f: usize| f.min(p)));
        }
    }
    Ok(first)
}

/// For each position: does the source differ from the base at `hook` (head)?
fn changed_positions(run: &RunPair, hook: HookPoint, head: Option<usize>) -> CResult<Vec<bool>> {
    let base = run
        .base
        .get(hook)
        .expect("base run captured every patched hook");
    let src = &run.source[&hook];
    let mut diff = (src - base)?.abs()?.squeeze(0)?; // remove batch
                                                     // Bring to [pos, ...] with heads selectable.
    let is_pattern = matches!(hook, HookPoint::Pattern(_) | HookPoint::AttnScores(_));
    if is_pattern {
        // [head, q, k] -> [q, head, k]
        diff = diff.transpose(0, 1)?;
    }
    if let Some(h) = head {
        diff = diff.narrow(1, h, 1)?;
    }
    let n_pos = diff.dim(0)?;
    let per_pos = diff
        .reshape((n_pos, ()))?
        .max(1)?
        .to_dtype(candle_core::DType::F32)?
        .to_vec1::<f32>()?;
    Ok(per_pos.iter().map(|&d| d > 0.0).collect())
}

/// Rough bytes a batch needs per recomputed position (its activations)
/// and per row (its keys/values of the whole prompt, and its last
/// position's logits with the metrics' copies of them).
fn batch_bytes(c: &ModelConfig, n_pos: usize) -> (usize, usize) {
    let per_pos = 12 * c.d_model + 4 * c.d_mlp + 4 * c.n_heads * n_pos + 6 * c.n_heads * c.d_head;
    let kv = 4 * c.n_kv_heads * n_pos * c.d_head;
    (4 * per_pos, 4 * (kv + 4 * c.d_vocab))
}

/// One patched run of a batch: the run pair it patches (an index into the
/// sweep's runs), its cell and its first changed position.
pub(crate) type Row = super::work::UnitRow;

/// Chunks active `(cell, first_changed_pos)` pairs of one run into batches
/// bounded by memory and token budgets (see [`batch_rows`]).
pub(crate) fn batch_cells(
    active: Vec<(usize, usize)>,
    cfg: &ModelConfig,
    plan: &Plan,
    n_pos: usize,
    opts: &EngineOptions,
) -> Vec<Vec<(usize, usize)>> {
    let rows = active
        .into_iter()
        .map(|(cell, p0)| Row { run: 0, cell, p0 })
        .collect();
    batch_rows(rows, &|r| plan.cells[r.cell].as_ref(), cfg, n_pos, opts)
        .into_iter()
        .map(|b| b.into_iter().map(|r| (r.cell, r.p0)).collect())
        .collect()
}

/// Chunks rows (of any runs sharing a prompt length `n_pos`) into batches
/// bounded by memory and token budgets. Packed batches cost the sum of
/// their rows' lengths; dense ones (pattern patches) cost rows × the
/// longest row, so rows with similar start positions go together, and rows
/// of different runs share a batch as readily as rows of one.
pub(crate) fn batch_rows<'a>(
    mut rows: Vec<Row>,
    ops: &dyn Fn(&Row) -> Option<&'a Vec<PatchOp>>,
    cfg: &ModelConfig,
    n_pos: usize,
    opts: &EngineOptions,
) -> Vec<Vec<Row>> {
    rows.sort_by_key(|r| (std::cmp::Reverse(r.p0), r.cell, r.run));
    let mut out: Vec<Vec<Row>> = Vec::new();
    let mut cur: Vec<Row> = Vec::new();
    let mut cur_tokens = 0;
    let (per_token, per_row) = batch_bytes(cfg, n_pos);
    for item in rows {
        let packed = opts.packed && is_packable(&[ops(&item).expect("active cells exist")]);
        let tokens = if packed {
            cur_tokens + n_pos - item.p0
        } else {
            (cur.len() + 1) * (n_pos - item.p0.min(cur.last().map_or(usize::MAX, |l| l.p0)))
        };
        let bytes = tokens * per_token + (cur.len() + 1) * per_row;
        let fits = tokens <= opts.max_batch_tokens && bytes <= opts.max_batch_mem;
        if !cur.is_empty() && !fits {
            out.push(std::mem::take(&mut cur));
            cur_tokens = 0;
        }
        cur_tokens += n_pos - item.p0;
        cur.push(item);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Packing saves the padding of a dense block but makes attention
/// quadratic in the packed length (every token is masked against every
/// other row's), so it is used only when the dense block would waste more
/// than a fifth of its positions — e.g. `resid_pre` cells of many start
/// positions, but not `head_out` cells that all start at one position.
pub(crate) fn packing_pays(starts: &[usize], n_pos: usize) -> bool {
    let p0 = starts.iter().copied().min().unwrap_or(0);
    let dense = starts.len() * (n_pos - p0);
    let packed: usize = starts.iter().map(|&p| n_pos - p).sum();
    dense * 5 > packed * 6
}

/// Whether every patched hook of these cells has a per-token layout.
pub(crate) fn is_packable(cells: &[&Vec<PatchOp>]) -> bool {
    cells
        .iter()
        .flat_map(|ops| ops.iter())
        .all(|o| !matches!(o.hook, HookPoint::Pattern(_) | HookPoint::AttnScores(_)))
}
