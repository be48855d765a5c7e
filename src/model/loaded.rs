//! A model ready to use: the transformer, its tokenizer, where it came from
//! and a fingerprint that sessions use to notice changed weights.

use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use super::forward::Transformer;
use super::linear::Matrix;
use super::source::ModelSource;
use super::tokenizer::Tokenizer;
use super::weights::CanonicalWeights;
use super::{embedded, gguf, hf, random, ModelConfig, ModelError, WeightsMode};

/// How to load: device and how the weights are held (`--weights`).
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    pub weights: WeightsMode,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: super::device::best_device(),
            weights: WeightsMode::F32,
        }
    }
}

impl LoadOptions {
    /// f32 weights on the CPU: what tests and training use.
    pub fn cpu() -> Self {
        Self {
            device: Device::Cpu,
            weights: WeightsMode::F32,
        }
    }

    /// `weights` on the CPU.
    pub fn cpu_with(weights: WeightsMode) -> Self {
        Self {
            device: Device::Cpu,
            weights,
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
        let (dev, mode, dtype) = (&opts.device, opts.weights, opts.weights.dtype());
        if mode.is_quantized() {
            if let ModelSource::Demo | ModelSource::HfDir(_) | ModelSource::Hub(_) = src {
                return Err(ModelError::Source(format!(
                    "{src}: --weights quantized keeps a GGUF file's quantized matrices as they are, \
                     and this model's weights are safetensors floats; load it with --weights bf16 \
                     (half the memory of f32) or f32, or give a .gguf file"
                )));
            }
        }
        let (cfg, weights, tokenizer) = match src {
            ModelSource::Demo => hf::load_bytes(&embedded::DEMO, dev, dtype)?,
            ModelSource::Random { preset, seed } => {
                let cfg = random::preset_config(preset)?;
                let w = random::random_weights_as(&cfg, *seed, dev, mode)?;
                let tok = random::preset_tokenizer(&cfg)?;
                (cfg, w, tok)
            }
            ModelSource::Gguf(path) => {
                let g = gguf::load(path, dev, mode)?;
                (g.config, g.weights, g.tokenizer)
            }
            ModelSource::HfDir(dir) => hf::load_dir(dir, dev, dtype)?,
            ModelSource::Hub(id) => hf::load_dir(&hf::resolve_hub_id(id)?, dev, dtype)?,
        };
        // Gemma's residual stream outgrows f16's range (65504): Gemma 3 270M
        // gives NaN logits in f16. bf16 has f32's range at the same size.
        if mode == WeightsMode::F16 && cfg.family.starts_with("gemma") {
            return Err(ModelError::Source(format!(
                "{src}: Gemma's activations overflow f16 (its logits come out NaN); load it with \
                 --weights bf16 (the same memory, with f32's range) or f32"
            )));
        }
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
    let sample = |h: &mut Fnv, t: &Tensor| -> Result<(), ModelError> {
        let flat = t.flatten_all()?.to_dtype(DType::F32)?;
        let n = flat.dim(0)?;
        let step = (n / 4096).max(1);
        let picked = flat.to_vec1::<f32>()?;
        for v in picked.iter().step_by(step) {
            h.write(&v.to_le_bytes());
        }
        Ok(())
    };
    sample(&mut h, &model.w_e)?;
    for b in &model.blocks {
        for m in [
            &b.attn.q.w,
            &b.attn.k.w,
            &b.attn.v.w,
            &b.attn.o.w,
            &b.mlp.w_in.w,
            &b.mlp.w_out.w,
        ] {
            match m {
                Matrix::Dense(t) => sample(&mut h, t)?,
                // The quantized blocks themselves, strided: dequantising
                // a 7B model to fingerprint it would cost seconds.
                Matrix::Quantized(q) => {
                    h.write(format!("{:?}", q.dtype()).as_bytes());
                    let data = q.data()?;
                    let step = (data.len() / 16384).max(1);
                    for byte in data.iter().step_by(step) {
                        h.write(&[*byte]);
                    }
                }
            }
        }
        for t in [&b.ln1.w, &b.ln2.w] {
            sample(&mut h, t)?;
        }
    }
    sample(&mut h, &model.ln_final.w)?;
    if !model.cfg.tied_unembed {
        sample(&mut h, &model.w_u)?;
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
