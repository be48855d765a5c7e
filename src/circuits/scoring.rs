//! The gradient estimates of every edge (EAP, EAP-IG, AtP*), averaged over
//! run pairs, each as the per-edge metrics `run_circuit` ranks.

use crate::model::Transformer;
use crate::patching::metrics::Metrics;

use super::circuit::{mean_rows, CircuitOptions, Method};
use super::graph::{Graph, ReceiverId, SenderId};
use super::progress::{Stage, Watch};
use super::runs::Runs;
use super::{atp, eap, CircuitError};

/// One estimating method's per-edge values (means over run pairs).
pub struct Estimates {
    /// The method's value: a signed change of each metric.
    pub scores: Vec<Metrics>,
    /// AtP*: the plain linear estimate.
    pub plain: Option<Vec<Metrics>>,
    /// AtP* with GradDrop: the ranking magnitude.
    pub graddrop: Option<Vec<Metrics>>,
}

/// EAP, EAP-IG or AtP* scores of `edges`.
pub fn estimates(
    model: &Transformer,
    graph: &Graph,
    runs: &Runs,
    edges: &[(SenderId, ReceiverId)],
    opts: &CircuitOptions,
    watch: &mut Watch<'_>,
) -> Result<Estimates, CircuitError> {
    let pick = |dense: &[Vec<f32>]| -> Vec<Metrics> {
        edges
            .iter()
            .map(|&(s, r)| Metrics::from_values(std::array::from_fn(|m| dense[m][graph.idx(s, r)])))
            .collect()
    };
    let (mut scores, mut plain, mut graddrop) = (Vec::new(), Vec::new(), Vec::new());
    for (i, run) in runs.runs.iter().enumerate() {
        watch.step(Stage::Scores, i, runs.runs.len())?;
        match opts.method {
            Method::AtpStar => {
                let a = atp::atp_star(model, graph, run, opts.graddrop, opts.max_rows)?;
                scores.push(pick(&a.fixed));
                plain.push(pick(&a.plain));
                if let Some(g) = &a.graddrop {
                    graddrop.push(pick(g));
                }
            }
            _ => {
                let steps = if opts.method == Method::Eap {
                    1
                } else {
                    opts.ig_steps
                };
                scores.push(pick(&eap::eap_ig_on(model, graph, run, steps, opts.ig_on)?));
            }
        }
    }
    let mean = |v: Vec<Vec<Metrics>>| (!v.is_empty()).then(|| mean_rows(&v));
    Ok(Estimates {
        scores: mean_rows(&scores),
        plain: mean(plain),
        graddrop: mean(graddrop),
    })
}
