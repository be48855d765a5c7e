//! Hugging Face model directories and the Hugging Face cache.
//!
//! A directory holds `config.json`, weights as `model.safetensors` or shards
//! listed in `model.safetensors.index.json`, and a tokenizer as
//! `tokenizer.json` (or GPT-2's `vocab.json` + `merges.txt`). A hub id such
//! as `gpt2` is looked up in the standard cache layout
//! (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`;
//! `models--{org}--{name}/snapshots/{rev}/`) and downloaded into it when a
//! network is available. Pickle checkpoints are refused: loading them can
//! execute code.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::families::{self, RawWeights};
use super::tokenizer::Tokenizer;
use super::weights::CanonicalWeights;
use super::{safetensors_io, ModelConfig, ModelError};
use crate::util::fs::{limits, read_text_capped};

/// A Hugging Face model directory's three files held in memory (the demo
/// model compiled into the binary is one), read through the same checks
/// and mapping as a directory on disk.
pub struct HfBytes<'a> {
    pub config_json: &'a [u8],
    pub safetensors: &'a [u8],
    pub tokenizer_json: &'a [u8],
    /// Names the model in messages.
    pub origin: &'a str,
}

/// Config, canonical weights and tokenizer of a model directory.
pub fn load_dir(
    dir: &Path,
    device: &Device,
    dtype: DType,
) -> Result<(ModelConfig, CanonicalWeights, Tokenizer), ModelError> {
    let files = find_files(dir)?;
    let text = read_text_capped(&files.config, limits::MODEL_JSON, "config.json")?;
    let cfg = parse_config(text.as_bytes(), &files.config.display().to_string())?;
    let raw = read_safetensors(&files.weights, device, dtype)?;
    let weights = families::map_hf_weights(&cfg, raw, &dir.display().to_string())?;
    let tokenizer = read_tokenizer(dir)?;
    Ok((cfg, weights, tokenizer))
}

/// Config, canonical weights and tokenizer of a directory held in memory.
pub fn load_bytes(
    b: &HfBytes<'_>,
    device: &Device,
    dtype: DType,
) -> Result<(ModelConfig, CanonicalWeights, Tokenizer), ModelError> {
    let cfg = parse_config(b.config_json, &format!("{} (config.json)", b.origin))?;
    let path = PathBuf::from(format!("{} (model.safetensors)", b.origin));
    let st = safetensors_io::check(b.safetensors, &path)?;
    let mut raw = RawWeights::new();
    safetensors_io::tensors(&st, &path, device, dtype, &mut raw)?;
    let weights = families::map_hf_weights(&cfg, raw, b.origin)?;
    let tokenizer =
        Tokenizer::from_json_bytes(b.tokenizer_json, &format!("{} (tokenizer.json)", b.origin))?;
    Ok((cfg, weights, tokenizer))
}

/// Parses and validates a `config.json`; `origin` names it in errors.
pub fn parse_config(bytes: &[u8], origin: &str) -> Result<ModelConfig, ModelError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ModelError::BadConfig {
            origin: origin.to_string(),
            message: format!("invalid JSON: {e}"),
        })?;
    families::config_from_hf(&json, origin)
}

/// Files found in a model directory.
#[derive(Debug)]
pub struct HfFiles {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub weights: Vec<PathBuf>,
}

const PICKLE_EXTS: &[&str] = &["bin", "pt", "pth", "pkl", "ckpt"];

/// True for file names whose format is a Python pickle.
pub fn is_pickle(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PICKLE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Finds the config and weight files of a local model directory.
pub fn find_files(dir: &Path) -> Result<HfFiles, ModelError> {
    let bad = |m: String| ModelError::BadDirectory {
        path: dir.to_path_buf(),
        message: m,
    };
    let config = dir.join("config.json");
    // `exists`, not `is_file`: a FIFO or device named config.json is then
    // reported as such when it is opened, not as missing.
    if !config.exists() {
        return Err(bad("no config.json (a Hugging Face model directory needs config.json, *.safetensors and tokenizer.json)".into()));
    }
    let index = dir.join("model.safetensors.index.json");
    let single = dir.join("model.safetensors");
    let weights = if index.exists() {
        let text = read_text_capped(&index, limits::INDEX_JSON, "weight index")?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::io(&index, format!("invalid JSON: {e}")))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ModelError::io(&index, "no \"weight_map\" object"))?;
        let shards: BTreeSet<&str> = map.values().filter_map(|s| s.as_str()).collect();
        let mut paths = Vec::new();
        for s in shards {
            // A shard is a file beside the index: an absolute path or one
            // that climbs out of the directory is a hostile index.
            let plain = Path::new(s)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !plain || s.is_empty() {
                return Err(bad(format!(
                    "shard {s:?} listed in model.safetensors.index.json is not a file name in the model directory"
                )));
            }
            let p = dir.join(s);
            if !p.exists() {
                return Err(bad(format!(
                    "shard {s:?} listed in model.safetensors.index.json is missing"
                )));
            }
            paths.push(p);
        }
        paths
    } else if single.exists() {
        vec![single]
    } else {
        if let Some(p) = read_dir_sorted(dir)?.into_iter().find(|p| is_pickle(p)) {
            return Err(ModelError::Pickle { path: p });
        }
        return Err(bad(
            "no model.safetensors or model.safetensors.index.json".into()
        ));
    };
    Ok(HfFiles {
        dir: dir.to_path_buf(),
        config,
        weights,
    })
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

/// Reads every tensor of the given safetensors files (checked, mapped,
/// converted to `dtype`, refused if non-finite).
pub fn read_safetensors(
    paths: &[PathBuf],
    device: &Device,
    dtype: DType,
) -> Result<RawWeights, ModelError> {
    let mut all = RawWeights::new();
    for p in paths {
        safetensors_io::read_file(p, device, dtype, &mut all)?;
    }
    Ok(all)
}

/// Loads the tokenizer that sits beside a model.
pub fn read_tokenizer(dir: &Path) -> Result<Tokenizer, ModelError> {
    let tj = dir.join("tokenizer.json");
    if tj.exists() {
        return Ok(Tokenizer::from_file(&tj)?);
    }
    let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
    if vocab.exists() && merges.exists() {
        return Ok(Tokenizer::from_vocab_merges(&vocab, &merges)?);
    }
    Err(ModelError::BadDirectory {
        path: dir.to_path_buf(),
        message: "no tokenizer.json (or vocab.json + merges.txt) beside the weights".into(),
    })
}

/// The Hugging Face hub cache directory the standard tools use.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|b| b.home_dir().join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("huggingface").join("hub")
}

/// `models--org--name` under the cache.
fn repo_dir(cache: &Path, id: &str) -> PathBuf {
    cache.join(format!("models--{}", id.replace('/', "--")))
}

/// The snapshot directory of a cached model: `refs/main`'s revision, else
/// the most recently modified snapshot that has a `config.json`.
pub fn cached_snapshot(cache: &Path, id: &str) -> Option<PathBuf> {
    let repo = repo_dir(cache, id);
    // Capped and regular-file only: a FIFO planted in the cache cannot hang a lookup.
    if let Ok(rev) = read_text_capped(&repo.join("refs").join("main"), 4096, "cache ref") {
        let snap = repo.join("snapshots").join(rev.trim());
        if snap.join("config.json").is_file() {
            return Some(snap);
        }
    }
    let mut snaps: Vec<(std::time::SystemTime, PathBuf)> =
        std::fs::read_dir(repo.join("snapshots"))
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.join("config.json").is_file())
            .map(|p| {
                (
                    p.metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH),
                    p,
                )
            })
            .collect();
    snaps.sort();
    snaps.pop().map(|(_, p)| p)
}

/// Every model in the cache with a usable snapshot, as hub ids.
pub fn cached_models(cache: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let id = name.strip_prefix("models--")?.replacen("--", "/", 1);
            let snap = cached_snapshot(cache, &id)?;
            Some((id, snap))
        })
        .collect();
    out.sort();
    out
}

/// Resolves a hub id to a local snapshot, downloading it when possible.
pub fn resolve_hub_id(id: &str) -> Result<PathBuf, ModelError> {
    let cache = hub_cache_dir();
    if let Some(snap) = cached_snapshot(&cache, id) {
        return Ok(snap);
    }
    let offline =
        std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let why = if offline {
        "HF_HUB_OFFLINE is set, so it was not downloaded".to_string()
    } else {
        match download(id, &cache) {
            Ok(dir) => return Ok(dir),
            Err(e) => format!("downloading it failed: {e}"),
        }
    };
    Err(ModelError::Source(format!(
        "model {id:?} is not in the Hugging Face cache at {} and {why}. On a machine with network run \
         `huggingface-cli download {id}` and copy the cache here (or set HF_HOME to a cache that has it), \
         or pass a local model directory or .gguf file instead",
        cache.display()
    )))
}

fn download(id: &str, cache: &Path) -> Result<PathBuf, String> {
    use hf_hub::api::sync::ApiBuilder;
    let api = ApiBuilder::new()
        .with_cache_dir(cache.to_path_buf())
        .with_progress(false)
        .with_retries(0)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.model(id.to_string());
    let config = repo.get("config.json").map_err(|e| e.to_string())?;
    let dir = config.parent().ok_or("bad cache path")?.to_path_buf();
    if repo.get("tokenizer.json").is_err() {
        repo.get("vocab.json").map_err(|e| e.to_string())?;
        repo.get("merges.txt").map_err(|e| e.to_string())?;
    }
    match repo.get("model.safetensors.index.json") {
        Ok(index) => {
            let text = std::fs::read_to_string(&index).map_err(|e| e.to_string())?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let shards: BTreeSet<String> = v["weight_map"]
                .as_object()
                .ok_or("index has no weight_map")?
                .values()
                .filter_map(|s| s.as_str().map(String::from))
                .collect();
            for s in shards {
                repo.get(&s).map_err(|e| e.to_string())?;
            }
        }
        Err(_) => {
            repo.get("model.safetensors").map_err(|e| {
                format!("{e} (the repository may only have pickle weights, which patchbench refuses to load)")
            })?;
        }
    }
    Ok(dir)
}
