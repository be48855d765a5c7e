//! Command-line interface: argument definitions and the headless commands.
//!
//! `main.rs` parses [`Cli`] and dispatches here; everything printed by these
//! commands goes to stdout (results) or stderr (progress and errors).

/// `eprintln!` for messages that may quote files or arguments: control
/// characters escaped, length clipped (`util::text::for_terminal`).
macro_rules! note {
    ($($arg:tt)*) => {
        eprintln!("{}", patchbench::util::text::for_terminal(&format!($($arg)*)))
    };
}

/// `println!` for report lines that may quote files, made terminal-safe.
macro_rules! report {
    ($($arg:tt)*) => {
        println!("{}", patchbench::util::text::for_terminal(&format!($($arg)*)))
    };
}

pub mod bench;
pub mod bench_circuit;
pub mod bench_dataset;
pub mod bench_load;
pub mod bounds;
pub mod check_device;
pub mod circuit;
pub mod circuit_path;
pub mod circuit_shard;
pub mod compare;
pub mod dataset;
pub mod merge;
pub mod merge_circuit;
pub mod merge_circuit_into;
pub mod merge_into;
pub mod output;
pub mod progress;
pub mod session;
pub mod session_shard;
pub mod session_sweep;
pub mod sweep;
pub mod train;
pub mod tui;

use std::io::Write;

use anyhow::{bail, Context, Result};
use candle_core::{Tensor, D};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

use patchbench::model::device::{cuda_fallback_reason, parse_device};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::{hf, random, ForwardOptions, HookSpec, LoadedModel, WeightsMode};

#[derive(Parser, Debug)]
#[command(
    name = "patchbench",
    version,
    about = "A terminal workbench for activation patching on transformer language models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a subcommand: the interactive workbench.
    #[command(flatten)]
    pub tui: tui::TuiArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Resume a saved session in the workbench.
    Open(tui::OpenArgs),
    /// Print the next-token distribution for a prompt.
    Run(RunArgs),
    /// List the model sources available on this machine.
    Models,
    /// Run a patching sweep headless and print the result.
    Sweep(sweep::SweepCmd),
    /// Find a circuit: score every edge (EAP, EAP-IG or exact edge
    /// patching), check the top edges exactly, measure faithfulness.
    Circuit(circuit::CircuitCmd),
    /// Join the part files of a sharded sweep (`sweep --shard K/N`) into its result.
    Merge(merge::MergeArgs),
    /// Measure performance.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Retrain the embedded demo model from its seed and save it.
    TrainDemo(train::TrainDemoArgs),
    /// Validate session files and report every problem (non-zero exit if any).
    Check(session::CheckArgs),
    /// Export a session's stored sweep result as CSV, JSON or an SVG heatmap.
    Export(session::ExportArgs),
    /// Prompt-pair datasets.
    #[command(subcommand)]
    Dataset(dataset::DatasetCommand),
    /// A paired permutation test between two sweeps' per-pair values.
    Compare(compare::CompareArgs),
    /// Compare forward passes and sweeps on a device (CUDA) against the CPU;
    /// non-zero exit on any mismatch.
    CheckDevice(check_device::CheckDeviceArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model source: demo, random:<preset>[@seed], a model directory, a .gguf file or a hub id.
    #[arg(long, short = 'm', default_value = "demo")]
    pub model: String,
    /// cpu, cuda, cuda:N or auto (CUDA when built with it and present).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// How weights are held: f32 (default), bf16 or f16 (half the memory;
    /// metrics still accumulate in f32), or quantized (a GGUF file's
    /// matrices kept quantized, `random:` presets quantized to Q4_0;
    /// exact patching only, no attribution). `--dtype` is an alias.
    #[arg(long, alias = "dtype", default_value = "f32")]
    pub weights: String,
}

impl ModelArgs {
    pub fn load(&self) -> Result<LoadedModel> {
        let opts = LoadOptions {
            device: device_from_arg(&self.device)?,
            weights: self.weights.parse::<WeightsMode>()?,
        };
        LoadedModel::load(&self.model, &opts)
            .with_context(|| format!("loading model {:?}", self.model))
    }
}

/// Parses `--device`; when `auto` falls back to the CPU in a CUDA build, says
/// why on stderr (a CPU-only build says nothing: the CPU is all it has).
pub fn device_from_arg(arg: &str) -> Result<candle_core::Device> {
    let device = parse_device(arg)?;
    if device.is_cpu() && !arg.trim().eq_ignore_ascii_case("cpu") {
        if let Some(reason) = cuda_fallback_reason() {
            note!("note: not using CUDA: {reason}; running on the CPU");
        }
    }
    Ok(device)
}

#[derive(Args, Debug, Clone, Copy)]
pub struct BosArgs {
    /// Prepend the BOS token (default: whatever the model's tokenizer does).
    #[arg(long, conflicts_with = "no_prepend_bos")]
    pub prepend_bos: bool,
    /// Never prepend the BOS token.
    #[arg(long)]
    pub no_prepend_bos: bool,
}

impl BosArgs {
    pub fn choice(&self) -> Option<bool> {
        match (self.prepend_bos, self.no_prepend_bos) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum TableOrJson {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt to complete.
    #[arg(long, short = 'p')]
    pub prompt: String,
    /// How many of the most likely next tokens to print.
    #[arg(long, short = 'k', default_value_t = 10, allow_negative_numbers = true,
          value_parser = bounds::count::<1, { bounds::MAX_TOP_K }>)]
    pub top_k: usize,
    #[arg(long, value_enum, default_value = "table")]
    pub format: TableOrJson,
    #[command(flatten)]
    pub bos: BosArgs,
}

#[derive(Serialize)]
struct TopToken {
    token: String,
    id: u32,
    logit: f32,
    prob: f32,
}

pub fn run(args: &RunArgs) -> Result<()> {
    let m = args.model.load()?;
    let ids = m.tokenizer.encode(&args.prompt, args.bos.choice())?;
    if ids.is_empty() {
        bail!(
            "the prompt {:?} tokenises to nothing; give some text",
            args.prompt
        );
    }
    let tokens = Tensor::new(ids.as_slice(), m.model.device())?.unsqueeze(0)?;
    let out = m.model.forward(
        Some(&tokens),
        &HookSpec::new(),
        &ForwardOptions {
            last_pos_only: true,
            ..Default::default()
        },
    )?;
    let logits = out
        .logits
        .context("forward returned no logits")?
        .squeeze(0)?;
    let probs = candle_nn::ops::softmax(&logits, D::Minus1)?;
    let logits: Vec<f32> = logits.to_dtype(candle_core::DType::F32)?.to_vec1()?;
    let probs: Vec<f32> = probs.to_dtype(candle_core::DType::F32)?.to_vec1()?;
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let top: Vec<TopToken> = order
        .iter()
        .take(args.top_k)
        .map(|&i| TopToken {
            token: m.tokenizer.token_str(i as u32),
            id: i as u32,
            logit: logits[i],
            prob: probs[i],
        })
        .collect();
    let mut out = std::io::stdout().lock();
    match args.format {
        TableOrJson::Json => {
            let v = serde_json::json!({
                "model": m.source,
                "prompt": args.prompt,
                "tokens": { "ids": ids, "strings": m.tokenizer.token_strs(&ids) },
                "top": top,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        }
        TableOrJson::Table => {
            writeln!(out, "model {}  ({} tokens)", m.source, ids.len())?;
            writeln!(
                out,
                "{:>4}  {:<20} {:>8} {:>10} {:>8}",
                "rank", "token", "id", "logit", "prob"
            )?;
            for (r, t) in top.iter().enumerate() {
                writeln!(
                    out,
                    "{:>4}  {:<20} {:>8} {:>10.4} {:>8.4}",
                    r + 1,
                    format!("{:?}", t.token),
                    t.id,
                    t.logit,
                    t.prob
                )?;
            }
        }
    }
    Ok(())
}

/// Parses the command line. Clap quotes a bad value as given, so its
/// messages go through `util::text` like every other: an argument holding an
/// escape sequence is shown escaped, not sent to the terminal.
pub fn parse_args() -> Cli {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(args) => args,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            e.exit()
        }
        Err(e) => {
            let text = e.render().to_string();
            eprint!("{}", patchbench::util::text::for_terminal(&text));
            std::process::exit(e.exit_code());
        }
    }
}

/// `patchbench sweep`: a session's sweeps with `--session FILE`, otherwise
/// one sweep from the command line. Dispatched here so that `sweep.rs`
/// (the arguments) and `session_sweep.rs` (which uses them) do not import
/// each other.
pub fn sweep_command(cmd: &sweep::SweepCmd) -> Result<()> {
    if cmd.session.session.is_some() {
        session_sweep::sweep_session(cmd)
    } else {
        sweep::sweep_pair(cmd)
    }
}

pub fn models() -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "Built in:")?;
    writeln!(out, "  demo                     the embedded demo model")?;
    for (name, about) in random::PRESETS {
        writeln!(out, "  random:{name:<18} {about}")?;
    }
    let cache = hf::hub_cache_dir();
    let cached = hf::cached_models(&cache);
    writeln!(out, "\nHugging Face cache ({}):", cache.display())?;
    if cached.is_empty() {
        writeln!(out, "  (none)")?;
    }
    for (id, snap) in cached {
        writeln!(out, "  {id:<24} {}", snap.display())?;
    }
    writeln!(out, "\nAlso accepted: a model directory (config.json + *.safetensors + tokenizer.json) or a .gguf file.")?;
    Ok(())
}
