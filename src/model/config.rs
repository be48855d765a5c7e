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
    /// One divisor per rotated pair, applied to its frequency: llama.cpp's
    /// `rope_freqs` tensor (how GGUF stores Llama 3.1's scaling).
    Factors { factors: Vec<f64> },
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

impl RotaryConfig {
    /// Theta and scaling factors divide and exponentiate; zero, negative or
    /// non-finite values give NaN angles (and so NaN logits) silently.
    fn validate(&self, d_head: usize) -> Result<(), String> {
        if self.rotary_dim == 0 || self.rotary_dim > d_head || self.rotary_dim % 2 != 0 {
            return Err(format!(
                "rotary_dim {} must be even, positive and at most d_head {d_head}",
                self.rotary_dim
            ));
        }
        if !(self.theta.is_finite() && self.theta > 0.0) {
            return Err(format!(
                "rope theta is {}; it must be a finite positive number (typically 10000)",
                self.theta
            ));
        }
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "rope scaling {name} is {v}; it must be a finite positive number"
                ))
            }
        };
        match &self.scaling {
            None => Ok(()),
            Some(RopeScaling::Linear { factor }) => positive("factor", *factor),
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            }) => {
                positive("factor", *factor)?;
                positive("low_freq_factor", *low_freq_factor)?;
                positive("high_freq_factor", *high_freq_factor)?;
                positive(
                    "original_max_position_embeddings",
                    *original_max_position_embeddings,
                )?;
                if high_freq_factor <= low_freq_factor {
                    return Err(format!(
                        "rope scaling high_freq_factor ({high_freq_factor}) must be larger than \
                         low_freq_factor ({low_freq_factor})"
                    ));
                }
                Ok(())
            }
            Some(RopeScaling::Factors { factors }) => {
                if factors.len() != self.rotary_dim / 2 {
                    return Err(format!(
                        "{} rope frequency factors for rotary_dim {}; there must be one per \
                         rotated pair ({})",
                        factors.len(),
                        self.rotary_dim,
                        self.rotary_dim / 2
                    ));
                }
                factors
                    .iter()
                    .try_for_each(|&f| positive("frequency factor", f))
            }
        }
    }
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
    /// Post-norms, q/k norms, soft-capping and local attention (Gemma 2/3);
    /// none of them for the classic families. Left out of the serialised
    /// config when empty, so the fingerprints of classic-family models (and
    /// the sessions that store them) are what they were before Gemma.
    #[serde(default, skip_serializing_if = "Extras::is_empty")]
    pub extras: Extras,
}

/// What a layer's attention may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttnKind {
    /// Every earlier position (causal).
    Global,
    /// Only the last `sliding_window` positions, this one included, with
    /// the local rotary base when there is one.
    Local,
}

/// Block features beyond the classic pre-norm transformer. Gemma 2 and 3
/// brought them together; each is a plain switch so a loader can set just
/// the ones its family has (Mistral's sliding window, Qwen3's q/k norms).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Extras {
    /// Norms on the attention and MLP outputs before they join the residual
    /// stream (`blocks.{l}.ln1_post`, `ln2_post`; Gemma 2/3).
    pub post_norms: bool,
    /// RMSNorm over `d_head` on each query and key head before rotary
    /// (`blocks.{l}.attn.q_norm`, `k_norm`; Gemma 3).
    pub qk_norm: bool,
    /// Attention scores become `cap * tanh(scores / cap)` before masking.
    pub attn_softcap: Option<f64>,
    /// Logits become `cap * tanh(logits / cap)`.
    pub final_softcap: Option<f64>,
    /// Window of local layers: a query sees keys `q - window < k <= q`.
    pub sliding_window: Option<usize>,
    /// Attention kind of each layer; empty means every layer is global.
    pub layer_attn: Vec<AttnKind>,
    /// Rotary for local layers when it differs from the global one
    /// (Gemma 3's `rope_local_base_freq`).
    pub local_rotary: Option<RotaryConfig>,
}

impl Extras {
    /// None of the extras: a classic family.
    pub fn is_empty(&self) -> bool {
        *self == Extras::default()
    }

    /// Whether layer `l` attends only within the sliding window.
    pub fn is_local(&self, l: usize) -> bool {
        self.sliding_window.is_some() && self.layer_attn.get(l) == Some(&AttnKind::Local)
    }

    fn validate(&self, n_layers: usize, d_head: usize) -> Result<(), String> {
        for (name, cap) in [
            ("attention-logit soft-cap", self.attn_softcap),
            ("final-logit soft-cap", self.final_softcap),
        ] {
            if cap.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
                return Err(format!(
                    "the {name} is {}; it must be a finite positive number (Gemma 2 uses 50 \
                     and 30)",
                    cap.unwrap_or_default()
                ));
            }
        }
        if self.sliding_window == Some(0) {
            return Err("sliding_window is 0; a query must see at least itself".into());
        }
        if !self.layer_attn.is_empty() && self.layer_attn.len() != n_layers {
            return Err(format!(
                "{} layer attention kinds are given for {n_layers} layers",
                self.layer_attn.len()
            ));
        }
        if self.layer_attn.contains(&AttnKind::Local) && self.sliding_window.is_none() {
            return Err("local attention layers need a sliding_window".into());
        }
        if let Some(r) = &self.local_rotary {
            r.validate(d_head)?;
        }
        Ok(())
    }
}

impl ModelConfig {
    /// Query heads that share one key/value head.
    pub fn kv_group(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }

    /// Checks the internal consistency a loader must guarantee, and that
    /// every size the config implies can be allocated: the values come from
    /// files, so zero heads, a non-finite epsilon or a 2^62 embedding width
    /// must be refused here, with the value named, before anything divides
    /// by them or allocates them.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("n_layers", self.n_layers),
            ("d_model", self.d_model),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("d_head", self.d_head),
            ("d_mlp", self.d_mlp),
            ("d_vocab", self.d_vocab),
            ("n_ctx", self.n_ctx),
        ] {
            if v == 0 {
                return Err(format!("{name} is 0; it must be a positive integer"));
            }
        }
        if self.n_heads % self.n_kv_heads != 0 {
            return Err(format!(
                "n_heads ({}) must be a multiple of n_kv_heads ({})",
                self.n_heads, self.n_kv_heads
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps >= 0.0) {
            return Err(format!(
                "the norm epsilon is {}; it must be a finite number >= 0 (typically 1e-5)",
                self.norm_eps
            ));
        }
        if !(self.attn_scale.is_finite() && self.attn_scale > 0.0) {
            return Err(format!(
                "the attention scale is {}; it must be finite and positive",
                self.attn_scale
            ));
        }
        if !self.norm_weight_offset.is_finite() || self.embed_scale.is_some_and(|s| !s.is_finite())
        {
            return Err("the norm weight offset and embedding scale must be finite".into());
        }
        if let Positions::Rotary(r) = &self.positions {
            r.validate(self.d_head)?;
        }
        self.extras.validate(self.n_layers, self.d_head)?;
        self.check_sizes()
    }

    /// Every weight and table the config implies, checked for overflow and
    /// against the memory this process can allocate (in f32, the widest
    /// dtype patchbench computes in).
    fn check_sizes(&self) -> Result<(), String> {
        let check = |what: &str, dims: &[usize]| {
            crate::util::mem::check_elements(what, dims, 4)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let (d, dh) = (self.d_model, self.d_head);
        let q_width = self.n_heads.checked_mul(dh);
        let kv_width = self.n_kv_heads.checked_mul(dh);
        let (Some(q_width), Some(kv_width)) = (q_width, kv_width) else {
            return Err(format!(
                "n_heads {} × d_head {dh} overflows; the config is corrupt",
                self.n_heads
            ));
        };
        check(
            &format!("the embedding ({} tokens × d_model {d})", self.d_vocab),
            &[self.d_vocab, d],
        )?;
        check(
            &format!("W_Q (d_model {d} × {} heads × d_head {dh})", self.n_heads),
            &[d, q_width],
        )?;
        check(
            &format!(
                "W_K (d_model {d} × {} kv heads × d_head {dh})",
                self.n_kv_heads
            ),
            &[d, kv_width],
        )?;
        check(
            &format!("the MLP (d_model {d} × d_mlp {})", self.d_mlp),
            &[d, self.d_mlp],
        )?;
        match &self.positions {
            Positions::Learned => check(
                &format!("W_pos (n_ctx {} × d_model {d})", self.n_ctx),
                &[self.n_ctx, d],
            ),
            // cos and sin tables for every position.
            Positions::Rotary(r) => check(
                &format!(
                    "the rotary tables (context length {} × rotary_dim {})",
                    self.n_ctx, r.rotary_dim
                ),
                &[self.n_ctx, r.rotary_dim],
            ),
        }
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
