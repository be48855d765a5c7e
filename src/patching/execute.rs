//! Evaluating patched runs: the naive reference (one full forward per
//! cell) and the fast path's batched, resumed forwards.

use candle_core::{Result as CResult, Tensor};

use crate::model::forward::Packing;
use crate::model::{ForwardOptions, HookPoint, KvCache, StartState, Transformer};

use super::batches::{is_packable, packing_pays, Row};
use super::masks::{batch_hooks, batch_hooks_with, packed_hooks_with};
use super::metrics::{self, CleanView, Metrics};
use super::plan::{PatchOp, Plan};
use super::runs::RunPair;

/// The reference: one full forward of the base run with the cell patched.
pub(crate) fn naive_cell(model: &Transformer, run: &RunPair, ops: &[PatchOp]) -> CResult<Metrics> {
    let n_pos = run.base_tokens.len();
    let mut spec = batch_hooks(model, run, &[&ops.to_vec()], n_pos)?;
    if let Some(e) = &run.base_embed_edit {
        spec = spec.intervene(HookPoint::Embed, e.clone());
    }
    let tokens = Tensor::new(run.base_tokens.as_slice(), model.device())?.unsqueeze(0)?;
    let out = model.forward(Some(&tokens), &spec, &ForwardOptions::default())?;
    let logits = out.logits.expect("full forward has logits");
    let last = logits.narrow(1, n_pos - 1, 1)?.squeeze(1)?;
    Ok(metrics::compute_with(&last, &run.clean_logprobs, run.answer, run.wrong, &run.sets)?[0])
}

/// One batched, resumed forward for cells of one run sharing a start layer.
pub(crate) fn fast_batch(
    model: &Transformer,
    run: &RunPair,
    plan: &Plan,
    batch: &[(usize, usize)],
    packed: bool,
) -> CResult<Vec<Metrics>> {
    let rows: Vec<Row> = batch
        .iter()
        .map(|&(cell, p0)| Row { run: 0, cell, p0 })
        .collect();
    fast_rows(model, std::slice::from_ref(run), &|_| plan, &rows, packed)
}

/// The distinct runs of a batch, and each row's index among them.
fn segments(rows: &[Row]) -> (Vec<usize>, Vec<usize>) {
    let mut runs: Vec<usize> = Vec::new();
    let seg = rows
        .iter()
        .map(|r| match runs.iter().position(|&x| x == r.run) {
            Some(i) => i,
            None => {
                runs.push(r.run);
                runs.len() - 1
            }
        })
        .collect();
    (runs, seg)
}

/// `t` of each listed run (`[1, ...]` each), concatenated along `dim`.
fn cat_runs(ts: &[&Tensor], dim: usize) -> CResult<Tensor> {
    match ts {
        [one] => Ok((*one).clone()),
        _ => Tensor::cat(ts, dim),
    }
}

/// One batched, resumed forward for rows sharing a start layer; rows may
/// patch different runs of one prompt length (`plan_of` gives each run's
/// cells).
///
/// Rows are packed (each recomputes only its own positions) unless a cell
/// patches attention patterns, whose `[head, query, key]` layout has no
/// packed form; those use a dense block from the batch's first position.
/// A packed batch reads the cached keys/values of its runs concatenated,
/// each row masked to its own run's; a dense one gathers each row's own
/// run's cache, residual stream and patch values along the batch axis.
pub(crate) fn fast_rows<'p>(
    model: &Transformer,
    runs: &[RunPair],
    plan_of: &dyn Fn(usize) -> &'p Plan,
    batch: &[Row],
    packed: bool,
) -> CResult<Vec<Metrics>> {
    let n_pos = runs[batch[0].run].base_tokens.len();
    let cells: Vec<&Vec<PatchOp>> = batch
        .iter()
        .map(|r| plan_of(r.run).cells[r.cell].as_ref().unwrap())
        .collect();
    let layer = cells
        .iter()
        .flat_map(|ops| ops.iter().filter_map(|o| o.hook.layer()))
        .min()
        .unwrap_or(0);
    let (seg_runs, row_seg) = segments(batch);
    let dev = model.device();
    let resids: Vec<&Tensor> = seg_runs
        .iter()
        .map(|&r| {
            runs[r]
                .base
                .get(HookPoint::ResidPre(layer))
                .expect("resid_pre cached for every layer")
        })
        .collect();
    let zs = resume_z_sources(runs, &seg_runs, &cells, layer);
    // A pass resumed from `hook_z` reads no keys/values of its first block.
    let kv_from = layer + usize::from(zs.is_some());
    let starts: Vec<usize> = batch.iter().map(|r| r.p0).collect();
    let logits = if packed && is_packable(&cells) && packing_pays(&starts, n_pos) {
        let packing = Packing::with_segments(starts, row_seg.clone(), n_pos);
        let tokens = packing.tokens();
        // Index of each packed token in the runs' positions laid end to end.
        let gather = Tensor::new(
            tokens
                .iter()
                .map(|&(r, p)| (row_seg[r] * n_pos + p) as u32)
                .collect::<Vec<_>>(),
            dev,
        )?;
        let flat = |ts: &[&Tensor]| -> CResult<Tensor> {
            let ts: Vec<Tensor> = ts.iter().map(|t| t.squeeze(0)).collect::<CResult<_>>()?;
            let refs: Vec<&Tensor> = ts.iter().collect();
            cat_runs(&refs, 0)?
                .contiguous()?
                .index_select(&gather, 0)?
                .unsqueeze(0)
        };
        let spec = packed_hooks_with(model, &cells, &tokens, &|hook| {
            let srcs: Vec<&Tensor> = seg_runs.iter().map(|&r| &runs[r].source[&hook]).collect();
            flat(&srcs)
        })?;
        let resid = flat(&resids)?;
        let resume_z = zs.as_deref().map(flat).transpose()?;
        let past = concat_kv(runs, &seg_runs, kv_from, 2)?;
        let opts = ForwardOptions {
            start: Some(StartState {
                layer,
                resid,
                pos_offset: 0,
                past: Some(past.as_ref()),
                batch: batch.len(),
                packing: Some(&packing),
            }),
            last_pos_only: true,
            resume_z,
            ..Default::default()
        };
        model.forward(None, &spec, &opts)?.logits
    } else {
        let p0 = starts.iter().copied().min().unwrap_or(0);
        let single = seg_runs.len() == 1;
        let idx = Tensor::new(row_seg.iter().map(|&s| s as u32).collect::<Vec<_>>(), dev)?;
        // One run: its tensors broadcast over the rows, as before; several:
        // each row gathers its own run's.
        let per_row = |ts: &[&Tensor]| -> CResult<Tensor> {
            if single {
                Ok(ts[0].clone())
            } else {
                cat_runs(ts, 0)?.index_select(&idx, 0)
            }
        };
        let spec = batch_hooks_with(model, &cells, n_pos, &|hook| {
            let srcs: Vec<&Tensor> = seg_runs.iter().map(|&r| &runs[r].source[&hook]).collect();
            per_row(&srcs)
        })?;
        let resid = per_row(&resids)?.narrow(1, p0, n_pos - p0)?;
        let resume_z = zs
            .as_deref()
            .map(|zs| per_row(zs)?.narrow(1, p0, n_pos - p0))
            .transpose()?;
        // Nothing before p0 is read when p0 is 0.
        let past = if single || p0 == 0 {
            std::borrow::Cow::Borrowed(&runs[seg_runs[0]].base_kv)
        } else {
            let kv = concat_kv(runs, &seg_runs, kv_from, 0)?;
            std::borrow::Cow::Owned(KvCache {
                layers: kv
                    .layers
                    .iter()
                    .enumerate()
                    .map(|(l, (k, v))| {
                        if l < kv_from {
                            return Ok((k.clone(), v.clone()));
                        }
                        let k = k.narrow(2, 0, p0)?.contiguous()?.index_select(&idx, 0)?;
                        let v = v.narrow(2, 0, p0)?.contiguous()?.index_select(&idx, 0)?;
                        Ok((k, v))
                    })
                    .collect::<CResult<_>>()?,
            })
        };
        let opts = ForwardOptions {
            start: Some(StartState {
                layer,
                resid,
                pos_offset: p0,
                past: Some(past.as_ref()),
                batch: batch.len(),
                packing: None,
            }),
            last_pos_only: true,
            resume_z,
            ..Default::default()
        };
        model.forward(None, &spec, &opts)?.logits
    };
    let views: Vec<CleanView> = seg_runs
        .iter()
        .map(|&r| CleanView::new(&runs[r].clean_logprobs))
        .collect::<CResult<_>>()?;
    let rows: Vec<_> = batch
        .iter()
        .zip(&row_seg)
        .map(|(r, &s)| {
            let run = &runs[r.run];
            (&views[s], run.answer, run.wrong, &run.sets)
        })
        .collect();
    metrics::compute_each(&logits.expect("logits"), &rows)
}

/// The unpatched runs' `hook_z` at `layer` when every cell of the batch
/// patches only that hook: the patched residual after the block's attention
/// is then the output projection of the patched `z`, so the forward resumes
/// there instead of recomputing the block's queries, keys, values and
/// pattern (exactly what the unpatched run computed; `head_out` cells).
fn resume_z_sources<'a>(
    runs: &'a [RunPair],
    seg_runs: &[usize],
    cells: &[&Vec<PatchOp>],
    layer: usize,
) -> Option<Vec<&'a Tensor>> {
    let hook = HookPoint::Z(layer);
    if !cells.iter().all(|ops| ops.iter().all(|o| o.hook == hook)) {
        return None;
    }
    seg_runs.iter().map(|&r| runs[r].base.get(hook)).collect()
}

/// The cached keys/values of `seg_runs`, concatenated along `dim` (2: the
/// position axis, for packed rows; 0: the batch axis, for dense ones) in
/// the layers from `layer` on; earlier layers are never read and keep the
/// first run's. One run is returned as it is.
fn concat_kv<'a>(
    runs: &'a [RunPair],
    seg_runs: &[usize],
    layer: usize,
    dim: usize,
) -> CResult<std::borrow::Cow<'a, KvCache>> {
    if let [one] = seg_runs {
        return Ok(std::borrow::Cow::Borrowed(&runs[*one].base_kv));
    }
    let first = &runs[seg_runs[0]].base_kv;
    let layers = (0..first.layers.len())
        .map(|l| {
            if l < layer {
                return Ok(first.layers[l].clone());
            }
            let ks: Vec<&Tensor> = seg_runs
                .iter()
                .map(|&r| &runs[r].base_kv.layers[l].0)
                .collect();
            let vs: Vec<&Tensor> = seg_runs
                .iter()
                .map(|&r| &runs[r].base_kv.layers[l].1)
                .collect();
            Ok((Tensor::cat(&ks, dim)?, Tensor::cat(&vs, dim)?))
        })
        .collect::<CResult<_>>()?;
    Ok(std::borrow::Cow::Owned(KvCache { layers }))
}
