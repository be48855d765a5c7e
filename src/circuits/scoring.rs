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

/// EAP, EAP-IG or AtP* values of `edges` in one run.
pub fn run_estimates(
    model: &Transformer,
    graph: &Graph,
    run: &RunPair,
    edges: &[(SenderId, ReceiverId)],
    opts: &CircuitOptions,
) -> Result<UnitValues, CircuitError> {
    let pick = |dense: &[Vec<f32>]| -> Vec<Metrics> {
        edges
            .iter()
            .map(|&(s, r)| Metrics::from_values(std::array::from_fn(|m| dense[m][graph.idx(s, r)])))
            .collect()
    };
    Ok(match opts.method {
        Method::AtpStar => {
            let a = atp::atp_star(model, graph, run, opts.graddrop, opts.max_rows)?;
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
                scores: pick(&eap::eap_ig_on(model, graph, run, steps, opts.ig_on)?),
                plain: None,
                graddrop: None,
            }
        }
    })
}
