//! `patchbench train-demo`: retrain the embedded demo model from its seed.
//!
//! Trains (see `patchbench::demo::train`), saves a GPT-2 directory, loads it
//! back through the ordinary model loader and reports the held-out
//! accuracies. Copy the three files into `assets/demo/` and rebuild to ship
//! new weights; `scripts/train-demo.sh` does exactly that and runs the tests.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use patchbench::demo::export::{canonical_to_gpt2, save_hf_dir};
use patchbench::demo::{eval, tokenizer, train};
use patchbench::model::loaded::{LoadOptions, LoadedModel};

#[derive(Args, Debug)]
pub struct TrainDemoArgs {
    /// Directory to write config.json, model.safetensors and tokenizer.json into.
    #[arg(long)]
    pub out: PathBuf,
    /// Optimiser steps (batch of 32 documents each).
    #[arg(long, default_value_t = train::TrainOptions::default().steps)]
    pub steps: usize,
    /// Seed of the corpus and the initial weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the loss every this many steps.
    #[arg(long, default_value_t = 50)]
    pub log_every: usize,
}

pub fn train_demo(args: &TrainDemoArgs) -> Result<()> {
    // One thread: faster for a model this small, and it fixes the order of
    // every floating-point sum, so a seed reproduces the weights exactly.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let opts = train::TrainOptions {
        steps: args.steps,
        seed: args.seed,
        ..Default::default()
    };
    eprintln!(
        "training the demo model: {} steps of {} documents, seed {}",
        opts.steps, opts.batch, opts.seed
    );
    let every = args.log_every.max(1);
    let mut window = Vec::new();
    let trained = train::train(&opts, &mut |s| {
        window.push(s.loss);
        if (s.step + 1) % every == 0 || s.step + 1 == opts.steps {
            let mean = window.iter().sum::<f32>() / window.len() as f32;
            eprintln!(
                "step {:>5}  loss {mean:.4}  lr {:.2e}  {:.0} s",
                s.step + 1,
                s.lr,
                s.seconds
            );
            window.clear();
        }
    })
    .context("training the demo model")?;

    let tensors = canonical_to_gpt2(trained.cfg.n_layers, &trained.params.snapshot()?)?;
    save_hf_dir(
        &args.out,
        &trained.config_json,
        &tensors,
        &tokenizer::tokenizer_json(),
    )
    .with_context(|| format!("saving the demo model to {}", args.out.display()))?;

    let dir = args.out.to_string_lossy().to_string();
    let loaded = LoadedModel::load(
        &dir,
        &LoadOptions {
            device: candle_core::Device::Cpu,
            dtype: candle_core::DType::F32,
        },
    )
    .with_context(|| format!("reloading the saved model from {dir}"))?;
    let b = eval::behaviour(&loaded.model, &loaded.tokenizer, 1)?;
    let tail = &trained.losses[trained.losses.len().saturating_sub(100)..];
    println!("saved      {}", args.out.display());
    println!(
        "trained    {} steps in {:.0} s",
        opts.steps, trained.seconds
    );
    println!(
        "final loss {:.4} (mean of the last {} steps)",
        tail.iter().sum::<f32>() / tail.len().max(1) as f32,
        tail.len()
    );
    println!(
        "held-out   IOI {:.1}%  facts {:.1}%  induction {:.1}%",
        b.ioi * 100.0,
        b.facts * 100.0,
        b.induction * 100.0
    );
    println!("fingerprint {}", loaded.fingerprint);
    Ok(())
}
