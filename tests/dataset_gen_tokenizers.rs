//! The English generators on real tokenizers: byte-level BPE (GPT-2) and
//! the SmolLM2 BPE, where a word carries its leading space. Every kept
//! pair's labels must point at the tokens of the words they name (the
//! names of IOI, the subject of facts), so a labelled sweep lines pairs
//! up by role.

use patchbench::data::gen::{generate, GenOptions, Style, Task};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::{LoadedModel, Tokenizer};

fn tokenizers() -> Vec<(&'static str, Tokenizer)> {
    let llama = LoadedModel::load("random:llama-tiny", &LoadOptions::cpu())
        .expect("the llama-tiny preset loads");
    vec![("gpt2", Tokenizer::gpt2()), ("smollm2", llama.tokenizer)]
}

#[test]
fn ioi_labels_point_at_the_names_on_real_tokenizers() {
    for (name, tok) in tokenizers() {
        let g = generate(
            &tok,
            &GenOptions {
                task: Task::Ioi,
                style: Style::English,
                n: 8,
                seed: 0,
                prepend_bos: Some(false),
                tokens: None,
            },
        )
        .unwrap_or_else(|e| panic!("{name}: 8 IOI pairs: {e}"));
        assert_eq!(g.dataset.pairs.len(), 8, "{name}");
        for p in &g.dataset.pairs {
            let ids = tok.encode(&p.clean, Some(false)).unwrap();
            let word = |label: &str| -> String {
                let span = p
                    .labels
                    .get(label)
                    .unwrap_or_else(|| panic!("{name}: {:?} has no {label} label", p.clean));
                let r = span.resolve(ids.len()).expect("the span is inside");
                tok.decode(&ids[r]).trim().to_string()
            };
            // IO is the answer; S1 and S2 are the subject (the wrong answer).
            assert_eq!(word("IO"), p.answer.trim(), "{name}: {:?}", p.clean);
            assert_eq!(word("S1"), p.wrong.trim(), "{name}: {:?}", p.clean);
            assert_eq!(word("S2"), p.wrong.trim(), "{name}: {:?}", p.clean);
        }
    }
}
