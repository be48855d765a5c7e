//! The gradient estimates of a run's edges (EAP, EAP-IG, AtP*), each as the
//! per-edge metrics `run_circuit` ranks; [`super::units`] averages them over
//! runs.

use crate::model::Transformer;
use crate::patching::metrics::Metrics;
use crate::patching::runs::RunPair;

use super::circuit::{CircuitOptions, Method};
use super::graph::{Graph, ReceiverId, SenderId};
use super::units::UnitValues;
use super::{atp, eap, CircuitError};

/// EAP, EAP-IG or AtP* values of `edges` in one run; position-aware
/// (`at[i]`: edge `i`'s position) EAP and EAP-IG keep each position's term
/// of the sum over positions the position-free score is.
pub fn run_estimates(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    (edges, at): (&[(SenderId, ReceiverId)], Option<&[usize]>),
    opts: &CircuitOptions,
) -> Result<UnitValues, CircuitError> {
    let per = at.map_or(1, |_| run.base_tokens.len());
    let pick = |dense: &[Vec<f32>]| -> Vec<Metrics> {
        edges
            .iter()
            .enumerate()
            .map(|(i, &(s, r))| {
                let k = graph.idx(s, r) * per + at.map_or(0, |a| a[i]);
                Metrics::from_values(std::array::from_fn(|m| dense[m][k]))
            })
            .collect()
    };
    Ok(match opts.method {
        Method::AtpStar => {
            let how = (opts.graddrop, opts.max_rows);
            let a = atp::atp_star_at(model, graph, run, how, at.is_some())?;
            UnitValues {
                scores: pick(&a.fixed),
                plain: Some(pick(&a.plain)),
                graddrop: a.graddrop.as_deref().map(pick),
            }
        }
        _ => {
            let steps = if opts.method == Method::Eap {
                1
            } else {
                opts.ig_steps
            };
            UnitValues {
                scores: pick(&eap::eap_ig_at(
                    model,
                    graph,
                    run,
                    (steps, opts.ig_on),
                    at.is_some(),
                )?),
                plain: None,
                graddrop: None,
            }
        }
    })
}
