//! The demo's word-level tokenizer, built with the `tokenizers` crate.
//!
//! A `WordLevel` model over [`vocabulary`] with the `Whitespace`
//! pre-tokenizer (`\w+|[^\w\s]+`), so `store,` splits into `store` and `,`
//! and every word is one token. No post-processor: nothing (no BOS) is added
//! to a prompt. The tokenizer is assembled as `tokenizer.json` text and read
//! back through [`Tokenizer::from_json_bytes`], the same path every model's
//! tokenizer takes, so what training saw is exactly what loading gives.

use serde_json::json;

use super::vocab::{vocabulary, UNK};
use crate::model::tokenizer::{Tokenizer, TokenizerError};

/// The demo `tokenizer.json`, deterministic (pretty-printed, vocabulary in id order).
pub fn tokenizer_json() -> String {
    let vocab: serde_json::Map<String, serde_json::Value> = vocabulary()
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), json!(i)))
        .collect();
    let v = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": { "type": "Whitespace" },
        "post_processor": null,
        "decoder": null,
        "model": { "type": "WordLevel", "vocab": vocab, "unk_token": UNK },
    });
    // Round-trip through the tokenizers crate so the file is in its canonical form.
    let tok = tokenizers::Tokenizer::from_bytes(v.to_string().as_bytes())
        .expect("the demo tokenizer JSON is well-formed");
    tok.to_string(true)
        .expect("a tokenizer built from valid parts always serialises")
}

/// The demo tokenizer, built from the word lists.
pub fn build_tokenizer() -> Result<Tokenizer, TokenizerError> {
    Tokenizer::from_json_bytes(tokenizer_json().as_bytes(), "the demo tokenizer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_punctuation_are_single_tokens_without_bos() {
        let tok = build_tokenizer().unwrap();
        let ids = tok
            .encode(
                "when mary and john went to the store, john gave a drink to",
                None,
            )
            .unwrap();
        assert_eq!(ids.len(), 14);
        assert_eq!(tok.token_str(ids[1]), "mary");
        assert_eq!(tok.token_str(ids[8]), ",");
        assert!(!tok.adds_bos_by_default());
        assert_eq!(tok.vocab_size(), vocabulary().len());
        for w in vocabulary().iter().skip(1) {
            assert_eq!(
                tok.single_token(w).unwrap(),
                tok.encode(w, None).unwrap()[0]
            );
        }
    }
}
