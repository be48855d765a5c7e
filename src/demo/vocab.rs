//! The demo's words: who, where, what, the fact table, and the templates
//! the sentences are made from.
//!
//! Everything is lower case and one word per token, so a prompt's tokens are
//! exactly its words and every answer is a single token. The vocabulary is
//! derived from these lists (see [`vocabulary`]), so adding a word here is all
//! it takes to teach it.

/// People for indirect object identification.
pub const NAMES: &[&str] = &[
    "mary", "john", "alice", "bob", "tom", "anna", "james", "sarah", "david", "emma", "paul",
    "lisa", "mark", "kate", "peter", "laura", "mike", "julia", "sam", "rose", "jack", "claire",
    "ben", "grace", "dan", "helen", "joe", "amy", "luke", "eva", "adam", "nora", "ryan", "ella",
    "noah", "maya", "leo", "ruth", "max", "iris", "carl", "jane", "fred", "lucy", "hugo", "vera",
    "ivan", "zoe",
];

/// Places the two people go to.
pub const PLACES: &[&str] = &[
    "store",
    "park",
    "school",
    "market",
    "beach",
    "office",
    "library",
    "station",
    "garden",
    "museum",
    "cafe",
    "hospital",
    "restaurant",
    "church",
    "bank",
    "airport",
    "theater",
    "lake",
    "farm",
    "zoo",
];

/// Things one gives the other (each takes the article "a").
pub const OBJECTS: &[&str] = &[
    "drink", "book", "ball", "key", "letter", "pen", "cake", "ring", "bag", "hat", "gift", "phone",
    "map", "flower", "coin", "ticket", "cup", "lamp", "shirt", "box",
];

/// The fact table: country -> capital, each one word.
pub const CAPITALS: &[(&str, &str)] = &[
    ("france", "paris"),
    ("spain", "madrid"),
    ("italy", "rome"),
    ("germany", "berlin"),
    ("japan", "tokyo"),
    ("china", "beijing"),
    ("russia", "moscow"),
    ("egypt", "cairo"),
    ("peru", "lima"),
    ("kenya", "nairobi"),
    ("greece", "athens"),
    ("norway", "oslo"),
    ("sweden", "stockholm"),
    ("poland", "warsaw"),
    ("austria", "vienna"),
    ("portugal", "lisbon"),
    ("ireland", "dublin"),
    ("canada", "ottawa"),
    ("cuba", "havana"),
    ("chile", "santiago"),
    ("india", "delhi"),
    ("turkey", "ankara"),
    ("iran", "tehran"),
    ("thailand", "bangkok"),
];

/// Extra words that only appear inside random induction spans, so the spans
/// are not made of the other tasks' words alone.
pub const FILLERS: &[&str] = &[
    "red", "blue", "green", "yellow", "black", "white", "cat", "dog", "bird", "fish", "horse",
    "mouse", "tree", "stone", "river", "cloud", "moon", "star", "sun", "snow", "rain", "wind",
    "fire", "iron", "gold", "silver", "glass", "paper", "wood", "salt", "bread", "milk", "tea",
    "apple", "lemon", "onion", "chair", "table", "door", "window",
];

/// IOI templates. `{A}` and `{B}` are the two people in order of first
/// mention, `{S}` the one mentioned again (the subject), `{P}` a place, `{O}`
/// an object; the answer, the indirect object, is whichever of `{A}`/`{B}`
/// is not `{S}`.
pub const IOI_TEMPLATES: &[&str] = &[
    "when {A} and {B} went to the {P} , {S} gave a {O} to",
    "after {A} and {B} went to the {P} , {S} gave a {O} to",
    "then , {A} and {B} had a long day at the {P} . {S} gave a {O} to",
    "while {A} and {B} were working at the {P} , {S} handed a {O} to",
    "{A} and {B} went to the {P} . {S} passed a {O} to",
    "when {A} and {B} got a {O} at the {P} , {S} decided to give it to",
];

/// Fact templates; `{C}` is the country, the answer is its capital.
pub const FACT_TEMPLATES: &[&str] = &["the capital of {C} is", "the capital city of {C} is"];

/// The unknown-word token (id 0). Training text never contains it.
pub const UNK: &str = "<unk>";

/// Every token, in id order: `<unk>`, punctuation and template words in
/// order of appearance, then names, places, objects, countries, capitals
/// and fillers. Deterministic, so the tokenizer (and the trained weights'
/// rows) never depend on hash order.
pub fn vocabulary() -> Vec<&'static str> {
    let mut words: Vec<&'static str> = vec![UNK, "."];
    let template_words = IOI_TEMPLATES
        .iter()
        .chain(FACT_TEMPLATES)
        .flat_map(|t| t.split_whitespace())
        .filter(|w| !w.starts_with('{'));
    let content = NAMES
        .iter()
        .chain(PLACES)
        .chain(OBJECTS)
        .chain(CAPITALS.iter().map(|(c, _)| c))
        .chain(CAPITALS.iter().map(|(_, k)| k))
        .chain(FILLERS)
        .copied();
    for w in template_words.chain(content) {
        if !words.contains(&w) {
            words.push(w);
        }
    }
    words
}

/// Words that random induction spans are drawn from: every content word.
pub fn induction_pool() -> Vec<&'static str> {
    NAMES
        .iter()
        .chain(PLACES)
        .chain(OBJECTS)
        .chain(CAPITALS.iter().map(|(c, _)| c))
        .chain(CAPITALS.iter().map(|(_, k)| k))
        .chain(FILLERS)
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_words_are_distinct_and_not_template_words() {
        let pool = induction_pool();
        for (i, w) in pool.iter().enumerate() {
            assert!(!pool[..i].contains(w), "{w:?} listed twice");
        }
        let v = vocabulary();
        assert_eq!(
            v.len(),
            v.iter().collect::<std::collections::HashSet<_>>().len()
        );
        // A content word that is also a template word would blur the tasks.
        let template_words = v.len() - pool.len();
        assert!(v[..template_words].iter().all(|w| !pool.contains(w)));
    }
}
