//! The worked examples in `sessions/` are real: their prompt pairs tokenise
//! for their models, and the SmolLM2 example's stored results are what the
//! real model computes (same fingerprint, same numbers), so resuming it
//! shows true heatmaps. `gpt2` itself cannot be fetched here, so the IOI
//! example is checked with GPT-2's tokenizer, which the binary embeds.

mod common;
mod session_support;

use patchbench::model::loaded::LoadOptions;
use patchbench::model::{LoadedModel, Tokenizer};
use patchbench::session::{self, results};
use session_support::repo;

#[test]
fn the_ioi_example_tokenises_under_gpt2() {
    let s = session::load(&repo("sessions/ioi-gpt2.yaml"))
        .unwrap()
        .session;
    assert_eq!(s.model.source, "gpt2");
    let tok = Tokenizer::gpt2();
    for i in 0..s.sweeps.len() {
        let pairs = results::prepare_entry(&s, i, &tok).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pairs.len(), s.prompts.len());
        assert!(pairs.iter().all(|p| p.differing_positions().len() == 1));
    }
}

#[test]
fn the_smollm2_example_stores_what_the_model_computes() {
    let path = repo("sessions/factual-recall-smollm2.yaml");
    let s = session::load(&path).unwrap().session;
    let gguf = common::smollm2_gguf();
    let opts = LoadOptions::cpu();
    let m = LoadedModel::load(gguf.to_str().unwrap(), &opts).unwrap();
    assert!(
        results::stale_results(&s, Some(&m.fingerprint)).is_empty(),
        "the stored results are stale for {}: rerun `patchbench sweep --session {} --write --rerun-stale`",
        gguf.display(),
        path.display()
    );
    for i in 0..s.sweeps.len() {
        results::prepare_entry(&s, i, &m.tokenizer).unwrap();
    }
    // Recompute the cheap prompt-pair sweep and compare.
    let entry = &s.sweeps[0];
    let pairs = results::prepare_entry(&s, 0, &m.tokenizer).unwrap();
    let fresh = session_support::recompute(&m.model, &pairs, &entry.spec);
    let stored = &entry.result.as_ref().unwrap().result;
    session_support::assert_same_metrics(stored, &fresh, 1e-3, "sweep 0");
}

/// Every example on the embedded demo model stores what the shipped weights
/// compute: retraining the demo model without refreshing its examples fails
/// here, with the command that refreshes them.
#[test]
fn the_demo_examples_store_what_the_embedded_model_computes() {
    let opts = LoadOptions::cpu();
    let m = LoadedModel::load("demo", &opts).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo("sessions")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let s = session::load(&path)
            .unwrap_or_else(|e| panic!("{e}"))
            .session;
        if s.model.source != "demo" {
            continue;
        }
        assert!(
            results::stale_results(&s, Some(&m.fingerprint)).is_empty(),
            "the stored results are stale for the embedded model: rerun `patchbench sweep --session {} --write --rerun-stale`",
            path.display()
        );
        for (i, entry) in s.sweeps.iter().enumerate() {
            let pairs = results::prepare_entry(&s, i, &m.tokenizer).unwrap();
            let fresh = session_support::recompute(&m.model, &pairs, &entry.spec);
            let stored = &entry
                .result
                .as_ref()
                .unwrap_or_else(|| panic!("{}: sweep {i} has no stored result", path.display()))
                .result;
            let what = format!("{} sweep {i}", path.display());
            session_support::assert_same_metrics(stored, &fresh, 1e-3, &what);
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "only {checked} demo sweeps found in sessions/"
    );
}
