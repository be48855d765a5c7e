//! Inputs that would run but give wrong results are refused with what is
//! wrong: words the tokenizer maps to its unknown token (the README's
//! capitalised IOI pair on the lower-case demo vocabulary became two
//! identical prompts and every cell NaN), clean and corrupted prompts that
//! tokenise identically, and unpatched runs with non-finite logits.

mod common;

use std::process::Command;

use candle_core::{Device, Tensor};
use common::fixture;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::{
    prepare_pairs, run_sweep, Corruption, EngineOptions, PairError, PromptPair, SweepError,
    SweepSpec, Target,
};

fn cpu() -> LoadOptions {
    LoadOptions::cpu()
}

fn pair(clean: &str, corrupted: Option<&str>, answer: &str, wrong: &str) -> PromptPair {
    PromptPair {
        clean: clean.into(),
        corrupted: corrupted.map(Into::into),
        answer: answer.into(),
        wrong: wrong.into(),
    }
}

#[test]
fn words_the_demo_vocabulary_lacks_are_named_with_the_lower_case_fix() {
    let m = LoadedModel::load("demo", &cpu()).unwrap();
    // The README's IOI pair as a GPT-2 user would write it.
    let readme = pair(
        "When Mary and John went to the store, John gave a drink to",
        Some("When Mary and John went to the store, Mary gave a drink to"),
        " Mary",
        " John",
    );
    let e = prepare_pairs(&m.tokenizer, &[readme], None).unwrap_err();
    match &e {
        PairError::UnknownWords {
            index, part, words, ..
        } => {
            assert_eq!((*index, *part), (0, "clean prompt"));
            assert_eq!(words, &["When", "Mary", "John", "John"]);
        }
        other => panic!("wrong error: {other}"),
    }
    let msg = e.to_string();
    for part in [
        "\"When\"",
        "unknown token",
        "lower-case",
        "\"when\", \"mary\"",
    ] {
        assert!(msg.contains(part), "{part:?} missing from: {msg}");
    }
    // Only the corrupted prompt, only an answer.
    let lower = "when mary and john went to the store , john gave a drink to";
    let cases = [
        (
            pair(lower, Some("when mary and John went"), "mary", "john"),
            "corrupted prompt",
            "John",
        ),
        (pair(lower, None, " Mary", "john"), "answer", "Mary"),
        (
            pair(lower, None, "mary", "zyzzyva"),
            "wrong answer",
            "zyzzyva",
        ),
    ];
    for (p, want_part, want_word) in cases {
        match prepare_pairs(&m.tokenizer, &[p], None).unwrap_err() {
            PairError::UnknownWords { part, words, .. } => {
                assert_eq!(part, want_part);
                assert_eq!(words, [want_word]);
            }
            other => panic!("{want_part}: wrong error: {other}"),
        }
    }
    let e = prepare_pairs(&m.tokenizer, &[pair(lower, None, "mary", "zyzzyva")], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("use words from the model's vocabulary"), "{e}");
    // The lower-case pair prepares.
    prepare_pairs(
        &m.tokenizer,
        &[pair(
            lower,
            Some("when mary and john went to the store , mary gave a drink to"),
            "mary",
            "john",
        )],
        None,
    )
    .unwrap();
}

#[test]
fn prompts_that_tokenise_identically_are_refused() {
    let demo = LoadedModel::load("demo", &cpu()).unwrap();
    // Different text, same tokens: the word-level tokenizer drops spacing.
    let clean = "when mary and john went to the store , john gave a drink to";
    let spaced = "when  mary and john   went to the store , john gave a drink to";
    let e = prepare_pairs(
        &demo.tokenizer,
        &[pair(clean, Some(spaced), "mary", "john")],
        None,
    )
    .unwrap_err();
    assert!(
        matches!(e, PairError::IdenticalPrompts { index: 0, .. }),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("tokenise identically") && msg.contains("\"mary\""),
        "{msg}"
    );
    // The same text on a byte-level BPE model.
    let gpt2 = LoadedModel::load(fixture("gpt2-tiny").to_str().unwrap(), &cpu()).unwrap();
    let text = "When Mary and John went to the store, John gave a drink to";
    let e = prepare_pairs(
        &gpt2.tokenizer,
        &[pair(text, Some(text), " Mary", " John")],
        None,
    )
    .unwrap_err();
    assert!(matches!(e, PairError::IdenticalPrompts { .. }), "{e}");
    // Without a corrupted prompt (noise and ablation) the pair is fine.
    prepare_pairs(&gpt2.tokenizer, &[pair(text, None, " Mary", " John")], None).unwrap();
}

#[test]
fn cli_names_the_unknown_word_instead_of_printing_nan() {
    let out = Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args([
            "sweep",
            "--model",
            "demo",
            "--clean",
            "When Mary and John went to the store, John gave a drink to",
            "--corrupted",
            "When Mary and John went to the store, Mary gave a drink to",
            "--answer",
            " Mary",
            "--wrong",
            " John",
            "--target",
            "resid_pre",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(out.stdout.is_empty(), "no NaN table on stdout");
    assert!(
        err.contains("\"When\"") && err.contains("unknown token") && !err.contains("panicked"),
        "{err}"
    );
}

fn gaussian(scale: f32) -> SweepSpec {
    SweepSpec {
        corruption: Corruption::Gaussian {
            positions: vec![1],
            scale: Some(scale),
            samples: 2,
            seed: 0,
        },
        ..SweepSpec::new(Target::TraceHidden)
    }
}

#[test]
fn non_finite_baselines_are_an_error_that_says_so() {
    let mut m = LoadedModel::load(fixture("gpt2-tiny").to_str().unwrap(), &cpu()).unwrap();
    let text = "When Mary and John went to the store, John gave a drink to";
    let pairs = prepare_pairs(&m.tokenizer, &[pair(text, None, " Mary", " John")], None).unwrap();
    let sweep = |m: &LoadedModel, spec: &SweepSpec| {
        run_sweep(
            &m.model,
            &pairs,
            spec,
            &EngineOptions::default(),
            None,
            &mut |_| {},
        )
    };
    // A finite scale whose noise overflows f32: the noised runs are inf/NaN.
    match sweep(&m, &gaussian(3e38)) {
        Err(
            e @ SweepError::NonFiniteBaseline {
                pair: 0,
                run: "noised",
            },
        ) => {
            let msg = e.to_string();
            assert!(
                msg.contains("not finite") && msg.contains("noised"),
                "{msg}"
            );
        }
        other => panic!("expected a non-finite noised baseline, got {other:?}"),
    }
    sweep(&m, &gaussian(0.5)).expect("a sane scale runs");
    // NaN weights: the clean run itself is not finite.
    m.model.w_e = Tensor::full(f32::NAN, m.model.w_e.shape(), &Device::Cpu).unwrap();
    match sweep(&m, &gaussian(0.5)) {
        Err(SweepError::NonFiniteBaseline { run: "clean", .. }) => {}
        other => panic!("expected a non-finite clean baseline, got {other:?}"),
    }
}

/// An answer that is not one token keeps the tokenizer's typed error (its
/// pieces and hint), reachable as the pair error's source.
#[test]
fn an_answer_error_carries_the_typed_tokenizer_error() {
    use patchbench::model::tokenizer::{Tokenizer, TokenizerError};
    let tok = Tokenizer::gpt2();
    let p = pair("The tower is in", None, " Eiffel", " Paris");
    let e = prepare_pairs(&tok, &[p], None).unwrap_err();
    let PairError::Answer {
        index: 0,
        what: "answer",
        source: TokenizerError::NotSingleToken { text, pieces, .. },
    } = &e
    else {
        panic!("wrong error: {e:?}");
    };
    assert_eq!(text, " Eiffel");
    assert_eq!(pieces.len(), 3, "{pieces:?}");
    let source = std::error::Error::source(&e).expect("a source");
    assert!(source.to_string().contains("single token"), "{source}");
    assert!(
        e.to_string()
            .starts_with("pair 0: answer: answer \" Eiffel\""),
        "{e}"
    );
}
