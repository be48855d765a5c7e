//! Parts of a `tokenizer.json` that the tokenizers crate accepts and then
//! panics on, refused when loading with what to change.
//!
//! The crate trusts its files: several components index or slice with
//! values read from the file, and a few deserialisers `expect` success. A
//! panic in the loader would take the workbench down (and its terminal
//! with it), so each such part is refused here instead:
//! - a `Precompiled` normalizer (SentencePiece's compiled character map):
//!   the crate `expect`s a malformed map to parse, and a well-formed but
//!   crafted one indexes its trie out of bounds at encode time. It is
//!   refused outright, in the JSON before the crate reads it: no model
//!   family patchbench runs uses it (it belongs to T5, ALBERT, XLM-R);
//! - a normalizer that can insert at a point rather than replace text (a
//!   `Replace` whose pattern can match the empty string, a `Prepend` of
//!   nothing): the crate then builds offsets that a later pre-tokenizer
//!   indexes out of bounds. A regex pattern is checked with `regex-syntax`
//!   (its shortest match must be at least one character); one it cannot
//!   read (look-around, back-references) is refused, as real tokenizers
//!   replace plain strings;
//! - a BPE model with a `continuing_subword_prefix` and a merge whose right
//!   side does not start with it: the crate cuts the prefix off unchecked
//!   while building the model;
//! - a BPE merge whose joined token is longer than every vocabulary entry:
//!   the crate joins it in a buffer of the longest entry's length before
//!   looking it up. Every merge's sides and result must be entries (found
//!   by fuzzing);
//! - a `Strip` decoder with `stop > 0`, which underflows on a token shorter
//!   than `stop` (or one made only of the stripped character). Real
//!   tokenizers strip at the start only (`stop: 0`, Llama 2 and Mistral);
//! - the post-processor checks in `post_processor.rs`.

use serde_json::Value;
use tokenizers::DecoderWrapper;

use crate::util::text::quote;

/// Why part of a tokenizer was refused, and how to mend the file.
pub(super) struct Refusal {
    pub reason: String,
    pub fix: String,
}

pub(super) fn refuse(reason: String, fix: &str) -> Refusal {
    Refusal {
        reason,
        fix: fix.to_owned(),
    }
}

/// Checks the parsed JSON before the crate deserialises it.
pub(super) fn check_json(json: &Value) -> Result<(), Refusal> {
    if let Some(n) = json.get("normalizer") {
        if has_precompiled(n) {
            return Err(refuse(
                "its normalizer includes a Precompiled (SentencePiece charsmap) normalizer, which \
                 is not supported"
                    .to_owned(),
                "the model families patchbench runs (GPT-2, GPT-NeoX, Llama, Qwen2) do not use \
                 one; use the tokenizer.json of such a model",
            ));
        }
        check_inserts(n)?;
    }
    if let Some(model) = json.get("model") {
        check_bpe_merges(model)?;
    }
    Ok(())
}

/// Every `Replace` and `Prepend` in a normalizer tree (tagged or in the
/// legacy untagged form, recognised by their fields) replaces at least one
/// character or prepends at least one.
fn check_inserts(v: &Value) -> Result<(), Refusal> {
    match v {
        Value::Object(map) => {
            if map.get("prepend").and_then(Value::as_str) == Some("") {
                return Err(refuse(
                    "its normalizer prepends an empty string (a Prepend normalizer with prepend \
                     \"\")"
                        .to_owned(),
                    "remove that Prepend normalizer, or give it the text to prepend (\"▁\")",
                ));
            }
            if let (Some(pattern), true) = (map.get("pattern"), map.contains_key("content")) {
                check_replace_pattern(pattern)?;
            }
            map.values().try_for_each(check_inserts)
        }
        Value::Array(items) => items.iter().try_for_each(check_inserts),
        _ => Ok(()),
    }
}

fn check_replace_pattern(pattern: &Value) -> Result<(), Refusal> {
    let fix = "give the Replace normalizer a pattern that matches at least one character, e.g. \
               {\"String\": \" \"}";
    if let Some(s) = pattern.get("String").and_then(Value::as_str) {
        if s.is_empty() {
            return Err(refuse(
                "its normalizer replaces the empty string (a Replace normalizer with pattern \
                 {\"String\": \"\"})"
                    .to_owned(),
                fix,
            ));
        }
    }
    if let Some(r) = pattern.get("Regex").and_then(Value::as_str) {
        let shortest = regex_syntax::Parser::new()
            .parse(r)
            .map(|hir| hir.properties().minimum_len());
        let why = match shortest {
            Ok(Some(0)) => "can match the empty string",
            Ok(_) => return Ok(()),
            Err(_) => "uses syntax patchbench cannot check (look-around or back-references)",
        };
        return Err(refuse(
            format!("its normalizer's Replace regex {} {why}", quote(r, 80)),
            fix,
        ));
    }
    Ok(())
}

/// Every merge of a BPE model is checked: with a `continuing_subword_prefix`,
/// its right side starts with the prefix; both sides, and the token they
/// join into, are vocabulary entries. Merges are `"left right"` strings or
/// `[left, right]` pairs. The crate would report a missing side as an
/// error, but it joins the two sides in a buffer as long as the longest
/// entry before looking the result up, so a merge whose result is longer
/// than every entry panics; naming the missing token covers both.
fn check_bpe_merges(model: &Value) -> Result<(), Refusal> {
    let Some(merges) = model.get("merges").and_then(Value::as_array) else {
        return Ok(());
    };
    let vocab = model.get("vocab").and_then(Value::as_object);
    let prefix = model
        .get("continuing_subword_prefix")
        .and_then(Value::as_str)
        .unwrap_or("");
    for (i, merge) in merges.iter().enumerate() {
        let (left, right) = match merge {
            Value::String(s) => match s.split_once(' ') {
                Some(pair) => pair,
                None => continue,
            },
            Value::Array(pair) => match (
                pair.first().and_then(Value::as_str),
                pair.get(1).and_then(Value::as_str),
            ) {
                (Some(l), Some(r)) => (l, r),
                _ => continue,
            },
            // Not a merge at all: the crate refuses it with an error.
            _ => continue,
        };
        let Some(rest) = right.strip_prefix(prefix) else {
            return Err(refuse(
                format!(
                    "its model's continuing_subword_prefix is {}, but merge {i} joins {} on \
                     the right, which does not start with it",
                    quote(prefix, 40),
                    quote(right, 40)
                ),
                "start the right side of every merge with the continuing_subword_prefix, or \
                 remove the prefix",
            ));
        };
        let Some(vocab) = vocab else { continue };
        if let Some(side) = [left, right].into_iter().find(|t| !vocab.contains_key(*t)) {
            return Err(refuse(
                format!(
                    "its model's merge {i} needs {}, which is not in its vocab",
                    quote(side, 40)
                ),
                "add the token to the model's vocab or remove the merge",
            ));
        }
        let joined = format!("{left}{rest}");
        if !vocab.contains_key(&joined) {
            return Err(refuse(
                format!(
                    "its model's merge {i} joins {} and {} into {}, which is not in its vocab",
                    quote(left, 40),
                    quote(right, 40),
                    quote(&joined, 80)
                ),
                &format!(
                    "add {} to the vocab or remove the merge",
                    quote(&joined, 80)
                ),
            ));
        }
    }
    Ok(())
}

/// A `Precompiled` normalizer anywhere in `v`: tagged with its type, or in
/// the legacy untagged form, recognised by its charsmap field.
fn has_precompiled(v: &Value) -> bool {
    match v {
        Value::Object(map) => {
            map.get("type").and_then(Value::as_str) == Some("Precompiled")
                || map.contains_key("precompiled_charsmap")
                || map.values().any(has_precompiled)
        }
        Value::Array(items) => items.iter().any(has_precompiled),
        _ => false,
    }
}

/// Checks the decoder of the loaded tokenizer.
pub(super) fn check_decoder(decoder: Option<&DecoderWrapper>) -> Result<(), Refusal> {
    match decoder {
        Some(DecoderWrapper::Strip(s)) if s.stop > 0 => Err(refuse(
            format!(
                "its decoder strips up to {} trailing {} from each token (a Strip decoder with \
                 stop > 0), which the tokenizers crate cannot do on shorter tokens",
                s.stop,
                quote(&s.content.to_string(), 8)
            ),
            "set the Strip decoder's stop to 0",
        )),
        Some(DecoderWrapper::Sequence(seq)) => seq
            .get_decoders()
            .iter()
            .try_for_each(|d| check_decoder(Some(d))),
        _ => Ok(()),
    }
}
