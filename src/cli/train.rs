//! `patchbench train-demo`: retrain the embedded demo model from its seed.
//!
//! Trains (see `patchbench::demo::train`), saves a GPT-2 directory, loads it
//! back through the ordinary model loader and reports the held-out
//! accuracies. Copy the three files into `assets/demo/` and rebuild to ship
//! new weights; `scripts/train-demo.sh` does exactly that and runs the tests.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use patchbench::demo::corpus::Mix;
use patchbench::demo::export::{canonical_to_gpt2, save_hf_dir};
use patchbench::demo::{circuits, eval, tokenizer, train};
use patchbench::model::loaded::{LoadOptions, LoadedModel};

#[derive(Args, Debug)]
pub struct TrainDemoArgs {
    /// Directory to write config.json, model.safetensors and tokenizer.json into.
    #[arg(long)]
    pub out: PathBuf,
    /// Optimiser steps.
    #[arg(long, default_value_t = train::TrainOptions::default().steps)]
    pub steps: usize,
    /// Documents per step.
    #[arg(long, default_value_t = train::TrainOptions::default().batch)]
    pub batch: usize,
    /// Seed of the corpus and the initial weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the loss every this many steps.
    #[arg(long, default_value_t = 50)]
    pub log_every: usize,
    /// Measure the held-out accuracies every this many steps (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub eval_every: usize,
    /// Peak learning rate of the warm-up / cosine schedule.
    #[arg(long, default_value_t = train::TrainOptions::default().peak_lr)]
    pub peak_lr: f64,
    /// Fraction of documents that are IOI sentences.
    #[arg(long, default_value_t = Mix::default().ioi)]
    pub ioi_share: f64,
    /// Fraction of documents that are fact statements (the rest: induction).
    #[arg(long, default_value_t = Mix::default().facts)]
    pub fact_share: f64,
    /// At most this many random words before an induction span.
    #[arg(long, default_value_t = Mix::default().max_prefix)]
    pub induction_prefix: usize,
    /// At most this many random words between the two copies of a span.
    #[arg(long, default_value_t = Mix::default().max_gap)]
    pub induction_gap: usize,
    /// AdamW weight decay on the weight matrices.
    #[arg(long, default_value_t = train::TrainOptions::default().weight_decay)]
    pub weight_decay: f64,
    /// Batches drawn at once and grouped by document length (1: none).
    #[arg(long, default_value_t = train::TrainOptions::default().pool)]
    pub pool: usize,
    /// Pack documents end to end into full 64-token rows (`false`: one
    /// document per row, from position 0).
    #[arg(long, default_value_t = train::TrainOptions::default().pack, action = clap::ArgAction::Set)]
    pub pack: bool,
    /// Shortest induction span, in words.
    #[arg(long, default_value_t = Mix::default().span.0)]
    pub span_min: usize,
    /// Longest induction span, in words.
    #[arg(long, default_value_t = Mix::default().span.1)]
    pub span_max: usize,
}

pub fn train_demo(args: &TrainDemoArgs) -> Result<()> {
    // One thread: faster for a model this small, and it fixes the order of
    // every floating-point sum, so a seed reproduces the weights exactly.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    let defaults = train::TrainOptions::default();
    let opts = train::TrainOptions {
        steps: args.steps,
        seed: args.seed,
        peak_lr: args.peak_lr,
        batch: args.batch.max(1),
        pool: args.pool,
        pack: args.pack,
        weight_decay: args.weight_decay,
        mix: Mix {
            ioi: args.ioi_share,
            facts: args.fact_share,
            max_prefix: args.induction_prefix,
            max_gap: args.induction_gap,
            span: (args.span_min, args.span_max),
        },
        ..defaults
    };
    anyhow::ensure!(
        1 <= opts.mix.span.0 && opts.mix.span.0 <= opts.mix.span.1,
        "--span-min must be at least 1 and at most --span-max"
    );
    anyhow::ensure!(
        opts.mix.max_doc_words() <= 64,
        "induction documents of up to {} words do not fit the model's 64-token context",
        opts.mix.max_doc_words()
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&(opts.mix.ioi + opts.mix.facts))
            && opts.mix.ioi >= 0.0
            && opts.mix.facts >= 0.0,
        "--ioi-share and --fact-share must be non-negative and add up to at most 1"
    );
    eprintln!(
        "training the demo model: {} steps of {} documents, seed {}",
        opts.steps, opts.batch, opts.seed
    );
    let every = args.log_every.max(1);
    let tok = tokenizer::build_tokenizer()?;
    let mut window = Vec::new();
    let trained = train::train(&opts, &mut |s, snapshot| {
        if args.eval_every > 0 && (s.step + 1) % args.eval_every == 0 {
            let report = snapshot.transformer().and_then(|m| {
                let b = eval::behaviour(&m, &tok, 1)?;
                let (ind, prev) = circuits::induction_scores(&m, &tok, 50, 1)?;
                Ok((b, ind.best(), prev.best()))
            });
            match report {
                Ok((b, ind, prev)) => eprintln!(
                    "step {:>5}  held-out {b}; best induction head L{}H{} {:.2}, previous-token L{}H{} {:.2}",
                    s.step + 1,
                    ind.0,
                    ind.1,
                    ind.2,
                    prev.0,
                    prev.1,
                    prev.2
                ),
                Err(e) => eprintln!("step {:>5}  evaluation failed: {e}", s.step + 1),
            }
        }
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
    let loaded = LoadedModel::load(&dir, &LoadOptions::cpu())
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
    println!("held-out   {b}");
    println!("fingerprint {}", loaded.fingerprint);
    Ok(())
}
