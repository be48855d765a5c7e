//! Text that is safe to show in a terminal.
//!
//! Strings from files (prompts, notes, model paths, parse errors quoting a
//! file) reach the status bar, popups and stderr. Control characters in them
//! could move the cursor, change colours or retitle the terminal, and a
//! 100k-character prompt in an error message floods the screen. Every string
//! that comes from outside passes through [`for_terminal`] (or
//! [`escape_controls`] where a newline is meaningful) before it is shown.

use std::borrow::Cow;
use std::fmt::Write;

/// The longest message shown whole; longer ones are clipped in the middle of
/// nowhere important: the end, with a count of what was left out.
pub const MAX_MESSAGE_CHARS: usize = 2000;

fn is_unsafe(c: char, keep_newlines: bool) -> bool {
    if keep_newlines && (c == '\n' || c == '\t') {
        return false;
    }
    // C0 controls, DEL and C1 controls (0x80–0x9F: CSI is 0x9B), plus the
    // bidirectional overrides that can make text display as something else.
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c, keep_newlines)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !is_unsafe(c, keep_newlines) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// Escapes control characters, keeping newlines and tabs (for multi-line
/// messages printed to stderr).
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// Escapes every control character, newlines included: the result is one
/// line, fit for a status bar, a table cell or a title.
pub fn one_line(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Clips `s` to `max_chars` characters, saying how many were left out.
pub fn clip(s: &str, max_chars: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max_chars) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => {
            let rest = s[cut..].chars().count();
            Cow::Owned(format!("{}… ({rest} more characters)", &s[..cut]))
        }
    }
}

/// A message from anywhere, made safe for the terminal: control characters
/// escaped (newlines kept) and clipped to [`MAX_MESSAGE_CHARS`].
pub fn for_terminal(s: &str) -> String {
    clip(&escape_controls(s), MAX_MESSAGE_CHARS).into_owned()
}

/// A value quoted inside a message: one line, clipped to `max_chars`.
pub fn quote(s: &str, max_chars: usize) -> String {
    format!("{:?}", clip(&one_line(s), max_chars))
}

/// `text` with everything but ASCII letters and digits turned into `-`
/// (model sources are paths and hub ids).
pub fn file_safe(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(
            escape_controls("mary gave a drink"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn escape_sequences_are_made_visible() {
        assert_eq!(one_line("a\u{1b}[2Jb\nc"), "a\\e[2Jb\\nc");
        assert_eq!(escape_controls("a\u{9b}31mb\nc"), "a\\u{9b}31mb\nc");
        assert_eq!(one_line("x\u{202e}y"), "x\\u{202e}y");
    }

    #[test]
    fn long_messages_are_clipped_with_a_count() {
        let s = "é".repeat(MAX_MESSAGE_CHARS + 10);
        let out = for_terminal(&s);
        assert!(out.ends_with("(10 more characters)"), "{out}");
        assert!(out.chars().count() < MAX_MESSAGE_CHARS + 30);
    }
}
