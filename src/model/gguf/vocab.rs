//! The `tokenizer.ggml.*` metadata, read into a [`GgufVocab`] for the
//! tokenizer module to rebuild.

use super::meta::Meta;
use crate::model::tokenizer::GgufVocab;
use crate::model::ModelError;

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
