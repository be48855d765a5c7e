//! Evaluating patched runs: the naive reference (one full forward per
//! cell) and the fast path's batched, resumed forwards.

use candle_core::{Result as CResult, Tensor};

use crate::model::forward::Packing;
use crate::model::{ForwardOptions, HookPoint, StartState, Transformer};

use super::batches::{is_packable, packing_pays};
use super::masks::{batch_hooks, packed_hooks};
use super::metrics::{self, Metrics};
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
    Ok(metrics::compute(&last, &run.clean_logprobs, run.answer, run.wrong)?[0])
}

/// One batched, resumed forward for cells sharing a start layer.
///
/// Rows are packed (each recomputes only its own positions) unless a cell
/// patches attention patterns, whose `[head, query, key]` layout has no
/// packed form; those use a dense block from the batch's first position.
pub(crate) fn fast_batch(
    model: &Transformer,
    run: &RunPair,
    plan: &Plan,
    batch: &[(usize, usize)],
    packed: bool,
) -> CResult<Vec<Metrics>> {
    let n_pos = run.base_tokens.len();
    let cells: Vec<&Vec<PatchOp>> = batch
        .iter()
        .map(|(c, _)| plan.cells[*c].as_ref().unwrap())
        .collect();
    let layer = cells
        .iter()
        .flat_map(|ops| ops.iter().filter_map(|o| o.hook.layer()))
        .min()
        .unwrap_or(0);
    let base_resid = run
        .base
        .get(HookPoint::ResidPre(layer))
        .expect("resid_pre cached for every layer");
    let logits = if packed && is_packable(&cells) && packing_pays(batch, n_pos) {
        let packing = Packing::new(batch.iter().map(|b| b.1).collect(), n_pos);
        let tokens = packing.tokens();
        let pos_idx = Tensor::new(
            tokens.iter().map(|&(_, p)| p as u32).collect::<Vec<_>>(),
            model.device(),
        )?;
        let spec = packed_hooks(model, run, &cells, &tokens, &pos_idx)?;
        let resid = base_resid
            .squeeze(0)?
            .contiguous()?
            .index_select(&pos_idx, 0)?
            .unsqueeze(0)?;
        let opts = ForwardOptions {
            start: Some(StartState {
                layer,
                resid,
                pos_offset: 0,
                past: Some(&run.base_kv),
                batch: batch.len(),
                packing: Some(&packing),
            }),
            last_pos_only: true,
            ..Default::default()
        };
        model.forward(None, &spec, &opts)?.logits
    } else {
        let p0 = batch.iter().map(|b| b.1).min().unwrap_or(0);
        let spec = batch_hooks(model, run, &cells, n_pos)?;
        let opts = ForwardOptions {
            start: Some(StartState {
                layer,
                resid: base_resid.narrow(1, p0, n_pos - p0)?,
                pos_offset: p0,
                past: Some(&run.base_kv),
                batch: batch.len(),
                packing: None,
            }),
            last_pos_only: true,
            ..Default::default()
        };
        model.forward(None, &spec, &opts)?.logits
    };
    metrics::compute(
        &logits.expect("logits"),
        &run.clean_logprobs,
        run.answer,
        run.wrong,
    )
}
