//! `patchbench circuit`: score every edge of the model's graph with one
//! method, check the top edges exactly, measure the faithfulness curve,
//! and print JSON, Graphviz DOT, CSV or a ranked table.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use patchbench::circuits::eap::IgOn;
use patchbench::circuits::output::CircuitReport;
use patchbench::circuits::part::DatasetNote;
use patchbench::circuits::positions::label_names;
use patchbench::circuits::{
    run_circuit, CircuitOptions, CircuitResult, Graph, LnMode, Method, PathOptions,
};
use patchbench::model::LoadedModel;
use patchbench::patching::metrics::lookup;
use patchbench::patching::output::{json_text, TokenList};
use patchbench::patching::part::Shard;
use patchbench::patching::{
    prepare_pairs, Corruption, Direction, PreparedPair, PromptPair, MAX_SAMPLES, METRICS,
};

use super::bounds::{count, positive_finite, MAX_POSITION};
use super::output::{refuse_clobber, write_output};
use super::sweep::{CorruptionKind, DirectionArg};
use super::{BosArgs, ModelArgs};

/// Largest `--top`, `--check-exact` and `--ig-steps`.
const MAX_EDGES_ARG: usize = 10_000_000;
const MAX_IG_STEPS: usize = 1024;

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum CircuitFormat {
    Json,
    Dot,
    Csv,
    Table,
    /// A layered drawing of the listed edges (no Graphviz needed).
    Svg,
}

impl CircuitFormat {
    pub fn extension(self) -> &'static str {
        match self {
            CircuitFormat::Json => "json",
            CircuitFormat::Dot => "dot",
            CircuitFormat::Csv => "csv",
            CircuitFormat::Table => "txt",
            CircuitFormat::Svg => "svg",
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum MethodChoice {
    /// Edge attribution patching: one forward per run, one backward.
    Eap,
    /// EAP with integrated gradients over interpolated input embeddings.
    EapIg,
    /// AtP*: EAP with the QK fix (exact attention softmax for query/key
    /// edges) and GradDrop; reports the plain estimate beside the fixed one.
    AtpStar,
    /// Exact patching of every edge (one forward row per edge).
    Exact,
    /// Path patching of every edge (IOI paper: sender -> receiver with every
    /// other head frozen to the base run; MLPs recomputed unless --freeze-mlps).
    Path,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum IgOnChoice {
    /// Interpolate the input embeddings.
    Inputs,
    /// Interpolate every head's and MLP's output.
    Activations,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq)]
pub enum LnChoice {
    /// LayerNorm scales recomputed on the patched input (the IOI paper).
    Recompute,
    /// LayerNorm scales held at the base run's values.
    Freeze,
}

#[derive(Args, Debug)]
pub struct CircuitCmd {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The clean prompt (the behaviour under study).
    #[arg(long, required_unless_present = "dataset")]
    pub clean: Option<String>,
    /// The corrupted prompt (same token length); optional for gaussian/zero/mean.
    #[arg(long)]
    pub corrupted: Option<String>,
    /// The clean run's answer, one token.
    #[arg(long, required_unless_present = "dataset")]
    pub answer: Option<String>,
    /// The competing answer, one token.
    #[arg(long, required_unless_present = "dataset")]
    pub wrong: Option<String>,
    /// A dataset of prompt pairs (JSONL or CSV, as sweeps take it) instead
    /// of one pair: scores and the faithfulness curve are means over pairs.
    #[arg(long, conflicts_with_all = ["clean", "corrupted", "answer", "wrong"])]
    pub dataset: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "eap")]
    pub method: MethodChoice,
    /// Edges listed in the output (0: every edge).
    #[arg(long, default_value_t = 20, value_parser = count::<0, MAX_EDGES_ARG>)]
    pub top: usize,
    /// Top edges patched exactly to measure an estimate's error.
    #[arg(long, default_value_t = 100, value_parser = count::<0, MAX_EDGES_ARG>)]
    pub check_exact: usize,
    /// EAP-IG interpolation steps.
    #[arg(long, default_value_t = 5, value_parser = count::<1, MAX_IG_STEPS>)]
    pub ig_steps: usize,
    /// Points of the faithfulness curve's log grid over k (0: no curve).
    #[arg(long, default_value_t = 10, value_parser = count::<0, 1000>)]
    pub faithfulness_points: usize,
    /// EAP-IG: interpolate the input embeddings or every sender's output.
    #[arg(long, value_enum, default_value = "inputs")]
    pub ig_on: IgOnChoice,
    /// AtP*: leave out GradDrop (rank by the QK-fixed estimate).
    #[arg(long)]
    pub no_graddrop: bool,
    /// Path patching: freeze MLP outputs as well as heads (direct paths only).
    #[arg(long)]
    pub freeze_mlps: bool,
    /// Path patching: the receivers' LayerNorm scales recomputed on their
    /// patched input (the IOI paper's code) or frozen at the base run's.
    #[arg(long, value_enum, default_value = "recompute")]
    pub ln: LnChoice,
    /// Position-aware edges: score, check and keep every edge at each token
    /// position on its own (every method; pairs of one token length).
    #[arg(long)]
    pub positions: bool,
    /// The metric edges are ranked by.
    #[arg(long, default_value = "logit_diff")]
    pub metric: String,
    #[arg(long, value_enum, default_value = "denoise")]
    pub direction: DirectionArg,
    #[arg(long, value_enum, default_value = "prompt")]
    pub corruption: CorruptionKind,
    /// Token positions to corrupt (gaussian/zero/mean); default: where the prompts differ.
    #[arg(long, value_delimiter = ',', value_parser = count::<0, MAX_POSITION>)]
    pub noise_positions: Vec<usize>,
    /// Gaussian noise std (default: 3 x the std of the embedding matrix).
    #[arg(long, value_parser = positive_finite)]
    pub noise_scale: Option<f32>,
    /// Gaussian noise samples averaged.
    #[arg(long, default_value_t = 10, value_parser = count::<1, MAX_SAMPLES>)]
    pub samples: usize,
    /// Seed of the Gaussian noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub bos: BosArgs,
    #[arg(long, value_enum, default_value = "table")]
    pub format: CircuitFormat,
    /// Write the output to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Compute shard K of N of the scoring (exact and path: edges and pairs;
    /// eap, eap-ig, atp-star: pairs) and write a part file (JSON) for
    /// `patchbench merge`, which finishes the search (ranking, exact checks,
    /// faithfulness curve) and prints what an unsharded run prints.
    #[arg(long, value_name = "K/N", conflicts_with = "format")]
    pub shard: Option<Shard>,
    /// Path patching of one sender into a set of receivers (with
    /// --receivers and --method path): prints every metric's change instead
    /// of scoring every edge. Senders: input, a{layer}.h{head}, m{layer}.
    #[arg(long, requires = "receivers", conflicts_with = "shard")]
    pub sender: Option<String>,
    /// The receivers of --sender, comma-separated, patched together (e.g.
    /// 'a9.h6<q>,a9.h9<q>'; m{layer}, logits).
    #[arg(long, value_delimiter = ',', requires = "sender")]
    pub receivers: Vec<String>,
}

impl CircuitCmd {
    fn corruption(&self) -> Corruption {
        let positions = self.noise_positions.clone();
        match self.corruption {
            CorruptionKind::Prompt => Corruption::Prompt,
            CorruptionKind::Gaussian => Corruption::Gaussian {
                positions,
                scale: self.noise_scale,
                samples: self.samples,
                seed: self.seed,
            },
            CorruptionKind::Zero => Corruption::Zero { positions },
            CorruptionKind::Mean => Corruption::Mean { positions },
        }
    }
}

/// `patchbench circuit`.
pub fn circuit(cmd: &CircuitCmd) -> Result<()> {
    let Some((metric, _)) = lookup(&cmd.metric) else {
        bail!(
            "unknown metric {:?}; metrics are: {}",
            cmd.metric,
            METRICS.join(", ")
        );
    };
    if cmd.dataset.is_none() && cmd.corruption == CorruptionKind::Prompt && cmd.corrupted.is_none()
    {
        bail!("--corruption prompt needs --corrupted TEXT (or choose --corruption gaussian|zero|mean)");
    }
    let inputs: Vec<&std::path::Path> = {
        let p = std::path::Path::new(&cmd.model.model);
        if p.is_file() {
            vec![p]
        } else {
            vec![]
        }
    };
    if let Some(out) = cmd.out.as_deref() {
        refuse_clobber(out, &inputs, cmd.format.extension())?;
    }
    let m = cmd.model.load()?;
    let (pairs, dataset) = match &cmd.dataset {
        Some(path) => {
            let d = super::dataset::load_for(path, &m, cmd.bos.choice())?;
            // Labelled pairs of one length name a position-aware edge's position.
            let one_length = d.pairs.iter().all(|p| p.n_pos() == d.pairs[0].n_pos());
            let position_labels = match (&d.labels, cmd.positions && one_length) {
                (Some(l), true) => label_names(l, d.pairs[0].n_pos()),
                _ => Vec::new(),
            };
            let note = DatasetNote {
                path: d.dataset.path.as_ref().map(|p| p.display().to_string()),
                digest: d.dataset.digest.clone(),
                ids: d.dataset.pairs.iter().map(|p| p.id.clone()).collect(),
                position_labels,
            };
            (d.pairs, Some(note))
        }
        None => {
            let pair = PromptPair {
                clean: cmd.clean.clone().unwrap_or_default(),
                corrupted: cmd.corrupted.clone(),
                answer: cmd.answer.clone().unwrap_or_default(),
                wrong: cmd.wrong.clone().unwrap_or_default(),
            };
            (
                prepare_pairs(&m.tokenizer, &[pair], cmd.bos.choice())?,
                None,
            )
        }
    };
    let opts = CircuitOptions {
        method: match cmd.method {
            MethodChoice::Eap => Method::Eap,
            MethodChoice::EapIg => Method::EapIg,
            MethodChoice::Exact => Method::Exact,
            MethodChoice::Path => Method::Path,
            MethodChoice::AtpStar => Method::AtpStar,
        },
        ig_on: match cmd.ig_on {
            IgOnChoice::Inputs => IgOn::Inputs,
            IgOnChoice::Activations => IgOn::Activations,
        },
        graddrop: !cmd.no_graddrop,
        direction: match cmd.direction {
            DirectionArg::Denoise => Direction::Denoise,
            DirectionArg::Noise => Direction::Noise,
        },
        corruption: cmd.corruption(),
        ig_steps: cmd.ig_steps,
        metric,
        check_exact: cmd.check_exact,
        faithfulness_points: cmd.faithfulness_points,
        path: PathOptions {
            freeze_mlps: cmd.freeze_mlps,
            ln: match cmd.ln {
                LnChoice::Recompute => LnMode::Recompute,
                LnChoice::Freeze => LnMode::Freeze,
            },
        },
        positions: cmd.positions,
        ..Default::default()
    };
    if let Some(sender) = &cmd.sender {
        if cmd.method != MethodChoice::Path {
            bail!("--sender/--receivers ask a path-patching query: add --method path");
        }
        if cmd.positions {
            bail!("--sender/--receivers path-patch every position at once: drop --positions");
        }
        let text =
            super::circuit_path::run(&m, &pairs, &opts, (sender, &cmd.receivers), cmd.format)?;
        return write_output(cmd.out.as_deref(), &text, &inputs, cmd.format.extension());
    }
    if let Some(shard) = cmd.shard {
        let part = super::circuit_shard::part(
            &m,
            &cmd.model.weights,
            &pairs,
            dataset,
            &opts,
            (shard, cmd.top),
        )?;
        let text = json_text(&serde_json::to_value(&part)?) + "\n";
        return write_output(cmd.out.as_deref(), &text, &inputs, "json");
    }
    let result = run_circuit(&m.model, &pairs, &opts)?;
    let text = render(
        &m,
        &pairs,
        dataset.as_ref(),
        (&opts, &result),
        (cmd.top, cmd.format),
    );
    write_output(cmd.out.as_deref(), &text, &inputs, cmd.format.extension())
}

/// The output of a finished search in `format`, listing the `top` edges
/// (`circuit` and `merge` of circuit parts print through here).
pub fn render(
    m: &LoadedModel,
    pairs: &[PreparedPair],
    dataset: Option<&DatasetNote>,
    (opts, result): (&CircuitOptions, &CircuitResult),
    (top, format): (usize, CircuitFormat),
) -> String {
    let graph = Graph::new(&m.model.cfg);
    let p = &pairs[0];
    let tl = |ids: &[u32]| TokenList {
        ids: ids.to_vec(),
        strings: m.tokenizer.token_strs(ids),
    };
    let rep = CircuitReport {
        model: &m.source,
        corruption: opts.corruption.name(),
        clean: tl(&p.clean),
        corrupted: tl(&p.corrupted),
        answer: (p.answer, m.tokenizer.token_str(p.answer)),
        wrong: (p.wrong, m.tokenizer.token_str(p.wrong)),
        graph: &graph,
        position_labels: dataset.map_or(&[], |d| &d.position_labels),
        result,
        top,
        load_ms: m.load_ms as u64,
    };
    match format {
        CircuitFormat::Json => {
            let mut v = rep.to_json();
            if let (Some(d), Some(obj)) = (dataset, v.as_object_mut()) {
                // The tokens and answers above are the first pair's.
                obj.insert("n_pairs".into(), pairs.len().into());
                obj.insert(
                    "dataset".into(),
                    serde_json::json!({
                        "path": d.path,
                        "digest": d.digest,
                        "ids": d.ids,
                    }),
                );
            }
            json_text(&v) + "\n"
        }
        CircuitFormat::Dot => rep.to_dot(),
        CircuitFormat::Csv => rep.to_csv(),
        CircuitFormat::Table => match dataset {
            Some(_) => format!(
                "{} prompt pairs; scores are means over pairs\n{}",
                pairs.len(),
                rep.to_table()
            ),
            None => rep.to_table(),
        },
        CircuitFormat::Svg => rep.to_svg(),
    }
}
