//! Model sources: one string names where a model comes from, on the command
//! line and in sessions.
//!
//! | string | source |
//! |---|---|
//! | `demo` | the demo model embedded in the binary |
//! | `random:<preset>[@seed]` | seeded random weights of a real shape |
//! | a directory | a Hugging Face model directory |
//! | `*.gguf` | a llama.cpp GGUF file (dequantised) |
//! | `org/name`, `gpt2` | a hub id, read from the Hugging Face cache |
//!
//! Paths win over hub ids when both could apply: `./gpt2` is a directory,
//! `gpt2` is looked up in the cache unless a directory of that name exists.

use std::fmt;
use std::path::{Path, PathBuf};

use super::hf::is_pickle;
use super::ModelError;

#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Demo,
    Random { preset: String, seed: u64 },
    HfDir(PathBuf),
    Gguf(PathBuf),
    Hub(String),
}

impl ModelSource {
    /// Parses a source string, checking what can be checked without loading.
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        let s = s.trim();
        let expanded = expand_home(s);
        let s = expanded.as_deref().unwrap_or(s);
        if s.is_empty() {
            return Err(ModelError::Source("empty model source; try `demo`, `random:gpt2-small`, a directory, a .gguf file or a hub id".into()));
        }
        if s == "demo" {
            return Ok(ModelSource::Demo);
        }
        if let Some(rest) = s.strip_prefix("random:") {
            let (preset, seed) = match rest.split_once('@') {
                Some((p, seed)) => (
                    p,
                    seed.parse::<u64>().map_err(|_| {
                        ModelError::Source(format!(
                            "bad seed {seed:?} in {s:?}: expected random:<preset>@<integer>"
                        ))
                    })?,
                ),
                None => (rest, 0),
            };
            super::random::preset_config(preset)?;
            return Ok(ModelSource::Random {
                preset: preset.to_string(),
                seed,
            });
        }
        let path = Path::new(s);
        if path.exists() {
            if path.is_dir() {
                return Ok(ModelSource::HfDir(path.to_path_buf()));
            }
            if is_pickle(path) {
                return Err(ModelError::Pickle {
                    path: path.to_path_buf(),
                });
            }
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or("")
                .to_ascii_lowercase();
            return match ext.as_str() {
                "gguf" => Ok(ModelSource::Gguf(path.to_path_buf())),
                "safetensors" | "json" => Ok(ModelSource::HfDir(
                    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(),
                )),
                _ => Err(ModelError::Source(format!(
                    "{s}: not a model file patchbench can read; give a Hugging Face model directory or a .gguf file"
                ))),
            };
        }
        let looks_like_path = s.starts_with('.')
            || s.starts_with('/')
            || s.starts_with('~')
            || s.contains('\\')
            || s.matches('/').count() > 1
            || Path::new(s).extension().is_some_and(|e| {
                let e = e.to_string_lossy().to_ascii_lowercase();
                e == "gguf" || e == "safetensors" || is_pickle(Path::new(s))
            });
        if looks_like_path {
            return Err(ModelError::Source(format!(
                "{s}: no such file or directory"
            )));
        }
        let valid = s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
        if !valid {
            return Err(ModelError::Source(format!(
                "{s:?} is neither an existing path nor a Hugging Face hub id like \"gpt2\" or \"HuggingFaceTB/SmolLM2-135M\""
            )));
        }
        Ok(ModelSource::Hub(s.to_string()))
    }
}

/// `~` and `~/rest` to the home directory, so sessions can name files in
/// `~/.cache` portably (shells do this on the command line, YAML does not).
/// `~user/...` is left alone (and then reported as a missing path).
fn expand_home(s: &str) -> Option<String> {
    let rest = s.strip_prefix('~')?;
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with(std::path::MAIN_SEPARATOR)) {
        return None;
    }
    let home = directories::BaseDirs::new()?.home_dir().to_path_buf();
    Some(format!("{}{rest}", home.display()))
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::Demo => f.write_str("demo"),
            ModelSource::Random { preset, seed: 0 } => write!(f, "random:{preset}"),
            ModelSource::Random { preset, seed } => write!(f, "random:{preset}@{seed}"),
            ModelSource::HfDir(p) | ModelSource::Gguf(p) => write!(f, "{}", p.display()),
            ModelSource::Hub(id) => f.write_str(id),
        }
    }
}
