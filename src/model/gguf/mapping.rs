//! What an architecture file produces: a list saying which GGUF tensor (or
//! which rows of it) becomes which canonical tensor, and in what layout.
//!
//! Mappings are only names and layouts; they never read tensor data. Turning
//! a [`Mapped`] entry into a tensor is [`super::tensors`]' job, so how
//! weights are materialised (dequantised floats today) can change in one
//! place without touching any architecture.

use crate::model::config::ModelConfig;

/// How a GGUF tensor's layout relates to the canonical one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Stored as canonical: embeddings `[d_vocab, d_model]`, norms, biases.
    AsIs,
    /// A matrix stored `[out, in]` (candle's order of ggml's dims):
    /// canonical is `[in, out]`.
    Linear,
    /// A Q or K matrix whose rows llama.cpp's converter permuted for
    /// adjacent-pair rotary (`LlamaModel.permute`), `heads` heads of them:
    /// un-permuted to Hugging Face's half-split layout, then as [`Layout::Linear`].
    LinearUnpermuted { heads: usize },
}

/// One canonical tensor and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub canonical: String,
    pub gguf: String,
    pub layout: Layout,
    /// Only rows `start..start + len` of the GGUF tensor (candle's dim 0):
    /// one of Q, K, V in a fused `attn_qkv` weight or bias.
    pub rows: Option<(usize, usize)>,
}

impl Mapped {
    pub fn new(canonical: impl Into<String>, gguf: impl Into<String>, layout: Layout) -> Self {
        Self {
            canonical: canonical.into(),
            gguf: gguf.into(),
            layout,
            rows: None,
        }
    }
    pub fn as_is(canonical: impl Into<String>, gguf: impl Into<String>) -> Self {
        Self::new(canonical, gguf, Layout::AsIs)
    }
    pub fn linear(canonical: impl Into<String>, gguf: impl Into<String>) -> Self {
        Self::new(canonical, gguf, Layout::Linear)
    }
    /// Rows `start..start + len` only.
    pub fn rows(mut self, start: usize, len: usize) -> Self {
        self.rows = Some((start, len));
        self
    }
}

/// The per-layer linears every Llama-like architecture (llama, qwen2,
/// gemma*) names alike after Q and K: ours, then llama.cpp's name.
pub const VO_AND_GATED_MLP: [(&str, &str); 5] = [
    ("attn.V", "attn_v"),
    ("attn.O", "attn_output"),
    ("mlp.gate", "ffn_gate"),
    ("mlp.in", "ffn_up"),
    ("mlp.out", "ffn_down"),
];

/// An architecture's whole mapping.
#[derive(Debug, Default)]
pub struct TensorMap {
    pub entries: Vec<Mapped>,
    /// GGUF tensors the config already used (Llama 3.1's `rope_freqs`), so
    /// they are not reported as unused.
    pub consumed: Vec<String>,
}

impl TensorMap {
    pub fn push(&mut self, m: Mapped) {
        self.entries.push(m);
    }
}

/// Helpers the architecture files share. `m` decides optional biases: a
/// bias the file has is mapped, one it lacks means zero.
impl TensorMap {
    /// `{gguf}.weight` (and `{gguf}.bias` when `bias`) as a norm `{ours}.w` / `.b`.
    pub fn norm(&mut self, ours: &str, gguf: &str, bias: bool) {
        self.push(Mapped::as_is(format!("{ours}.w"), format!("{gguf}.weight")));
        if bias {
            self.push(Mapped::as_is(format!("{ours}.b"), format!("{gguf}.bias")));
        }
    }

    /// A linear layer `{gguf}.weight` as `W_{ours}`, and its bias as
    /// `b_{ours}` when the file has one. `ours` is `attn.O`, `mlp.in`, ...
    pub fn linear_bias(&mut self, has: impl Fn(&str) -> bool, ours: &str, gguf: &str) {
        let (module, name) = ours.rsplit_once('.').unwrap_or(("", ours));
        let dot = if module.is_empty() { "" } else { "." };
        self.push(Mapped::linear(
            format!("{module}{dot}W_{name}"),
            format!("{gguf}.weight"),
        ));
        let bias = format!("{gguf}.bias");
        if has(&bias) {
            self.push(Mapped::as_is(format!("{module}{dot}b_{name}"), bias));
        }
    }

    /// [`Self::linear_bias`] for each `(ours, gguf)` pair of one layer:
    /// `{block}.{ours}` from `{gguf_block}.{gguf}`.
    pub fn linears_bias(
        &mut self,
        has: impl Fn(&str) -> bool,
        block: &str,
        gguf_block: &str,
        pairs: &[(&str, &str)],
    ) {
        for (ours, theirs) in pairs {
            self.linear_bias(
                &has,
                &format!("{block}.{ours}"),
                &format!("{gguf_block}.{theirs}"),
            );
        }
    }

    /// The final norm, and the unembedding unless it is tied to the
    /// embedding (`output.weight` absent).
    pub fn final_norm_and_unembed(&mut self, tied_unembed: bool, bias: bool) {
        self.norm("ln_final", "output_norm", bias);
        if !tied_unembed {
            self.push(Mapped::linear("unembed.W_U", "output.weight"));
        }
    }

    /// Every layer of a LayerNorm architecture with a fused `attn_qkv`
    /// (gpt2, gptneox as llama.cpp's converter writes them): norms with
    /// biases, Q/K/V split from the fused rows, O and a two-matrix MLP.
    pub fn fused_qkv_layers(&mut self, has: impl Fn(&str) -> bool, config: &ModelConfig) {
        let width = config.n_heads * config.d_head;
        for l in 0..config.n_layers {
            let (g, b) = (format!("blk.{l}"), format!("blocks.{l}"));
            self.norm(&format!("{b}.ln1"), &format!("{g}.attn_norm"), true);
            self.fused_qkv(&has, &b, &format!("{g}.attn_qkv"), width, width);
            self.linear_bias(&has, &format!("{b}.attn.O"), &format!("{g}.attn_output"));
            self.norm(&format!("{b}.ln2"), &format!("{g}.ffn_norm"), true);
            self.linears_bias(
                &has,
                &b,
                &g,
                &[("mlp.in", "ffn_up"), ("mlp.out", "ffn_down")],
            );
        }
    }

    /// A fused `attn_qkv` whose rows are Q, then K, then V (GPT-2 and
    /// GPT-NeoX as llama.cpp's converter writes them), split into
    /// `{block}.attn.W_Q|K|V` and, when present, `b_Q|K|V`.
    pub fn fused_qkv(
        &mut self,
        has: impl Fn(&str) -> bool,
        block: &str,
        gguf: &str,
        q_rows: usize,
        kv_rows: usize,
    ) {
        let parts = [
            ("Q", 0, q_rows),
            ("K", q_rows, kv_rows),
            ("V", q_rows + kv_rows, kv_rows),
        ];
        for (n, start, len) in parts {
            self.push(
                Mapped::linear(format!("{block}.attn.W_{n}"), format!("{gguf}.weight"))
                    .rows(start, len),
            );
        }
        let bias = format!("{gguf}.bias");
        if has(&bias) {
            for (n, start, len) in parts {
                self.push(
                    Mapped::as_is(format!("{block}.attn.b_{n}"), bias.clone()).rows(start, len),
                );
            }
        }
    }
}
