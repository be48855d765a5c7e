//! Parts of a `tokenizer.json` that the tokenizers crate loads and then
//! panics on (post-processors, a Precompiled normalizer, a Strip decoder;
//! found by fuzzing or by reading the crate), refused when loading with a
//! message naming what is wrong; and the real shapes that still load.
//!
//! Each case is the llama-tiny fixture with one part replaced.

use patchbench::model::tokenizer::{Tokenizer, TokenizerError};
use serde_json::{json, Value};

const PROMPT: &str = "When Mary and John went to the store";

/// The llama-tiny `tokenizer.json` (`<s>` is id 1, 400 tokens) with
/// `part` set to `value`.
fn with_part(part: &str, value: Value) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/llama-tiny/tokenizer.json"
    );
    let mut t: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    t[part] = value;
    serde_json::to_vec(&t).unwrap()
}

fn with_post_processor(pp: Value) -> Vec<u8> {
    with_part("post_processor", pp)
}

fn special(name: &str) -> Value {
    json!({"SpecialToken": {"id": name, "type_id": 0}})
}

fn seq(id: &str) -> Value {
    json!({"Sequence": {"id": id, "type_id": 0}})
}

fn template(single: Value, pair: Value, specials: Value) -> Value {
    json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials})
}

fn s_token(name: &str, ids: Value, tokens: Value) -> Value {
    json!({ name: {"id": name, "ids": ids, "tokens": tokens} })
}

/// `<s> $A` / `<s> $A <s> $B`, as the fixture has it.
fn good_template() -> Value {
    template(
        json!([special("<s>"), seq("A")]),
        json!([special("<s>"), seq("A"), special("<s>"), seq("B")]),
        s_token("<s>", json!([1]), json!(["<s>"])),
    )
}

fn refused_part(part: &str, value: Value) -> String {
    let bytes = with_part(part, value);
    let err = Tokenizer::from_json_bytes(&bytes, "bad tokenizer.json").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TokenizerError::Invalid { .. }), "{msg}");
    let start = format!("bad tokenizer.json is not a valid tokenizer: its {part}");
    assert!(msg.starts_with(&start), "{msg}");
    msg
}

fn refused(pp: Value) -> String {
    refused_part("post_processor", pp)
}

/// Found by fuzzing: "no entry found for key" in the crate's template.rs.
#[test]
fn a_template_naming_an_undefined_special_token_is_refused() {
    let specials = s_token("<s>", json!([1]), json!(["<s>"]));
    let single_bos = template(
        json!([special("<bos>"), seq("A")]),
        json!([seq("A"), seq("B")]),
        specials.clone(),
    );
    let pair_eos = template(
        json!([seq("A")]),
        json!([seq("A"), special("</eos>"), seq("B")]),
        specials,
    );
    let nested = json!({"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        single_bos.clone(),
    ]});
    for (pp, which, token) in [
        (single_bos, "single", "<bos>"),
        (pair_eos, "pair", "</eos>"),
        (nested, "single", "<bos>"),
    ] {
        let msg = refused(pp);
        assert!(
            msg.contains(&format!(
                "{which} template names the special token \"{token}\""
            )) && msg.contains("it defines \"<s>\"")
                && msg.contains("add that token to the post_processor's special_tokens"),
            "{msg}"
        );
    }
    let none = template(json!([special("<s>"), seq("A")]), json!([]), json!({}));
    assert!(refused(none).contains("(it defines none)"));
}

/// `$B` in the single template indexed a second sequence that is not there.
#[test]
fn a_single_template_must_hold_the_text_once() {
    let specials = s_token("<s>", json!([1]), json!(["<s>"]));
    for (single, says) in [
        (json!([special("<s>"), seq("B")]), "uses $B"),
        (json!([special("<s>")]), "uses the text ($A) 0 times"),
        (json!([seq("A"), seq("A")]), "uses the text ($A) 2 times"),
    ] {
        let msg = refused(template(single, json!([seq("A")]), specials.clone()));
        assert!(msg.contains(says) && msg.contains("\"<s> $A\""), "{msg}");
    }
}

/// A template after a template receives one sequence per piece of the
/// first; three reached a `todo!()` in the crate.
#[test]
fn a_sequence_that_feeds_a_template_three_sequences_is_refused() {
    let specials = json!({
        "<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
        "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]},
    });
    let bos_eos = template(
        json!([special("<s>"), seq("A"), special("</s>")]),
        json!([seq("A"), seq("B")]),
        specials,
    );
    let pp = json!({"type": "Sequence", "processors": [bos_eos, good_template()]});
    let msg = refused(pp);
    assert!(
        msg.contains("receives 3 sequences") && msg.contains("put the TemplateProcessing last"),
        "{msg}"
    );
}

#[test]
fn inserted_ids_must_be_tokens_of_the_vocabulary() {
    let cases = [
        (
            template(
                json!([special("<s>"), seq("A")]),
                json!([seq("A")]),
                s_token("<s>", json!([99999]), json!(["<s>"])),
            ),
            "special token \"<s>\" has id 99999, which is not in the vocabulary",
        ),
        (
            template(
                json!([special("<s>"), seq("A")]),
                json!([seq("A")]),
                s_token("<s>", json!([1, 2]), json!(["<s>"])),
            ),
            "special token \"<s>\" has 2 ids but 1 tokens",
        ),
        (
            json!({"type": "BertProcessing", "sep": ["</s>", 2], "cls": ["<s>", 4000]}),
            "cls token \"<s>\" has id 4000, which is not in the vocabulary",
        ),
        (
            json!({"type": "RobertaProcessing", "sep": ["</s>", 70000], "cls": ["<s>", 1],
                   "trim_offsets": true, "add_prefix_space": false}),
            "sep token \"</s>\" has id 70000, which is not in the vocabulary",
        ),
    ];
    for (pp, says) in cases {
        let msg = refused(pp);
        assert!(msg.contains(says), "{msg}");
    }
}

/// The shapes real tokenizers use still load, and prepend their BOS.
#[test]
fn valid_post_processors_still_load() {
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
    let bert = json!({"type": "BertProcessing", "sep": ["</s>", 2], "cls": ["<s>", 1]});
    for pp in [
        good_template(),
        // Llama 3's shape.
        json!({"type": "Sequence", "processors": [byte_level, good_template()]}),
        bert,
    ] {
        let t = Tokenizer::from_json_bytes(&with_post_processor(pp.clone()), "ok").unwrap();
        assert!(t.adds_bos_by_default(), "{pp}");
        assert_eq!(t.bos_token_id(), Some(1), "{pp}");
        let ids = t.encode(PROMPT, None).unwrap();
        assert_eq!(ids[0], 1, "{pp}");
        assert_eq!(t.encode(PROMPT, Some(false)).unwrap(), ids[1..], "{pp}");
    }
}

/// The crate `expect`s a Precompiled normalizer's charsmap to parse, and
/// indexes a well-formed one's trie unchecked; neither reaches it.
#[test]
fn a_precompiled_normalizer_is_refused_before_the_crate_reads_it() {
    let garbage = json!({"type": "Precompiled", "precompiled_charsmap": "AAAA"});
    let legacy = json!({"precompiled_charsmap": "AAAAAA=="});
    let nested = json!({"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "x"}, garbage.clone(),
    ]});
    for n in [garbage, legacy, nested] {
        let msg = refused_part("normalizer", n);
        assert!(
            msg.contains("Precompiled") && msg.contains("not supported"),
            "{msg}"
        );
    }
}

/// A Strip decoder with `stop > 0` underflows on a short token in the
/// crate; `stop: 0` (Llama 2's `Strip(" ", 1, 0)`) still loads and decodes.
#[test]
fn a_strip_decoder_that_strips_the_end_is_refused() {
    let strip = |stop: usize| json!({"type": "Strip", "content": " ", "start": 1, "stop": stop});
    let msg = refused_part("decoder", strip(2));
    assert!(
        msg.contains("up to 2 trailing \" \"") && msg.contains("stop to 0"),
        "{msg}"
    );
    let nested = json!({"type": "Sequence", "decoders": [{"type": "Fuse"}, strip(1)]});
    assert!(refused_part("decoder", nested).contains("Strip decoder"));

    let t = Tokenizer::from_json_bytes(&with_part("decoder", strip(0)), "ok").unwrap();
    let ids = t.encode(PROMPT, Some(false)).unwrap();
    assert!(!t.decode(&ids).is_empty());
}

/// A normalizer that inserts at a point (a Replace that can match the
/// empty string, a Prepend of nothing) corrupted the crate's offsets, and a
/// later pre-tokenizer indexed out of bounds.
#[test]
fn a_normalizer_that_inserts_at_a_point_is_refused() {
    let replace = |pattern: Value| json!({"type": "Replace", "pattern": pattern, "content": "x"});
    let cases = [
        (replace(json!({"String": ""})), "replaces the empty string"),
        (
            replace(json!({"Regex": "a*"})),
            "can match the empty string",
        ),
        (
            replace(json!({"Regex": "\\b"})),
            "can match the empty string",
        ),
        (
            replace(json!({"Regex": "zz|"})),
            "can match the empty string",
        ),
        (
            replace(json!({"Regex": "(?=M)"})),
            "cannot check (look-around",
        ),
        (
            json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": ""}]}),
            "prepends an empty string",
        ),
    ];
    for (n, says) in cases {
        let msg = refused_part("normalizer", n);
        assert!(msg.contains(says), "{msg}");
    }
    // Llama 2's normalizer, and a regex that always takes a character.
    let llama2 = json!({"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u{2581}"},
        replace(json!({"String": " "})),
        replace(json!({"Regex": "\\s+"})),
    ]});
    let t = Tokenizer::from_json_bytes(&with_part("normalizer", llama2), "ok").unwrap();
    assert!(!t.encode(PROMPT, None).unwrap().is_empty());
}

/// With a continuing_subword_prefix, the crate cuts the prefix off each
/// merge's right side unchecked while building the model.
#[test]
fn a_bpe_merge_without_the_subword_prefix_is_refused() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/llama-tiny/tokenizer.json"
    );
    let t: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut model = t["model"].clone();
    model["continuing_subword_prefix"] = json!("##");
    let msg = refused_part("model", model.clone());
    assert!(
        msg.contains("continuing_subword_prefix is \"##\", but merge 0 joins")
            && msg.contains("start the right side of every merge"),
        "{msg}"
    );
    model["continuing_subword_prefix"] = json!("");
    Tokenizer::from_json_bytes(&with_part("model", model), "ok").unwrap();
}

/// Found by fuzzing: the crate joins each merge's two sides in a buffer as
/// long as the longest vocabulary entry, before it looks the joined token
/// up, so a merge whose result is longer than every entry slices past the
/// buffer's end ("range end index 8 out of range for slice of length 7").
#[test]
fn a_bpe_merge_whose_result_is_not_in_the_vocabulary_is_refused() {
    let model = |merges: Value| {
        json!({"type": "BPE", "dropout": null, "unk_token": null,
               "continuing_subword_prefix": null, "end_of_word_suffix": null,
               "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
               "vocab": {"a": 0, "b": 1, "e": 2, "ab": 3, "cd": 4, "abe": 5},
               "merges": merges})
    };
    // "ab" + "cd" is longer than every entry: the crate panics on this one.
    for merges in [json!(["ab cd"]), json!([["ab", "cd"]])] {
        let msg = refused_part("model", model(merges));
        assert!(
            msg.contains(
                "merge 0 joins \"ab\" and \"cd\" into \"abcd\", which is not in its vocab"
            ) && msg.contains("add \"abcd\" to the vocab or remove the merge"),
            "{msg}"
        );
    }
    // A side missing from the vocabulary is named too.
    let msg = refused_part("model", model(json!(["ab e", "ab x"])));
    assert!(
        msg.contains("merge 1 needs \"x\", which is not in its vocab"),
        "{msg}"
    );
    // Merges whose sides and results are all entries load.
    let good = model(json!(["a b", "ab e"]));
    let t = Tokenizer::from_json_bytes(&with_part("model", good), "ok").unwrap();
    assert_eq!(t.encode("abe", None).unwrap().last(), Some(&5));
}
