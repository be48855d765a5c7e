//! Live tokenisation for the prompt pane: every pair's token strings and
//! the problems that would stop a sweep, worded for the user.

use crate::model::Tokenizer;
use crate::patching::prepare::prepare_pair;
use crate::patching::PairError;

use super::messages::{PairTokens, PairsInput, Tokenized};

/// Tokenises every pair of `input`; never fails, problems are reported.
pub fn tokenize_pairs(tok: &Tokenizer, input: &PairsInput) -> Tokenized {
    let mut out = Tokenized::default();
    let mut lengths = Vec::new();
    for (i, pair) in input.pairs.iter().enumerate() {
        let mut pt = PairTokens::default();
        match tok.encode(&pair.clean, input.prepend_bos) {
            Ok(ids) => pt.clean = tok.token_strs(&ids),
            Err(e) => pt.problems.push(format!("clean prompt: {e}")),
        }
        if let Some(c) = &pair.corrupted {
            match tok.encode(c, input.prepend_bos) {
                Ok(ids) => pt.corrupted = Some(tok.token_strs(&ids)),
                Err(e) => pt.problems.push(format!("corrupted prompt: {e}")),
            }
        }
        let one = |text: &str| {
            tok.single_token(text)
                .map(|id| tok.token_str(id))
                .map_err(|e| e.to_string())
        };
        pt.answer = Some(one(&pair.answer));
        pt.wrong = Some(one(&pair.wrong));
        match prepare_pair(tok, pair, input.prepend_bos, i) {
            Ok(p) => lengths.push((i, p.n_pos())),
            Err(PairError::LengthMismatch { clean, corrupted, .. }) => pt.problems.push(format!(
                "clean has {} tokens, corrupted {}: patching by position needs equal lengths; reword one prompt",
                clean.len(),
                corrupted.len()
            )),
            // Answer problems are shown beside the answer fields.
            Err(PairError::Answer { .. }) => {}
            Err(e) => pt.problems.push(e.to_string()),
        }
        out.pairs.push(pt);
    }
    if let Some(&(_, first)) = lengths.first() {
        if let Some(&(i, n)) = lengths.iter().find(|(_, n)| *n != first) {
            out.problems.push(format!(
                "all pairs of a sweep need the same token length: pair 1 has {first}, pair {} has {n}",
                i + 1
            ));
        }
    }
    out
}
