//! One candidate pair per task and word style.

use crate::demo::corpus::is_held_out_pair;
use crate::demo::vocab;

use super::super::dataset::DatasetPair;
use super::super::stats::SplitMix;
use super::words;
use super::{Candidate, Style, Task};

fn pick<'a, T>(rng: &mut SplitMix, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len())]
}

/// `n` distinct indices below `len`.
fn distinct(rng: &mut SplitMix, len: usize, n: usize) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::with_capacity(n);
    while out.len() < n.min(len) {
        let i = rng.below(len);
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// Fills `{X}` placeholders; returns the text and, per placeholder
/// occurrence, its name and the character range of its value.
fn render(
    template: &str,
    values: &[(&str, &str)],
) -> (String, Vec<(String, std::ops::Range<usize>)>) {
    let mut out = String::new();
    let mut marks = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').map(|j| i + j).unwrap_or(rest.len() - 1);
        let key = &rest[i + 1..j];
        let v = values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .unwrap_or("");
        let start = out.len();
        out.push_str(v);
        marks.push((key.to_string(), start..out.len()));
        rest = &rest[j + 1..];
    }
    out.push_str(rest);
    (out, marks)
}

fn mark(
    marks: &[(String, std::ops::Range<usize>)],
    key: &str,
    nth: usize,
) -> std::ops::Range<usize> {
    marks
        .iter()
        .filter(|(k, _)| k == key)
        .nth(nth)
        .map(|(_, r)| r.clone())
        .unwrap_or(0..0)
}

/// An answer as the tokenizer sees the next word: bare in the demo's
/// word-level vocabulary, with a leading space for byte-level BPE.
fn answer(style: Style, w: &str) -> String {
    match style {
        Style::Demo => w.to_string(),
        Style::English => format!(" {w}"),
    }
}

fn pair(clean: String, corrupted: String, a: String, w: String) -> DatasetPair {
    DatasetPair {
        id: None,
        clean,
        corrupted,
        answer: a,
        wrong: w,
        answers: vec![],
        wrongs: vec![],
        labels: Default::default(),
    }
}

pub(super) fn candidate(task: Task, style: Style, rng: &mut SplitMix) -> Option<Candidate> {
    Some(match task {
        Task::Ioi => ioi(style, rng),
        Task::Facts => facts(style, rng),
        Task::Induction => induction(style, rng),
        Task::GreaterThan => greater_than(rng),
    })
}

/// Clean: `S` repeated, the answer is the indirect object. Corrupted: the
/// indirect object repeated instead (one token differs), so the answer
/// flips to the subject. The demo style draws only name pairs held out of
/// the demo's training.
fn ioi(style: Style, rng: &mut SplitMix) -> Candidate {
    let (templates, names, places, objects) = match style {
        Style::Demo => (
            vocab::IOI_TEMPLATES,
            vocab::NAMES,
            vocab::PLACES,
            vocab::OBJECTS,
        ),
        Style::English => (
            words::IOI_TEMPLATES,
            words::NAMES,
            words::PLACES,
            words::OBJECTS,
        ),
    };
    let (io, s) = loop {
        let ij = distinct(rng, names.len(), 2);
        let (io, s) = (names[ij[0]], names[ij[1]]);
        if style == Style::English || is_held_out_pair(io, s) {
            break (io, s);
        }
    };
    let template = *pick(rng, templates);
    let (place, object) = (*pick(rng, places), *pick(rng, objects));
    let io_first = rng.below(2) == 0;
    let (a, b) = if io_first { (io, s) } else { (s, io) };
    let vals = |rep: &'static str| {
        render(
            template,
            &[("A", a), ("B", b), ("S", rep), ("P", place), ("O", object)],
        )
    };
    let (clean, marks) = vals(s);
    let (corrupted, _) = vals(io);
    let (io_mark, s1_mark) = if io_first { ("A", "B") } else { ("B", "A") };
    Candidate {
        pair: pair(clean, corrupted, answer(style, io), answer(style, s)),
        marks: vec![
            ("IO", mark(&marks, io_mark, 0)),
            ("S1", mark(&marks, s1_mark, 0)),
            ("S2", mark(&marks, "S", 0)),
        ],
    }
}

/// The capital of a country against another country's.
fn facts(style: Style, rng: &mut SplitMix) -> Candidate {
    let (table, templates) = match style {
        Style::Demo => (vocab::CAPITALS, vocab::FACT_TEMPLATES),
        Style::English => (words::CAPITALS, words::FACT_TEMPLATES),
    };
    let ij = distinct(rng, table.len(), 2);
    let ((c, k), (c2, k2)) = (table[ij[0]], table[ij[1]]);
    let template = *pick(rng, templates);
    let (clean, marks) = render(template, &[("C", c)]);
    let (corrupted, _) = render(template, &[("C", c2)]);
    Candidate {
        pair: pair(clean, corrupted, answer(style, k), answer(style, k2)),
        marks: vec![("SUBJ", mark(&marks, "C", 0))],
    }
}

/// Random words, a span, random words, the span's first `j + 1` words
/// again: the answer is the span's word `j + 1`. The corrupted prompt
/// replaces that word in the first copy by another one, the wrong answer.
/// Labels: `A` the first copy of the last word, `B` the word after it.
fn induction(style: Style, rng: &mut SplitMix) -> Candidate {
    let pool: Vec<&'static str> = match style {
        Style::Demo => vocab::induction_pool(),
        Style::English => words::FILLERS.to_vec(),
    };
    let (prefix, gap) = (2, 2);
    let len = 4 + rng.below(3);
    let j = rng.below(len - 1);
    let idx = distinct(rng, pool.len(), prefix + len + gap + 1);
    let w: Vec<&'static str> = idx.iter().map(|&i| pool[i]).collect();
    let span = &w[prefix..prefix + len];
    let other = w[prefix + len + gap];
    let build = |second: &'static str| {
        let mut words: Vec<&'static str> = w[..prefix].to_vec();
        words.extend_from_slice(&span[..=j]);
        words.push(second);
        words.extend_from_slice(&span[j + 2..]);
        words.extend_from_slice(&w[prefix + len..prefix + len + gap]);
        words.extend_from_slice(&span[..=j]);
        words
    };
    let clean_words = build(span[j + 1]);
    let corrupted_words = build(other);
    let clean = clean_words.join(" ");
    // Character range of word `i` of the clean prompt.
    let range = |i: usize| {
        let start: usize = clean_words[..i].iter().map(|x| x.len() + 1).sum();
        start..start + clean_words[i].len()
    };
    Candidate {
        pair: pair(
            clean,
            corrupted_words.join(" "),
            answer(style, span[j + 1]),
            answer(style, other),
        ),
        marks: vec![("A", range(prefix + j)), ("B", range(prefix + j + 1))],
    }
}

/// "The war lasted from the year 1732 to the year 17": the answer is a
/// year's last two digits above 32, the corrupted start year is 1701.
/// `answers`/`wrongs` list every two-digit ending above / not above.
fn greater_than(rng: &mut SplitMix) -> Candidate {
    let noun = *pick(rng, words::NOUNS);
    let century = 11 + rng.below(8);
    let yy = 2 + rng.below(96);
    let text =
        |y: usize| format!("The {noun} lasted from the year {century}{y:02} to the year {century}");
    let clean = text(yy);
    let start = clean.find(" to the").unwrap_or(2) - 2;
    let answers: Vec<String> = (yy + 1..100).map(|y| format!("{y:02}")).collect();
    let wrongs: Vec<String> = (0..=yy).map(|y| format!("{y:02}")).collect();
    let a = answers[rng.below(answers.len())].clone();
    let mut p = pair(clean, text(1), a, format!("{:02}", yy - 1));
    p.answers = answers;
    p.wrongs = wrongs;
    Candidate {
        pair: p,
        marks: vec![("YY", start..start + 2)],
    }
}
