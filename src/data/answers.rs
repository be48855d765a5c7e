//! A dataset's `answers` / `wrongs` lists, tokenised for the multi-answer
//! metric (`multi_logit_diff` in the metric registry): each entry must be
//! one token the tokenizer knows, checked with the same rules as `answer`
//! and `wrong`, and an error names the file, the pair's line and the field.

use crate::model::Tokenizer;
use crate::patching::metrics::AnswerSets;
use crate::patching::PreparedPair;

use super::{Dataset, DatasetError};

/// Sets each prepared pair's further answers and wrongs from the dataset
/// (pairs in the dataset's order).
pub fn attach(
    ds: &Dataset,
    tok: &Tokenizer,
    pairs: &mut [PreparedPair],
) -> Result<(), DatasetError> {
    let shown = ds
        .path
        .as_ref()
        .map(|p| crate::util::text::one_line(&p.display().to_string()).into_owned())
        .unwrap_or_else(|| "the dataset".into());
    for (i, (d, p)) in ds.pairs.iter().zip(pairs.iter_mut()).enumerate() {
        let mut sets = AnswerSets::default();
        for (field, list, out) in [
            ("answers", &d.answers, &mut sets.answers),
            ("wrongs", &d.wrongs, &mut sets.wrongs),
        ] {
            for (k, text) in list.iter().enumerate() {
                let bad = |message: String, fix: &str| DatasetError::Row {
                    path: shown.clone(),
                    line: ds.line(i),
                    field: Some(format!("{field}[{k}]")),
                    message,
                    fix: fix.into(),
                };
                let unknown = tok
                    .unknown_words(text)
                    .map_err(|e| bad(e.to_string(), "write text the tokenizer reads"))?;
                if !unknown.is_empty() {
                    return Err(bad(
                        format!(
                            "{text:?}: the tokenizer does not know {}",
                            unknown.join(", ")
                        ),
                        "use words from the model's vocabulary (the demo's is lower-case)",
                    ));
                }
                let id = tok.single_token(text).map_err(|e| {
                    bad(
                        e.to_string(),
                        "list one-token answers only (with GPT-2 style tokenizers, \
                         usually with a leading space)",
                    )
                })?;
                out.push(id);
            }
        }
        p.sets = sets;
    }
    Ok(())
}
