//! Word lists and templates of the English-style generators (the demo
//! style draws on `demo::vocab`). Names and words are common enough to be
//! single GPT-2 tokens with a leading space; the generator still checks
//! every pair against the actual tokenizer.

pub(crate) const NAMES: &[&str] = &[
    "Mary", "John", "Tom", "James", "Dan", "Sarah", "Paul", "Kate", "Mark", "Anna", "David",
    "Lisa", "Mike", "Emma", "Peter", "Laura", "Jack", "Rose", "Sam", "Ben", "Grace", "Alex",
    "Chris", "Amy", "Luke", "Eva", "Adam", "Ryan", "Max", "Jane", "Fred", "Lucy",
];

pub(crate) const PLACES: &[&str] = &[
    "store",
    "park",
    "school",
    "market",
    "beach",
    "office",
    "station",
    "garden",
    "house",
    "restaurant",
    "hospital",
    "church",
    "bank",
    "airport",
    "farm",
    "zoo",
];

pub(crate) const OBJECTS: &[&str] = &[
    "drink", "book", "ball", "key", "letter", "pen", "cake", "ring", "bag", "hat", "gift", "phone",
    "map", "flower", "ticket", "cup",
];

/// `{A}`, `{B}`: the two people by first mention; `{S}` the one repeated.
pub(crate) const IOI_TEMPLATES: &[&str] = &[
    "When {A} and {B} went to the {P}, {S} gave a {O} to",
    "Then, {A} and {B} went to the {P}. {S} gave a {O} to",
    "After {A} and {B} went to the {P}, {S} gave a {O} to",
    "While {A} and {B} were working at the {P}, {S} gave a {O} to",
    "Friends {A} and {B} found a {O} at the {P}. {S} gave it to",
];

pub(crate) const CAPITALS: &[(&str, &str)] = &[
    ("France", "Paris"),
    ("Spain", "Madrid"),
    ("Italy", "Rome"),
    ("Germany", "Berlin"),
    ("Japan", "Tokyo"),
    ("China", "Beijing"),
    ("Russia", "Moscow"),
    ("Egypt", "Cairo"),
    ("Peru", "Lima"),
    ("Greece", "Athens"),
    ("Norway", "Oslo"),
    ("Poland", "Warsaw"),
    ("Austria", "Vienna"),
    ("Ireland", "Dublin"),
    ("Canada", "Ottawa"),
    ("Cuba", "Havana"),
    ("India", "Delhi"),
    ("Turkey", "Ankara"),
];

pub(crate) const FACT_TEMPLATES: &[&str] = &["The capital of {C} is", "The capital city of {C} is"];

pub(crate) const NOUNS: &[&str] = &[
    "war",
    "strike",
    "drought",
    "expedition",
    "famine",
    "journey",
    "siege",
    "campaign",
];

/// Filler words for induction sequences.
pub(crate) const FILLERS: &[&str] = &[
    "red", "blue", "green", "cat", "dog", "bird", "fish", "horse", "tree", "stone", "river",
    "cloud", "moon", "star", "sun", "snow", "rain", "wind", "fire", "gold", "glass", "paper",
    "wood", "salt", "bread", "milk", "tea", "apple", "chair", "table", "door", "window",
];
