//! Parser errors as [`Problem`]s: serde_yaml's message without its
//! location suffix (the location goes into the problem), the field path
//! split off, and a hint saying what to do — including the cases serde's
//! wording leaves obscure (alias bombs, nesting limits, truncated files,
//! several documents in one file).

use super::error::Problem;

/// A serde_yaml error as a problem: location, field path, message, hint.
/// `syntax` marks errors of the untyped parse (YAML syntax, aliases).
pub(crate) fn from_serde(e: &serde_yaml::Error, text: &str, syntax: bool) -> Problem {
    let mut msg = e.to_string();
    // The location is reported separately; an inner one (where a quoted
    // scalar began, say) stays in the message.
    if let Some(loc) = e.location() {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(stripped) = msg.strip_suffix(&suffix) {
            msg = stripped.to_string();
        }
    }
    let mut field = String::new();
    if let Some((p, rest)) = msg.split_once(": ") {
        let is_path = !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'));
        if is_path {
            field = p.to_string();
            msg = rest.to_string();
        }
    }
    let (message, hint) = explain(&msg, e, text, syntax);
    let mut p = Problem::error(field, message);
    p.hint = hint;
    if let Some(loc) = e.location() {
        p = p.at(loc.line(), loc.column());
    }
    p
}

fn explain(msg: &str, e: &serde_yaml::Error, text: &str, syntax: bool) -> (String, Option<String>) {
    let hint = |h: &str| Some(h.to_string());
    if msg.contains("repetition limit exceeded") {
        return (
            "YAML aliases (`*name`) here expand to far too much data (the \"billion laughs\" pattern)".into(),
            hint("patchbench stops expanding aliases after a limit; write the repeated values out, or use aliases only for a few small values"),
        );
    }
    if msg.contains("recursion limit exceeded") {
        return (
            "the YAML is nested more than 128 levels deep".into(),
            hint("a session is at most a few levels deep; this file is not a patchbench session, or is damaged"),
        );
    }
    if msg.contains("more than one document") {
        return (
            "the file holds more than one YAML document (`---` separators)".into(),
            hint("a session file holds exactly one document; split the documents into separate files"),
        );
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or("");
        return (
            format!("missing required field `{name}`"),
            Some(format!(
                "add `{name}:` here (see sessions/ for complete examples)"
            )),
        );
    }
    if msg.starts_with("unknown field") {
        return (
            msg.to_string(),
            hint("remove this field or correct its spelling; the fields allowed here are listed above"),
        );
    }
    if msg.starts_with("unknown variant") {
        return (msg.to_string(), hint("use one of the names listed above"));
    }
    if let Some(rest) = msg.strip_prefix("duplicate entry with key ") {
        return (
            format!("the key {rest} appears twice in one mapping"),
            hint("keep one of them"),
        );
    }
    if msg.starts_with("duplicate field") {
        return (
            msg.to_string(),
            hint("the field appears twice in one mapping; keep one"),
        );
    }
    if msg.starts_with("invalid type")
        || msg.starts_with("invalid value")
        || msg.starts_with("invalid length")
    {
        return (
            msg.to_string(),
            hint("give this field a value of the expected kind (text in quotes if it could be read as a number, a list in [ ] or with - items)"),
        );
    }
    if syntax {
        let end = text.trim_end().len();
        let at_end = e.location().is_some_and(|l| l.index() + 2 >= end);
        return (
            format!("invalid YAML: {msg}"),
            if at_end {
                hint("the file ends in the middle of a value, so it looks truncated (an interrupted copy or download?); patchbench's own saves never leave a partial file, so look for the autosave or an earlier copy")
            } else {
                hint("fix the YAML syntax here: indentation, a missing `:`, or an unclosed quote or bracket")
            },
        );
    }
    (msg.to_string(), None)
}
