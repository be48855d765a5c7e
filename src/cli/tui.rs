//! Starting the workbench: `patchbench` (no subcommand) and
//! `patchbench open FILE`. The loop itself lives in `patchbench::tui`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

/// Options of the interactive workbench.
#[derive(Args, Debug, Clone, Default)]
pub struct TuiArgs {
    /// Model source: demo, random:<preset>, a model directory, a .gguf file
    /// or a hub id (default: the session's model, else demo).
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// How weights are held: f32, bf16, f16 (half the memory) or quantized
    /// (GGUF matrices kept quantized; no gradient methods).
    #[arg(long, alias = "dtype", default_value = "f32")]
    pub weights: String,
    /// Theme: dark, light, high-contrast, colorblind, a theme in the config
    /// directory's themes/ folder, or a path to a YAML file.
    #[arg(long)]
    pub theme: Option<String>,
    /// Colours: truecolor, 256 or none (default: from COLORTERM and NO_COLOR).
    #[arg(long)]
    pub color: Option<String>,
    /// Enable the mouse (click focuses a pane, the wheel moves); off by
    /// default so the terminal's own text selection keeps working.
    #[arg(long)]
    pub mouse: bool,
    /// A dataset file (JSONL or CSV, as `sweep --dataset`) whose pairs
    /// become the prompt pairs and the session's dataset: sweeps run over
    /// all of them (by label when the file labels positions), with the
    /// spread per cell (D: the dataset pane).
    #[arg(long)]
    pub dataset: Option<PathBuf>,
}

/// `patchbench open FILE`.
#[derive(Args, Debug, Clone)]
pub struct OpenArgs {
    /// The session file to resume.
    pub file: PathBuf,
    #[command(flatten)]
    pub tui: TuiArgs,
}

/// Refuses to start without a terminal: with stdin or stdout redirected
/// the workbench could neither read keys nor draw, so say what to use
/// instead.
fn require_terminal() -> Result<()> {
    let missing: Vec<&str> = [
        ("stdin", std::io::stdin().is_terminal()),
        ("stdout", std::io::stdout().is_terminal()),
    ]
    .iter()
    .filter(|(_, tty)| !tty)
    .map(|(name, _)| *name)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the workbench needs a terminal, and {} {} not one. Without a terminal, \
         use the headless commands: `patchbench sweep` runs a sweep (or a session's \
         sweeps with --session), `patchbench check` checks a session file, \
         `patchbench export` writes a session's results as CSV, JSON or SVG \
         (see `patchbench --help`)",
        missing.join(" and "),
        if missing.len() == 1 { "is" } else { "are" }
    )
}

/// Runs the workbench, optionally resuming `open`.
pub fn start(a: &TuiArgs, open: Option<&Path>) -> Result<()> {
    require_terminal()?;
    let opts = patchbench::tui::TuiOptions {
        model: a.model.clone(),
        device: a.device.clone(),
        weights: a.weights.clone(),
        theme: a.theme.clone(),
        color: a.color.clone(),
        open: open.map(Path::to_path_buf),
        mouse: a.mouse,
        dataset: a.dataset.clone(),
    };
    patchbench::tui::run(opts).with_context(|| match open {
        Some(p) => format!("opening {}", p.display()),
        None => "running the workbench".into(),
    })
}
