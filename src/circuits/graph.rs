//! The computational graph circuits are made of.
//!
//! The residual stream is a sum of what every component wrote into it:
//! the input embedding, each attention head's output `z_h W_O^h`, each MLP's
//! output (biases of the output projections are constants and belong to no
//! edge). So the input a component reads decomposes over the components
//! upstream of it, and an edge `u -> v` is `u`'s term in `v`'s input.
//!
//! Senders: `input`, `a{l}.h{h}`, `m{l}`. Receivers: each head's query,
//! key and value inputs (`a{l}.h{h}<q>`, with grouped-query attention the
//! key/value receivers are KV heads, `a{l}.kv{g}<k>`), each MLP's input
//! (`m{l}`), and `logits` (the residual before `ln_final`). The names are
//! the EAP literature's (and TransformerLens's `a{l}.h{h}<q>` convention).
//!
//! Nodes and edges are plain index arenas (typed ids into `Vec`s); scores
//! live in dense sender × receiver matrices ([`Graph::idx`]), with the
//! pairs that are not edges (a sender not upstream of the receiver) NaN.

use crate::model::ModelConfig;

/// A sender's index in [`Graph::senders`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SenderId(pub u32);

/// A receiver's index in [`Graph::receivers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReceiverId(pub u32);

/// What writes into the residual stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// Token (and learned position) embeddings: `blocks.0.hook_resid_pre`.
    Input,
    /// One head's output (`attn.hook_result`).
    Head { layer: usize, head: usize },
    /// One MLP's output (`hook_mlp_out`).
    Mlp { layer: usize },
}

/// Which input of an attention head a receiver is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qkv {
    Q,
    K,
    V,
}

impl Qkv {
    pub fn letter(self) -> char {
        match self {
            Qkv::Q => 'q',
            Qkv::K => 'k',
            Qkv::V => 'v',
        }
    }
}

/// What reads the residual stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    /// A query head's queries, or a KV head's keys or values (`head` is the
    /// KV head for `K` and `V`).
    Head {
        layer: usize,
        head: usize,
        port: Qkv,
    },
    /// An MLP's input (`hook_mlp_in`).
    Mlp { layer: usize },
    /// The final residual, before `ln_final` and the unembedding.
    Logits,
}

/// The graph of one model shape.
#[derive(Debug, Clone)]
pub struct Graph {
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// Attention and MLP read the same residual (GPT-NeoX): an MLP does not
    /// read its own layer's heads.
    pub parallel: bool,
    pub senders: Vec<Sender>,
    pub receivers: Vec<Receiver>,
}

impl Graph {
    pub fn new(cfg: &ModelConfig) -> Self {
        let (nl, nh, nkv) = (cfg.n_layers, cfg.n_heads, cfg.n_kv_heads);
        let mut senders = vec![Sender::Input];
        let mut receivers = Vec::new();
        for layer in 0..nl {
            senders.extend((0..nh).map(|head| Sender::Head { layer, head }));
            senders.push(Sender::Mlp { layer });
            for (port, n) in [(Qkv::Q, nh), (Qkv::K, nkv), (Qkv::V, nkv)] {
                receivers.extend((0..n).map(|head| Receiver::Head { layer, head, port }));
            }
            receivers.push(Receiver::Mlp { layer });
        }
        receivers.push(Receiver::Logits);
        Graph {
            n_layers: nl,
            n_heads: nh,
            n_kv_heads: nkv,
            parallel: cfg.parallel_attn_mlp,
            senders,
            receivers,
        }
    }

    pub fn n_senders(&self) -> usize {
        self.senders.len()
    }

    pub fn n_receivers(&self) -> usize {
        self.receivers.len()
    }

    /// Index of `(s, r)` in a dense sender × receiver matrix.
    pub fn idx(&self, s: SenderId, r: ReceiverId) -> usize {
        s.0 as usize * self.n_receivers() + r.0 as usize
    }

    pub fn sender(&self, s: SenderId) -> Sender {
        self.senders[s.0 as usize]
    }

    pub fn receiver(&self, r: ReceiverId) -> Receiver {
        self.receivers[r.0 as usize]
    }

    /// Whether `s` writes into the residual stream before `r` reads it.
    pub fn is_edge(&self, s: SenderId, r: ReceiverId) -> bool {
        match (self.sender(s), self.receiver(r)) {
            (Sender::Input, _) | (_, Receiver::Logits) => true,
            (Sender::Head { layer: a, .. }, Receiver::Head { layer: b, .. })
            | (Sender::Mlp { layer: a }, Receiver::Head { layer: b, .. })
            | (Sender::Mlp { layer: a }, Receiver::Mlp { layer: b }) => a < b,
            (Sender::Head { layer: a, .. }, Receiver::Mlp { layer: b }) => {
                a < b || (a == b && !self.parallel)
            }
        }
    }

    /// Every edge, sender-major.
    pub fn edges(&self) -> Vec<(SenderId, ReceiverId)> {
        let mut out = Vec::new();
        for s in 0..self.n_senders() as u32 {
            for r in 0..self.n_receivers() as u32 {
                if self.is_edge(SenderId(s), ReceiverId(r)) {
                    out.push((SenderId(s), ReceiverId(r)));
                }
            }
        }
        out
    }

    /// The layer whose block a receiver belongs to (`n_layers` for logits).
    pub fn receiver_layer(&self, r: ReceiverId) -> usize {
        match self.receiver(r) {
            Receiver::Head { layer, .. } | Receiver::Mlp { layer } => layer,
            Receiver::Logits => self.n_layers,
        }
    }

    /// Senders that have written before block `l` starts (all of them for
    /// `l = n_layers`), in order: they are a prefix of [`Self::senders`].
    pub fn senders_before(&self, l: usize) -> usize {
        1 + l * (self.n_heads + 1)
    }

    /// Senders any receiver of block `l` may read, a prefix of
    /// [`Self::senders`]: those before the block plus its own heads (its
    /// MLP reads them); every sender for the logits (`l = n_layers`).
    pub fn senders_read_by(&self, l: usize) -> usize {
        if l < self.n_layers {
            self.senders_before(l) + self.n_heads
        } else {
            self.n_senders()
        }
    }

    /// Receivers of block `l`, a contiguous range: queries, keys, values, MLP.
    pub fn receivers_of(&self, l: usize) -> std::ops::Range<usize> {
        let per = self.n_heads + 2 * self.n_kv_heads + 1;
        if l == self.n_layers {
            let n = self.n_receivers();
            return n - 1..n;
        }
        l * per..(l + 1) * per
    }

    pub fn sender_name(&self, s: SenderId) -> String {
        match self.sender(s) {
            Sender::Input => "input".into(),
            Sender::Head { layer, head } => format!("a{layer}.h{head}"),
            Sender::Mlp { layer } => format!("m{layer}"),
        }
    }

    pub fn receiver_name(&self, r: ReceiverId) -> String {
        match self.receiver(r) {
            Receiver::Head { layer, head, port } => {
                let kv = self.n_kv_heads != self.n_heads && port != Qkv::Q;
                let h = if kv { "kv" } else { "h" };
                format!("a{layer}.{h}{head}<{}>", port.letter())
            }
            Receiver::Mlp { layer } => format!("m{layer}"),
            Receiver::Logits => "logits".into(),
        }
    }

    /// The sender named `name` (`input`, `a3.h0`, `m2`).
    pub fn find_sender(&self, name: &str) -> Option<SenderId> {
        (0..self.n_senders() as u32)
            .map(SenderId)
            .find(|&s| self.sender_name(s) == name)
    }

    /// The receiver named `name` (`a3.h0<k>`, `m2`, `logits`).
    pub fn find_receiver(&self, name: &str) -> Option<ReceiverId> {
        (0..self.n_receivers() as u32)
            .map(ReceiverId)
            .find(|&r| self.receiver_name(r) == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::random::preset_config;

    #[test]
    fn gpt2_tiny_edges_follow_the_residual_stream() {
        let cfg = preset_config("gpt2-tiny").unwrap();
        let g = Graph::new(&cfg);
        let (l, h) = (cfg.n_layers, cfg.n_heads);
        assert_eq!(g.n_senders(), 1 + l * (h + 1));
        assert_eq!(g.n_receivers(), l * (3 * h + 1) + 1);
        let s = |n: &str| g.find_sender(n).unwrap();
        let r = |n: &str| g.find_receiver(n).unwrap();
        assert!(g.is_edge(s("input"), r("a0.h0<q>")));
        assert!(!g.is_edge(s("a0.h0"), r("a0.h1<k>")));
        assert!(g.is_edge(s("a0.h0"), r("m0")));
        assert!(!g.is_edge(s("m0"), r("m0")));
        assert!(g.is_edge(s("m0"), r("a1.h0<v>")));
        assert!(g.is_edge(s(&format!("m{}", l - 1)), r("logits")));
        for layer in 0..=l {
            for i in g.receivers_of(layer) {
                assert_eq!(g.receiver_layer(ReceiverId(i as u32)), layer);
            }
        }
        let n = g.edges().len();
        assert!(n > 0 && n < g.n_senders() * g.n_receivers());
    }

    #[test]
    fn gqa_key_and_value_receivers_are_kv_heads() {
        let cfg = preset_config("llama-tiny").unwrap();
        assert!(cfg.n_kv_heads < cfg.n_heads);
        let g = Graph::new(&cfg);
        assert!(g.find_receiver("a0.kv0<k>").is_some());
        assert!(g.find_receiver("a0.h0<k>").is_none());
        let n_k = g
            .receivers
            .iter()
            .filter(|r| matches!(r, Receiver::Head { port: Qkv::K, .. }))
            .count();
        assert_eq!(n_k, cfg.n_layers * cfg.n_kv_heads);
    }
}
