//! Helpers for the `update` and pane tests: states, fake worker replies and
//! sweep results built by hand (no model, no terminal).
#![allow(dead_code)]

use std::collections::BTreeMap;

use patchbench::app::messages::{
    JobId, LoadSpec, ModelInfo, PairTokens, SweepStart, Tokenized, WorkerMsg,
};
use patchbench::app::state::StartOptions;
use patchbench::app::{example_pair, update, Action, AppState, Command, Intent};
use patchbench::model::random::preset_config;
use patchbench::patching::output::TokenList;
use patchbench::patching::result::{Baselines, Timing};
use patchbench::patching::{Metrics, SweepResult, METRICS};

pub const TOKENS: [&str; 6] = ["When", " Mary", " and", " John", " gave", " to"];

pub fn state() -> AppState {
    AppState::new(StartOptions {
        load: LoadSpec {
            source: "random:gpt2-tiny".into(),
            device: "cpu".into(),
            weights: "f32".into(),
        },
        pairs: vec![example_pair("random:gpt2-tiny")],
        autosave: Some("/tmp/patchbench-test-autosave.yaml".into()),
        sessions_dir: Some("/tmp/patchbench-test-sessions".into()),
        data_dir: Some("/tmp/patchbench-test-data".into()),
    })
}

pub fn info() -> ModelInfo {
    ModelInfo {
        source: "random:gpt2-tiny".into(),
        fingerprint: "f00d".into(),
        config: preset_config("gpt2-tiny").unwrap(),
        load_ms: 12.0,
        device: "cpu".into(),
        adds_bos: false,
        bos_token: Some("<|endoftext|>".into()),
    }
}

pub fn act(s: &mut AppState, a: Action) -> Vec<Command> {
    update(s, a)
}

pub fn key(s: &mut AppState, i: Intent) -> Vec<Command> {
    update(s, Action::Intent(i))
}

pub fn worker(s: &mut AppState, m: WorkerMsg) -> Vec<Command> {
    update(s, Action::Worker(m))
}

/// A state with the model loaded and the example pair tokenised cleanly.
pub fn ready() -> AppState {
    let mut s = state();
    worker(&mut s, WorkerMsg::ModelLoaded(Box::new(info())));
    let job = s.jobs.tokenize.expect("loading requests a tokenisation");
    worker(
        &mut s,
        WorkerMsg::Tokenized {
            job,
            result: tokens(),
        },
    );
    s
}

pub fn tokens() -> Tokenized {
    let clean: Vec<String> = TOKENS.iter().map(|t| t.to_string()).collect();
    let mut corrupted = clean.clone();
    corrupted[3] = " Mary".into();
    Tokenized {
        pairs: vec![PairTokens {
            clean,
            corrupted: Some(corrupted),
            answer: Some(Ok(" Mary".into())),
            wrong: Some(Ok(" John".into())),
            problems: vec![],
        }],
        problems: vec![],
    }
}

fn token_list(strs: &[&str]) -> TokenList {
    TokenList {
        ids: (0..strs.len() as u32).collect(),
        strings: strs.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn start(axes: &[&str], shape: &[usize]) -> SweepStart {
    SweepStart {
        axes: axes.iter().map(|a| a.to_string()).collect(),
        shape: shape.to_vec(),
        components: vec![],
        clean_tokens: token_list(&TOKENS),
        corrupted_tokens: token_list(&["When", " Mary", " and", " Mary", " gave", " to"]),
        answer: " Mary".into(),
        answer_id: 1,
        wrong: " John".into(),
        wrong_id: 3,
        fingerprint: "f00d".into(),
        position_labels: vec![],
    }
}

pub fn metrics(ld: f32) -> Metrics {
    // logit_diff, logit_diff_normalized, logprob, prob, kl, rank, multi_logit_diff
    Metrics::from_values([ld, (ld + 2.0) / 6.0, -1.0, 0.37, 0.1, 2.0, ld])
}

/// The baselines of every fake sweep: logit diff 4 clean, −2 corrupted.
pub fn baselines() -> Baselines {
    Baselines {
        clean: metrics(4.0),
        corrupted: metrics(-2.0),
    }
}

/// A finished result over `shape` whose logit diff is `cell index − 2`.
pub fn result(axes: &[&str], shape: &[usize]) -> SweepResult {
    let n: usize = shape.iter().product();
    let cells: Vec<Metrics> = (0..n).map(|i| metrics(i as f32 - 2.0)).collect();
    let mut m = BTreeMap::new();
    for (k, name) in METRICS.iter().enumerate() {
        m.insert(
            name.to_string(),
            cells.iter().map(|c| c.values()[k]).collect(),
        );
    }
    SweepResult {
        axes: axes.iter().map(|a| a.to_string()).collect(),
        shape: shape.to_vec(),
        components: vec![],
        metrics: m.clone(),
        per_pair: vec![m],
        baselines: baselines(),
        pair_baselines: vec![],
        timing: Timing {
            sweep_ms: 12.0,
            forward_passes: 3,
            device: "cpu".into(),
        },
        method: "exact".into(),
        position_labels: vec![],
    }
}

/// Runs a sweep of the current settings to completion with a fake result.
pub fn run_to_done(s: &mut AppState, axes: &[&str], shape: &[usize]) -> JobId {
    key(s, Intent::RunSweep);
    let job = s.running.as_ref().expect("running").job;
    worker(
        s,
        WorkerMsg::SweepStarted {
            job,
            start: Box::new(start(axes, shape)),
        },
    );
    worker(
        s,
        WorkerMsg::SweepDone {
            job,
            result: Box::new(result(axes, shape)),
            computed_at: "2025-01-01T00:00:00Z".into(),
        },
    );
    job
}
