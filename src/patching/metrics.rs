//! The metric registry, and metrics computed from a patched run's
//! last-position logits.
//!
//! Every metric is one [`MetricDef`] in [`REGISTRY`]: its name, short label,
//! description, how it is computed, whether higher is better and how it is
//! displayed. The engine, the outputs (JSON/CSV/table), sessions and the
//! panes iterate the registry, so a new metric is one new entry here; the
//! registry's order is the order metrics are stored and shown (and the
//! order of the JSON contract).
//!
//! Every patched run yields every metric, so the UI can switch between them
//! without re-running. A metric is either computed from the run itself
//! ([`Compute::Run`]) or derived by normalising another metric between the
//! two baselines ([`Compute::Normalized`]), filled in once the baselines and
//! the averaged raw values are known.
//!
//! Test builds of the library carry one extra entry (`answer_logit`), so
//! unit tests prove that the engine, outputs and sessions follow the
//! registry rather than a hard-coded six.

use std::ops::{Index, IndexMut};

use candle_core::{DType, Result as CResult, Tensor, D};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a metric sees of one patched run.
#[derive(Debug, Clone, Copy)]
pub struct RunView<'a> {
    /// Last-position logits, `[d_vocab]`.
    pub logits: &'a [f32],
    /// Their log-softmax, `[d_vocab]`.
    pub logprobs: &'a [f32],
    /// The clean run's log-softmax and its exponent, `[d_vocab]` each.
    pub clean_logprobs: &'a [f32],
    pub clean_probs: &'a [f32],
    pub answer: usize,
    pub wrong: usize,
    /// Further answers and wrong answers (multi-answer datasets); empty
    /// for a pair with one of each.
    pub sets: &'a AnswerSets,
}

/// Further one-token answers and wrong answers of a prompt pair, beside
/// its `answer` and `wrong` (a dataset's `answers` / `wrongs` lists).
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct AnswerSets {
    pub answers: Vec<u32>,
    pub wrongs: Vec<u32>,
}

impl AnswerSets {
    /// No further answers.
    pub const NONE: &'static AnswerSets = &AnswerSets {
        answers: vec![],
        wrongs: vec![],
    };

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty() && self.wrongs.is_empty()
    }
}

impl RunView<'_> {
    /// The answer set `{answer} ∪ answers` (or the wrong set), without
    /// repeats, in order.
    fn set(&self, wrong: bool) -> Vec<usize> {
        let (first, more) = if wrong {
            (self.wrong, &self.sets.wrongs)
        } else {
            (self.answer, &self.sets.answers)
        };
        let mut out = vec![first];
        for &t in more {
            if !out.contains(&(t as usize)) {
                out.push(t as usize);
            }
        }
        out
    }
}

/// `log Σ exp(logits[i])` over `ids`, in f64.
fn logsumexp(logits: &[f32], ids: &[usize]) -> f64 {
    let max = ids
        .iter()
        .map(|&i| logits[i] as f64)
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = ids.iter().map(|&i| (logits[i] as f64 - max).exp()).sum();
    max + sum.ln()
}

/// The multi-answer logit difference: `logsumexp` of the answers' logits
/// minus `logsumexp` of the wrongs', the answers being `answer` plus the
/// pair's `answers` and the wrongs `wrong` plus its `wrongs`. It is
/// `log P(answers) − log P(wrongs)` (the softmax's normaliser cancels),
/// so it reads as the log-odds of the answer set against the wrong set,
/// and with one answer and one wrong it is exactly `logit_diff`.
fn multi_logit_diff(r: &RunView) -> f32 {
    (logsumexp(r.logits, &r.set(false)) - logsumexp(r.logits, &r.set(true))) as f32
}

/// Its gradient: the softmax within the answer set, minus the softmax
/// within the wrong set.
fn multi_logit_diff_grad(r: &RunView, g: &mut [f32]) {
    g.fill(0.0);
    for (wrong, sign) in [(false, 1.0f64), (true, -1.0)] {
        let ids = r.set(wrong);
        let lse = logsumexp(r.logits, &ids);
        for &i in &ids {
            g[i] += (sign * (r.logits[i] as f64 - lse).exp()) as f32;
        }
    }
}

/// How a metric is obtained.
#[derive(Debug, Clone, Copy)]
pub enum Compute {
    /// From the patched run itself.
    Run(fn(&RunView) -> f32),
    /// `(x - corrupted) / (clean - corrupted)` of the named metric, with the
    /// baselines' values of it: 0 = corrupted, 1 = clean. Filled in after
    /// averaging (normalising means, not averaging normalised values).
    Normalized { of: &'static str },
}

/// How a metric's values are displayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A real number.
    Real,
    /// A whole number (ranks).
    Integer,
}

/// One metric.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// The name in outputs, sessions, keymaps and `--metric`.
    pub name: &'static str,
    /// A few characters, for the heatmap's cell readout.
    pub short: &'static str,
    /// One line for the settings pane and help.
    pub about: &'static str,
    pub compute: Compute,
    /// Whether a larger value means the model does the task better.
    pub higher_is_better: bool,
    pub format: Format,
    /// The metric's gradient with respect to the last-position logits
    /// (written into the slice, `[d_vocab]`), for gradient-based circuit
    /// estimates; `None` for metrics without one (ranks are piecewise
    /// constant) and for normalised metrics (estimated from the metric they
    /// normalise).
    pub grad: Option<fn(&RunView, &mut [f32])>,
}

/// Every metric this build computes, in stored and shown order.
pub const REGISTRY: &[MetricDef] = &[
    MetricDef {
        name: "logit_diff",
        short: "ld",
        about: "logit(answer) - logit(wrong) at the last position",
        compute: Compute::Run(|r| r.logits[r.answer] - r.logits[r.wrong]),
        higher_is_better: true,
        format: Format::Real,
        grad: Some(|r, g| {
            g.fill(0.0);
            g[r.answer] += 1.0;
            g[r.wrong] -= 1.0;
        }),
    },
    MetricDef {
        name: "logit_diff_normalized",
        short: "norm",
        about: "(x - corrupted) / (clean - corrupted): 0 = corrupted, 1 = clean",
        compute: Compute::Normalized { of: "logit_diff" },
        higher_is_better: true,
        format: Format::Real,
        grad: None,
    },
    MetricDef {
        name: "logprob",
        short: "logp",
        about: "log-probability of the answer",
        compute: Compute::Run(|r| r.logprobs[r.answer]),
        higher_is_better: true,
        format: Format::Real,
        grad: Some(|r, g| {
            softmax_into(r.logprobs, g, -1.0);
            g[r.answer] += 1.0;
        }),
    },
    MetricDef {
        name: "prob",
        short: "p",
        about: "probability of the answer",
        compute: Compute::Run(|r| r.logprobs[r.answer].exp()),
        higher_is_better: true,
        format: Format::Real,
        grad: Some(|r, g| {
            let p = r.logprobs[r.answer].exp();
            softmax_into(r.logprobs, g, -p);
            g[r.answer] += p;
        }),
    },
    MetricDef {
        name: "kl",
        short: "kl",
        about: "KL(clean || patched) over the vocabulary",
        compute: Compute::Run(kl),
        higher_is_better: false,
        format: Format::Real,
        grad: Some(|r, g| {
            softmax_into(r.logprobs, g, 1.0);
            for (x, c) in g.iter_mut().zip(r.clean_probs) {
                *x -= c;
            }
        }),
    },
    MetricDef {
        name: "rank",
        short: "rank",
        about: "rank of the answer (1 = most likely)",
        compute: Compute::Run(|r| {
            let a = r.logits[r.answer];
            (1 + r.logits.iter().filter(|&&x| x > a).count()) as f32
        }),
        higher_is_better: false,
        format: Format::Integer,
        grad: None,
    },
    MetricDef {
        name: "multi_logit_diff",
        short: "mld",
        about: "logsumexp(answers' logits) - logsumexp(wrongs' logits): answer + answers against wrong + wrongs (= logit_diff with one of each)",
        compute: Compute::Run(multi_logit_diff),
        higher_is_better: true,
        format: Format::Real,
        grad: Some(multi_logit_diff_grad),
    },
    #[cfg(test)]
    tests::ANSWER_LOGIT,
];

/// The number of metrics.
pub const N_METRICS: usize = REGISTRY.len();

const NAMES: [&str; N_METRICS] = {
    let mut out = [""; N_METRICS];
    let mut i = 0;
    while i < N_METRICS {
        out[i] = REGISTRY[i].name;
        i += 1;
    }
    out
};

/// Metric names, in registry order.
pub const METRICS: &[&str] = &NAMES;

// Every normalised metric names a metric of the registry (checked when
// compiling, so `normalize` cannot fail).
const _: () = {
    let mut i = 0;
    while i < N_METRICS {
        if let Compute::Normalized { of } = REGISTRY[i].compute {
            let _ = id(of);
        }
        i += 1;
    }
};

/// A metric's position in [`REGISTRY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricId(pub usize);

impl MetricId {
    pub fn def(self) -> &'static MetricDef {
        &REGISTRY[self.0]
    }
}

impl MetricDef {
    /// +1 when a larger value means the model does the task better, -1
    /// when a smaller one does (KL, rank): multiplying a change by it gives
    /// the change's effect on the task, so "toward the answer" reads the
    /// same way on every metric.
    pub fn effect_sign(&self) -> f32 {
        if self.higher_is_better {
            1.0
        } else {
            -1.0
        }
    }
}

/// [`MetricDef::effect_sign`] of metric `name`; +1 for a name this build
/// does not know (a stored metric from another build is shown as it is).
pub fn effect_sign(name: &str) -> f32 {
    lookup(name).map_or(1.0, |(_, d)| d.effect_sign())
}

/// The id of metric `name`; a compile error when used in a constant with a
/// name the registry lacks.
pub const fn id(name: &str) -> MetricId {
    let mut i = 0;
    while i < N_METRICS {
        if str_eq(REGISTRY[i].name, name) {
            return MetricId(i);
        }
        i += 1;
    }
    panic!("no such metric in the registry")
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The metric every sweep centres on: baselines, attribution estimates and
/// the normalised form are in terms of it.
pub const LOGIT_DIFF: MetricId = id("logit_diff");

/// The metric shown first (heatmaps, new sessions): the normalised logit
/// difference reads the same (0 = corrupted, 1 = clean) on every task.
pub const DEFAULT_METRIC: MetricId = id("logit_diff_normalized");

/// The definition of metric `name`, if this build knows it.
pub fn lookup(name: &str) -> Option<(MetricId, &'static MetricDef)> {
    REGISTRY
        .iter()
        .position(|d| d.name == name)
        .map(|i| (MetricId(i), &REGISTRY[i]))
}

/// Every metric of one run (or a mean of runs), in registry order.
///
/// Serialised as a map from metric name to value. Reading one tolerates
/// names this build does not know (dropped) and missing names (NaN), so
/// sessions from builds with other metrics still load; the session
/// validator and staleness check say what happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics([f32; N_METRICS]);

impl Default for Metrics {
    fn default() -> Self {
        Metrics([0.0; N_METRICS])
    }
}

impl Index<MetricId> for Metrics {
    type Output = f32;
    fn index(&self, i: MetricId) -> &f32 {
        &self.0[i.0]
    }
}

impl IndexMut<MetricId> for Metrics {
    fn index_mut(&mut self, i: MetricId) -> &mut f32 {
        &mut self.0[i.0]
    }
}

impl Metrics {
    /// Every metric NaN: a cell not computed (or not existing).
    pub fn nan() -> Self {
        Metrics([f32::NAN; N_METRICS])
    }

    pub fn get(&self, name: &str) -> Option<f32> {
        lookup(name).map(|(i, _)| self[i])
    }

    pub fn logit_diff(&self) -> f32 {
        self[LOGIT_DIFF]
    }

    pub fn values(&self) -> [f32; N_METRICS] {
        self.0
    }

    pub fn from_values(v: [f32; N_METRICS]) -> Self {
        Metrics(v)
    }

    /// `(name, value)` in registry order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f32)> + '_ {
        METRICS.iter().copied().zip(self.0)
    }

    /// Element-wise mean.
    pub fn mean(items: &[Metrics]) -> Metrics {
        let n = items.len().max(1) as f32;
        let mut acc = [0f32; N_METRICS];
        for m in items {
            for (a, v) in acc.iter_mut().zip(m.0) {
                *a += v;
            }
        }
        Metrics(acc.map(|a| a / n))
    }

    /// Fills every [`Compute::Normalized`] metric from the baselines.
    /// Idempotent: it reads only run metrics.
    pub fn normalize(&mut self, clean: &Metrics, corrupted: &Metrics) {
        for (i, d) in REGISTRY.iter().enumerate() {
            if let Compute::Normalized { of } = d.compute {
                let of = id(of);
                self.0[i] = normalized(self[of], clean[of], corrupted[of]);
            }
        }
    }
}

impl Serialize for Metrics {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(N_METRICS))?;
        for (name, v) in self.iter() {
            map.serialize_entry(name, &v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Metrics;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(
                    f,
                    "a map from metric name to value ({})",
                    METRICS.join(", ")
                )
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metrics, A::Error> {
                let mut m = Metrics::nan();
                while let Some(name) = map.next_key::<String>()? {
                    let v: f32 = map.next_value()?;
                    if let Some((i, _)) = lookup(&name) {
                        m[i] = v;
                    }
                }
                Ok(m)
            }
        }
        d.deserialize_map(V)
    }
}

/// `(x - corrupted) / (clean - corrupted)`; NaN when the baselines agree.
pub fn normalized(x: f32, clean: f32, corrupted: f32) -> f32 {
    let denom = clean - corrupted;
    if denom.abs() < 1e-12 {
        f32::NAN
    } else {
        (x - corrupted) / denom
    }
}

/// KL(clean || patched) = sum p_clean (log p_clean - log p_patched),
/// accumulated in f64 and clamped at 0 (rounding can dip below).
fn kl(r: &RunView) -> f32 {
    let sum: f64 = r
        .clean_probs
        .iter()
        .zip(r.clean_logprobs)
        .zip(r.logprobs)
        .map(|((&p, &c), &l)| (p * (c - l)) as f64)
        .sum();
    (sum as f32).max(0.0)
}

/// Computes every metric for each row of `logits`; normalised metrics are
/// NaN until [`Metrics::normalize`].
///
/// # Shapes
/// `logits: [batch, d_vocab]`; `clean_logprobs: [d_vocab]` (the clean run's
/// log-softmax, for KL).
pub fn compute(
    logits: &Tensor,
    clean_logprobs: &Tensor,
    answer: u32,
    wrong: u32,
) -> CResult<Vec<Metrics>> {
    compute_with(logits, clean_logprobs, answer, wrong, AnswerSets::NONE)
}

/// [`compute`] for a pair with further answers and wrongs.
pub fn compute_with(
    logits: &Tensor,
    clean_logprobs: &Tensor,
    answer: u32,
    wrong: u32,
    sets: &AnswerSets,
) -> CResult<Vec<Metrics>> {
    let clean = CleanView::new(clean_logprobs)?;
    let n = logits.dim(0)?;
    compute_each(logits, &vec![(&clean, answer, wrong, sets); n])
}

/// The clean run's last-position distribution, read once for many rows.
pub struct CleanView {
    logprobs: Vec<f32>,
    probs: Vec<f32>,
}

impl CleanView {
    /// # Shapes
    /// `clean_logprobs: [d_vocab]`
    pub fn new(clean_logprobs: &Tensor) -> CResult<Self> {
        let logprobs: Vec<f32> = clean_logprobs.to_dtype(DType::F32)?.to_vec1()?;
        let probs = logprobs.iter().map(|x| x.exp()).collect();
        Ok(Self { logprobs, probs })
    }
}

/// Like [`compute`], with each row scored against its own clean run and
/// answers (rows of one batch may patch different prompt pairs).
///
/// # Shapes
/// `logits: [batch, d_vocab]`; `rows`: one entry per batch row.
pub fn compute_each(
    logits: &Tensor,
    rows: &[(&CleanView, u32, u32, &AnswerSets)],
) -> CResult<Vec<Metrics>> {
    let logits = logits.to_dtype(DType::F32)?;
    let logprobs = log_softmax(&logits)?;
    let all: Vec<Vec<f32>> = logits.to_vec2()?;
    let lps: Vec<Vec<f32>> = logprobs.to_vec2()?;
    Ok(all
        .iter()
        .zip(&lps)
        .zip(rows)
        .map(|((row, lp), &(clean, answer, wrong, sets))| {
            let view = RunView {
                logits: row,
                logprobs: lp,
                clean_logprobs: &clean.logprobs,
                clean_probs: &clean.probs,
                answer: answer as usize,
                wrong: wrong as usize,
                sets,
            };
            let mut m = Metrics::nan();
            for (v, d) in m.0.iter_mut().zip(REGISTRY) {
                if let Compute::Run(f) = d.compute {
                    *v = f(&view);
                }
            }
            m
        })
        .collect())
}

/// `out = factor * softmax`, from log-probabilities (a gradient helper:
/// d logprob(a) / d logits = e_a - softmax).
fn softmax_into(logprobs: &[f32], out: &mut [f32], factor: f32) {
    for (o, lp) in out.iter_mut().zip(logprobs) {
        *o = factor * lp.exp();
    }
}

/// Log-softmax over the last (vocabulary) axis.
pub fn log_softmax(logits: &Tensor) -> CResult<Tensor> {
    let logits = logits.to_dtype(DType::F32)?;
    let max = logits.max_keepdim(D::Minus1)?;
    let lse = logits
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        .broadcast_add(&max)?;
    logits.broadcast_sub(&lse)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The extra metric of test builds: the answer's raw logit.
    pub(crate) const ANSWER_LOGIT: MetricDef = MetricDef {
        name: "answer_logit",
        short: "al",
        about: "logit of the answer (test builds only)",
        compute: Compute::Run(|r| r.logits[r.answer]),
        higher_is_better: true,
        format: Format::Real,
        grad: Some(|r, g| {
            g.fill(0.0);
            g[r.answer] = 1.0;
        }),
    };

    #[test]
    fn the_test_build_has_the_seven_metrics_then_its_extra_one() {
        assert_eq!(
            METRICS,
            &[
                "logit_diff",
                "logit_diff_normalized",
                "logprob",
                "prob",
                "kl",
                "rank",
                "multi_logit_diff",
                "answer_logit"
            ]
        );
        assert_eq!(id("answer_logit"), MetricId(7));
        assert_eq!(LOGIT_DIFF.def().short, "ld");
    }

    #[test]
    fn compute_fills_every_run_metric_and_normalize_the_derived_one() {
        let logits = Tensor::new(
            &[[1f32, 3.0, 2.0, 0.5], [4.0, 0.0, 1.0, 0.0]],
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let clean = log_softmax(&logits.narrow(0, 0, 1).unwrap().squeeze(0).unwrap()).unwrap();
        let m = compute(&logits, &clean, 2, 1).unwrap();
        let at = |r: usize, n: &str| m[r].get(n).unwrap();
        assert_eq!(at(0, "logit_diff"), -1.0);
        assert_eq!(at(1, "logit_diff"), 1.0);
        assert_eq!(at(0, "rank"), 2.0);
        assert_eq!(at(1, "rank"), 2.0);
        assert_eq!(at(0, "kl"), 0.0);
        assert!(at(1, "kl") > 0.0);
        assert_eq!(at(0, "answer_logit"), 2.0);
        assert_eq!(at(1, "answer_logit"), 1.0);
        assert!((at(0, "prob") - at(0, "logprob").exp()).abs() < 1e-7);
        assert!(at(0, "logit_diff_normalized").is_nan());
        let (mut x, clean, corrupted) = (m[1], m[1], m[0]);
        x.normalize(&clean, &corrupted);
        assert_eq!(x.get("logit_diff_normalized"), Some(1.0));
    }

    #[test]
    fn multi_logit_diff_and_its_gradient_by_hand() {
        let logits = [1.0f32, 3.0, 2.0, 0.5, -1.0];
        let lp: Vec<f32> = {
            let lse = logits.iter().map(|x| (*x as f64).exp()).sum::<f64>().ln();
            logits.iter().map(|x| (*x as f64 - lse) as f32).collect()
        };
        let p: Vec<f32> = lp.iter().map(|x| x.exp()).collect();
        let sets = AnswerSets {
            answers: vec![3, 1, 3],
            wrongs: vec![4],
        };
        let view = |sets| RunView {
            logits: &logits,
            logprobs: &lp,
            clean_logprobs: &lp,
            clean_probs: &p,
            answer: 1,
            wrong: 2,
            sets,
        };
        // Answers {1, 3} (repeats count once), wrongs {2, 4}.
        let e = |x: f64| x.exp();
        let want = (e(3.0) + e(0.5)).ln() - (e(2.0) + e(-1.0)).ln();
        let got = multi_logit_diff(&view(&sets));
        assert!((got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        // Without lists: exactly the logit difference.
        assert_eq!(multi_logit_diff(&view(AnswerSets::NONE)), 1.0);
        let mut g = vec![0f32; 5];
        multi_logit_diff_grad(&view(&sets), &mut g);
        let (a, w) = (e(3.0) + e(0.5), e(2.0) + e(-1.0));
        let want_g = [0.0, e(3.0) / a, -e(2.0) / w, e(0.5) / a, -e(-1.0) / w];
        for (x, y) in g.iter().zip(want_g) {
            assert!((*x as f64 - y).abs() < 1e-6, "{g:?}");
        }
    }

    #[test]
    fn metrics_read_back_with_unknown_names_dropped_and_missing_ones_nan() {
        let mut m = Metrics::from_values(std::array::from_fn(|i| i as f32));
        let yaml = serde_yaml::to_string(&m).unwrap();
        assert!(yaml.starts_with("logit_diff: 0.0\n"), "{yaml}");
        assert!(yaml.contains("answer_logit: 7.0"), "{yaml}");
        assert_eq!(serde_yaml::from_str::<Metrics>(&yaml).unwrap(), m);
        let other: Metrics =
            serde_yaml::from_str("logit_diff: 2.0\nfuture_metric: 9.0\nrank: 3.0\n").unwrap();
        m = Metrics::nan();
        m[LOGIT_DIFF] = 2.0;
        m[id("rank")] = 3.0;
        assert_eq!(
            other.values().map(f32::to_bits),
            m.values().map(f32::to_bits)
        );
    }
}
