//! `patchbench dataset gen`: seeded datasets written as ordinary JSONL
//! files; and loading a `--dataset` for a sweep (pairs tokenised, labels
//! aligned, errors naming the file and line).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use patchbench::data::gen::{generate, GenOptions, Style, Task};
use patchbench::data::{self, Dataset};
use patchbench::model::LoadedModel;
use patchbench::patching::{prepare_each, PositionLabels, PreparedPair};

use super::bounds::count;
use super::output::write_output;
use super::{BosArgs, ModelArgs};

#[derive(Subcommand, Debug)]
pub enum DatasetCommand {
    /// Generate a seeded dataset of prompt pairs for a model's tokenizer.
    Gen(GenArgs),
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum TaskArg {
    Ioi,
    Facts,
    Induction,
    GreaterThan,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum StyleArg {
    /// The demo model's vocabulary when the model is `demo`, else English.
    Auto,
    Demo,
    English,
}

/// The most pairs one `dataset gen` writes.
const MAX_GEN: usize = 1_000_000;

#[derive(Args, Debug)]
pub struct GenArgs {
    /// ioi, facts, induction or greater-than.
    #[arg(value_enum)]
    pub task: TaskArg,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Pairs to keep.
    #[arg(long, short = 'n', default_value_t = 100, allow_negative_numbers = true,
          value_parser = count::<1, MAX_GEN>)]
    pub n: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep only pairs of exactly this many tokens (so sweeps need no labels).
    #[arg(long, allow_negative_numbers = true, value_parser = count::<1, 1_000_000>)]
    pub tokens: Option<usize>,
    /// Word lists and templates.
    #[arg(long, value_enum, default_value = "auto")]
    pub style: StyleArg,
    #[command(flatten)]
    pub bos: BosArgs,
    /// Write the dataset here (JSONL) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn gen(args: &GenArgs) -> Result<()> {
    let m = args.model.load()?;
    let style = match args.style {
        StyleArg::Demo => Style::Demo,
        StyleArg::English => Style::English,
        StyleArg::Auto if args.model.model == "demo" => Style::Demo,
        StyleArg::Auto => Style::English,
    };
    let task = match args.task {
        TaskArg::Ioi => Task::Ioi,
        TaskArg::Facts => Task::Facts,
        TaskArg::Induction => Task::Induction,
        TaskArg::GreaterThan => Task::GreaterThan,
    };
    let opts = GenOptions {
        task,
        style,
        n: args.n,
        seed: args.seed,
        prepend_bos: args.bos.choice(),
        tokens: args.tokens,
    };
    let g = generate(&m.tokenizer, &opts)
        .with_context(|| format!("generating {} pairs for {}", task.name(), m.source))?;
    write_output(args.out.as_deref(), &g.dataset.to_jsonl(), &[], "jsonl")?;
    let dropped: usize = g.dropped.values().sum();
    note!(
        "kept {} of {} candidate {} pairs for {}; dropped {dropped}",
        g.dataset.len(),
        g.candidates,
        task.name(),
        m.source
    );
    for (why, n) in &g.dropped {
        note!("  {n} {why}");
    }
    Ok(())
}

/// A dataset ready to sweep.
pub struct LoadedDataset {
    pub dataset: Dataset,
    pub pairs: Vec<PreparedPair>,
    pub labels: Option<PositionLabels>,
}

/// Loads `path` and tokenises its pairs for `m`; errors name the file and
/// the pair's line.
pub fn load_for(path: &Path, m: &LoadedModel, bos: Option<bool>) -> Result<LoadedDataset> {
    let dataset = data::load(path)?;
    prepare_dataset(dataset, m, bos)
}

/// Tokenises an already loaded dataset.
pub fn prepare_dataset(
    dataset: Dataset,
    m: &LoadedModel,
    bos: Option<bool>,
) -> Result<LoadedDataset> {
    let shown = dataset
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the dataset".into());
    let mut pairs = prepare_each(&m.tokenizer, &dataset.prompt_pairs(), bos).map_err(|e| {
        let at = e
            .index()
            .map(|i| {
                format!(
                    "{shown}: pair {} (line {})",
                    dataset.pairs[i].name(i),
                    dataset.line(i)
                )
            })
            .unwrap_or(shown.clone());
        anyhow::Error::new(e).context(at)
    })?;
    data::answers::attach(&dataset, &m.tokenizer, &mut pairs)?;
    let labels = data::align(&dataset, &pairs).with_context(|| shown.clone())?;
    Ok(LoadedDataset {
        dataset,
        pairs,
        labels,
    })
}
