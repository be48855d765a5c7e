//! The logit lens: a residual-stream vector read out through the final norm
//! and the unembedding, as if the network ended there.

use crate::model::{HookPoint, LoadedModel};
use crate::patching::PreparedPair;

use super::util::{at_pos, captured, flat, rank, run, softmax, top_tokens};
use super::{AnalysisError, Scored};

/// The logit lens at one hook and position, on both prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct LensDrill {
    /// The TransformerLens hook name, e.g. `blocks.3.hook_resid_pre`.
    pub hook: String,
    pub pos: usize,
    pub token_clean: String,
    pub token_corrupted: String,
    /// Most likely next tokens (probabilities).
    pub top_clean: Vec<Scored>,
    pub top_corrupted: Vec<Scored>,
    pub answer: String,
    pub wrong: String,
    /// `(probability, rank)` of the answer and the wrong answer, clean then corrupted.
    pub answer_clean: (f32, usize),
    pub wrong_clean: (f32, usize),
    pub answer_corrupted: (f32, usize),
    pub wrong_corrupted: (f32, usize),
}

struct LensRun {
    top: Vec<Scored>,
    answer: (f32, usize),
    wrong: (f32, usize),
}

fn lens_run(
    m: &LoadedModel,
    tokens: &[u32],
    pair: &PreparedPair,
    hook: HookPoint,
    pos: usize,
) -> Result<LensRun, AnalysisError> {
    let model = &m.model;
    let out = run(model, tokens, &[hook])?;
    let x = at_pos(&captured(&out, hook)?, pos)?;
    let x = candle_core::Tensor::from_vec(x, (1, model.cfg.d_model), model.device())?
        .to_dtype(model.dtype())?;
    let logits = flat(&model.unembed(&model.ln_final.forward(&x)?)?)?;
    let probs = softmax(&logits);
    Ok(LensRun {
        top: top_tokens(&m.tokenizer, &probs, 8, |v| v),
        answer: (probs[pair.answer as usize], rank(&logits, pair.answer)),
        wrong: (probs[pair.wrong as usize], rank(&logits, pair.wrong)),
    })
}

/// The logit lens on `hook` (a residual-stream-shaped activation) at `pos`.
pub fn logit_lens(
    m: &LoadedModel,
    pair: &PreparedPair,
    hook: HookPoint,
    pos: usize,
) -> Result<LensDrill, AnalysisError> {
    if pos >= pair.n_pos() {
        return Err(AnalysisError::Invalid(format!(
            "position {pos} is beyond the prompt's {} tokens",
            pair.n_pos()
        )));
    }
    let c = lens_run(m, &pair.clean, pair, hook, pos)?;
    let k = lens_run(m, &pair.corrupted, pair, hook, pos)?;
    Ok(LensDrill {
        hook: hook.to_string(),
        pos,
        token_clean: m.tokenizer.token_str(pair.clean[pos]),
        token_corrupted: m.tokenizer.token_str(pair.corrupted[pos]),
        top_clean: c.top,
        top_corrupted: k.top,
        answer: m.tokenizer.token_str(pair.answer),
        wrong: m.tokenizer.token_str(pair.wrong),
        answer_clean: c.answer,
        wrong_clean: c.wrong,
        answer_corrupted: k.answer,
        wrong_corrupted: k.wrong,
    })
}
