//! Circuits: exact edge patching by two independent routes agrees, EAP
//! equals exact patching for a small perturbation (first order), EAP-IG
//! converges as its steps grow, and the faithfulness curve's ends are the
//! two baselines. On the gpt2-tiny and llama-tiny (grouped-query) presets.

mod circuit_support;

use candle_core::Device;

use circuit_support::{model, pair, prompt_spec};
use patchbench::circuits::graph::{Graph, ReceiverId, SenderId};
use patchbench::circuits::path::path_patch;
use patchbench::circuits::runs::{self, CircuitSpecRuns};
use patchbench::circuits::{
    eap, exact, patched, run_circuit, CircuitOptions, Method, PathOptions, PathQuery,
};
use patchbench::patching::metrics::{id, Metrics, LOGIT_DIFF};
use patchbench::patching::{Corruption, Direction, PreparedPair};

/// A spread of edges: every receiver kind, early and late senders.
fn sample_edges(g: &Graph) -> Vec<(SenderId, ReceiverId)> {
    g.edges().into_iter().step_by(7).collect()
}

fn check_exact_routes_agree(preset: &str) {
    let m = model(preset);
    let g = Graph::new(&m.cfg);
    let runs = runs::build(&m, &g, &[pair()], &prompt_spec()).unwrap();
    let run = &runs.runs[0];
    let edges = sample_edges(&g);
    let fast = exact::exact_edges(&m, &g, run, &edges, 16).unwrap();
    let weights: Vec<Vec<f32>> = edges
        .iter()
        .map(|&(s, r)| {
            let mut w = vec![0f32; g.n_senders() * g.n_receivers()];
            w[g.idx(s, r)] = 1.0;
            w
        })
        .collect();
    let slow = patched::patched_runs(&m, &g, run, &weights).unwrap();
    let mut moved = 0;
    for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
        for name in ["logit_diff", "logprob", "kl"] {
            let (x, y) = (a.get(name).unwrap(), b.get(name).unwrap());
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + x.abs()),
                "{preset} edge {i} {name}: {x} vs {y}"
            );
        }
        if (a.logit_diff() - run.base_metrics.logit_diff()).abs() > 1e-4 {
            moved += 1;
        }
    }
    assert!(
        moved > edges.len() / 4,
        "{preset}: only {moved} edges change anything"
    );
}

#[test]
fn exact_edge_patching_equals_the_layer_by_layer_circuit_pass_gpt2() {
    check_exact_routes_agree("gpt2-tiny");
}

#[test]
fn exact_edge_patching_equals_the_layer_by_layer_circuit_pass_llama_gqa() {
    check_exact_routes_agree("llama-tiny");
}

/// EAP and exact scores for a corrupted run a tiny step from the clean one.
fn small_step(preset: &str, scale: f32) -> (Vec<Metrics>, Vec<Metrics>) {
    let m = model(preset);
    let g = Graph::new(&m.cfg);
    let mut p = pair();
    p.corrupted = p.clean.clone();
    let spec = CircuitSpecRuns {
        direction: Direction::Noise,
        corruption: Corruption::Gaussian {
            positions: vec![1, 3],
            scale: Some(scale),
            samples: 1,
            seed: 4,
        },
    };
    let runs = runs::build(&m, &g, &[p], &spec).unwrap();
    let run = &runs.runs[0];
    let edges = g.edges();
    let est = eap::eap_ig(&m, &g, run, 1).unwrap();
    let est: Vec<Metrics> = edges
        .iter()
        .map(|&(s, r)| Metrics::from_values(std::array::from_fn(|k| est[k][g.idx(s, r)])))
        .collect();
    let ex = exact::exact_edges(&m, &g, run, &edges, 64).unwrap();
    let base = run.base_metrics.values();
    let ex = ex
        .into_iter()
        .map(|x| Metrics::from_values(std::array::from_fn(|k| x.values()[k] - base[k])))
        .collect();
    (est, ex)
}

/// Largest |EAP − exact| over the largest exact effect, per metric.
fn relative_errors(preset: &str, scale: f32) -> Vec<(&'static str, f32)> {
    let (est, ex) = small_step(preset, scale);
    ["logit_diff", "logprob", "prob"]
        .into_iter()
        .map(|name| {
            let k = id(name);
            let e: Vec<f32> = est.iter().map(|m| m[k]).collect();
            let x: Vec<f32> = ex.iter().map(|m| m[k]).collect();
            let top = x.iter().fold(0f32, |a, v| a.max(v.abs()));
            let err = e
                .iter()
                .zip(&x)
                .fold(0f32, |a, (p, q)| a.max((p - q).abs()));
            assert!(top > 0.0, "{preset} {name}: no edge changes anything");
            (name, err / top)
        })
        .collect()
}

/// EAP is exact to first order: for a corrupted run 1e-4 from the clean
/// one its error is a few percent of the largest effect at most, and it
/// shrinks with the step (100 times smaller step, error ratio at least 5
/// times smaller), as a first-order estimate's must.
fn check_eap_is_first_order(preset: &str) {
    let far = relative_errors(preset, 1e-2);
    let near = relative_errors(preset, 1e-4);
    println!("{preset}: |EAP - exact| / max |exact| at step 1e-2 {far:?}, at 1e-4 {near:?}");
    for ((name, f), (_, n)) in far.iter().zip(&near) {
        assert!(
            *n <= 0.03,
            "{preset} {name}: EAP is off by {n} of the largest effect"
        );
        assert!(
            *n <= 0.2 * f.max(1e-3),
            "{preset} {name}: error ratio {f} -> {n} does not shrink"
        );
    }
}

#[test]
fn eap_equals_exact_edge_patching_for_a_small_step_gpt2() {
    check_eap_is_first_order("gpt2-tiny");
}

#[test]
fn eap_equals_exact_edge_patching_for_a_small_step_llama_gqa() {
    check_eap_is_first_order("llama-tiny");
}

#[test]
fn eap_ig_converges_as_steps_grow() {
    let m = model("gpt2-tiny");
    let g = Graph::new(&m.cfg);
    let runs = runs::build(&m, &g, &[pair()], &prompt_spec()).unwrap();
    let run = &runs.runs[0];
    let ld = LOGIT_DIFF.0;
    let at = |steps| eap::eap_ig(&m, &g, run, steps).unwrap()[ld].clone();
    let fine = at(16);
    let dist = |a: &[f32]| {
        a.iter()
            .zip(&fine)
            .filter(|(x, _)| x.is_finite())
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f32>()
            .sqrt()
    };
    let d: Vec<f32> = [1, 2, 4].iter().map(|&s| dist(&at(s))).collect();
    for w in d.windows(2) {
        assert!(w[1] < w[0], "distances to m = 32 do not shrink: {d:?}");
    }
    assert!(d[2] < 0.5 * d[0], "{d:?}");
}

#[test]
fn the_empty_circuit_is_the_corrupted_run_and_the_full_graph_the_clean_run() {
    for preset in ["gpt2-tiny", "llama-tiny"] {
        let m = model(preset);
        let opts = CircuitOptions {
            method: Method::Eap,
            check_exact: 5,
            faithfulness_points: 4,
            ..Default::default()
        };
        let r = run_circuit(&m, &[pair()], &opts).unwrap();
        assert_eq!(r.faithfulness.first().unwrap().k, 0);
        assert_eq!(r.faithfulness.last().unwrap().k, r.n_edges);
        let (lo, hi) = (&r.faithfulness[0], r.faithfulness.last().unwrap());
        assert!(lo.recovered.abs() < 1e-4, "{preset}: {}", lo.recovered);
        assert!(
            (hi.recovered - 1.0).abs() < 1e-4,
            "{preset}: {}",
            hi.recovered
        );
        let ld = |x: &Metrics| x.logit_diff();
        assert!((ld(&hi.metrics) - ld(&r.baselines.clean)).abs() < 1e-4);
        assert!((ld(&lo.metrics) - ld(&r.baselines.corrupted)).abs() < 1e-4);
        // The checked edges carry exact values, sorted by |estimate|.
        assert_eq!(r.edges.iter().filter(|e| e.exact.is_some()).count(), 5);
        assert!(r.edges[0].scores.logit_diff().abs() >= r.edges[1].scores.logit_diff().abs());
    }
}

/// Exact edge patching and path patching on the Hugging Face fixtures equal the independent
/// PyTorch implementation (`tools/circuit_reference.py`) edge by edge.
fn check_against_pytorch(name: &str) {
    use patchbench::model::loaded::LoadOptions;
    use patchbench::model::LoadedModel;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let refj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("circuit_reference.json")).unwrap())
            .unwrap();
    let ids = |k: &str| -> Vec<u32> {
        refj[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    };
    let opts = LoadOptions {
        device: Device::Cpu,
        ..Default::default()
    };
    let m = LoadedModel::load(dir.to_str().unwrap(), &opts)
        .unwrap()
        .model;
    let g = Graph::new(&m.cfg);
    let p = PreparedPair {
        clean: ids("clean"),
        corrupted: ids("corrupted"),
        answer: refj["answer"].as_u64().unwrap() as u32,
        wrong: refj["wrong"].as_u64().unwrap() as u32,
        sets: Default::default(),
    };
    let runs = runs::build(&m, &g, &[p], &prompt_spec()).unwrap();
    let run = &runs.runs[0];
    let want = refj["edges"].as_array().unwrap();
    assert_eq!(want.len(), g.edges().len(), "{name}: edge count");
    let edges: Vec<_> = want
        .iter()
        .map(|e| {
            let s = e["sender"].as_str().unwrap();
            let r = e["receiver"].as_str().unwrap();
            (
                g.find_sender(s).unwrap(),
                g.find_receiver(r).unwrap_or_else(|| panic!("{r}")),
            )
        })
        .collect();
    let got = exact::exact_edges(&m, &g, run, &edges, 64).unwrap();
    let base = run.base_metrics.logit_diff();
    let mut worst = 0f32;
    for (e, x) in want.iter().zip(&got) {
        let w = e["logit_diff"].as_f64().unwrap() as f32;
        worst = worst.max((x.logit_diff() - base - w).abs());
    }
    println!(
        "{name}: largest |patchbench - PyTorch| over {} edges: {worst:e}",
        want.len()
    );
    assert!(
        worst <= 1e-5,
        "{name}: exact edge patching differs from PyTorch by {worst}"
    );
    // Path patching: each edge's sender -> {receiver} with MLPs live (the
    // IOI paper) and frozen, then sender -> receiver sets.
    let mut queries: Vec<PathQuery> = edges
        .iter()
        .map(|&(sender, r)| PathQuery {
            sender,
            receivers: vec![r],
        })
        .collect();
    let sets = refj["path_sets"].as_array().unwrap();
    queries.extend(sets.iter().map(|q| {
        PathQuery {
            sender: g.find_sender(q["sender"].as_str().unwrap()).unwrap(),
            receivers: q["receivers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| g.find_receiver(r.as_str().unwrap()).unwrap())
                .collect(),
        }
    }));
    let live = path_patch(&m, &g, run, &queries, &PathOptions::default(), 64).unwrap();
    let frozen = PathOptions {
        freeze_mlps: true,
        ..Default::default()
    };
    let direct = path_patch(&m, &g, run, &queries[..edges.len()], &frozen, 64).unwrap();
    let want_live = want
        .iter()
        .map(|e| &e["path"])
        .chain(sets.iter().map(|q| &q["logit_diff"]));
    let (mut worst, mut moved) = (0f32, 0);
    for (w, x) in want_live.zip(&live) {
        let w = w.as_f64().unwrap() as f32;
        worst = worst.max((x.logit_diff() - base - w).abs());
        moved += usize::from(w.abs() > 1e-3);
    }
    for (e, x) in want.iter().zip(&direct) {
        let w = e["path_frozen_mlps"].as_f64().unwrap() as f32;
        worst = worst.max((x.logit_diff() - base - w).abs());
    }
    println!("{name}: largest |path patching - PyTorch|: {worst:e}");
    assert!(
        worst <= 1e-5,
        "{name}: path patching differs from PyTorch by {worst}"
    );
    assert!(moved > want.len() / 4, "{name}: only {moved} paths matter");
}

#[test]
fn exact_and_path_patching_equal_pytorch_gpt2_fixture() {
    check_against_pytorch("gpt2-tiny");
}

#[test]
fn exact_and_path_patching_equal_pytorch_llama_gqa_fixture() {
    check_against_pytorch("llama-tiny");
}

mod split_hooks {
    //! The split-input hooks circuits edit: naming them changes nothing,
    //! an edit of every head's input equals the same edit of the shared
    //! residual as the projections see it, per-head results sum to the
    //! attention output, and gradients through weights skip the weights.
    use super::model;
    use candle_core::{Device, Tensor, Var};
    use patchbench::model::linear::Matrix;
    use patchbench::model::{Edit, ForwardOptions, HookPoint, HookSpec};

    fn tokens() -> Tensor {
        Tensor::new(&[[3u32, 17, 9, 250, 4, 11]], &Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn split_inputs_are_the_residual_seen_per_head() {
        for preset in ["gpt2-tiny", "llama-tiny"] {
            let m = model(preset);
            let opts = ForwardOptions::default();
            let plain = m.forward(Some(&tokens()), &HookSpec::new(), &opts).unwrap();
            let mut named = HookSpec::new().capture(HookPoint::AttnOut(1));
            for hp in [
                HookPoint::QInput(1),
                HookPoint::KInput(1),
                HookPoint::VInput(0),
                HookPoint::MlpIn(1),
                HookPoint::AttnResult(1),
            ] {
                named = named.capture(hp);
            }
            let out = m.forward(Some(&tokens()), &named, &opts).unwrap();
            let d = max_diff(plain.logits.as_ref().unwrap(), out.logits.as_ref().unwrap());
            assert!(d < 1e-5, "{preset}: naming split hooks moved logits by {d}");
            let res = out.cache.get(HookPoint::AttnResult(1)).unwrap();
            let attn = out.cache.get(HookPoint::AttnOut(1)).unwrap();
            let bias = m.blocks[1].attn.o.b.clone();
            let summed = match bias {
                Some(b) => res.sum(2).unwrap().broadcast_add(&b).unwrap(),
                None => res.sum(2).unwrap(),
            };
            assert!(
                max_diff(&summed, attn) < 1e-5,
                "{preset}: results do not sum to attn_out"
            );
            assert_eq!(
                out.cache.get(HookPoint::KInput(1)).unwrap().dim(2).unwrap(),
                m.cfg.n_kv_heads
            );
            // An edit of every query head's input = the same edit of resid_pre, as queries see it.
            let delta = Tensor::randn(0f32, 0.5, (1, 6, m.cfg.d_model), &Device::Cpu).unwrap();
            let per_head = delta
                .unsqueeze(2)
                .unwrap()
                .broadcast_as((1, 6, m.cfg.n_heads, m.cfg.d_model))
                .unwrap()
                .contiguous()
                .unwrap();
            let a = HookSpec::new()
                .intervene(HookPoint::QInput(1), Edit::Add(per_head))
                .capture(HookPoint::Q(1))
                .capture(HookPoint::K(1));
            let b = HookSpec::new()
                .intervene(HookPoint::ResidPre(1), Edit::Add(delta))
                .capture(HookPoint::Q(1));
            let qa = m.forward(Some(&tokens()), &a, &opts).unwrap().cache;
            let qb = m.forward(Some(&tokens()), &b, &opts).unwrap().cache;
            let (qa_q, qb_q) = (
                qa.get(HookPoint::Q(1)).unwrap(),
                qb.get(HookPoint::Q(1)).unwrap(),
            );
            assert!(
                max_diff(qa_q, qb_q) < 1e-4,
                "{preset}: per-head queries differ"
            );
            let k_plain = out.cache.get(HookPoint::KInput(1)).is_some();
            assert!(k_plain);
            let k_edit = qa.get(HookPoint::K(1)).unwrap();
            let k_ref = m
                .forward(
                    Some(&tokens()),
                    &HookSpec::new().capture(HookPoint::K(1)),
                    &opts,
                )
                .unwrap()
                .cache;
            assert!(
                max_diff(k_edit, k_ref.get(HookPoint::K(1)).unwrap()) < 1e-6,
                "{preset}: keys moved"
            );
        }
    }

    /// Gradients with respect to an activation are the same whether the
    /// weights are variables (candle's matmul, weight gradients computed)
    /// or constants (the weight-matmul op, activation gradients only).
    #[test]
    fn activation_gradients_do_not_need_weight_gradients() {
        let mut m = model("gpt2-tiny");
        let grad_of = |m: &patchbench::model::Transformer| {
            let v =
                Var::zeros((1, 6, m.cfg.d_model), candle_core::DType::F32, &Device::Cpu).unwrap();
            let spec =
                HookSpec::new().intervene(HookPoint::ResidPre(1), Edit::Add(v.as_tensor().clone()));
            let logits = m
                .forward(Some(&tokens()), &spec, &ForwardOptions::default())
                .unwrap()
                .logits
                .unwrap();
            let loss = logits.sqr().unwrap().mean_all().unwrap();
            let g = loss.backward().unwrap();
            (g.get(v.as_tensor()).unwrap().clone(), g)
        };
        let (constant, store) = grad_of(&m);
        let dense = |l: &patchbench::model::forward::Linear| l.w.to_dense().unwrap();
        let w = dense(&m.blocks[1].mlp.w_in);
        assert!(store.get(&w).is_none(), "a weight gradient was computed");
        let var = |t: &Tensor| Matrix::Dense(Var::from_tensor(t).unwrap().as_tensor().clone());
        m.blocks[1].mlp.w_in.w = var(&w);
        m.blocks[1].attn.q.w = var(&dense(&m.blocks[1].attn.q));
        let (tracked, store) = grad_of(&m);
        assert!(store.get(&dense(&m.blocks[1].mlp.w_in)).is_some());
        let d = max_diff(&constant, &tracked);
        assert!(d < 1e-6, "gradients differ by {d}");
        assert!(
            constant
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                > 0.0
        );
    }
}
