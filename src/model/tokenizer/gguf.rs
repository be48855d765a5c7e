//! The tokenizer a GGUF file describes in its metadata, rebuilt the way
//! llama.cpp reads it (see the parent module's docs for why by hand).

use tokenizers::models::bpe::{Merges, Vocab as BpeVocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::{missing_merge_token, split_merge, Spelling, Tokenizer, TokenizerError};

/// A GGUF file's tokenizer metadata (`tokenizer.ggml.*`), as the GGUF loader
/// reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`, e.g. "smollm", "llama-bpe", "default".
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control,
    /// 4 user-defined, 5 unused, 6 byte.
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`, "a b" pairs in priority order.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.scores`.
    pub scores: Option<Vec<f32>>,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_token_id: Option<u32>,
    pub add_bos_token: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`: read, never applied (prompts are
    /// prefixes to continue; see the parent module).
    pub add_eos_token: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece): `▁` before the
    /// text; llama.cpp's default is true, Gemma's files say false.
    pub add_space_prefix: Option<bool>,
}

/// Per-`pre` choices llama.cpp makes besides the split.
struct PreFlavour {
    pre_tokenizer: PreTokenizerWrapper,
    /// A word that is itself a token skips the merges (Llama 3).
    ignore_merges: bool,
    /// BOS when the file has no `add_bos_token`.
    add_bos: bool,
}

// llama.cpp's regexes (llama-vocab.cpp), spelled as llama.cpp spells them:
// explicit `'[sS]` rather than `(?i:'s)`, which Unicode case folding would
// widen to "'ſ".
const GPT2_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer llama.cpp uses for a `tokenizer.ggml.pre` name. Its
/// regexes apply one after another, each to the pieces the previous left,
/// keeping unmatched text as pieces too: exactly `Split(.., Isolated)`.
fn gguf_pre_flavour(pre: Option<&str>) -> Result<PreFlavour, TokenizerError> {
    let split = |pattern: &str| -> PreTokenizerWrapper {
        Split::new(
            SplitPattern::Regex(pattern.to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .expect("llama.cpp's pre-tokenizer regexes compile")
        .into()
    };
    let then_bytes = |mut splits: Vec<PreTokenizerWrapper>| -> PreTokenizerWrapper {
        splits.push(ByteLevel::new(false, true, false).into());
        Sequence::new(splits).into()
    };
    // ByteLevel's own regex is GPT2_SPLIT plus a final `|\s+`, which only
    // catches what llama.cpp keeps as an unmatched piece anyway.
    let gpt2 = || ByteLevel::new(false, true, true).into();
    let plain = |pre_tokenizer| PreFlavour {
        pre_tokenizer,
        ignore_merges: false,
        add_bos: false,
    };

    // No `pre` at all means a file older than the key: llama.cpp's "default".
    let name = pre.unwrap_or("default");
    Ok(match name {
        "default" => plain(then_bytes(vec![
            split(r"[\p{P}\$\+<=>\^~\|]+"),
            split(GPT2_SPLIT),
            split(r"\p{N}+"),
            split("[0-9][0-9][0-9]"),
        ])),
        "gpt-2" | "phi-2" | "roberta-bpe" | "mpt" | "olmo" | "jais" => plain(gpt2()),
        // Every digit on its own, then GPT-2's split (SmolLM's `Digits` + `ByteLevel`).
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            plain(Sequence::new(vec![split(r"\p{N}"), gpt2()]).into())
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => PreFlavour {
            pre_tokenizer: then_bytes(vec![split(LLAMA3_SPLIT)]),
            ignore_merges: true,
            add_bos: true,
        },
        "dbrx" | "smaug-bpe" => plain(then_bytes(vec![split(LLAMA3_SPLIT)])),
        "qwen2" | "stablelm2" | "megrez" => plain(then_bytes(vec![split(QWEN2_SPLIT)])),
        other => {
            return Err(TokenizerError::Unsupported {
                what: format!("GGUF pre-tokenizer {other:?} (tokenizer.ggml.pre)"),
                fix: "patchbench knows default, gpt-2, smollm, starcoder, llama-bpe/llama3, \
                      dbrx, qwen2 and their aliases; load the model from its Hugging Face \
                      directory (with tokenizer.json) instead"
                    .into(),
            })
        }
    })
}

/// A post-processor that puts `bos` in front of every sequence.
pub(super) fn bos_template(bos_text: &str, bos: u32) -> TemplateProcessing {
    // Templates are space-separated and `:` marks a type id, so a BOS text
    // containing either gets a neutral key (the key is only a name).
    let key = if bos_text.contains([' ', ':']) || bos_text.starts_with('$') {
        "BOS"
    } else {
        bos_text
    };
    TemplateProcessing::builder()
        .try_single(format!("{key} $A"))
        .and_then(|b| b.try_pair(format!("{key} $A:0 {key}:1 $B:1")))
        .expect("a BOS template parses")
        .special_tokens(vec![SpecialToken::from((key.to_owned(), bos))])
        .build()
        .expect("the template only names the BOS token it is given")
}

/// The checks every GGUF vocabulary passes: tokens exist, token types
/// match them one to one, special ids are in range.
pub(super) fn check_vocab(v: &GgufVocab) -> Result<(), TokenizerError> {
    let invalid = |key, reason: String| TokenizerError::InvalidGguf { key, reason };
    let n = v.tokens.len();
    if n == 0 {
        return Err(invalid("tokenizer.ggml.tokens", "is empty".into()));
    }
    if let Some(types) = &v.token_types {
        if types.len() != n {
            return Err(invalid(
                "tokenizer.ggml.token_type",
                format!(
                    "has {} entries but tokenizer.ggml.tokens has {n}",
                    types.len()
                ),
            ));
        }
    }
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", v.bos_token_id),
        ("tokenizer.ggml.eos_token_id", v.eos_token_id),
        ("tokenizer.ggml.unknown_token_id", v.unk_token_id),
    ] {
        if let Some(id) = id.filter(|&id| id as usize >= n) {
            return Err(invalid(
                key,
                format!("is {id} but the vocabulary has only {n} tokens"),
            ));
        }
    }
    Ok(())
}

pub(super) fn gguf_byte_level_bpe(v: GgufVocab) -> Result<Tokenizer, TokenizerError> {
    check_vocab(&v)?;
    let GgufVocab {
        pre,
        mut tokens,
        token_types,
        merges,
        bos_token_id,
        add_bos_token,
        ..
    } = v;
    let invalid = |key, reason: String| TokenizerError::InvalidGguf { key, reason };
    let n = tokens.len();

    // llama.cpp names empty tokens rather than letting them collide.
    for (id, token) in tokens.iter_mut().enumerate() {
        if token.is_empty() {
            *token = format!("[EMPTY_{id}]");
        }
    }
    let mut vocab = BpeVocab::default();
    vocab.reserve(n);
    for (id, token) in tokens.iter().enumerate() {
        if let Some(first) = vocab.insert(token.clone(), id as u32) {
            return Err(invalid(
                "tokenizer.ggml.tokens",
                format!("lists {token:?} twice, as ids {first} and {id}"),
            ));
        }
    }
    let mut bpe_merges = Merges::with_capacity(merges.len());
    for (index, merge) in merges.iter().enumerate() {
        let pair = split_merge(merge).ok_or_else(|| {
            invalid(
                "tokenizer.ggml.merges",
                format!("entry {index} ({merge:?}) is not two tokens separated by a space"),
            )
        })?;
        if let Some(missing) = missing_merge_token(&pair, |t| vocab.contains_key(t)) {
            return Err(invalid(
                "tokenizer.ggml.merges",
                format!("entry {index} ({merge:?}) needs {missing:?}, which is not in tokenizer.ggml.tokens"),
            ));
        }
        bpe_merges.push(pair);
    }

    let flavour = gguf_pre_flavour(pre.as_deref())?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, bpe_merges)
        .ignore_merges(flavour.ignore_merges)
        .build()
        .map_err(|e| invalid("tokenizer.ggml.merges", e.to_string()))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(flavour.pre_tokenizer));
    inner.with_decoder(Some(ByteLevel::default()));

    // Control tokens (3) are special, user-defined ones (4) are not (as in
    // llama.cpp and transformers); both match whole in the raw text and keep
    // their ids, since they are already in the vocabulary.
    let added: Vec<AddedToken> = token_types
        .iter()
        .flatten()
        .zip(&tokens)
        .filter(|(ty, _)| matches!(ty, 3 | 4))
        .map(|(ty, token)| AddedToken::from(token.clone(), *ty == 3).normalized(false))
        .collect();
    inner
        .add_tokens(added)
        .map_err(|e| invalid("tokenizer.ggml.token_type", e.to_string()))?;

    let adds_bos = match (add_bos_token, bos_token_id) {
        (Some(true), None) => {
            return Err(invalid(
                "tokenizer.ggml.add_bos_token",
                "is true but there is no tokenizer.ggml.bos_token_id".into(),
            ))
        }
        (Some(add), _) => add,
        (None, bos) => flavour.add_bos && bos.is_some(),
    };
    if let (true, Some(bos)) = (adds_bos, bos_token_id) {
        inner.with_post_processor(Some(bos_template(&tokens[bos as usize], bos)));
    }
    Ok(Tokenizer {
        inner,
        origin: format!(
            "the GGUF tokenizer (gpt2, pre {:?})",
            pre.as_deref().unwrap_or("default")
        ),
        bos: bos_token_id,
        adds_bos,
        spelling: Spelling::ByteLevel,
    })
}
