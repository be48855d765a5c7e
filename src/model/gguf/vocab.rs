//! The `tokenizer.ggml.*` metadata, read into a [`GgufVocab`] for the
//! tokenizer module to rebuild.
//!
//! Gemma files rank by file position, not by score: their SentencePiece
//! merges are rebuilt from the vocabulary best-first, and Gemma's scores do
//! not follow the merge order. In Gemma 3's 262k vocabulary the normal
//! pieces' scores fall with their position, but control and user-defined
//! pieces all score -1000 and byte pieces 0, so by score the user-defined
//! `"  "` (id 138, `▁▁` once respelled) would rank after `▁l` ... `▁leading`
//! and `"  leading"` would split as `▁`, `▁leading` instead of `▁▁`,
//! `leading`. transformers' GGUF loader ranks Gemma's merges by position for
//! this reason (`gemma_tokenizer` in its gguf_tokenizer_mapping.py), and
//! patchbench does the same: the scores handed on are `-position`.

use super::meta::Meta;
use crate::model::tokenizer::GgufVocab;
use crate::model::ModelError;

/// Architectures whose SentencePiece merges rank by file position.
const GEMMA: [&str; 3] = ["gemma", "gemma2", "gemma3"];

pub fn vocab_from_metadata(m: &Meta) -> Result<GgufVocab, ModelError> {
    let tokens = m
        .strings("tokenizer.ggml.tokens")?
        .ok_or_else(|| m.bad("GGUF metadata has no tokenizer.ggml.tokens; patchbench needs the tokenizer inside the file".into()))?;
    let token_types = match m.get("tokenizer.ggml.token_type") {
        None => None,
        Some(v) => Some(
            v.to_vec()
                .map_err(|_| m.bad("tokenizer.ggml.token_type is not an array".into()))?
                .iter()
                .map(|x| {
                    x.to_i32()
                        .map_err(|_| m.bad("tokenizer.ggml.token_type holds non-integers".into()))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let scores = match m.get("tokenizer.ggml.scores") {
        None => None,
        Some(v) => Some(
            v.to_vec()
                .map_err(|_| m.bad("tokenizer.ggml.scores is not an array".into()))?
                .iter()
                .map(|x| {
                    x.to_f32()
                        .map_err(|_| m.bad("tokenizer.ggml.scores holds non-numbers".into()))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let scores = if GEMMA.contains(&m.opt_str("general.architecture").as_deref().unwrap_or("")) {
        scores.map(|s| (0..s.len()).map(|i| -(i as f32)).collect())
    } else {
        scores
    };
    let id = |k: &str| -> Result<Option<u32>, ModelError> {
        m.opt_usize(k)?
            .map(|x| {
                u32::try_from(x)
                    .map_err(|_| m.bad(format!("GGUF metadata {k:?} is {x}, not a token id")))
            })
            .transpose()
    };
    Ok(GgufVocab {
        model: m
            .opt_str("tokenizer.ggml.model")
            .unwrap_or_else(|| "gpt2".into()),
        pre: m.opt_str("tokenizer.ggml.pre"),
        tokens,
        token_types,
        merges: m.strings("tokenizer.ggml.merges")?.unwrap_or_default(),
        scores,
        bos_token_id: id("tokenizer.ggml.bos_token_id")?,
        eos_token_id: id("tokenizer.ggml.eos_token_id")?,
        unk_token_id: id("tokenizer.ggml.unknown_token_id")?,
        add_bos_token: m
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok()),
        add_eos_token: m
            .get("tokenizer.ggml.add_eos_token")
            .and_then(|v| v.to_bool().ok()),
        add_space_prefix: m
            .get("tokenizer.ggml.add_space_prefix")
            .and_then(|v| v.to_bool().ok()),
    })
}
