//! The synthetic training corpus and the held-out evaluation prompts.
//!
//! Three kinds of document, each a single sentence group that starts at
//! position 0 (no packing, so no document ever sees another's names):
//!
//! - **IOI**: an [`IOI_TEMPLATES`] sentence completed by its indirect
//!   object, `when mary and john went to the store , john gave a drink to
//!   mary .`; both orders (ABBA and BABA) equally often. One name pair in five
//!   never appears together in training ([`is_held_out_pair`]): those pairs
//!   are the held-out test set, so the tests measure a learned algorithm, not
//!   memorised sentences.
//! - **facts**: one to three statements from the [`CAPITALS`] table,
//!   `the capital of france is paris .`
//! - **induction**: a span of distinct random content words starting at
//!   position 0, followed at once by the same span again; only the second
//!   copy is predictable. Because the span always starts at 0 and the copy
//!   follows at once, the distance back to the continuation takes only seven
//!   values, and the shipped model solves this with fixed-offset heads in
//!   layer 0 rather than with induction heads (see `README.md`; corpora
//!   with random words before and between the copies, which rule that out,
//!   did not reach 90% within the training budget).
//!
//! The mix is [`IOI_SHARE`] / [`FACT_SHARE`] / the rest induction.

use super::rng::Rng;
use super::vocab::{
    induction_pool, CAPITALS, FACT_TEMPLATES, IOI_TEMPLATES, NAMES, OBJECTS, PLACES,
};

/// Fraction of training documents that are IOI sentences.
pub const IOI_SHARE: f64 = 0.45;
/// Fraction that are fact statements.
pub const FACT_SHARE: f64 = 0.15;
/// Induction span lengths seen in training (inclusive).
pub const INDUCTION_SPANS: (usize, usize) = (4, 10);
/// Upper bound on a generated document's length, in tokens (the longest,
/// three fact statements, has 24), well inside the model's 64-token context.
pub const MAX_DOC_TOKENS: usize = 32;

/// One IOI sentence, before rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct IoiPrompt {
    pub template: usize,
    /// The indirect object: the answer.
    pub io: &'static str,
    /// The subject, mentioned twice.
    pub s: &'static str,
    pub place: &'static str,
    pub object: &'static str,
    /// Whether the indirect object is mentioned first (ABBA) or second (BABA).
    pub io_first: bool,
}

impl IoiPrompt {
    fn render(&self, repeated: &str) -> String {
        let (a, b) = if self.io_first {
            (self.io, self.s)
        } else {
            (self.s, self.io)
        };
        IOI_TEMPLATES[self.template]
            .replace("{A}", a)
            .replace("{B}", b)
            .replace("{S}", repeated)
            .replace("{P}", self.place)
            .replace("{O}", self.object)
    }

    /// The prompt, ending just before the answer.
    pub fn prompt(&self) -> String {
        self.render(self.s)
    }

    /// The same prompt with the other name repeated, so the answer flips to
    /// [`IoiPrompt::s`]: the corrupted run of an IOI patching pair. Only the
    /// second mention changes, so the two prompts align token for token.
    pub fn corrupted(&self) -> String {
        self.render(self.io)
    }
}

/// Whether a name pair is kept out of training (about one pair in five),
/// whichever order the names come in.
pub fn is_held_out_pair(a: &str, b: &str) -> bool {
    let (x, y) = if a < b { (a, b) } else { (b, a) };
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for byte in x.bytes().chain([b'|']).chain(y.bytes()) {
        h = (h ^ byte as u64).wrapping_mul(0x100_0000_01b3);
    }
    h % 5 == 0
}

/// A random IOI prompt whose name pair is held out (`held_out`) or seen in
/// training (`!held_out`).
pub fn ioi_prompt(rng: &mut Rng, held_out: bool) -> IoiPrompt {
    loop {
        let ij = rng.distinct(NAMES.len(), 2);
        let (io, s) = (NAMES[ij[0]], NAMES[ij[1]]);
        if is_held_out_pair(io, s) != held_out {
            continue;
        }
        return IoiPrompt {
            template: rng.below(IOI_TEMPLATES.len()),
            io,
            s,
            place: PLACES[rng.below(PLACES.len())],
            object: OBJECTS[rng.below(OBJECTS.len())],
            io_first: rng.below(2) == 0,
        };
    }
}

/// A fact prompt, ending just before the capital.
pub fn fact_prompt(template: usize, country: &str) -> String {
    FACT_TEMPLATES[template].replace("{C}", country)
}

/// `prefix` random words, a span of `len` words, `gap` random words, then
/// the span again; all `prefix + len + gap` words distinct.
pub fn induction_sequence(
    rng: &mut Rng,
    prefix: usize,
    len: usize,
    gap: usize,
) -> Vec<&'static str> {
    let pool = induction_pool();
    let words: Vec<&'static str> = rng
        .distinct(pool.len(), prefix + len + gap)
        .into_iter()
        .map(|i| pool[i])
        .collect();
    let span = &words[prefix..prefix + len];
    words.iter().chain(span).copied().collect()
}

/// An endless, seeded stream of training documents (space-separated words).
#[derive(Debug, Clone)]
pub struct Corpus {
    rng: Rng,
}

impl Corpus {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::fork(seed, "corpus"),
        }
    }

    pub fn next_doc(&mut self) -> String {
        let r = self.rng.unit();
        if r < IOI_SHARE {
            let p = ioi_prompt(&mut self.rng, false);
            format!("{} {} .", p.prompt(), p.io)
        } else if r < IOI_SHARE + FACT_SHARE {
            let n = 1 + self.rng.below(3);
            (0..n)
                .map(|_| {
                    let (c, k) = *self.rng.pick(CAPITALS);
                    let t = self.rng.below(FACT_TEMPLATES.len());
                    format!("{} {k} .", fact_prompt(t, c))
                })
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            let (lo, hi) = INDUCTION_SPANS;
            let len = lo + self.rng.below(hi - lo + 1);
            induction_sequence(&mut self.rng, 0, len, 0).join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupted_ioi_differs_only_in_the_second_mention() {
        let p = ioi_prompt(&mut Rng::new(3), true);
        let (clean, corrupt) = (p.prompt(), p.corrupted());
        let clean: Vec<&str> = clean.split(' ').collect();
        let corrupt: Vec<&str> = corrupt.split(' ').collect();
        let diff: Vec<usize> = (0..clean.len())
            .filter(|&i| clean[i] != corrupt[i])
            .collect();
        assert_eq!(diff.len(), 1);
        assert_eq!(clean[diff[0]], p.s);
        assert_eq!(corrupt[diff[0]], p.io);
    }

    #[test]
    fn training_never_pairs_held_out_names_and_docs_fit() {
        let mut c = Corpus::new(0);
        for _ in 0..2000 {
            let doc = c.next_doc();
            let words: Vec<&str> = doc.split(' ').collect();
            assert!(words.len() <= MAX_DOC_TOKENS, "{doc}");
            let names: Vec<&str> = words
                .iter()
                .copied()
                .filter(|w| NAMES.contains(w))
                .collect();
            if doc.contains(" gave ")
                || doc.contains(" handed ")
                || doc.contains(" passed ")
                || doc.contains(" give ")
            {
                assert!(!is_held_out_pair(names[0], names[1]), "{doc}");
            }
        }
        let held = NAMES
            .iter()
            .flat_map(|a| NAMES.iter().map(move |b| (a, b)))
            .filter(|(a, b)| a != b && is_held_out_pair(a, b))
            .count();
        let all = NAMES.len() * (NAMES.len() - 1);
        assert!(
            held * 8 > all && held * 3 < all,
            "{held} of {all} ordered pairs held out"
        );
    }
}
