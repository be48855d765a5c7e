//! `ModelConfig`: everything that varies between transformer families,
//! expressed as data for the one canonical forward pass in `forward.rs`.
//!
//! Loaders translate a family's own configuration (a Hugging Face
//! `config.json`, GGUF metadata, a random preset) into this struct; nothing
//! downstream knows which family a model came from except through these
//! fields. Field names follow TransformerLens (`d_model`, `d_head`, `d_mlp`).

use serde::{Deserialize, Serialize};

/// The normalisation used before attention, before the MLP and at the end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// `(x - mean) / sqrt(var + eps) * w + b` (GPT-2, GPT-NeoX).
    LayerNorm,
    /// `x / sqrt(mean(x^2) + eps) * (w + offset)` (Llama; Gemma uses offset 1).
    RmsNorm,
}

/// How rotary embeddings pair up the dimensions they rotate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotaryStyle {
    /// Rotate the first half against the second half (`rotate_half`): Llama,
    /// Mistral, Qwen2, GPT-NeoX as Hugging Face stores them.
    NeoX,
    /// Rotate adjacent pairs (2i, 2i+1): GPT-J and llama.cpp's layout.
    GptJ,
}

/// Frequency scaling for long-context rotary variants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// Positions divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3's wavelength-dependent interpolation.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// Rotary position embedding parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotaryConfig {
    pub theta: f64,
    /// Number of dimensions of each head that are rotated (`d_head` unless
    /// partial rotary, as in Pythia's `rotary_pct`).
    pub rotary_dim: usize,
    pub style: RotaryStyle,
    pub scaling: Option<RopeScaling>,
}

/// How positions enter the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// A learned `W_pos` added to the token embedding (GPT-2).
    Learned,
    /// Rotary embeddings applied to queries and keys.
    Rotary(RotaryConfig),
}

/// The MLP nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// GELU with the tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// Exact GELU with erf.
    Gelu,
    /// SiLU / swish.
    Silu,
    Relu,
}

impl Activation {
    /// Maps a Hugging Face `hidden_act` / `activation_function` string.
    pub fn from_hf(name: &str) -> Option<Self> {
        Some(match name {
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "gelu" | "gelu_python" => Activation::Gelu,
            "silu" | "swish" => Activation::Silu,
            "relu" => Activation::Relu,
            _ => return None,
        })
    }
}

/// The canonical description of a decoder-only transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Family name for display (`gpt2`, `llama`, `qwen2`, `mistral`, ...).
    pub family: String,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    /// Key/value heads; smaller than `n_heads` with grouped-query attention.
    pub n_kv_heads: usize,
    pub d_head: usize,
    pub d_mlp: usize,
    pub d_vocab: usize,
    /// Maximum context length the positions support.
    pub n_ctx: usize,
    pub norm: NormKind,
    pub norm_eps: f64,
    /// Added to norm weights before use (Gemma stores `w - 1`).
    pub norm_weight_offset: f32,
    pub positions: Positions,
    pub act: Activation,
    /// `down(act(gate(x)) * up(x))` instead of `out(act(in(x)))`.
    pub gated_mlp: bool,
    /// Attention and MLP both read `resid_pre` (GPT-NeoX, GPT-J).
    pub parallel_attn_mlp: bool,
    /// Multiply the token embedding by this (Gemma: `sqrt(d_model)`).
    pub embed_scale: Option<f32>,
    /// Scale applied to attention scores; `1/sqrt(d_head)` for most families.
    pub attn_scale: f32,
    /// The unembedding is the token embedding matrix.
    pub tied_unembed: bool,
}

impl ModelConfig {
    /// Query heads that share one key/value head.
    pub fn kv_group(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Checks the internal consistency a loader must guarantee.
    pub fn validate(&self) -> Result<(), String> {
        if self.n_layers == 0 || self.d_model == 0 || self.n_heads == 0 || self.d_vocab == 0 {
            return Err("n_layers, d_model, n_heads and d_vocab must all be positive".into());
        }
        if self.n_kv_heads == 0 || self.n_heads % self.n_kv_heads != 0 {
            return Err(format!(
                "n_heads ({}) must be a multiple of n_kv_heads ({})",
                self.n_heads, self.n_kv_heads
            ));
        }
        if let Positions::Rotary(r) = &self.positions {
            if r.rotary_dim == 0 || r.rotary_dim > self.d_head || r.rotary_dim % 2 != 0 {
                return Err(format!(
                    "rotary_dim {} must be even and at most d_head {}",
                    r.rotary_dim, self.d_head
                ));
            }
        }
        Ok(())
    }

    /// Parameter count (embeddings included once when tied).
    pub fn n_params(&self) -> usize {
        let attn = self.d_model * self.d_head * (2 * self.n_heads + 2 * self.n_kv_heads);
        let mlp = self.d_model * self.d_mlp * if self.gated_mlp { 3 } else { 2 };
        let embed = self.d_vocab * self.d_model * if self.tied_unembed { 1 } else { 2 };
        let pos = match self.positions {
            Positions::Learned => self.n_ctx * self.d_model,
            Positions::Rotary(_) => 0,
        };
        self.n_layers * (attn + mlp) + embed + pos
    }

    /// Floating-point operations of one forward pass over `tokens` positions,
    /// with logits at `logit_positions` positions (2 FLOPs per multiply-add).
    pub fn forward_flops(&self, tokens: usize, logit_positions: usize) -> f64 {
        let attn_proj = self.d_model * self.d_head * (2 * self.n_heads + 2 * self.n_kv_heads);
        let mlp = self.d_model * self.d_mlp * if self.gated_mlp { 3 } else { 2 };
        let per_token = self.n_layers * (attn_proj + mlp);
        // Scores and weighted sum: each query attends to on average half the context.
        let attn_mix = self.n_layers * self.n_heads * self.d_head * tokens * (tokens + 1);
        let unembed = logit_positions * self.d_vocab * self.d_model;
        2.0 * (tokens * per_token + attn_mix + unembed) as f64
    }
}
