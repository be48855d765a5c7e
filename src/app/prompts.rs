//! The prompt pairs being edited: four text fields per pair (clean,
//! corrupted, answer, wrong) held in `tui-textarea` editors, which keep
//! cursor and undo history; the text itself is read back with
//! [`PairFields::to_pair`].

use tui_textarea::TextArea;

use crate::patching::PromptPair;

use super::messages::Tokenized;

/// Field names in display order.
pub const FIELDS: [&str; 4] = ["clean", "corrupted", "answer", "wrong"];
pub const CLEAN: usize = 0;
pub const CORRUPTED: usize = 1;
pub const ANSWER: usize = 2;
pub const WRONG: usize = 3;

/// A single-line editor holding `text`, cursor at the end.
pub fn line_editor(text: &str) -> TextArea<'static> {
    let mut t = TextArea::new(vec![text.to_string()]);
    t.set_cursor_line_style(ratatui::style::Style::default());
    t.move_cursor(tui_textarea::CursorMove::End);
    t
}

/// The text of a single-line editor (lines joined with spaces, in case a
/// paste brought newlines).
pub fn editor_text(t: &TextArea<'_>) -> String {
    t.lines().join(" ")
}

#[derive(Debug, Clone)]
pub struct PairFields {
    pub fields: [TextArea<'static>; 4],
}

impl PairFields {
    pub fn from_pair(p: &PromptPair) -> Self {
        Self {
            fields: [
                line_editor(&p.clean),
                line_editor(p.corrupted.as_deref().unwrap_or("")),
                line_editor(&p.answer),
                line_editor(&p.wrong),
            ],
        }
    }

    /// The pair as the patching engine takes it; an empty corrupted field
    /// means "no corrupted prompt" (noise and ablation corruptions).
    pub fn to_pair(&self) -> PromptPair {
        let corrupted = editor_text(&self.fields[CORRUPTED]);
        PromptPair {
            clean: editor_text(&self.fields[CLEAN]),
            corrupted: (!corrupted.is_empty()).then_some(corrupted),
            answer: editor_text(&self.fields[ANSWER]),
            wrong: editor_text(&self.fields[WRONG]),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PromptsState {
    pub pairs: Vec<PairFields>,
    /// The pair shown (and drilled into).
    pub selected: usize,
    /// The selected field of that pair.
    pub field: usize,
    /// Prepend BOS: `None` = the tokenizer's default.
    pub bos: Option<bool>,
    /// The latest tokenisation of every pair.
    pub tokens: Option<Tokenized>,
}

impl PromptsState {
    pub fn new(pairs: &[PromptPair], bos: Option<bool>) -> Self {
        Self {
            pairs: pairs.iter().map(PairFields::from_pair).collect(),
            selected: 0,
            field: 0,
            bos,
            tokens: None,
        }
    }

    pub fn to_pairs(&self) -> Vec<PromptPair> {
        self.pairs.iter().map(PairFields::to_pair).collect()
    }

    pub fn current(&self) -> &PairFields {
        &self.pairs[self.selected]
    }

    pub fn current_field_mut(&mut self) -> &mut TextArea<'static> {
        let f = self.field;
        &mut self.pairs[self.selected].fields[f]
    }

    pub fn add_pair(&mut self) {
        let copy = self.pairs[self.selected].to_pair();
        self.pairs
            .insert(self.selected + 1, PairFields::from_pair(&copy));
        self.selected += 1;
    }

    /// Removes the current pair; the last pair stays.
    pub fn remove_pair(&mut self) -> bool {
        if self.pairs.len() <= 1 {
            return false;
        }
        self.pairs.remove(self.selected);
        self.selected = self.selected.min(self.pairs.len() - 1);
        true
    }

    pub fn cycle_bos(&mut self) {
        self.bos = match self.bos {
            None => Some(true),
            Some(true) => Some(false),
            Some(false) => None,
        };
    }

    /// Problems that would make a sweep fail, from the latest tokenisation.
    pub fn problems(&self) -> Vec<String> {
        let Some(t) = &self.tokens else {
            return vec![];
        };
        let mut v: Vec<String> = t.problems.clone();
        for (i, p) in t.pairs.iter().enumerate() {
            for prob in &p.problems {
                v.push(format!("pair {}: {prob}", i + 1));
            }
            for (what, r) in [("answer", &p.answer), ("wrong answer", &p.wrong)] {
                if let Some(Err(e)) = r {
                    v.push(format!("pair {}: {what}: {e}", i + 1));
                }
            }
        }
        v
    }
}
