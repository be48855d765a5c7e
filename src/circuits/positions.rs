//! Position-aware edges (`CircuitOptions::positions`, `circuit
//! --positions`): every edge scored, checked and kept at each token
//! position on its own.
//!
//! The residual stream moves information between positions only inside
//! attention heads, so a residual edge sits at one position: the edge
//! `(u -> v, p)` is `u`'s direct contribution at position `p` to `v`'s
//! input at position `p`. For a head's query receiver that is the query
//! at `p`; for its key and value receivers, the key or value at `p`, which
//! every later query reads. Source and destination positions are
//! therefore equal; results still name both (`src_pos`, `dst_pos`) so a
//! cross-position variant stays compatible.
//!
//! How each piece reads it:
//! - exact patching adds `Δ_u ⊙ 1[p]` (`runs::edge_row_edits`), so
//!   patching an edge at every position at once is the position-free edge;
//! - EAP / EAP-IG keep the per-position terms `Δ_u[p] · G_v[p]` of the
//!   sum over positions that is the position-free score
//!   ([`edge_scores_at`]), so they sum to it exactly; AtP*'s plain
//!   estimate likewise, and its QK fix patches a q/k edge at one position
//!   (key edges re-run the attention per (sender, position), `t` times
//!   the position-free fix's key rows; query edges need no more rows,
//!   each pattern row depending on its own query alone;
//!   `atp::atp_star_at`);
//! - circuits and the faithfulness curve weigh each (edge, position)
//!   unit on its own (`patched::patched_runs_at`): every unit outside the
//!   circuit carries the other run's value at its position.
//!
//! Units are edge-major: edge `e` at position `p` is unit `e · t + p`.
//! - path patching patches the sender at `p` only in its first step
//!   (heads frozen, MLPs and norms per position, so every receiver's
//!   step-1 input moves at `p` only; `path::path_patch_at`).
//!
//! Positions are indices into the pairs' tokens, so every pair must have
//! one token length.

use candle_core::{Result as CResult, Tensor};

use crate::patching::metrics::REGISTRY;
use crate::patching::plan::PositionLabels;
use crate::patching::PreparedPair;

use super::graph::{Graph, ReceiverId, SenderId};
use super::seeds::FromGroup;
use super::CircuitError;

/// Refuses what position-aware edges cannot do: pairs of different token
/// lengths.
pub fn check(pairs: &[PreparedPair]) -> Result<(), CircuitError> {
    let mut by_len: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, p) in pairs.iter().enumerate() {
        by_len.entry(p.n_pos()).or_default().push(i);
    }
    if by_len.len() > 1 {
        let groups: Vec<(usize, Vec<usize>)> = by_len.into_iter().collect();
        return Err(CircuitError::Invalid(format!(
            "--positions scores each edge at a token position, so every pair needs one \
             token length, and these differ ({}); give pairs of one length (position \
             labels do not align position-aware edges yet), or drop --positions (p in \
             the workbench's circuit pane)",
            crate::patching::prepare::describe_groups(&groups)
        )));
    }
    Ok(())
}

/// Every edge once per position, edge-major, and each unit's position.
pub fn expand(
    edges: &[(SenderId, ReceiverId)],
    n_pos: usize,
) -> (Vec<(SenderId, ReceiverId)>, Vec<usize>) {
    let units = edges.iter().flat_map(|&e| (0..n_pos).map(move |p| (e, p)));
    units.unzip()
}

/// How the workbench and the table name a position: `@5 'Mary'` (the
/// token text escaped and clipped), or `@5` without it.
pub fn describe(pos: usize, token: Option<&str>) -> String {
    describe_labelled(pos, None, token)
}

/// [`describe`] with the position's label, where labelled pairs name it:
/// `@5 S2 'Mary'`.
pub fn describe_labelled(pos: usize, label: Option<&str>, token: Option<&str>) -> String {
    use crate::util::text::{clip, one_line};
    let short = |s: &str| clip(&one_line(s), 12).into_owned();
    let mut out = format!("@{pos}");
    if let Some(l) = label {
        out.push_str(&format!(" {}", short(l)));
    }
    if let Some(t) = token {
        out.push_str(&format!(" '{}'", short(t)));
    }
    out
}

/// Each of `n_pos` token positions named by the dataset's position label
/// whose span holds it in every pair (the first such label, labels in
/// their order), `None` where no label does: labelled pairs of one
/// length name the positions of position-aware edges (`S2`, `END`).
pub fn label_names(labels: &PositionLabels, n_pos: usize) -> Vec<Option<String>> {
    (0..n_pos)
        .map(|p| {
            let holds = |j: usize| labels.spans.iter().all(|row| row[j].contains(&p));
            (0..labels.names.len())
                .find(|&j| holds(j))
                .map(|j| labels.names[j].clone())
        })
        .collect()
}

/// [`super::eap::edge_scores`] keeping each position's term: dense
/// `[sender][receiver][position]` per registry metric (NaN where no edge),
/// per block one batched product over positions.
///
/// # Shapes
/// `delta: [senders, pos · d]`, `grads_of(l): [receivers of l, groups,
/// pos · d]`
pub(crate) fn edge_scores_at(
    graph: &Graph,
    delta: &Tensor,
    t: usize,
    (ids, from): (&[usize], &[FromGroup]),
    mut grads_of: impl FnMut(usize) -> CResult<Tensor>,
) -> CResult<Vec<Vec<f32>>> {
    let n_g = from.iter().map(|f| f.group + 1).max().unwrap_or(0);
    let nr = graph.n_receivers();
    let d = delta.dim(1)? / t;
    let mut out = vec![vec![f32::NAN; graph.n_senders() * nr * t]; REGISTRY.len()];
    for l in 0..=graph.n_layers {
        let recv = graph.receivers_of(l);
        let ns = graph.senders_read_by(l);
        let g = grads_of(l)?;
        // [t, receivers × groups, d]
        let g = g
            .reshape((recv.len() * n_g, t, d))?
            .transpose(0, 1)?
            .contiguous()?;
        // [t, ns, d]
        let dl = delta
            .narrow(0, 0, ns)?
            .reshape((ns, t, d))?
            .transpose(0, 1)?
            .contiguous()?;
        // [t, ns, receivers × groups]
        let scores: Vec<Vec<Vec<f32>>> = dl.matmul(&g.transpose(1, 2)?)?.to_vec3()?;
        for (p, at_p) in scores.iter().enumerate() {
            for (s, row) in at_p.iter().enumerate() {
                for (j, r) in recv.clone().enumerate() {
                    let (s, r) = (SenderId(s as u32), ReceiverId(r as u32));
                    if !graph.is_edge(s, r) {
                        continue;
                    }
                    for (&m, f) in ids.iter().zip(from) {
                        out[m][graph.idx(s, r) * t + p] = f.scale * row[j * n_g + f.group];
                    }
                }
            }
        }
    }
    Ok(out)
}
