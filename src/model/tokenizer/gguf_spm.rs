//! SentencePiece vocabularies from GGUF metadata (`tokenizer.ggml.model =
//! llama`: Llama 1/2, Mistral, Gemma), rebuilt as llama.cpp's SPM tokenizer
//! reads them.
//!
//! llama.cpp starts from the text's characters and repeatedly merges the
//! adjacent pair whose concatenation is the vocabulary entry with the best
//! score; a character no entry covers becomes its UTF-8 bytes (`<0xNN>`).
//! A BPE whose merges are every (left, right) split of every entry, ranked
//! by that entry's score, does exactly this (Gemma files: by the entry's
//! file position, which the GGUF reader hands on as the score; see
//! `gguf/vocab.rs`). The merges are derived the way
//! transformers derives them from a GGUF (`generate_merges`: per entry its
//! splits in id order, then all of them by score, longer left piece first),
//! so the two agree on ties too. Spaces become `▁`; a `▁` is prepended to
//! each text piece unless `tokenizer.ggml.add_space_prefix` is false
//! (Gemma); control tokens are special and user-defined ones matched whole.
//! BOS follows `tokenizer.ggml.add_bos_token` (llama.cpp's default for SPM
//! is to add it). An EOS is never appended whatever `add_eos_token` says:
//! a prompt is a prefix to continue (see the parent module).

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Vocab as BpeVocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper};

use super::gguf::{bos_template, check_vocab, GgufVocab};
use super::{Spelling, Tokenizer, TokenizerError};

const SPACE: &str = "\u{2581}";

/// llama.cpp's token types.
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

pub(super) fn gguf_sentencepiece(v: GgufVocab) -> Result<Tokenizer, TokenizerError> {
    check_vocab(&v)?;
    let invalid = |key, reason: String| TokenizerError::InvalidGguf { key, reason };
    let GgufVocab {
        mut tokens,
        token_types,
        scores,
        bos_token_id,
        unk_token_id,
        add_bos_token,
        add_space_prefix,
        ..
    } = v;
    let n = tokens.len();
    let scores = match scores {
        Some(s) if s.len() != n => {
            return Err(invalid(
                "tokenizer.ggml.scores",
                format!("has {} entries but tokenizer.ggml.tokens has {n}", s.len()),
            ))
        }
        Some(s) if s.iter().any(|x| !x.is_finite()) => {
            return Err(invalid(
                "tokenizer.ggml.scores",
                "holds a NaN or infinite score".into(),
            ))
        }
        Some(s) => s,
        // Without scores, earlier entries win, as in a SentencePiece BPE.
        None => (0..n).map(|i| -(i as f32)).collect(),
    };
    respell_spaces(&mut tokens);

    let mut vocab: HashMap<String, u32> = HashMap::with_capacity(n);
    for (id, token) in tokens.iter().enumerate() {
        if let Some(first) = vocab.insert(token.clone(), id as u32) {
            return Err(invalid(
                "tokenizer.ggml.tokens",
                format!("lists {token:?} twice, as ids {first} and {id}"),
            ));
        }
    }
    let merges = merges_by_score(&tokens, &scores, &vocab);

    let unk = unk_token_id.map(|id| tokens[id as usize].clone());
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<BpeVocab>(), merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let bpe = builder
        .build()
        .map_err(|e| invalid("tokenizer.ggml.tokens", e.to_string()))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);

    let prefix = add_space_prefix.unwrap_or(true);
    let replace: NormalizerWrapper = Replace::new(" ", SPACE)
        .expect("a literal pattern compiles")
        .into();
    inner
        .with_normalizer(Some(if prefix {
            NormalizerSequence::new(vec![Prepend::new(SPACE.into()).into(), replace]).into()
        } else {
            replace
        }))
        .map_err(|e| invalid("tokenizer.ggml.add_space_prefix", e.to_string()))?;
    let mut decoders: Vec<DecoderWrapper> = vec![
        tokenizers::decoders::DecoderWrapper::Replace(
            Replace::new(SPACE, " ").expect("a literal pattern compiles"),
        ),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }
    inner.with_decoder(Some(DecoderSequence::new(decoders)));

    // Control tokens are special; user-defined ones (Gemma's "<start_of_turn>",
    // runs of newlines) are matched whole in the raw text but are not special.
    let added: Vec<AddedToken> = token_types
        .iter()
        .flatten()
        .zip(&tokens)
        .filter(|(ty, _)| matches!(**ty, CONTROL | USER_DEFINED))
        .map(|(ty, token)| AddedToken::from(token.clone(), *ty == CONTROL).normalized(false))
        .collect();
    inner
        .add_tokens(added)
        .map_err(|e| invalid("tokenizer.ggml.token_type", e.to_string()))?;

    let adds_bos = match (add_bos_token, bos_token_id) {
        (Some(true) | None, Some(_)) => true,
        (Some(true), None) => {
            return Err(invalid(
                "tokenizer.ggml.add_bos_token",
                "is true but there is no tokenizer.ggml.bos_token_id".into(),
            ))
        }
        (Some(false), _) | (None, None) => false,
    };
    if let (true, Some(bos)) = (adds_bos, bos_token_id) {
        inner.with_post_processor(Some(bos_template(&tokens[bos as usize], bos)));
    }
    Ok(Tokenizer {
        inner,
        origin: "the GGUF tokenizer (SentencePiece)".into(),
        bos: bos_token_id,
        adds_bos,
        spelling: Spelling::Metaspace,
    })
}

/// Some converters store a vocabulary entry of several spaces as real
/// spaces; text only ever reaches the model as `▁`, so spell it that way
/// (unless that spelling is already taken).
fn respell_spaces(tokens: &mut [String]) {
    let respelled: Vec<(usize, String)> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.is_empty() && t.chars().all(|c| c == ' '))
        .map(|(i, t)| (i, SPACE.repeat(t.chars().count())))
        .collect();
    for (i, spelling) in respelled {
        if !tokens.contains(&spelling) {
            tokens[i] = spelling;
        }
    }
}

/// Every split of every entry into two entries, best score first (ties:
/// longer left piece, then longer right piece, then the entries' order and
/// the pieces' ids), as transformers' `generate_merges` orders them.
fn merges_by_score(
    tokens: &[String],
    scores: &[f32],
    vocab: &HashMap<String, u32>,
) -> Vec<(String, String)> {
    struct Merge {
        left: u32,
        right: u32,
        score: f32,
        left_len: usize,
        right_len: usize,
    }
    let mut merges: Vec<Merge> = Vec::new();
    let mut local: Vec<Merge> = Vec::new();
    for (token, &score) in tokens.iter().zip(scores) {
        local.clear();
        let total = token.chars().count();
        for (left_len, (at, _)) in token.char_indices().enumerate().skip(1) {
            let (l, r) = token.split_at(at);
            if let (Some(&left), Some(&right)) = (vocab.get(l), vocab.get(r)) {
                local.push(Merge {
                    left,
                    right,
                    score,
                    left_len,
                    right_len: total - left_len,
                });
            }
        }
        local.sort_by_key(|m| (m.left, m.right));
        merges.append(&mut local);
    }
    // Stable, descending: equal keys keep the order above, as Python's
    // `sorted(..., reverse=True)` does.
    merges.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.left_len.cmp(&a.left_len))
            .then(b.right_len.cmp(&a.right_len))
    });
    merges
        .into_iter()
        .map(|m| {
            (
                tokens[m.left as usize].clone(),
                tokens[m.right as usize].clone(),
            )
        })
        .collect()
}
