//! `patchbench sweep`: a headless patching sweep, printed as JSON, CSV or a
//! text heatmap. Progress goes to stderr, and only when it is a terminal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use patchbench::data::report::{attach_csv, attach_json};
use patchbench::data::stats::{DEFAULT_RESAMPLES, MAX_RESAMPLES};
use patchbench::data::{sweep_stats, Dataset, StatsOptions, SweepStats};
use patchbench::model::LoadedModel;
use patchbench::patching::output::{json_text, SweepReport, TokenList};
use patchbench::patching::part::{DatasetNote, Shard};
use patchbench::patching::plan::PositionLabels;
use patchbench::patching::sharded::PartControl;
use patchbench::patching::{
    prepare_pairs, run_sweep_with, Corruption, Direction, EngineOptions, Method, PreparedPair,
    PromptPair, SweepResult, SweepSpec, Target, MAX_SAMPLES, METRICS,
};
use patchbench::session::time::rfc3339;
use std::time::SystemTime;

use super::bounds::{count, positive_finite, MAX_BATCH_MEM_MIB, MAX_POSITION, MAX_WINDOW};
use super::dataset::{load_for, LoadedDataset};
use super::output::{refuse_clobber, write_output};
use super::progress::ProgressLine;
use super::{BosArgs, ModelArgs};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum SweepFormat {
    Json,
    Csv,
    Table,
}

impl SweepFormat {
    /// The file extension of the format, for suggested output names.
    pub fn extension(self) -> &'static str {
        match self {
            SweepFormat::Json => "json",
            SweepFormat::Csv => "csv",
            SweepFormat::Table => "txt",
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum CorruptionKind {
    Prompt,
    Gaussian,
    Zero,
    Mean,
}

/// The sweep definition shared by `sweep` and `bench sweep`.
#[derive(Args, Debug, Clone)]
pub struct SweepArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The clean prompt (the behaviour under study).
    #[arg(long)]
    pub clean: Option<String>,
    /// The corrupted prompt (same token length); optional for gaussian/zero/mean.
    #[arg(long)]
    pub corrupted: Option<String>,
    /// The clean run's answer, one token (e.g. " Paris").
    #[arg(long)]
    pub answer: Option<String>,
    /// The competing answer, one token (e.g. " Rome").
    #[arg(long)]
    pub wrong: Option<String>,
    /// What to patch (resid_pre, head_out, trace_mlp, ...).
    #[arg(long, value_parser = parse_target)]
    pub target: Option<Target>,
    #[arg(long, value_enum, default_value = "denoise")]
    pub direction: DirectionArg,
    #[arg(long, value_enum, default_value = "prompt")]
    pub corruption: CorruptionKind,
    /// Token positions to corrupt (gaussian/zero/mean), e.g. 1,2; default: where the prompts differ.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true,
          value_parser = count::<0, MAX_POSITION>)]
    pub noise_positions: Vec<usize>,
    /// Gaussian noise std (default: 3 x the std of the embedding matrix).
    #[arg(long, allow_negative_numbers = true, value_parser = positive_finite)]
    pub noise_scale: Option<f32>,
    /// Gaussian noise samples averaged per cell.
    #[arg(long, default_value_t = 10, allow_negative_numbers = true,
          value_parser = count::<1, MAX_SAMPLES>)]
    pub samples: usize,
    /// Seed of the Gaussian noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Layers restored together by trace_mlp / trace_attn.
    #[arg(long, default_value_t = 10, allow_negative_numbers = true,
          value_parser = count::<1, MAX_WINDOW>)]
    pub window: usize,
    #[command(flatten)]
    pub bos: BosArgs,
    /// Memory budget for one batch of patched runs, in MiB.
    #[arg(long, default_value_t = 1024, allow_negative_numbers = true,
          value_parser = count::<1, MAX_BATCH_MEM_MIB>)]
    pub max_batch_mem: usize,
    /// A dataset of prompt pairs (JSONL or CSV; see README) instead of
    /// --clean/--corrupted/--answer/--wrong.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["clean", "corrupted", "answer", "wrong"])]
    pub dataset: Option<PathBuf>,
    /// Bootstrap resamples of the per-cell intervals (with --dataset).
    #[arg(long, default_value_t = DEFAULT_RESAMPLES, allow_negative_numbers = true,
          value_parser = count::<1, MAX_RESAMPLES>)]
    pub resamples: usize,
    /// Seed of the bootstrap resamples.
    #[arg(long, default_value_t = 0)]
    pub stats_seed: u64,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum DirectionArg {
    Denoise,
    Noise,
}

fn parse_target(s: &str) -> Result<Target, String> {
    s.parse()
}

impl SweepArgs {
    /// The arguments a sweep without `--session` cannot do without.
    fn check_required(&self) -> Result<()> {
        let pair = self.dataset.is_none();
        let missing: Vec<&str> = [
            (
                "--clean TEXT (or --dataset FILE)",
                pair && self.clean.is_none(),
            ),
            ("--answer TOKEN", pair && self.answer.is_none()),
            ("--wrong TOKEN", pair && self.wrong.is_none()),
            ("--target NAME", self.target.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, absent)| absent.then_some(name))
        .collect();
        if !missing.is_empty() {
            anyhow::bail!(
                "missing {}: a sweep needs a prompt pair, its answers and a target \
                 (or run a session's sweeps with `patchbench sweep --session FILE`)",
                missing.join(", ")
            );
        }
        Ok(())
    }

    /// The sweep spec; `--target` has been checked by [`SweepArgs::prepare`].
    pub fn spec(&self) -> SweepSpec {
        let positions = self.noise_positions.clone();
        SweepSpec {
            target: self.target.unwrap_or(Target::ResidPre),
            direction: match self.direction {
                DirectionArg::Denoise => Direction::Denoise,
                DirectionArg::Noise => Direction::Noise,
            },
            corruption: match self.corruption {
                CorruptionKind::Prompt => Corruption::Prompt,
                CorruptionKind::Gaussian => Corruption::Gaussian {
                    positions,
                    scale: self.noise_scale,
                    samples: self.samples,
                    seed: self.seed,
                },
                CorruptionKind::Zero => Corruption::Zero { positions },
                CorruptionKind::Mean => Corruption::Mean { positions },
            },
            window: self.window,
        }
    }

    /// The files this sweep reads (a model given as a path), which its
    /// output must not overwrite.
    pub fn input_files(&self) -> Vec<&Path> {
        let model = Path::new(&self.model.model);
        let mut v = vec![];
        if model.is_file() {
            v.push(model);
        }
        if let Some(d) = &self.dataset {
            v.push(d.as_path());
        }
        v
    }

    pub fn pair(&self) -> PromptPair {
        PromptPair {
            clean: self.clean.clone().unwrap_or_default(),
            corrupted: self.corrupted.clone(),
            answer: self.answer.clone().unwrap_or_default(),
            wrong: self.wrong.clone().unwrap_or_default(),
        }
    }

    pub fn stats_options(&self) -> StatsOptions {
        StatsOptions {
            resamples: self.resamples,
            seed: self.stats_seed,
        }
    }

    pub fn engine(&self, method: Method) -> EngineOptions {
        EngineOptions {
            method,
            max_batch_mem: self.max_batch_mem << 20,
            ..Default::default()
        }
    }

    /// Loads the model and tokenises the pair (or the dataset's pairs),
    /// with clear errors for both.
    pub fn prepare(&self) -> Result<(LoadedModel, Vec<PreparedPair>)> {
        let (m, d) = self.prepare_inputs()?;
        Ok((m, d.pairs))
    }

    /// Like [`SweepArgs::prepare`], keeping the dataset and its position labels.
    pub fn prepare_inputs(&self) -> Result<(LoadedModel, LoadedDataset)> {
        self.check_required()?;
        if let Some(path) = &self.dataset {
            self.spec().validate()?;
            let m = self.model.load()?;
            self.spec().check_model(&m.model.cfg)?;
            let d = load_for(path, &m, self.bos.choice())?;
            return Ok((m, d));
        }
        let (m, pairs) = self.prepare_pair()?;
        let dataset = Dataset::from_pairs(vec![]);
        Ok((
            m,
            LoadedDataset {
                dataset,
                pairs,
                labels: None,
            },
        ))
    }

    fn prepare_pair(&self) -> Result<(LoadedModel, Vec<PreparedPair>)> {
        if self.corruption == CorruptionKind::Prompt && self.corrupted.is_none() {
            anyhow::bail!("--corruption prompt needs --corrupted TEXT (or choose --corruption gaussian|zero|mean)");
        }
        self.spec().validate()?;
        let m = self.model.load()?;
        self.spec().check_model(&m.model.cfg)?;
        let pairs = prepare_pairs(&m.tokenizer, &[self.pair()], self.bos.choice())?;
        Ok((m, pairs))
    }
}

#[derive(Args, Debug)]
pub struct SweepCmd {
    #[command(flatten)]
    pub sweep: SweepArgs,
    #[arg(long, value_enum, default_value = "json")]
    pub format: SweepFormat,
    /// Metric shown by --format table.
    #[arg(long, default_value = "logit_diff_normalized", value_parser = parse_metric)]
    pub metric: String,
    /// Write the output to this file instead of stdout.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// exact patching, or attribution (a first-order estimate of logit_diff
    /// from one backward pass: fast triage, approximate).
    #[arg(long, value_enum, default_value = "exact")]
    pub method: MethodArg,
    #[command(flatten)]
    pub session: SessionSweepArgs,
    /// Compute only part K of N of the sweep (cut by cost) and write a part
    /// file; `patchbench merge` joins the N parts into the full result.
    /// With --session: a part of the session's sweep, merged with `patchbench
    /// merge PARTS --into FILE`.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
}

fn parse_shard(s: &str) -> Result<Shard, String> {
    s.parse()
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum MethodArg {
    Exact,
    Attribution,
}

fn parse_metric(s: &str) -> Result<String, String> {
    if METRICS.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "unknown metric {s:?}; metrics are: {}",
            METRICS.join(", ")
        ))
    }
}

/// `patchbench sweep`'s session mode.
#[derive(Args, Debug)]
pub struct SessionSweepArgs {
    /// Run the sweeps of this session file that have no result yet; the
    /// session names the model and the prompts.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "clean", "corrupted", "answer", "wrong", "target", "direction", "corruption",
        "noise_positions", "noise_scale", "samples", "seed", "window", "model",
        "prepend_bos", "no_prepend_bos", "method", "dataset",
    ])]
    pub session: Option<PathBuf>,
    /// With --session: save each result back into FILE (atomically) as it finishes.
    #[arg(long, requires = "session")]
    pub write: bool,
    /// With --session: also rerun stored results that are stale (another
    /// model, or spec/prompts edited since).
    #[arg(long, requires = "session")]
    pub rerun_stale: bool,
    /// With --session: run only sweep N (0-based, as `patchbench check`
    /// lists them); a sharded session run (--shard) needs it when several
    /// sweeps are due.
    #[arg(long, value_name = "N", requires = "session")]
    pub sweep: Option<usize>,
}

impl SessionSweepArgs {
    pub fn check_unused(&self) -> Result<()> {
        if self.write || self.rerun_stale {
            bail!("--write and --rerun-stale apply to --session FILE");
        }
        Ok(())
    }
}

/// Builds the report for one sweep over a single prompt pair.
pub fn report<'a>(
    m: &'a LoadedModel,
    spec: &'a SweepSpec,
    pair: &PreparedPair,
    result: &'a SweepResult,
) -> SweepReport<'a> {
    let tl = |ids: &[u32]| TokenList {
        ids: ids.to_vec(),
        strings: m.tokenizer.token_strs(ids),
    };
    SweepReport {
        model: &m.source,
        spec,
        clean: tl(&pair.clean),
        corrupted: tl(&pair.corrupted),
        answer: (pair.answer, m.tokenizer.token_str(pair.answer)),
        wrong: (pair.wrong, m.tokenizer.token_str(pair.wrong)),
        result,
        load_ms: m.load_ms,
    }
}

/// `patchbench sweep` without `--session`: one sweep over one prompt pair,
/// or one shard of it (`--shard K/N`, a part file). With `--out` the run
/// keeps a checkpoint beside the output and resumes from it when rerun.
pub fn sweep_pair(cmd: &SweepCmd) -> Result<()> {
    cmd.session.check_unused()?;
    let args = &cmd.sweep;
    if let Some(out) = cmd.out.as_deref() {
        // Refused before the model loads, not after the sweep ran.
        refuse_clobber(out, &args.input_files(), cmd.format.extension())?;
    }
    if cmd.shard.is_some() && cmd.format != SweepFormat::Json {
        bail!(
            "--shard writes a part file, which is JSON; drop --format (then `patchbench merge \
             PARTS... --format csv` writes the merged CSV)"
        );
    }
    let (m, d) = args.prepare_inputs()?;
    let pairs = &d.pairs;
    let spec = args.spec();
    let method = match cmd.method {
        MethodArg::Exact => Method::Fast,
        MethodArg::Attribution => Method::Attribution,
    };
    if cmd.shard.is_some() && method == Method::Attribution {
        bail!("--shard splits exact patching; attribution is one backward pass per run and runs whole");
    }
    let engine = args.engine(method);
    let started = rfc3339(SystemTime::now());
    let checkpoint = cmd.out.as_deref().and_then(checkpoint_path);
    let shard = cmd.shard.unwrap_or(Shard { k: 1, n: 1 });
    let note = args
        .dataset
        .as_ref()
        .map(|_| dataset_note(&d.dataset, args));
    let mut control = PartControl::new(&m, pairs, &spec, &engine, shard, checkpoint)
        .with_labels(d.labels.as_ref());
    if let Some(n) = &note {
        control = control.with_dataset_note(n.clone());
    }
    let result = run_with_control(&m, pairs, d.labels.as_ref(), (&spec, &engine), &mut control)?;
    let text = if cmd.shard.is_some() {
        let part = control.part(&result, started, host_name());
        json_text(&serde_json::to_value(&part)?) + "\n"
    } else {
        let rep = report(&m, &spec, &pairs[0], &result);
        let color = cmd.out.is_none() && std::io::stdout().is_terminal();
        render(&rep, note.as_ref(), cmd.format, &cmd.metric, color)
    };
    write_output(
        cmd.out.as_deref(),
        &text,
        &args.input_files(),
        cmd.format.extension(),
    )?;
    Ok(control.finish()?)
}

/// Runs a sweep (or a shard of it) under `control` with a progress line,
/// and says how much of it a checkpoint held (`sweep` and `sweep --session
/// --shard` both run through here).
pub fn run_with_control(
    m: &LoadedModel,
    pairs: &[PreparedPair],
    labels: Option<&PositionLabels>,
    (spec, engine): (&SweepSpec, &EngineOptions),
    control: &mut PartControl<'_>,
) -> Result<SweepResult> {
    let mut bar = ProgressLine::new();
    let result = run_sweep_with(
        &m.model,
        pairs,
        labels,
        spec,
        engine,
        control,
        None,
        &mut |p| bar.update(p),
    );
    bar.finish();
    let result = result?;
    if control.resumed > 0 || control.dropped > 0 {
        note!(
            "resumed: {} finished batches read from the checkpoint ({} damaged records dropped)",
            control.resumed,
            control.dropped
        );
    }
    Ok(result)
}

/// A sweep report in the chosen format, with a dataset sweep's per-cell
/// statistics and dataset object when `dataset` is given; `color`: colour
/// the table (unless NO_COLOR is set). `sweep` and `merge` both print
/// through here, so a merge prints what the unsharded run prints.
pub fn render(
    rep: &SweepReport,
    dataset: Option<&DatasetNote>,
    format: SweepFormat,
    metric: &str,
    color: bool,
) -> String {
    let stats = dataset.map(|n| {
        let opts = StatsOptions {
            resamples: n.resamples,
            seed: n.stats_seed,
        };
        sweep_stats(rep.result, &opts)
    });
    match format {
        SweepFormat::Json => {
            let mut v = rep.to_json();
            if let (Some(s), Some(n)) = (&stats, dataset) {
                attach_json(&mut v, rep.result, s);
                attach_dataset(&mut v, n);
            }
            json_text(&v) + "\n"
        }
        SweepFormat::Csv => match &stats {
            Some(s) => attach_csv(&rep.to_csv(), s),
            None => rep.to_csv(),
        },
        SweepFormat::Table => {
            let color = color && std::env::var_os("NO_COLOR").is_none();
            let mut t = rep.to_table(metric, color);
            if let Some(s) = &stats {
                t.push_str(&stats_note(s, metric));
            }
            t
        }
    }
}

/// What a dataset sweep's output says about its dataset and statistics.
pub fn dataset_note(d: &Dataset, args: &SweepArgs) -> DatasetNote {
    let stats = args.stats_options();
    DatasetNote {
        path: d.path.as_ref().map(|p| p.display().to_string()),
        digest: d.digest.clone(),
        ids: d.pairs.iter().map(|p| p.id.clone()).collect(),
        resamples: stats.resamples,
        stats_seed: stats.seed,
    }
}

/// The checkpoint beside an output file (`OUT.ckpt`); none for a device or
/// pipe, which has no "beside".
pub fn checkpoint_path(out: &Path) -> Option<PathBuf> {
    let regular = match std::fs::metadata(out) {
        Ok(m) => m.is_file(),
        Err(_) => true,
    };
    let mut name = out.file_name()?.to_os_string();
    name.push(".ckpt");
    regular.then(|| out.with_file_name(name))
}

/// This machine's name, for part manifests (empty when unknown).
pub fn host_name() -> String {
    patchbench::util::fs::read_text_capped(
        Path::new("/proc/sys/kernel/hostname"),
        4096,
        "host name",
    )
    .map(|s| s.trim().to_string())
    .unwrap_or_default()
}

/// The dataset a sweep ran on: path, digest and pair ids.
pub fn attach_dataset(v: &mut serde_json::Value, d: &DatasetNote) {
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "dataset".into(),
            serde_json::json!({
                "path": d.path,
                "digest": d.digest,
                "ids": d.ids,
            }),
        );
    }
}

/// Under a table: how many cells' intervals cross zero, flagged pairs.
fn stats_note(s: &SweepStats, metric: &str) -> String {
    let Some(m) = s.metrics.get(metric) else {
        return String::new();
    };
    let finite = m.ci_low.iter().filter(|x| x.is_finite()).count();
    let cross = m
        .ci_low
        .iter()
        .zip(&m.ci_high)
        .filter(|(l, h)| l.is_finite() && **l <= 0.0 && **h >= 0.0)
        .count();
    let mut t = format!(
        "{} pairs; {cross} of {finite} cells have a 95% interval ({} resamples, seed {}) that crosses 0\n",
        s.n_pairs, s.options.resamples, s.options.seed
    );
    if !s.flagged.is_empty() {
        t.push_str(&format!(
            "{} pairs whose clean run does not prefer the answer: {:?}\n",
            s.flagged.len(),
            &s.flagged[..s.flagged.len().min(20)]
        ));
    }
    t
}
