//! Tokenizer wrapper: GPT-2's embedded BPE, `tokenizer.json` files, the BOS
//! policy, answer checks, and GGUF vocabularies (synthetic ones built from the
//! GPT-2 BPE, and SmolLM2's real one).
//!
//! Expected ids are reference values from an independent implementation:
//! Hugging Face transformers 5.23 (`GPT2Tokenizer` on assets/gpt2, and
//! `AutoTokenizer.from_pretrained(dir, gguf_file=...)` on the SmolLM2 GGUF).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::quantized::gguf_file::{Content, Value};
use patchbench::model::tokenizer::{GgufVocab, Tokenizer, TokenizerError};
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PaddingParams, PaddingStrategy};

mod tokenizer_guards;

// ---------------------------------------------------------------- GPT-2

/// Found by fuzzing (`scripts/fuzz.sh tokenizer`): a raw control character
/// in a string of the `decoder` object made the tokenizers crate panic.
#[test]
fn a_json_syntax_error_inside_the_decoder_is_an_error_not_a_panic() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-tiny/tokenizer.json");
    let text = std::fs::read_to_string(path).unwrap();
    let decoder = "\"decoder\": {\n    \"type\": \"ByteLevel\"";
    assert!(
        text.contains(decoder),
        "the fixture's decoder moved; update this test"
    );
    // A raw control character, then a lone surrogate escape, in a string of
    // the decoder object.
    for broken in ["Byte\u{1}Level", "\\udc00"] {
        let bad = text.replacen(
            decoder,
            &format!("\"decoder\": {{\n    \"type\": \"{broken}\""),
            1,
        );
        let err = Tokenizer::from_json_bytes(bad.as_bytes(), "bad tokenizer.json").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TokenizerError::Invalid { .. }), "{msg}");
        assert!(
            msg.contains("bad tokenizer.json") && msg.contains("line 30"),
            "{msg}"
        );
    }
}

#[test]
fn gpt2_matches_transformers() {
    let t = Tokenizer::gpt2();
    let cases: &[(&str, &[u32])] = &[
        ("Hello world", &[15496, 995]),
        (" Paris", &[6342]),
        (
            "The Eiffel Tower is located in the city of",
            &[464, 412, 733, 417, 8765, 318, 5140, 287, 262, 1748, 286],
        ),
        ("Hello world 12345", &[15496, 995, 17031, 2231]),
        ("\n", &[198]),
        ("🙂", &[8582, 25081]),
        (" x² + ½", &[2124, 31185, 1343, 25208]),
        ("<|endoftext|>Hello", &[50256, 15496]),
    ];
    for (text, ids) in cases {
        assert_eq!(t.encode(text, None).unwrap(), *ids, "{text:?}");
        assert_eq!(t.decode(ids), *text);
    }
    assert_eq!(t.vocab_size(), 50257);
    assert_eq!(t.bos_token_id(), Some(50256));
    assert!(!t.adds_bos_by_default());
    assert_eq!(t.single_token(" Paris").unwrap(), 6342);
}

#[test]
fn gpt2_bos_is_explicit_and_never_doubled() {
    let t = Tokenizer::gpt2();
    assert_eq!(
        t.encode("Hello world", Some(true)).unwrap(),
        [50256, 15496, 995]
    );
    assert_eq!(t.encode("Hello world", Some(false)).unwrap(), [15496, 995]);
    assert_eq!(
        t.encode("<|endoftext|>Hello", Some(true)).unwrap(),
        [50256, 15496]
    );
}

#[test]
fn token_strs_are_readable() {
    let t = Tokenizer::gpt2();
    assert_eq!(
        t.token_strs(&[15496, 6342, 198, 50256]),
        ["Hello", " Paris", "\\n", "<|endoftext|>"]
    );
    // "🙂" is split mid-character: each half shows its raw bytes.
    assert_eq!(t.token_strs(&[8582, 25081]), ["\\xF0\\x9F", "\\x99\\x82"]);
    assert_eq!(t.token_str(2634), "é");
    assert_eq!(t.token_str(999_999), "<id 999999>");
}

#[test]
fn single_token_errors_quote_the_pieces_and_suggest_a_space() {
    let t = Tokenizer::gpt2();
    let err = t.single_token("Rome").unwrap_err();
    assert!(matches!(err, TokenizerError::NotSingleToken { .. }));
    assert_eq!(
        err.to_string(),
        "answer \"Rome\" is 2 tokens [\"R\", \"ome\"]; answers must be a single token — \
         try \" Rome\" (with a leading space)"
    );

    // " Eiffel" has no one-token spelling: no false suggestion.
    let msg = t.single_token(" Eiffel").unwrap_err().to_string();
    assert!(
        msg.contains("is 3 tokens [\" E\", \"iff\", \"el\"]"),
        "{msg}"
    );
    assert!(!msg.contains("leading space"), "{msg}");

    let msg = t.single_token("").unwrap_err().to_string();
    assert!(msg.contains("is 0 tokens []"), "{msg}");
}

// ---------------------------------------------------------- vocab + merges

/// A three-token-and-merges BPE without `<|endoftext|>`.
fn tiny_vocab_merges() -> (Vec<u8>, Vec<u8>) {
    let vocab = r#"{"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4}"#;
    let merges = "#version: 0.2\na b\nĠ ab\n";
    (vocab.into(), merges.into())
}

#[test]
fn prepending_bos_without_one_is_an_error() {
    let (vocab, merges) = tiny_vocab_merges();
    let t = Tokenizer::from_vocab_merges_bytes(&vocab, &merges, "tiny BPE").unwrap();
    assert_eq!(t.bos_token_id(), None);
    assert_eq!(t.encode("ab ab", None).unwrap(), [2, 4]);
    assert_eq!(t.encode("ab ab", Some(false)).unwrap(), [2, 4]);
    let err = t.encode("ab ab", Some(true)).unwrap_err();
    assert!(matches!(err, TokenizerError::NoBos { .. }));
    assert!(
        err.to_string().contains("tiny BPE has no BOS token"),
        "{err}"
    );
}

#[test]
fn vocab_merges_files_load_and_bad_ones_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let (vocab, merges) = tiny_vocab_merges();
    let (vocab_path, merges_path) = (dir.path().join("vocab.json"), dir.path().join("merges.txt"));
    std::fs::write(&vocab_path, &vocab).unwrap();
    std::fs::write(&merges_path, &merges).unwrap();
    let t = Tokenizer::from_vocab_merges(&vocab_path, &merges_path).unwrap();
    assert_eq!(t.encode("ab", None).unwrap(), [2]);

    std::fs::write(&merges_path, "a b\nb c\n").unwrap();
    let msg = Tokenizer::from_vocab_merges(&vocab_path, &merges_path)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("merges.txt line 2: \"b c\" needs \"c\""),
        "{msg}"
    );
    assert!(msg.contains(&*merges_path.display().to_string()), "{msg}");

    let missing = dir.path().join("nope.json");
    let msg = Tokenizer::from_vocab_merges(&missing, &merges_path)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("cannot read tokenizer file") && msg.contains("nope.json"),
        "{msg}"
    );
}

// ------------------------------------------------------------ tokenizer.json

#[test]
fn tokenizer_json_round_trips() {
    let gpt2 = Tokenizer::gpt2();
    let json = gpt2.to_json();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    std::fs::write(&path, &json).unwrap();

    let back = Tokenizer::from_file(&path).unwrap();
    assert_eq!(back.to_json(), json, "serialisation is deterministic");
    assert_eq!(back.vocab_size(), gpt2.vocab_size());
    assert_eq!(back.bos_token_id(), Some(50256));
    assert!(!back.adds_bos_by_default());
    for text in [
        "Hello world",
        "The Eiffel Tower\n\tis 330 m tall 🙂",
        "<|endoftext|>x",
    ] {
        assert_eq!(
            back.encode(text, None).unwrap(),
            gpt2.encode(text, None).unwrap()
        );
        assert_eq!(
            back.token_strs(&back.encode(text, None).unwrap()),
            gpt2.token_strs(&gpt2.encode(text, None).unwrap())
        );
    }

    let msg = Tokenizer::from_json_bytes(b"{\"not\": \"a tokenizer\"}", "broken.json")
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("broken.json is not a valid tokenizer"),
        "{msg}"
    );
}

/// A word-level tokenizer whose post-processor writes `<s> $A` (with
/// `</s>` too when `with_eos`), padded to 8 as some saved tokenizers are.
fn template_tokenizer_json(with_eos: bool) -> String {
    let vocab: HashMap<String, u32> = [
        ("<s>", 0),
        ("</s>", 1),
        ("hello", 2),
        ("world", 3),
        ("<unk>", 4),
        ("<pad>", 5),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token("<unk>".into())
        .build()
        .unwrap();
    let mut t = tokenizers::Tokenizer::new(model);
    t.with_pre_tokenizer(Some(WhitespaceSplit));
    let single = if with_eos { "<s> $A </s>" } else { "<s> $A" };
    t.with_post_processor(Some(
        TemplateProcessing::builder()
            .try_single(single)
            .unwrap()
            .special_tokens(vec![("<s>", 0), ("</s>", 1)])
            .build()
            .unwrap(),
    ));
    t.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::Fixed(8),
        pad_id: 5,
        pad_token: "<pad>".into(),
        ..PaddingParams::default()
    }));
    t.add_special_tokens([
        AddedToken::from("<s>", true),
        AddedToken::from("</s>", true),
    ])
    .unwrap();
    t.to_string(false).unwrap()
}

#[test]
fn template_bos_is_the_default_and_can_be_switched_off() {
    let t =
        Tokenizer::from_json_bytes(template_tokenizer_json(false).as_bytes(), "template").unwrap();
    assert!(t.adds_bos_by_default());
    assert_eq!(t.bos_token_id(), Some(0));
    assert_eq!(
        t.encode("hello world", None).unwrap(),
        [0, 2, 3],
        "no padding either"
    );
    assert_eq!(t.encode("hello world", Some(true)).unwrap(), [0, 2, 3]);
    assert_eq!(t.encode("hello world", Some(false)).unwrap(), [2, 3]);
    assert_eq!(
        t.encode("<s> hello", None).unwrap(),
        [0, 2],
        "never two BOS"
    );
    assert_eq!(t.single_token("hello").unwrap(), 2);

    // A template that also appends EOS: BOS is still found, EOS never added.
    let t = Tokenizer::from_json_bytes(template_tokenizer_json(true).as_bytes(), "template+eos")
        .unwrap();
    assert!(t.adds_bos_by_default());
    assert_eq!(t.encode("hello world", None).unwrap(), [0, 2, 3]);
}

// ------------------------------------------------------------- GGUF, synthetic

/// GPT-2's BPE written the way a GGUF stores it.
fn gpt2_as_gguf(pre: &str) -> GgufVocab {
    let vocab: HashMap<String, u32> =
        serde_json::from_slice(&std::fs::read("assets/gpt2/vocab.json").unwrap()).unwrap();
    let mut tokens = vec![String::new(); vocab.len()];
    for (token, id) in vocab {
        tokens[id as usize] = token;
    }
    let mut token_types = vec![1; tokens.len()];
    token_types[50256] = 3;
    let merges = std::fs::read_to_string("assets/gpt2/merges.txt").unwrap();
    GgufVocab {
        model: "gpt2".into(),
        pre: Some(pre.into()),
        tokens,
        token_types: Some(token_types),
        merges: merges
            .lines()
            .skip(1)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
        bos_token_id: Some(50256),
        eos_token_id: Some(50256),
        ..GgufVocab::default()
    }
}

#[test]
fn gguf_gpt2_pre_matches_the_gpt2_tokenizer() {
    let gguf = Tokenizer::from_gguf_vocab(gpt2_as_gguf("gpt-2")).unwrap();
    let gpt2 = Tokenizer::gpt2();
    for text in [
        "The Eiffel Tower is located in the city of",
        "Hello world 12345",
        "a  b\n\n c 🙂",
        "<|endoftext|>x",
    ] {
        assert_eq!(
            gguf.encode(text, None).unwrap(),
            gpt2.encode(text, None).unwrap(),
            "{text:?}"
        );
    }
    assert_eq!(gguf.encode("The", None).unwrap(), [464], "no prefix space");
    assert_eq!(gguf.vocab_size(), 50257);
    assert!(!gguf.adds_bos_by_default());
    assert_eq!(gguf.token_str(6342), " Paris");
}

#[test]
fn gguf_pre_selects_the_digit_split() {
    let smollm = Tokenizer::from_gguf_vocab(gpt2_as_gguf("smollm")).unwrap();
    let llama3 = Tokenizer::from_gguf_vocab(gpt2_as_gguf("llama-bpe")).unwrap();
    let qwen2 = Tokenizer::from_gguf_vocab(gpt2_as_gguf("qwen2")).unwrap();
    let default = Tokenizer::from_gguf_vocab(gpt2_as_gguf("default")).unwrap();
    let piece = |t: &Tokenizer, s: &str| t.token_strs(&t.encode(s, Some(false)).unwrap());
    assert_eq!(piece(&smollm, " 12345"), [" ", "1", "2", "3", "4", "5"]);
    assert_eq!(piece(&llama3, " 12345"), [" ", "123", "45"]);
    assert_eq!(piece(&qwen2, " 12345"), [" ", "1", "2", "3", "4", "5"]);
    // llama.cpp's default: punctuation runs, GPT-2's split, digit runs, then triples.
    assert_eq!(piece(&default, "x 1234567"), ["x", " ", "123", "456", "7"]);
    assert_eq!(piece(&llama3, "Hello world"), piece(&smollm, "Hello world"));
    // llama.cpp adds BOS for llama-bpe unless the file says otherwise.
    assert!(llama3.adds_bos_by_default());
    assert_eq!(llama3.encode("Hello", None).unwrap(), [50256, 15496]);
}

#[test]
fn gguf_add_bos_token_survives_a_json_round_trip() {
    let mut v = gpt2_as_gguf("gpt-2");
    v.add_bos_token = Some(true);
    let t = Tokenizer::from_gguf_vocab(v).unwrap();
    assert!(t.adds_bos_by_default());
    assert_eq!(t.encode("Hello world", None).unwrap(), [50256, 15496, 995]);
    assert_eq!(t.encode("Hello world", Some(false)).unwrap(), [15496, 995]);

    let back = Tokenizer::from_json_bytes(t.to_json().as_bytes(), "saved").unwrap();
    assert!(back.adds_bos_by_default());
    assert_eq!(
        back.encode("Hello world", None).unwrap(),
        [50256, 15496, 995]
    );
}

#[test]
fn bad_gguf_vocabularies_are_refused_clearly() {
    let err = |v: GgufVocab| Tokenizer::from_gguf_vocab(v).unwrap_err().to_string();

    let mut v = gpt2_as_gguf("gpt-2");
    v.merges.push("Ġ zzzz".into());
    let msg = err(v);
    assert!(
        msg.contains("tokenizer.ggml.merges entry 50000 (\"Ġ zzzz\") needs \"zzzz\""),
        "{msg}"
    );
    assert!(msg.contains("re-convert"), "{msg}");

    let mut v = gpt2_as_gguf("gpt-2");
    v.tokens[7] = "!".into();
    assert!(err(v).contains("tokenizer.ggml.tokens lists \"!\" twice, as ids 0 and 7"));

    let mut v = gpt2_as_gguf("gpt-2");
    v.bos_token_id = Some(60000);
    assert!(err(v)
        .contains("tokenizer.ggml.bos_token_id is 60000 but the vocabulary has only 50257 tokens"));

    let mut v = gpt2_as_gguf("gpt-2");
    v.token_types = Some(vec![1; 3]);
    assert!(err(v).contains("tokenizer.ggml.token_type has 3 entries"));

    let mut v = gpt2_as_gguf("gpt-2");
    (v.add_bos_token, v.bos_token_id) = (Some(true), None);
    assert!(err(v).contains("add_bos_token is true but there is no tokenizer.ggml.bos_token_id"));

    let msg = err(gpt2_as_gguf("tekken"));
    assert!(
        msg.contains("GGUF pre-tokenizer \"tekken\" (tokenizer.ggml.pre) is not supported"),
        "{msg}"
    );
    assert!(msg.contains("Hugging Face directory"), "{msg}");

    let mut v = gpt2_as_gguf("gpt-2");
    v.model = "bert".into();
    assert!(err(v).contains("GGUF tokenizer model \"bert\""));
}

// ---------------------------------------------------------- GGUF, SmolLM2

/// What the GGUF loader reads, from llama.cpp's `tokenizer.ggml.*` keys.
fn gguf_vocab(metadata: &HashMap<String, Value>) -> GgufVocab {
    let get = |key: &str| metadata.get(key);
    let string = |key: &str| get(key).map(|v| v.to_string().unwrap().clone());
    let array = |key: &str| get(key).map(|v| v.to_vec().unwrap().as_slice());
    let id = |key: &str| get(key).map(|v| v.to_u64().unwrap() as u32);
    GgufVocab {
        model: string("tokenizer.ggml.model").unwrap(),
        pre: string("tokenizer.ggml.pre"),
        tokens: array("tokenizer.ggml.tokens")
            .unwrap()
            .iter()
            .map(|v| v.to_string().unwrap().clone())
            .collect(),
        token_types: array("tokenizer.ggml.token_type")
            .map(|a| a.iter().map(|v| v.to_i32().unwrap()).collect()),
        merges: array("tokenizer.ggml.merges")
            .unwrap_or_default()
            .iter()
            .map(|v| v.to_string().unwrap().clone())
            .collect(),
        scores: array("tokenizer.ggml.scores")
            .map(|a| a.iter().map(|v| v.to_f32().unwrap()).collect()),
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_id: id("tokenizer.ggml.eos_token_id"),
        unk_token_id: id("tokenizer.ggml.unknown_token_id"),
        add_bos_token: get("tokenizer.ggml.add_bos_token").map(|v| v.to_bool().unwrap()),
        ..GgufVocab::default()
    }
}

fn smollm2_gguf() -> PathBuf {
    let path = std::env::var_os("PATCHBENCH_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "PATCHBENCH_SMOLLM2_GGUF is not set: run scripts/fetch-smollm2.sh and set \
             PATCHBENCH_SMOLLM2_GGUF to the path it prints"
            )
        });
    assert!(
        path.is_file(),
        "PATCHBENCH_SMOLLM2_GGUF={} is not a file: run scripts/fetch-smollm2.sh and point the \
         variable at the path it prints",
        path.display()
    );
    path
}

#[test]
fn smollm2_gguf_matches_transformers() {
    let mut file = std::io::BufReader::new(std::fs::File::open(smollm2_gguf()).unwrap());
    let content = Content::read(&mut file).unwrap();
    let vocab = gguf_vocab(&content.metadata);
    assert_eq!(
        (vocab.model.as_str(), vocab.pre.as_deref()),
        ("gpt2", Some("smollm"))
    );
    assert_eq!(vocab.add_bos_token, Some(false));
    let t = Tokenizer::from_gguf_vocab(vocab).unwrap();

    // candle's TokenizerFromGguf gives 378 ("ĠThe") here.
    assert_eq!(t.encode("The", None).unwrap(), [504]);
    let cases: &[(&str, &[u32])] = &[
        (
            "The Eiffel Tower is located in the city of",
            &[504, 414, 46682, 18669, 314, 3807, 281, 260, 2240, 282],
        ),
        (" Paris", &[7042]),
        ("Paris", &[38634]),
        ("Hello world 12345", &[19556, 905, 216, 33, 34, 35, 36, 37]),
        (
            "3.14159 and 1,000,000",
            &[
                35, 30, 33, 36, 33, 37, 41, 284, 216, 33, 28, 32, 32, 32, 28, 32, 32, 32,
            ],
        ),
        (
            "line one\nline two\n\n  indented\ttab",
            &[1311, 582, 198, 1311, 827, 8866, 641, 6574, 197, 15999],
        ),
        (
            "café naïve — 東京 🙂 Ünïcödé",
            &[
                83, 1939, 2756, 15486, 46494, 1841, 17097, 247, 126, 16736, 122, 47526, 5549, 246,
                94, 25972, 83, 7466, 84, 2756,
            ],
        ),
        (
            "I'm sure they'll say it's fine",
            &[57, 5248, 2090, 502, 3060, 1643, 357, 506, 4979],
        ),
        (
            "def f(x):\n    return x**2  # square",
            &[
                1604, 275, 24, 104, 727, 472, 1003, 1792, 828, 34, 216, 907, 5222,
            ],
        ),
        ("a  b   c    ", &[81, 216, 278, 256, 265, 289]),
        ("<|im_start|>user\nHi<|im_end|>", &[1, 4093, 198, 26843, 2]),
        // Not from transformers, whose GGUF converter drops SmolLM's digit
        // split (it gives [.., 3351, 138, 16936, ..]): these follow llama.cpp
        // and SmolLM2's own tokenizer.json (`Digits(individual_digits)` then
        // `ByteLevel`), as reproduced with the Python `tokenizers` library.
        (
            " x² + ½ ٣٤",
            &[1792, 19133, 1232, 216, 16738, 216, 164, 113, 164, 114],
        ),
    ];
    for (text, ids) in cases {
        assert_eq!(t.encode(text, None).unwrap(), *ids, "{text:?}");
        assert_eq!(t.decode(ids), *text);
    }

    assert!(!t.adds_bos_by_default());
    assert_eq!(t.bos_token_id(), Some(1));
    assert_eq!(t.encode("The", Some(true)).unwrap(), [1, 504]);
    assert_eq!(t.vocab_size(), 49152);
    assert_eq!(t.single_token(" Paris").unwrap(), 7042);
    assert_eq!(t.single_token("<|im_end|>").unwrap(), 2);
    assert_eq!(
        t.token_strs(&[7042, 198, 216, 1]),
        [" Paris", "\\n", " ", "<|im_start|>"]
    );

    // The digit split survives saving as tokenizer.json.
    let back = Tokenizer::from_json_bytes(t.to_json().as_bytes(), "saved SmolLM2").unwrap();
    for (text, ids) in cases {
        assert_eq!(back.encode(text, Some(false)).unwrap(), *ids, "{text:?}");
    }
}
