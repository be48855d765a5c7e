//! A model ready to use: the transformer, its tokenizer, where it came from
//! and a fingerprint that sessions use to notice changed weights.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use super::forward::Transformer;
use super::source::ModelSource;
use super::tokenizer::Tokenizer;
use super::weights::CanonicalWeights;
use super::{embedded, gguf, hf, random, ModelConfig, ModelError};

/// How to load: device and precision.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    pub dtype: DType,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: super::device::best_device(),
            dtype: DType::F32,
        }
    }
}

pub struct LoadedModel {
    /// The source string as given (normalised).
    pub source: String,
    pub model: Transformer,
    pub tokenizer: Tokenizer,
    /// Hex digest of config, tokenizer and sampled weights.
    pub fingerprint: String,
    pub load_ms: f64,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("source", &self.source)
            .field("config", &self.model.cfg)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl LoadedModel {
    /// Loads a model from a source string.
    pub fn load(source: &str, opts: &LoadOptions) -> Result<Self, ModelError> {
        let parsed = ModelSource::parse(source)?;
        Self::load_source(&parsed, opts)
    }

    pub fn load_source(src: &ModelSource, opts: &LoadOptions) -> Result<Self, ModelError> {
        let start = Instant::now();
        let (dev, dtype) = (&opts.device, opts.dtype);
        let (cfg, weights, tokenizer) = match src {
            ModelSource::Demo => hf::load_bytes(&embedded::DEMO, dev, dtype)?,
            ModelSource::Random { preset, seed } => {
                let cfg = random::preset_config(preset)?;
                let w = random::random_weights(&cfg, *seed, dev, dtype)?;
                let tok = random::preset_tokenizer(&cfg)?;
                (cfg, w, tok)
            }
            ModelSource::Gguf(path) => {
                let g = gguf::load(path, dev, dtype)?;
                (g.config, g.weights, g.tokenizer)
            }
            ModelSource::HfDir(dir) => hf::load_dir(dir, dev, dtype)?,
            ModelSource::Hub(id) => hf::load_dir(&hf::resolve_hub_id(id)?, dev, dtype)?,
        };
        Self::assemble(src.to_string(), cfg, weights, tokenizer, start)
    }

    /// Builds a loaded model from parts (used by loaders and by training).
    pub fn assemble(
        source: String,
        cfg: ModelConfig,
        weights: CanonicalWeights,
        tokenizer: Tokenizer,
        start: Instant,
    ) -> Result<Self, ModelError> {
        if tokenizer.vocab_size() > cfg.d_vocab {
            return Err(ModelError::BadConfig {
                origin: source,
                message: format!(
                    "the tokenizer has {} tokens but the model only {} embeddings",
                    tokenizer.vocab_size(),
                    cfg.d_vocab
                ),
            });
        }
        let model = Transformer::new(cfg, weights)?;
        let fingerprint = fingerprint(&model, &tokenizer)?;
        Ok(Self {
            source,
            model,
            tokenizer,
            fingerprint,
            load_ms: start.elapsed().as_secs_f64() * 1e3,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }
}

/// FNV-1a over the config, the tokenizer and a strided sample of every
/// weight: cheap for large models, and any retraining or requantisation
/// changes it.
fn fingerprint(model: &Transformer, tok: &Tokenizer) -> Result<String, ModelError> {
    let mut h = Fnv::new();
    h.write(
        serde_json::to_string(&model.cfg)
            .unwrap_or_default()
            .as_bytes(),
    );
    h.write(tok.to_json().as_bytes());
    let mut sample = |t: &Tensor| -> Result<(), ModelError> {
        let flat = t.flatten_all()?.to_dtype(DType::F32)?;
        let n = flat.dim(0)?;
        let step = (n / 4096).max(1);
        let picked = flat.to_vec1::<f32>()?;
        for v in picked.iter().step_by(step) {
            h.write(&v.to_le_bytes());
        }
        Ok(())
    };
    sample(&model.w_e)?;
    for b in &model.blocks {
        for t in [
            &b.attn.q.w,
            &b.attn.k.w,
            &b.attn.v.w,
            &b.attn.o.w,
            &b.mlp.w_in.w,
            &b.mlp.w_out.w,
            &b.ln1.w,
            &b.ln2.w,
        ] {
            sample(t)?;
        }
    }
    sample(&model.ln_final.w)?;
    if !model.cfg.tied_unembed {
        sample(&model.w_u)?;
    }
    Ok(format!("{:016x}", h.finish()))
}

struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf29ce484222325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
