//! The trainable parameters of the demo model, in canonical names.
//!
//! Each parameter is a candle `Var` (a tensor that tracks gradients).
//! Every step builds a fresh `Transformer` from clones of these tensors —
//! the clones share storage and identity, so the gradients of the loss land
//! on the `Var`s — which means training runs through exactly the forward pass
//! that patching uses later.
//!
//! Initialisation follows GPT-2: weights N(0, 0.02), residual-stream output
//! projections (`W_O`, `W_out`) scaled down by `sqrt(2 · n_layers)`, biases
//! zero, LayerNorm gains one. Values come from the demo's own seeded
//! generator in a fixed order, so a seed fixes the initial weights exactly.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var};

use super::rng::Rng;
use super::{DemoError, Stage};
use crate::model::weights::CanonicalWeights;
use crate::model::ModelConfig;

/// How a parameter starts.
#[derive(Debug, Clone, Copy)]
enum Init {
    Normal(f64),
    Zeros,
    Ones,
}

/// The demo model's parameters, in a fixed order.
pub struct Params {
    vars: Vec<(String, Var)>,
}

impl Params {
    /// Seeded GPT-2-style initialisation for a GPT-2 (LayerNorm, biases,
    /// learned positions, tied) configuration.
    pub fn init(cfg: &ModelConfig, seed: u64, device: &Device) -> Result<Self, DemoError> {
        let (d, dm) = (cfg.d_model, cfg.d_mlp);
        let std = 0.02;
        let resid_std = std / (2.0 * cfg.n_layers as f64).sqrt();
        let mut specs: Vec<(String, Vec<usize>, Init)> = vec![
            ("embed.W_E".into(), vec![cfg.d_vocab, d], Init::Normal(std)),
            (
                "pos_embed.W_pos".into(),
                vec![cfg.n_ctx, d],
                Init::Normal(std),
            ),
        ];
        for l in 0..cfg.n_layers {
            let b = format!("blocks.{l}");
            for ln in ["ln1", "ln2"] {
                specs.push((format!("{b}.{ln}.w"), vec![d], Init::Ones));
                specs.push((format!("{b}.{ln}.b"), vec![d], Init::Zeros));
            }
            for n in ["Q", "K", "V"] {
                specs.push((format!("{b}.attn.W_{n}"), vec![d, d], Init::Normal(std)));
                specs.push((format!("{b}.attn.b_{n}"), vec![d], Init::Zeros));
            }
            specs.push((format!("{b}.attn.W_O"), vec![d, d], Init::Normal(resid_std)));
            specs.push((format!("{b}.attn.b_O"), vec![d], Init::Zeros));
            specs.push((format!("{b}.mlp.W_in"), vec![d, dm], Init::Normal(std)));
            specs.push((format!("{b}.mlp.b_in"), vec![dm], Init::Zeros));
            specs.push((
                format!("{b}.mlp.W_out"),
                vec![dm, d],
                Init::Normal(resid_std),
            ));
            specs.push((format!("{b}.mlp.b_out"), vec![d], Init::Zeros));
        }
        specs.push(("ln_final.w".into(), vec![d], Init::Ones));
        specs.push(("ln_final.b".into(), vec![d], Init::Zeros));

        let mut rng = Rng::fork(seed, "init");
        let vars = specs
            .into_iter()
            .map(|(name, shape, init)| {
                let n: usize = shape.iter().product();
                let data: Vec<f32> = match init {
                    Init::Normal(s) => (0..n).map(|_| (rng.normal() * s) as f32).collect(),
                    Init::Zeros => vec![0.0; n],
                    Init::Ones => vec![1.0; n],
                };
                let t = Tensor::from_vec(data, shape, device).during("initialising weights")?;
                let v = Var::from_tensor(&t).during("initialising weights")?;
                Ok((name, v))
            })
            .collect::<Result<_, DemoError>>()?;
        Ok(Self { vars })
    }

    /// The parameters as canonical weights for `Transformer::new`; the
    /// tensors are the variables themselves, so gradients reach them.
    pub fn canonical(&self) -> CanonicalWeights {
        let mut w = CanonicalWeights::new("the demo model in training");
        for (name, v) in &self.vars {
            w.insert(name.clone(), v.as_tensor().clone());
        }
        w
    }

    /// Detached copies of the current values, for saving.
    pub fn snapshot(&self) -> Result<BTreeMap<String, Tensor>, DemoError> {
        self.vars
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.as_tensor().detach().copy()?)))
            .collect::<Result<_, candle_core::Error>>()
            .during("copying the trained weights")
    }

    /// Matrices (weight-decayed) and gains, biases and position embeddings
    /// (not decayed), as AdamW's two parameter groups.
    pub fn groups(&self) -> (Vec<Var>, Vec<Var>) {
        let (decay, rest): (Vec<_>, Vec<_>) = self
            .vars
            .iter()
            .partition(|(n, v)| v.rank() == 2 && n != "pos_embed.W_pos");
        let strip = |g: Vec<&(String, Var)>| g.into_iter().map(|(_, v)| v.clone()).collect();
        (strip(decay), strip(rest))
    }

    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.vars.iter().map(|(_, v)| v)
    }

    pub fn count(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }
}
