//! The embedded demo model: it loads through the GPT-2 path, it does its
//! three tasks on held-out prompts, retraining is deterministic, and the
//! circuits patchbench finds in it (written up in `README.md`, "Circuits, found with patchbench") are
//! still there. Run with `--nocapture` to see the numbers.

use std::sync::OnceLock;

use patchbench::demo::{circuits, eval, train};
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use patchbench::patching::{
    prepare_pairs, run_sweep, EngineOptions, PromptPair, SweepResult, SweepSpec, Target,
};

fn cpu() -> LoadOptions {
    LoadOptions::cpu()
}

fn demo() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| LoadedModel::load("demo", &cpu()).expect("the embedded demo model loads"))
}

fn sweep(pairs: &[PromptPair], target: Target) -> SweepResult {
    let m = demo();
    let prepared = prepare_pairs(&m.tokenizer, pairs, None).expect("demo prompts prepare");
    run_sweep(
        &m.model,
        &prepared,
        &SweepSpec::new(target),
        &EngineOptions::default(),
        None,
        &mut |_| {},
    )
    .expect("the sweep runs")
}

/// The clean prompts' token rows.
fn clean_rows(pairs: &[PromptPair]) -> Vec<Vec<u32>> {
    let prepared = prepare_pairs(&demo().tokenizer, pairs, None).expect("demo prompts prepare");
    prepared.into_iter().map(|p| p.clean).collect()
}

/// `[rows][cols]` of a two-axis result's normalised logit difference.
fn grid(r: &SweepResult) -> Vec<Vec<f32>> {
    r.metrics["logit_diff_normalized"]
        .chunks(r.shape[1])
        .map(<[f32]>::to_vec)
        .collect()
}

fn show(name: &str, rows: &[Vec<f32>]) {
    println!("{name}");
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:6.2}")).collect();
        println!("  {i}: {}", cells.join(" "));
    }
}

#[test]
fn embedded_model_loads_through_the_gpt2_path_in_well_under_a_second() {
    let t = std::time::Instant::now();
    let m = LoadedModel::load("demo", &cpu()).unwrap();
    let ms = t.elapsed().as_millis();
    println!(
        "demo loaded in {ms} ms ({:.0} ms by its own clock)",
        m.load_ms
    );
    assert!(ms < 1000, "loading the demo model took {ms} ms");
    let cfg = m.config();
    assert_eq!(
        (
            cfg.family.as_str(),
            cfg.n_layers,
            cfg.d_model,
            cfg.n_heads,
            cfg.n_ctx
        ),
        ("gpt2", 4, 128, 4, 64)
    );
    assert!(cfg.tied_unembed);
    assert!(!m.tokenizer.adds_bos_by_default());
    // The same files read from disk as a Hugging Face directory give the same model.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo");
    let from_disk = LoadedModel::load(dir, &cpu()).unwrap();
    assert_eq!(from_disk.fingerprint, m.fingerprint);
    let size = patchbench::demo::embedded::WEIGHTS.len();
    assert!(size <= 5 << 20, "weights are {size} bytes, over 5 MB");
}

#[test]
fn ioi_on_held_out_name_pairs() {
    let m = demo();
    let acc = eval::ioi_accuracy(&m.model, &m.tokenizer, 300, 11).unwrap();
    println!("IOI accuracy on held-out name pairs: {:.1}%", acc * 100.0);
    assert!(acc >= 0.95, "IOI accuracy {acc}");
}

#[test]
fn every_capital_in_the_table() {
    let m = demo();
    let acc = eval::fact_accuracy(&m.model, &m.tokenizer).unwrap();
    assert_eq!(acc, 1.0, "fact accuracy {acc}");
    let ids = m
        .tokenizer
        .encode("the capital of france is", None)
        .unwrap();
    let top = eval::top_tokens(&m.model, &[ids]).unwrap();
    assert_eq!(m.tokenizer.token_str(*top[0].last().unwrap()), "paris");
}

#[test]
fn induction_on_fresh_random_spans() {
    let m = demo();
    let acc = eval::induction_accuracy(&m.model, &m.tokenizer, 200, 11, 0).unwrap();
    println!("induction accuracy on the second copy: {:.1}%", acc * 100.0);
    assert!(acc >= 0.9, "induction accuracy {acc}");
}

#[test]
fn retraining_is_deterministic() {
    let opts = train::TrainOptions {
        steps: 3,
        batch: 8,
        seed: 5,
        ..Default::default()
    };
    let losses = |o: &train::TrainOptions| train::train(o, &mut |_, _| {}).unwrap().losses;
    let a = losses(&opts);
    assert_eq!(a, losses(&opts), "same seed, different loss trace");
    assert_ne!(
        a,
        losses(&train::TrainOptions {
            seed: 6,
            ..opts.clone()
        })
    );
    // An untrained model is near-uniform over the vocabulary.
    let uniform = (patchbench::demo::vocab::vocabulary().len() as f32).ln();
    assert!(
        (a[0] - uniform).abs() < 0.3,
        "first loss {} vs ln(vocab) {uniform}",
        a[0]
    );
}

// ---- Circuits (see README.md). Positions below are those of the
// templates used: IOI template 0 "when A and B went to the P , S gave a O to"
// (names at 1 and 3, S2 at 9, END at 13) and "the capital of C is"
// (country at 3, last position 4).

/// Heads by descending normalised logit difference: `(layer, head, value)`.
fn ranked(g: &[Vec<f32>]) -> Vec<(usize, usize, f32)> {
    let mut v: Vec<_> = g
        .iter()
        .enumerate()
        .flat_map(|(l, row)| row.iter().enumerate().map(move |(h, &x)| (l, h, x)))
        .collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2));
    v
}

#[test]
fn ioi_circuit_layer0_head_moves_the_repeated_name_to_the_end() {
    let m = demo();
    let pairs = circuits::ioi_pairs(0, 16, 3);
    let (s2, end) = (9, 13);

    let resid = grid(&sweep(&pairs, Target::ResidPre));
    show("IOI resid_pre (layer x pos)", &resid);
    assert!(resid[0][s2] > 0.9, "layer 0: S2 restores {}", resid[0][s2]);
    for (l, row) in resid.iter().enumerate().skip(1) {
        assert!(row[end] > 0.9, "layer {l}: END restores {}", row[end]);
    }

    let heads = grid(&sweep(&pairs, Target::HeadOut));
    show("IOI head_out (layer x head)", &heads);
    let top = ranked(&heads);
    assert_eq!((top[0].0, top[0].1), (0, 0), "top heads {:?}", &top[..3]);
    assert!(top[0].2 > 0.9 && top[1].2.abs() < 0.1, "{:?}", &top[..2]);

    let mlp = grid(&sweep(&pairs, Target::MlpOut));
    show("IOI mlp_out (layer x pos)", &mlp);
    assert!(mlp[0][end] > 0.8, "MLP0 at END restores {}", mlp[0][end]);

    let rows = clean_rows(&pairs);
    let a = circuits::mean_patterns(&m.model, &rows).unwrap()[0][0][end][s2];
    println!("L0H0 attends END -> S2 with {a:.2}");
    assert!(a > 0.7, "L0H0 attends END -> S2 with {a}");
}

#[test]
fn fact_circuit_layer0_head_moves_the_country_and_mlp0_recalls_the_capital() {
    let m = demo();
    let pairs = circuits::fact_pairs(0);
    let (country, last) = (3, 4);

    let resid = grid(&sweep(&pairs, Target::ResidPre));
    show("facts resid_pre (layer x pos)", &resid);
    assert!(resid[0][country] > 0.9, "{:?}", resid[0]);
    for (l, row) in resid.iter().enumerate().skip(1) {
        assert!(row[last] > 0.9, "layer {l}: {row:?}");
    }

    let heads = grid(&sweep(&pairs, Target::HeadOut));
    show("facts head_out (layer x head)", &heads);
    let top = ranked(&heads);
    assert_eq!((top[0].0, top[0].1), (0, 0), "top head {:?}", top[0]);
    assert!(top[0].2 > 0.8 && top[1].2 < 0.1, "{:?}", &top[..2]);

    let mlp = grid(&sweep(&pairs, Target::MlpOut));
    show("facts mlp_out (layer x pos)", &mlp);
    assert!(
        mlp[0][last] > 0.8,
        "MLP0 at the last position restores {}",
        mlp[0][last]
    );

    let rows = clean_rows(&pairs);
    let a = circuits::mean_patterns(&m.model, &rows).unwrap()[0][0][last][country];
    println!("L0H0 attends is -> country with {a:.2}");
    assert!(a > 0.7, "L0H0 attends is -> country with {a}");
}

// Induction prompts: 3 random words, a span of 8, 3 random words, then the
// span's first 4 words again, so the answer is the span's word 5, at
// position 7 in the first copy ("source"); the prompt's last position is 17.
const IND_SOURCE: usize = circuits::INDUCTION_PREFIX + 4;
const IND_LAST: usize = circuits::INDUCTION_PREFIX + 8 + circuits::INDUCTION_GAP + 3;

/// An induction head, found by patching: with random words before the span
/// and between the copies (so no fixed distance leads to the answer),
/// L3H0 alone carries the answer from its earlier position to the end, by
/// matching the current word against the word before each key.
#[test]
fn induction_head_in_layer3_copies_the_token_after_the_earlier_occurrence() {
    let m = demo();
    let pairs = circuits::induction_pairs(8, 3, 32, 1);
    let (source, last) = (IND_SOURCE, IND_LAST);

    // The answer stays at its first occurrence through layer 3 and reaches
    // the end only in layer 3's attention.
    let resid = grid(&sweep(&pairs, Target::ResidPre));
    show("induction resid_pre (layer x pos)", &resid);
    for (l, row) in resid.iter().enumerate() {
        assert!(
            row[source] > 0.9,
            "layer {l}: source restores {}",
            row[source]
        );
        assert!(
            row[last].abs() < 0.1,
            "layer {l}: last restores {}",
            row[last]
        );
    }

    let heads = grid(&sweep(&pairs, Target::HeadOut));
    show("induction head_out (layer x head)", &heads);
    let top = ranked(&heads);
    assert_eq!((top[0].0, top[0].1), (3, 0), "top heads {:?}", &top[..3]);
    assert!(top[0].2 > 0.9 && top[1].2.abs() < 0.1, "{:?}", &top[..2]);

    // L3H0 attends from the last word to the word after its earlier
    // occurrence, and stops when the last word has no earlier occurrence:
    // the attention follows content, not distance.
    let clean = clean_rows(&pairs);
    let fresh = m.tokenizer.single_token("gold").unwrap();
    let no_repeat: Vec<Vec<u32>> = clean
        .iter()
        .filter(|r| !r.contains(&fresh))
        .map(|r| {
            let mut r = r.clone();
            r[last] = fresh;
            r
        })
        .collect();
    let attn =
        |rows: &[Vec<u32>]| circuits::mean_patterns(&m.model, rows).unwrap()[3][0][last][source];
    let (a, b) = (attn(&clean), attn(&no_repeat));
    println!("L3H0 attends last -> source with {a:.2}; {b:.2} when the last word is new");
    assert!(a > 0.9 && b < 0.2, "L3H0 attends last -> source {a} / {b}");

    let (ind, prev) = circuits::induction_scores(&m.model, &m.tokenizer, 100, 5).unwrap();
    println!("induction scores {:?}", ind.values);
    println!("previous-token scores {:?}", prev.values);
    let (il, ih, iv) = ind.best();
    assert_eq!((il, ih), (3, 0), "best induction head L{il}H{ih} {iv}");
    assert!(iv > 0.8, "L3H0 induction score {iv}");

    // The key side: change the word before the source instead (the last
    // word then has no earlier occurrence). The previous word reaches the
    // source position over layers 0-2, L0H0 first; restoring L3H0's keys
    // alone brings back half of the answer.
    let key = circuits::induction_key_pairs(8, 3, 32, 1);
    let kresid = grid(&sweep(&key, Target::ResidPre));
    show("earlier word changed: resid_pre (layer x pos)", &kresid);
    assert!(kresid[0][source - 1] > 0.9, "{:?}", kresid[0]);
    assert!(
        kresid[1][source] > 0.1 && kresid[3][source] > 0.4,
        "source restores {} / {} entering layers 1 / 3",
        kresid[1][source],
        kresid[3][source]
    );
    let kheads = grid(&sweep(&key, Target::HeadOut));
    show("earlier word changed: head_out (layer x head)", &kheads);
    assert!(kheads[3][0] > 0.7, "L3H0 restores {}", kheads[3][0]);
    let kk = grid(&sweep(&key, Target::HeadK));
    show("earlier word changed: head_k (layer x head)", &kk);
    assert!(kk[3][0] > 0.4, "L3H0's keys restore {}", kk[3][0]);
    let krows = clean_rows(&key);
    let kpat = circuits::mean_patterns(&m.model, &krows).unwrap();
    let p = kpat[0][0][source][source - 1];
    println!("L0H0 attends source -> the word before with {p:.2}");
    assert!(
        (0..4).all(|h| kpat[0][h][source][source - 1] <= p) && p > 0.35,
        "L0H0 attends source -> previous with {p}"
    );

    // Accuracy holds wherever the copies sit.
    let moved = eval::induction_accuracy(&m.model, &m.tokenizer, 200, 11, 6).unwrap();
    println!("induction accuracy with 6 random words before/between the copies: {moved:.3}");
    assert!(moved > 0.9, "induction with filler {moved}");
}
