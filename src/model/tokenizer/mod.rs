//! Tokenizers: one wrapper over the Hugging Face `tokenizers` crate, whatever
//! the source — a `tokenizer.json`, GPT-2's `vocab.json` + `merges.txt`, or
//! the vocabulary a GGUF file stores in its metadata.
//!
//! # BOS is explicit
//!
//! Patching compares the clean and corrupted runs position by position, so
//! every position must be one the researcher can see. Whether a BOS token is
//! prepended is therefore a parameter of [`Tokenizer::encode`] (TransformerLens's
//! `prepend_bos`), not something a post-processor does behind our back: `None`
//! keeps what the tokenizer does by itself ([`Tokenizer::adds_bos_by_default`]),
//! `Some(true)` gives exactly one BOS at the front — never two, even when the
//! prompt already starts with the BOS text — and `Some(false)` gives none.
//! Asking for a BOS the tokenizer does not have is an error, not a silent
//! no-op. Nothing else a post-processor might add (an EOS, pair separators) is
//! ever added: a prompt is a prefix for the model to continue. Answers
//! ([`Tokenizer::single_token`]) are tokenised bare, since they stand for the
//! next token rather than the start of a text.
//!
//! # GGUF tokenizers are rebuilt by hand
//!
//! A GGUF file carries no `tokenizer.json`, only llama.cpp's description of
//! one: tokens, token types, merges, special ids, and a `pre` name for the
//! pre-tokenizer. Generic converters get this subtly wrong — candle's
//! `TokenizerFromGguf` adds a prefix space, so SmolLM2's "The" becomes "ĠThe"
//! (378) instead of "The" (504), and transformers' converter drops SmolLM's
//! digit split — and a wrong token id does not fail, it just shifts every
//! logit. So [`Tokenizer::from_gguf_vocab`] assembles the byte-level BPE piece
//! by piece the way llama.cpp (the runtime the file was written for) reads
//! it: the `pre` name selects llama.cpp's exact regex splits, there is no
//! prefix space, control and user-defined tokens are matched whole, and BOS is
//! added only when `add_bos_token` (or llama.cpp's default for that `pre`) says
//! so. A `pre` name we do not know is an error rather than a guess, for the
//! same reason. That builder lives in `gguf.rs`.

mod gguf;
mod gguf_spm;
mod guards;
mod post_processor;

use gguf::gguf_byte_level_bpe;
pub use gguf::GgufVocab;
use gguf_spm::gguf_sentencepiece;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use crate::util::fs::{limits, read_capped};

use tokenizers::models::bpe::{Merges, Vocab as BpeVocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, DecoderWrapper};

/// Everything that can go wrong building or using a [`Tokenizer`].
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("cannot read tokenizer file {0}")]
    Read(#[from] crate::util::fs::ReadError),
    #[error("{origin} is not a valid tokenizer: {reason} — {fix}")]
    Invalid {
        origin: String,
        reason: String,
        fix: String,
    },
    #[error(
        "invalid GGUF tokenizer metadata: {key} {reason} — the file is damaged or was written by \
         a broken converter; re-download it, or re-convert the model with llama.cpp's \
         convert_hf_to_gguf.py"
    )]
    InvalidGguf { key: &'static str, reason: String },
    #[error("{what} is not supported — {fix}")]
    Unsupported { what: String, fix: String },
    #[error(
        "cannot prepend a BOS token: {origin} has no BOS token — tokenize without one \
         (prepend_bos = false)"
    )]
    NoBos { origin: String },
    #[error(
        "answer {text:?} is {} tokens {}; answers must be a single token — {hint}",
        .pieces.len(),
        quoted_list(.pieces)
    )]
    NotSingleToken {
        text: String,
        pieces: Vec<String>,
        hint: String,
    },
    #[error("cannot tokenize {text:?} with {origin}: {reason}")]
    Encode {
        text: String,
        origin: String,
        reason: String,
    },
}

/// `["Par", "is"]`, without Debug's re-escaping of the already escaped pieces.
fn quoted_list(pieces: &[String]) -> String {
    let quoted: Vec<String> = pieces.iter().map(|p| format!("\"{p}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// How vocabulary entries spell text, which [`Tokenizer::token_str`] undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    /// GPT-2's byte-to-unicode alphabet: 'Ġ' is a space, 'Ċ' a newline.
    ByteLevel,
    /// SentencePiece: '▁' is a space, `<0x0A>` a raw byte.
    Metaspace,
    Plain,
}

/// A tokenizer with an explicit BOS policy. `Send + Sync`, so threads can
/// share one behind an `Arc`; a clone copies the vocabulary (a few MB).
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Where it came from, for error messages.
    origin: String,
    bos: Option<u32>,
    adds_bos: bool,
    spelling: Spelling,
}

// The worker thread owns the model and the UI thread tokenises live.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Tokenizer>();
};

const ENDOFTEXT: &str = "<|endoftext|>";

/// BOS candidates for a `tokenizer.json` whose post-processor adds none, most
/// specific first. (`tokenizer.json` has no BOS field; it lives in
/// `tokenizer_config.json`.)
const BOS_NAMES: [&str; 5] = [
    "<|begin_of_text|>",
    "<bos>",
    "<s>",
    "<|startoftext|>",
    ENDOFTEXT,
];

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let bytes = read_capped(path, limits::TOKENIZER, "tokenizer.json")?;
        Self::from_json_bytes(&bytes, &path.display().to_string())
    }

    /// Parses the contents of a `tokenizer.json`; `origin` names it in errors.
    pub fn from_json_bytes(bytes: &[u8], origin: &str) -> Result<Self, TokenizerError> {
        let invalid = |reason: String| TokenizerError::Invalid {
            origin: origin.to_owned(),
            reason,
            fix: "use the model's Hugging Face tokenizer.json (not tokenizer_config.json), \
                  re-downloaded if it may be truncated"
                .to_owned(),
        };
        // The tokenizers crate panics (an `expect` in its decoder
        // deserialiser) on any JSON error inside the `decoder` object: a raw
        // control character, a lone surrogate escape (both found by
        // fuzzing). Parsing the whole text as JSON first, strings decoded,
        // turns every such file into an error; a skim that does not decode
        // strings misses the surrogates.
        let json = serde_json::from_slice::<serde_json::Value>(bytes)
            .map_err(|e| invalid(e.to_string()))?;
        // Parts the crate panics on, when loading or later (guards.rs).
        let refused = |r: guards::Refusal| TokenizerError::Invalid {
            origin: origin.to_owned(),
            reason: r.reason,
            fix: r.fix,
        };
        guards::check_json(&json).map_err(refused)?;
        let mut inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| invalid(e.to_string()))?;
        guards::check_decoder(inner.get_decoder()).map_err(refused)?;
        post_processor::check(&inner, |id| inner.id_to_token(id).is_some()).map_err(refused)?;
        // A saved tokenizer may pad or truncate; a prompt must stay exactly its tokens.
        inner.with_padding(None);
        let _ = inner.with_truncation(None);

        let (bos, adds_bos) = match prepended_token(&inner) {
            Some(id) => (Some(id), true),
            None => (
                BOS_NAMES.iter().find_map(|name| inner.token_to_id(name)),
                false,
            ),
        };
        let spelling = spelling_of(inner.get_decoder());
        Ok(Self {
            inner,
            origin: origin.to_owned(),
            bos,
            adds_bos,
            spelling,
        })
    }

    /// Loads a GPT-2 style byte-level BPE from `vocab.json` and `merges.txt`.
    pub fn from_vocab_merges(vocab_json: &Path, merges_txt: &Path) -> Result<Self, TokenizerError> {
        let read = |path: &Path| read_capped(path, limits::TOKENIZER, "tokenizer vocabulary file");
        let origin = format!("{} + {}", vocab_json.display(), merges_txt.display());
        Self::from_vocab_merges_bytes(&read(vocab_json)?, &read(merges_txt)?, &origin)
    }

    /// A byte-level BPE from the contents of `vocab.json` and `merges.txt`:
    /// no prefix space, no BOS added, and `<|endoftext|>` (if present) as the
    /// special token that serves as BOS and EOS, as in GPT-2.
    pub fn from_vocab_merges_bytes(
        vocab_json: &[u8],
        merges_txt: &[u8],
        origin: &str,
    ) -> Result<Self, TokenizerError> {
        let invalid = |reason: String| TokenizerError::Invalid {
            origin: origin.to_owned(),
            reason,
            fix: "vocab.json must be a JSON object mapping each token to its id, and merges.txt \
                  one \"left right\" pair per line"
                .to_owned(),
        };
        let vocab: HashMap<String, u32> =
            serde_json::from_slice(vocab_json).map_err(|e| invalid(format!("vocab.json: {e}")))?;
        let mut by_id: HashMap<u32, &str> = HashMap::with_capacity(vocab.len());
        for (token, &id) in &vocab {
            if let Some(other) = by_id.insert(id, token) {
                let (a, b) = if other < token.as_str() {
                    (other, token.as_str())
                } else {
                    (token.as_str(), other)
                };
                return Err(invalid(format!(
                    "vocab.json gives id {id} to both {a:?} and {b:?}"
                )));
            }
        }
        let text = std::str::from_utf8(merges_txt)
            .map_err(|e| invalid(format!("merges.txt is not UTF-8: {e}")))?;
        let mut merges = Merges::new();
        for (index, line) in text.lines().enumerate() {
            if line.trim().is_empty() || (index == 0 && line.starts_with("#version")) {
                continue;
            }
            let pair = split_merge(line).ok_or_else(|| {
                invalid(format!(
                    "merges.txt line {}: {line:?} is not two tokens separated by a space",
                    index + 1
                ))
            })?;
            if let Some(missing) = missing_merge_token(&pair, |t| vocab.contains_key(t)) {
                return Err(invalid(format!(
                    "merges.txt line {}: {line:?} needs {missing:?}, which is not in vocab.json",
                    index + 1
                )));
            }
            merges.push(pair);
        }

        let bpe = BPE::builder()
            .vocab_and_merges(vocab.into_iter().collect::<BpeVocab>(), merges)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        inner.with_decoder(Some(ByteLevel::default()));
        let endoftext = inner.token_to_id(ENDOFTEXT);
        if endoftext.is_some() {
            inner
                .add_special_tokens([AddedToken::from(ENDOFTEXT, true).normalized(false)])
                .map_err(|e| invalid(e.to_string()))?;
        }
        Ok(Self {
            inner,
            origin: origin.to_owned(),
            bos: endoftext,
            adds_bos: false,
            spelling: Spelling::ByteLevel,
        })
    }

    /// GPT-2's BPE, embedded in the binary so the demo and `random:` models
    /// need no files.
    pub fn gpt2() -> Self {
        static GPT2: OnceLock<Tokenizer> = OnceLock::new();
        GPT2.get_or_init(|| {
            Self::from_vocab_merges_bytes(
                include_bytes!("../../../assets/gpt2/vocab.json"),
                include_bytes!("../../../assets/gpt2/merges.txt"),
                "GPT-2 BPE (embedded)",
            )
            .expect("the embedded GPT-2 vocab.json and merges.txt are valid")
        })
        .clone()
    }

    /// Rebuilds the tokenizer a GGUF file describes (see the module docs).
    pub fn from_gguf_vocab(v: GgufVocab) -> Result<Self, TokenizerError> {
        match v.model.as_str() {
            "gpt2" => gguf_byte_level_bpe(v),
            "llama" => gguf_sentencepiece(v),
            other => Err(TokenizerError::Unsupported {
                what: format!("GGUF tokenizer model {other:?} (tokenizer.ggml.model)"),
                fix: "GGUF files with a \"gpt2\" (byte-level BPE) or \"llama\" (SentencePiece) \
                      tokenizer load; for others, \
                      load the model from its Hugging Face directory (with tokenizer.json)"
                    .into(),
            }),
        }
    }

    /// Number of distinct tokens, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The BOS token: GGUF's `bos_token_id`, the token a `tokenizer.json`
    /// post-processor prepends, or else the first of `<|begin_of_text|>`,
    /// `<bos>`, `<s>`, `<|startoftext|>`, `<|endoftext|>` the vocabulary has.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos
    }

    /// Whether `encode(text, None)` prepends BOS: what the tokenizer does by
    /// itself (a post-processor that prepends a token, or GGUF `add_bos_token`).
    pub fn adds_bos_by_default(&self) -> bool {
        self.adds_bos
    }

    /// Token ids of `text`. `prepend_bos`: `None` = the tokenizer's default,
    /// `Some(true)` = exactly one BOS at the front, `Some(false)` = none added.
    pub fn encode(
        &self,
        text: &str,
        prepend_bos: Option<bool>,
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = self.encode_bare(text)?;
        if prepend_bos.unwrap_or(self.adds_bos) {
            let bos = self.bos.ok_or_else(|| TokenizerError::NoBos {
                origin: self.origin.clone(),
            })?;
            if ids.first() != Some(&bos) {
                ids.insert(0, bos);
            }
        }
        Ok(ids)
    }

    /// The ids of `text` alone, with no post-processor tokens. Added tokens
    /// typed in the text (`<|endoftext|>`) still match whole.
    fn encode_bare(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode {
                text: text.to_owned(),
                origin: self.origin.clone(),
                reason: e.to_string(),
            })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The id the model maps text it does not know to (a word-level or
    /// WordPiece `unk_token`, a BPE `unk_token` without byte fallback), if any.
    pub fn unk_token_id(&self) -> Option<u32> {
        use tokenizers::models::ModelWrapper;
        let name = match self.inner.get_model() {
            ModelWrapper::WordLevel(m) => Some(m.unk_token.clone()),
            ModelWrapper::WordPiece(m) => Some(m.unk_token.clone()),
            ModelWrapper::BPE(m) => m.unk_token.clone(),
            ModelWrapper::Unigram(_) => None,
        }?;
        self.inner.token_to_id(&name)
    }

    /// The pieces of `text` (as written) that become the unknown token: a
    /// model sees them all as one and the same token, so a prompt that
    /// contains them does not say what the user wrote.
    pub fn unknown_words(&self, text: &str) -> Result<Vec<String>, TokenizerError> {
        let Some(unk) = self.unk_token_id() else {
            return Ok(vec![]);
        };
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode {
                text: text.to_owned(),
                origin: self.origin.clone(),
                reason: e.to_string(),
            })?;
        Ok(encoding
            .get_ids()
            .iter()
            .zip(encoding.get_offsets())
            .filter(|(&id, _)| id == unk)
            .map(|(_, &(a, b))| text.get(a..b).unwrap_or(text).to_owned())
            .collect())
    }

    /// One token as a reader wants to see it: "Ġthe" is " the", "Ċ" is `\n`
    /// (escaped, so a token row stays one line), a lone byte of a multi-byte
    /// character is `\xC3`, an unknown id is `<id N>`.
    pub fn token_str(&self, id: u32) -> String {
        let added = self.inner.get_added_vocabulary().get_added_tokens_decoder();
        if let Some(token) = added.get(&id) {
            return escape(&token.content);
        }
        let Some(token) = self.inner.id_to_token(id) else {
            return format!("<id {id}>");
        };
        match self.spelling {
            Spelling::ByteLevel => match byte_level_bytes(&token) {
                Some(bytes) => escape_bytes(&bytes),
                None => escape(&token),
            },
            Spelling::Metaspace => match sentencepiece_byte(&token) {
                Some(byte) => escape_bytes(&[byte]),
                None => escape(&token.replace('\u{2581}', " ")),
            },
            Spelling::Plain => escape(&token),
        }
    }

    pub fn token_strs(&self, ids: &[u32]) -> Vec<String> {
        ids.iter().map(|&id| self.token_str(id)).collect()
    }

    /// The text of `ids`, special tokens included; ids outside the vocabulary
    /// are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner
            .decode(ids, false)
            .unwrap_or_else(|_| self.token_strs(ids).concat())
    }

    /// The id of an answer, which must be exactly one token when tokenised on
    /// its own (no BOS, no special tokens added).
    pub fn single_token(&self, text: &str) -> Result<u32, TokenizerError> {
        let ids = self.encode_bare(text)?;
        if let [id] = ids[..] {
            return Ok(id);
        }
        let spaced = format!(" {text}");
        let hint = if !text.is_empty()
            && !text.starts_with(char::is_whitespace)
            && matches!(self.encode_bare(&spaced).as_deref(), Ok([_]))
        {
            format!("try {spaced:?} (with a leading space)")
        } else if ids.is_empty() {
            "type the token the model should predict, e.g. \" Paris\"".to_owned()
        } else {
            "choose a word that is one token, or just its first piece".to_owned()
        };
        Err(TokenizerError::NotSingleToken {
            text: text.to_owned(),
            pieces: self.token_strs(&ids),
            hint,
        })
    }

    /// The tokenizer as `tokenizer.json`, deterministic (vocabulary and added
    /// tokens in id order), so it can be hashed for session fingerprints.
    pub fn to_json(&self) -> String {
        self.inner
            .to_string(false)
            .expect("a tokenizer built from valid parts always serialises")
    }
}

impl fmt::Debug for Tokenizer {
    // The derived form would print the whole vocabulary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokenizer")
            .field("origin", &self.origin)
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos)
            .field("adds_bos", &self.adds_bos)
            .finish()
    }
}

/// The token a `tokenizer.json` post-processor puts in front of the text, if
/// any. Found by watching it work rather than by parsing the many processor
/// kinds (Template, Roberta, Bert, Sequence).
fn prepended_token(inner: &tokenizers::Tokenizer) -> Option<u32> {
    let bare = inner.encode("a", false).ok()?.get_ids().to_vec();
    let full = inner.encode("a", true).ok()?.get_ids().to_vec();
    if bare.is_empty() {
        return None;
    }
    let front =
        (0..=full.len().checked_sub(bare.len())?).find(|&k| full[k..k + bare.len()] == bare[..])?;
    (front > 0).then(|| full[0])
}

fn spelling_of(decoder: Option<&DecoderWrapper>) -> Spelling {
    match decoder {
        Some(DecoderWrapper::ByteLevel(_)) => Spelling::ByteLevel,
        Some(
            DecoderWrapper::Metaspace(_)
            | DecoderWrapper::Replace(_)
            | DecoderWrapper::ByteFallback(_),
        ) => Spelling::Metaspace,
        Some(DecoderWrapper::Sequence(seq)) => seq
            .get_decoders()
            .iter()
            .map(|d| spelling_of(Some(d)))
            .find(|s| *s != Spelling::Plain)
            .unwrap_or(Spelling::Plain),
        _ => Spelling::Plain,
    }
}

/// GPT-2's byte → char table (`bytes_to_unicode` in its encoder.py):
/// printable Latin-1 bytes stand for themselves, the rest are shifted to
/// U+0100 onwards in byte order.
fn byte_level_chars() -> &'static HashMap<char, u8> {
    static TABLE: OnceLock<HashMap<char, u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut shifted = 0u32;
        (0..=255u8)
            .map(|b| {
                let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
                let c = if printable {
                    char::from(b)
                } else {
                    shifted += 1;
                    char::from_u32(255 + shifted).expect("U+0100..U+0143 are chars")
                };
                (c, b)
            })
            .collect()
    })
}

/// The bytes a byte-level token stands for; `None` for a token outside the
/// alphabet (an added token spelled as plain text), as the ByteLevel decoder
/// treats it.
fn byte_level_bytes(token: &str) -> Option<Vec<u8>> {
    let table = byte_level_chars();
    token.chars().map(|c| table.get(&c).copied()).collect()
}

/// SentencePiece's byte-fallback tokens, `<0x0A>`.
fn sentencepiece_byte(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Escaped text, with bytes that are not (yet) valid UTF-8 shown as `\xNN`.
fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(&escape(chunk.valid()));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// "left right" → (left, right), splitting at the first space after the first
/// character, as llama.cpp does (so a merge may start with a space token).
fn split_merge(merge: &str) -> Option<(String, String)> {
    let first = merge.chars().next()?.len_utf8();
    let at = first + merge[first..].find(' ')?;
    let (left, right) = (&merge[..at], &merge[at + 1..]);
    (!right.is_empty()).then(|| (left.to_owned(), right.to_owned()))
}

/// The first token a merge needs that the vocabulary lacks: either side, or
/// the merged result (the BPE model needs all three).
fn missing_merge_token(pair: &(String, String), known: impl Fn(&str) -> bool) -> Option<String> {
    let merged = format!("{}{}", pair.0, pair.1);
    [pair.0.clone(), pair.1.clone(), merged]
        .into_iter()
        .find(|t| !known(t))
}
