//! `patchbench bench load`: what loading a model costs in each `--weights`
//! mode: wall time, resident memory after loading and its peak, and the
//! next-token prediction on a short prompt (so a mode that loads but
//! computes nonsense shows). One mode per process: peak resident memory
//! (`VmHWM`) never goes down, so comparing modes takes one run each
//! (scripts/bench-weights.sh runs them all).

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Tensor};
use clap::Args;

use patchbench::model::device::device_name;
use patchbench::model::{ForwardOptions, HookSpec};

use super::ModelArgs;

#[derive(Args, Debug)]
pub struct BenchLoadArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A prompt whose next token is printed after loading.
    #[arg(long, default_value = "The Eiffel Tower is located in the city of")]
    pub prompt: String,
}

/// `VmRSS` and `VmHWM` of this process in MiB (Linux).
pub fn rss_mib() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |key: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

pub fn bench_load(args: &BenchLoadArgs) -> Result<()> {
    let start = Instant::now();
    let m = args.model.load()?;
    let load_s = start.elapsed().as_secs_f64();
    let after_load = rss_mib();
    let ids = m.tokenizer.encode(&args.prompt, None)?;
    if ids.is_empty() {
        bail!("the prompt {:?} tokenises to nothing", args.prompt);
    }
    let tokens = Tensor::new(ids.as_slice(), m.model.device())?.unsqueeze(0)?;
    let t = Instant::now();
    let logits = m
        .model
        .forward(
            Some(&tokens),
            &HookSpec::new(),
            &ForwardOptions {
                last_pos_only: true,
                ..Default::default()
            },
        )?
        .logits
        .context("no logits")?
        .squeeze(0)?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    let forward_ms = t.elapsed().as_secs_f64() * 1e3;
    let top = (0..logits.len())
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .context("empty logits")?;
    let cfg = m.config();
    report!(
        "model      {} ({} layers, d_model {}, {:.1}M params)",
        m.source,
        cfg.n_layers,
        cfg.d_model,
        cfg.n_params() as f64 / 1e6
    );
    report!(
        "weights    {}{} on {}",
        args.model.weights,
        if m.model.is_quantized() {
            " (matrices quantized)"
        } else {
            ""
        },
        device_name(m.model.device())
    );
    report!("load       {:.2} s", load_s);
    if let Some((rss, peak)) = after_load {
        report!("rss        {rss:.0} MiB after load, peak {peak:.0} MiB during load");
    }
    report!(
        "forward    {} tokens in {forward_ms:.0} ms, top-1 {:?} (logit {:.3})",
        ids.len(),
        m.tokenizer.token_str(top as u32),
        logits[top]
    );
    if let Some((_, peak)) = rss_mib() {
        report!("peak rss   {peak:.0} MiB after the forward pass");
    }
    Ok(())
}
