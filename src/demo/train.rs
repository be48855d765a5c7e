//! The training recipe: the seeded corpus through patchbench's own forward
//! pass, next-token cross-entropy, AdamW.
//!
//! Documents are packed end to end into full-context rows (64 tokens), each
//! document closed by `.`, the last one cut where the row ends, as language
//! models are trained. Packing is what lets real induction heads form: with
//! every document starting at position 0 (`pack = false`, the earlier recipe)
//! absolute positions give the model cheaper shortcuts (fixed-offset heads in
//! layer 0 for induction), and no previous-token head is ever needed; with
//! documents at every offset, the templates can only be followed through the
//! tokens before, so a previous-token head forms and an induction head in a
//! later layer composes with it (see `README.md`). Unpacked rows are padded to
//! the longest document of the batch, with the padding masked out of the
//! loss; `pool > 1` then groups documents by length.
//! AdamW runs with two parameter groups (matrices decayed, gains / biases /
//! positions not), a linear warm-up then cosine decay to a tenth of the
//! peak rate, and the global gradient norm clipped to 1. With one CPU thread
//! (`RAYON_NUM_THREADS=1`, which `train-demo` sets unless told otherwise)
//! every operation runs in a fixed order, so a seed fixes the loss trace and
//! the weights bit for bit. (Two threads gave identical weights in a check,
//! since candle's matmul splits work by output tiles, but only one thread is
//! promised.)

use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

use super::corpus::{Corpus, Mix};
use super::export::{gpt2_config_json, DemoShape};
use super::params::Params;
use super::rng::Rng;
use super::tokenizer::build_tokenizer;
use super::{DemoError, Stage};
use crate::model::{families, ForwardOptions, HookSpec, ModelConfig, Tokenizer, Transformer};

/// Hyper-parameters of a training run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub steps: usize,
    pub seed: u64,
    /// Documents per step.
    pub batch: usize,
    pub peak_lr: f64,
    pub warmup: usize,
    pub weight_decay: f64,
    pub shape: DemoShape,
    pub mix: Mix,
    /// Batches drawn at once and grouped by document length (1: none).
    pub pool: usize,
    /// Pack documents end to end into full-context rows, each ending with
    /// `.`, instead of one document per row from position 0.
    pub pack: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            steps: 6000,
            seed: 0,
            batch: 16,
            peak_lr: 1e-3,
            warmup: 100,
            weight_decay: 0.1,
            shape: DemoShape::default(),
            mix: Mix::default(),
            pool: 1,
            pack: true,
        }
    }
}

/// What a step reports to its caller.
#[derive(Debug, Clone, Copy)]
pub struct StepLog {
    pub step: usize,
    pub loss: f32,
    pub lr: f64,
    pub seconds: f64,
}

/// The model part-way through training, for a caller that wants to
/// evaluate it between steps.
pub struct Snapshot<'a> {
    cfg: &'a ModelConfig,
    params: &'a Params,
}

impl Snapshot<'_> {
    /// The model as it is after this step (detached weights).
    pub fn transformer(&self) -> Result<Transformer, DemoError> {
        detached(self.cfg, self.params)
    }
}

fn detached(cfg: &ModelConfig, params: &Params) -> Result<Transformer, DemoError> {
    let mut w = crate::model::weights::CanonicalWeights::new("the demo model in training");
    for (name, t) in params.snapshot()? {
        w.insert(name, t);
    }
    Ok(Transformer::new(cfg.clone(), w)?)
}

/// A finished run: everything needed to save or use the model.
pub struct Trained {
    pub config_json: serde_json::Value,
    pub cfg: ModelConfig,
    pub params: Params,
    pub tokenizer: Tokenizer,
    pub losses: Vec<f32>,
    pub seconds: f64,
}

impl Trained {
    /// The model as it is now (detached weights), ready for inference.
    pub fn transformer(&self) -> Result<Transformer, DemoError> {
        detached(&self.cfg, &self.params)
    }
}

/// The learning rate at `step`: linear warm-up, then cosine to `peak / 10`.
pub fn learning_rate(opts: &TrainOptions, step: usize) -> f64 {
    if step < opts.warmup {
        return opts.peak_lr * (step + 1) as f64 / opts.warmup as f64;
    }
    let span = opts.steps.saturating_sub(opts.warmup).max(1) as f64;
    let t = ((step - opts.warmup) as f64 / span).min(1.0);
    let floor = opts.peak_lr / 10.0;
    floor + (opts.peak_lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
}

/// One batch: inputs `[batch, T]`, next-token targets `[batch, T]` and a 0/1
/// loss mask `[batch, T]` that is 0 past each document's end.
struct Batch {
    inputs: Tensor,
    targets: Tensor,
    mask: Tensor,
}

/// Serves the corpus as batches of documents of similar length.
///
/// Documents are drawn `pool` batches at a time, sorted by length (stably,
/// so the order stays seeded) and cut into batches that are served in a
/// shuffled order. A batch pads to its longest document, so grouping by
/// length cuts the padded positions, and with them the cost of a step,
/// without changing what the model sees over a pool. `pool = 1` serves the
/// documents in the order drawn.
struct Batcher {
    corpus: Corpus,
    rng: Rng,
    pool: usize,
    ready: Vec<Vec<Vec<u32>>>,
}

impl Batcher {
    fn new(corpus: Corpus, seed: u64, pool: usize) -> Self {
        Self {
            corpus,
            rng: Rng::fork(seed, "batches"),
            pool: pool.max(1),
            ready: Vec::new(),
        }
    }

    /// `batch` rows of exactly `len` tokens: documents end to end, each
    /// closed by `.`, the last one cut where the row ends.
    fn next_packed(
        &mut self,
        tok: &Tokenizer,
        batch: usize,
        len: usize,
    ) -> Result<Vec<Vec<u32>>, DemoError> {
        (0..batch)
            .map(|_| {
                let mut row = Vec::with_capacity(len + 32);
                while row.len() < len {
                    let mut doc = self.corpus.next_doc();
                    if !doc.ends_with('.') {
                        doc.push_str(" .");
                    }
                    row.extend(tok.encode(&doc, Some(false))?);
                }
                row.truncate(len);
                Ok(row)
            })
            .collect()
    }

    fn next_docs(&mut self, tok: &Tokenizer, batch: usize) -> Result<Vec<Vec<u32>>, DemoError> {
        if self.ready.is_empty() {
            let mut docs = (0..batch * self.pool)
                .map(|_| tok.encode(&self.corpus.next_doc(), Some(false)))
                .collect::<Result<Vec<_>, _>>()?;
            if self.pool > 1 {
                docs.sort_by_key(Vec::len);
            }
            let mut batches: Vec<Vec<Vec<u32>>> =
                docs.chunks(batch).map(<[Vec<u32>]>::to_vec).collect();
            // Fisher-Yates; served from the back.
            for i in (1..batches.len()).rev() {
                batches.swap(i, self.rng.below(i + 1));
            }
            self.ready = batches;
        }
        Ok(self.ready.pop().expect("a pool holds at least one batch"))
    }
}

fn draw_batch(
    batcher: &mut Batcher,
    tok: &Tokenizer,
    batch: usize,
    n_ctx: usize,
    pack: bool,
    dev: &Device,
) -> Result<Batch, DemoError> {
    let docs = if pack {
        batcher.next_packed(tok, batch, n_ctx + 1)?
    } else {
        batcher.next_docs(tok, batch)?
    };
    let t = docs
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(2)
        .clamp(2, n_ctx + 1)
        - 1;
    let (mut inputs, mut targets, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for d in &docs {
        for i in 0..t {
            inputs.push(d.get(i).copied().unwrap_or(0));
            targets.push(d.get(i + 1).copied().unwrap_or(0));
            mask.push(if i + 1 < d.len() { 1f32 } else { 0.0 });
        }
    }
    let mk = |v: Vec<u32>| Tensor::from_vec(v, (batch, t), dev);
    Ok(Batch {
        inputs: mk(inputs).during("building a batch")?,
        targets: mk(targets).during("building a batch")?,
        mask: Tensor::from_vec(mask, (batch, t), dev).during("building a batch")?,
    })
}

/// Mean next-token cross-entropy over unmasked positions.
///
/// # Shapes
/// `logits: [batch, T, d_vocab]`, `targets, mask: [batch, T]` -> scalar
fn masked_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
) -> candle_core::Result<Tensor> {
    let (b, t, v) = logits.dims3()?;
    let logp = candle_nn::ops::log_softmax(&logits.reshape((b * t, v))?, D::Minus1)?;
    let picked = logp
        .gather(&targets.reshape((b * t, 1))?, 1)?
        .reshape((b, t))?;
    let total = (picked * mask)?.sum_all()?;
    total.neg()? / mask.sum_all()?.to_scalar::<f32>()? as f64
}

/// Scales all gradients so their global L2 norm is at most `max_norm`.
fn clip_gradients(
    grads: &mut candle_core::backprop::GradStore,
    params: &Params,
    max_norm: f64,
) -> candle_core::Result<()> {
    let mut sq = 0f64;
    for v in params.vars() {
        if let Some(g) = grads.get(v) {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    let norm = sq.sqrt();
    if norm > max_norm {
        let scale = max_norm / norm;
        for v in params.vars() {
            if let Some(g) = grads.remove(v) {
                grads.insert(v, (g * scale)?);
            }
        }
    }
    Ok(())
}

/// Trains the demo model; `on_step` sees every step's loss and the model
/// as that step left it.
pub fn train(
    opts: &TrainOptions,
    on_step: &mut dyn FnMut(&StepLog, &Snapshot),
) -> Result<Trained, DemoError> {
    let start = Instant::now();
    let dev = Device::Cpu;
    let tokenizer = build_tokenizer()?;
    let config_json = gpt2_config_json(&opts.shape, tokenizer.vocab_size());
    let cfg = families::config_from_hf(&config_json, "the demo config")?;
    let params = Params::init(&cfg, opts.seed, &dev)?;
    let (decay, no_decay) = params.groups();
    let adam = |weight_decay| ParamsAdamW {
        lr: opts.peak_lr,
        beta1: 0.9,
        beta2: 0.98,
        eps: 1e-8,
        weight_decay,
    };
    let mut opt_decay = AdamW::new(decay, adam(opts.weight_decay)).during("creating AdamW")?;
    let mut opt_rest = AdamW::new(no_decay, adam(0.0)).during("creating AdamW")?;
    let mut batcher = Batcher::new(
        Corpus::new(opts.seed, opts.mix.clone()),
        opts.seed,
        opts.pool,
    );
    let mut losses = Vec::with_capacity(opts.steps);
    for step in 0..opts.steps {
        let batch = draw_batch(
            &mut batcher,
            &tokenizer,
            opts.batch,
            cfg.n_ctx,
            opts.pack,
            &dev,
        )?;
        let model = Transformer::new(cfg.clone(), params.canonical())?;
        let out = model
            .forward(
                Some(&batch.inputs),
                &HookSpec::new(),
                &ForwardOptions::default(),
            )
            .during("the training forward pass")?;
        let logits = out.logits.expect("a full forward pass returns logits");
        let loss = masked_cross_entropy(&logits, &batch.targets, &batch.mask).during("the loss")?;
        let value = loss.to_scalar::<f32>().during("reading the loss")?;
        if !value.is_finite() {
            return Err(DemoError::Diverged { step, loss: value });
        }
        let mut grads = loss.backward().during("backpropagation")?;
        clip_gradients(&mut grads, &params, 1.0).during("clipping gradients")?;
        let lr = learning_rate(opts, step);
        opt_decay.set_learning_rate(lr);
        opt_rest.set_learning_rate(lr);
        opt_decay.step(&grads).during("the optimiser step")?;
        opt_rest.step(&grads).during("the optimiser step")?;
        losses.push(value);
        on_step(
            &StepLog {
                step,
                loss: value,
                lr,
                seconds: start.elapsed().as_secs_f64(),
            },
            &Snapshot {
                cfg: &cfg,
                params: &params,
            },
        );
    }
    Ok(Trained {
        config_json,
        cfg,
        params,
        tokenizer,
        losses,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(batches: &[Vec<Vec<u32>>]) -> usize {
        batches
            .iter()
            .map(|b| b.iter().map(Vec::len).sum::<usize>())
            .sum()
    }

    fn padded(batches: &[Vec<Vec<u32>>]) -> usize {
        batches
            .iter()
            .map(|b| b.len() * b.iter().map(Vec::len).max().unwrap_or(0))
            .sum()
    }

    #[test]
    fn packed_rows_are_full_and_made_of_whole_documents() {
        let tok = build_tokenizer().unwrap();
        let dot = tok.single_token(".").unwrap();
        let rows = Batcher::new(Corpus::new(3, Mix::default()), 3, 1)
            .next_packed(&tok, 8, 65)
            .unwrap();
        assert_eq!(rows.len(), 8);
        let mut docs = Corpus::new(3, Mix::default());
        for row in &rows {
            assert_eq!(row.len(), 65);
            // The row is the corpus stream, each document closed by `.`,
            // cut at 65 tokens; the cut document is not reused.
            let mut expect = Vec::new();
            while expect.len() < 65 {
                let mut d = docs.next_doc();
                if !d.ends_with('.') {
                    d.push_str(" .");
                }
                expect.extend(tok.encode(&d, Some(false)).unwrap());
            }
            assert_eq!(row[..], expect[..65]);
            assert!(row.iter().filter(|&&t| t == dot).count() >= 2, "{row:?}");
        }
    }

    #[test]
    fn pooled_batches_serve_the_same_documents_with_less_padding() {
        let tok = build_tokenizer().unwrap();
        let mix = Mix {
            max_prefix: 4,
            max_gap: 4,
            ..Mix::default()
        };
        let draw = |pool: usize| {
            let mut b = Batcher::new(Corpus::new(7, mix.clone()), 7, pool);
            (0..8)
                .map(|_| b.next_docs(&tok, 16).unwrap())
                .collect::<Vec<_>>()
        };
        let (plain, pooled) = (draw(1), draw(8));
        assert!(pooled.iter().all(|b| b.len() == 16));
        // The same 128 documents, in another order.
        let sorted = |bs: &[Vec<Vec<u32>>]| {
            let mut all: Vec<Vec<u32>> = bs.concat();
            all.sort();
            all
        };
        assert_eq!(sorted(&plain), sorted(&pooled));
        assert_eq!(tokens(&plain), tokens(&pooled));
        assert!(
            padded(&pooled) * 10 < padded(&plain) * 9,
            "pooling pads {} positions, plain batches {}",
            padded(&pooled),
            padded(&plain)
        );
        // Not served shortest-first: the order of the batches is shuffled.
        let longest: Vec<usize> = pooled
            .iter()
            .map(|b| b.iter().map(Vec::len).max().unwrap())
            .collect();
        assert!(longest.windows(2).any(|w| w[0] > w[1]), "{longest:?}");
    }
}
