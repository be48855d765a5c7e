//! Checks a `tokenizer.json` post-processor before anything is encoded.
//!
//! The tokenizers crate deserialises a `TemplateProcessing` without the
//! checks its builder makes, and then panics at encode time on what it let
//! through (all found by fuzzing):
//! - a template piece naming a special token that `special_tokens` does not
//!   define ("no entry found for key");
//! - `$B` in the single template, which indexes a second sequence that a
//!   single text does not have;
//! - inside a `Sequence` post-processor, a template that receives neither
//!   one nor two sequences from the step before it (a `todo!()`): every
//!   template turns its input into one encoding per piece, so a template
//!   followed by another hands it as many as the first had pieces.
//!
//! A single template must also hold the text (`$A`) exactly once: prompts
//! are encoded through it with special tokens off, so a template without
//! `$A` would make every prompt empty, and one with two would double it.
//!
//! Ids the post-processor inserts (template special tokens, BERT/RoBERTa
//! `cls` and `sep`) must also be in the vocabulary: the prepended one
//! becomes BOS, and an id past the embedding matrix is not a token.
//!
//! The post-processor is read back from the loaded tokenizer (serialised,
//! then deserialised into the mirror types here) rather than from the file,
//! so what is checked is exactly what the crate will run: its untagged
//! deserialiser may read an object as a different kind than its `type`
//! field says.

use std::collections::BTreeMap;

use serde::Deserialize;
use tokenizers::processors::template::{Piece, Sequence as Seq};

use super::guards::{refuse, Refusal};
use crate::util::text::quote;

/// A post-processor as the crate serialises it; fields we do not need
/// (offset trimming, prefix spaces) are ignored.
#[derive(Deserialize)]
#[serde(tag = "type")]
enum Processor {
    TemplateProcessing {
        single: Vec<Piece>,
        pair: Vec<Piece>,
        special_tokens: BTreeMap<String, Special>,
    },
    BertProcessing {
        sep: (String, u32),
        cls: (String, u32),
    },
    RobertaProcessing {
        sep: (String, u32),
        cls: (String, u32),
    },
    ByteLevel {},
    Sequence {
        processors: Vec<Processor>,
    },
}

#[derive(Deserialize)]
struct Special {
    ids: Vec<u32>,
    tokens: Vec<String>,
}

/// Checks the post-processor of `inner`, if it has one; `known` says
/// whether an id is in the vocabulary (added tokens included).
pub(super) fn check(
    inner: &tokenizers::Tokenizer,
    known: impl Fn(u32) -> bool,
) -> Result<(), Refusal> {
    let Some(pp) = inner.get_post_processor() else {
        return Ok(());
    };
    let fix = "re-export the tokenizer from its Hugging Face model, or edit its post_processor";
    let value = serde_json::to_value(pp)
        .map_err(|e| refuse(format!("its post_processor cannot be read back: {e}"), fix))?;
    let pp: Processor = serde_json::from_value(value)
        .map_err(|e| refuse(format!("its post_processor has an unknown shape: {e}"), fix))?;
    check_static(&pp, &known)?;
    // Prompts are single texts, encoded both with and without the
    // post-processor's special tokens (to find the BOS it prepends).
    for add_special in [true, false] {
        flow(&pp, 1, add_special)?;
    }
    Ok(())
}

/// What can be checked of each processor on its own: templates name only
/// defined special tokens, single templates use only `$A`, and every
/// inserted id is a token.
fn check_static(p: &Processor, known: &impl Fn(u32) -> bool) -> Result<(), Refusal> {
    match p {
        Processor::TemplateProcessing {
            single,
            pair,
            special_tokens,
        } => {
            for (which, template) in [("single", single), ("pair", pair)] {
                check_template(which, template, special_tokens)?;
            }
            for (name, s) in special_tokens {
                check_special(name, s, known)?;
            }
        }
        Processor::BertProcessing { sep, cls } | Processor::RobertaProcessing { sep, cls } => {
            for (role, (token, id)) in [("cls", cls), ("sep", sep)] {
                if !known(*id) {
                    return Err(refuse(
                        format!(
                            "its post_processor's {role} token {} has id {id}, which is not in \
                             the vocabulary",
                            quote(token, 80)
                        ),
                        "set the post_processor's cls and sep ids to those the vocabulary gives \
                         these tokens",
                    ));
                }
            }
        }
        Processor::ByteLevel {} => {}
        Processor::Sequence { processors } => {
            for p in processors {
                check_static(p, known)?;
            }
        }
    }
    Ok(())
}

fn check_template(
    which: &str,
    template: &[Piece],
    special_tokens: &BTreeMap<String, Special>,
) -> Result<(), Refusal> {
    for piece in template {
        match piece {
            Piece::SpecialToken { id, .. } if !special_tokens.contains_key(id) => {
                let defined: Vec<String> = special_tokens
                    .keys()
                    .take(8)
                    .map(|k| quote(k, 40))
                    .collect();
                let defined = if defined.is_empty() {
                    "it defines none".to_owned()
                } else {
                    format!("it defines {}", defined.join(", "))
                };
                return Err(refuse(
                    format!(
                        "its post_processor's {which} template names the special token {}, \
                         which the post_processor's special_tokens does not define ({defined})",
                        quote(id, 80)
                    ),
                    "add that token to the post_processor's special_tokens (with its id in the \
                     vocabulary), or remove it from the template",
                ));
            }
            _ => {}
        }
    }
    if which == "single" {
        let uses = |seq: Seq| {
            template
                .iter()
                .filter(|p| matches!(p, Piece::Sequence { id, .. } if *id == seq))
                .count()
        };
        let fix = "write the single template as the text ($A) once, with special tokens \
                   around it, e.g. \"<s> $A\"; $B belongs in the pair template";
        if uses(Seq::B) > 0 {
            return Err(refuse(
                "its post_processor's single template uses $B, but a single text has only $A"
                    .to_owned(),
                fix,
            ));
        }
        if uses(Seq::A) != 1 {
            return Err(refuse(
                format!(
                    "its post_processor's single template uses the text ($A) {} times, so a \
                     prompt would not encode as itself",
                    uses(Seq::A)
                ),
                fix,
            ));
        }
    }
    Ok(())
}

fn check_special(name: &str, s: &Special, known: &impl Fn(u32) -> bool) -> Result<(), Refusal> {
    let fix = "give each entry of the post_processor's special_tokens one id per token, each \
               an id of the vocabulary";
    if s.ids.len() != s.tokens.len() {
        return Err(refuse(
            format!(
                "its post_processor's special token {} has {} ids but {} tokens",
                quote(name, 80),
                s.ids.len(),
                s.tokens.len()
            ),
            fix,
        ));
    }
    if let Some(id) = s.ids.iter().find(|&&id| !known(id)) {
        return Err(refuse(
            format!(
                "its post_processor's special token {} has id {id}, which is not in the \
                 vocabulary",
                quote(name, 80)
            ),
            fix,
        ));
    }
    Ok(())
}

/// How many encodings leave `p` when `n` enter it; an error where the crate
/// would panic.
fn flow(p: &Processor, n: usize, add_special: bool) -> Result<usize, Refusal> {
    Ok(match p {
        Processor::TemplateProcessing { single, pair, .. } => {
            let template = match n {
                1 => single,
                2 => pair,
                _ => {
                    return Err(refuse(
                        format!(
                            "its post_processor is a Sequence in which a TemplateProcessing \
                             receives {n} sequences from the step before it; a template \
                             takes one (single) or two (pair)"
                        ),
                        "put the TemplateProcessing last in the Sequence, with at most one",
                    ))
                }
            };
            template
                .iter()
                .filter(|p| add_special || matches!(p, Piece::Sequence { .. }))
                .count()
        }
        Processor::BertProcessing { .. }
        | Processor::RobertaProcessing { .. }
        | Processor::ByteLevel {} => n,
        Processor::Sequence { processors } => {
            let mut n = n;
            for p in processors {
                n = flow(p, n, add_special)?;
            }
            n
        }
    })
}
