//! The synthetic training corpus and the held-out evaluation prompts.
//!
//! Three kinds of document, each a single sentence group (training packs
//! them end to end, see [`super::train`]):
//!
//! - **IOI**: an [`IOI_TEMPLATES`] sentence completed by its indirect
//!   object, `when mary and john went to the store , john gave a drink to
//!   mary .`; both orders (ABBA and BABA) equally often. One name pair in five
//!   never appears together in training ([`is_held_out_pair`]): those pairs
//!   are the held-out test set, so the tests measure a learned algorithm, not
//!   memorised sentences.
//! - **facts**: one to three statements from the [`CAPITALS`] table,
//!   `the capital of france is paris .`
//! - **induction**: a span of distinct random content words, then the
//!   same span again; only the second copy is predictable. [`Mix`] can put
//!   random words before the span and between the copies; the shipped recipe
//!   does not need to, since packing already puts other documents before
//!   every span at every offset.
//!
//! [`Mix`] sets the share of each task and the induction layout; its
//! default is the shipped recipe.

use super::rng::Rng;
use super::vocab::{
    induction_pool, CAPITALS, FACT_TEMPLATES, IOI_TEMPLATES, NAMES, OBJECTS, PLACES,
};

/// What the corpus is made of: the share of each task and where induction
/// spans sit.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Fraction of documents that are IOI sentences.
    pub ioi: f64,
    /// Fraction that are fact statements; the rest are induction documents.
    pub facts: f64,
    /// Induction span lengths (inclusive).
    pub span: (usize, usize),
    /// At most this many random words before the span.
    pub max_prefix: usize,
    /// At most this many random words between the two copies.
    pub max_gap: usize,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            ioi: 0.45,
            facts: 0.15,
            span: (4, 10),
            max_prefix: 0,
            max_gap: 0,
        }
    }
}

impl Mix {
    /// Upper bound on a generated document's length, in words: the longest
    /// induction document, or three fact statements (24 words).
    pub fn max_doc_words(&self) -> usize {
        (self.max_prefix + 2 * self.span.1 + self.max_gap).max(24)
    }
}

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
    mix: Mix,
}

impl Corpus {
    pub fn new(seed: u64, mix: Mix) -> Self {
        Self {
            rng: Rng::fork(seed, "corpus"),
            mix,
        }
    }

    pub fn next_doc(&mut self) -> String {
        let r = self.rng.unit();
        if r < self.mix.ioi {
            let p = ioi_prompt(&mut self.rng, false);
            format!("{} {} .", p.prompt(), p.io)
        } else if r < self.mix.ioi + self.mix.facts {
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
            let (lo, hi) = self.mix.span;
            let len = lo + self.rng.below(hi - lo + 1);
            // No draw for a fixed layout, so the shipped recipe's stream
            // (span at 0, copy at once) is unchanged.
            let mut upto = |max: usize| if max == 0 { 0 } else { self.rng.below(max + 1) };
            let prefix = upto(self.mix.max_prefix);
            let gap = upto(self.mix.max_gap);
            induction_sequence(&mut self.rng, prefix, len, gap).join(" ")
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
        let mix = Mix::default();
        let mut c = Corpus::new(0, mix.clone());
        for _ in 0..2000 {
            let doc = c.next_doc();
            let words: Vec<&str> = doc.split(' ').collect();
            assert!(words.len() <= mix.max_doc_words(), "{doc}");
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
