//! A YAML writer tuned for sessions: block mappings for structure, flow
//! lists for numbers, so a stored heatmap reads as one line per row instead
//! of one line per value (serde_yaml's only layout), and a changed cell
//! changes one line of a diff.
//!
//! It writes a `serde_yaml::Value` tree:
//! - mappings and lists of mappings in block style, keys in struct order;
//! - lists of scalars in flow style (`[0.12, .nan, 3.0]`). Inside a mapping
//!   that has a `shape` key (a stored `SweepResult`) every such list breaks
//!   after each row of the last axis; elsewhere lists wrap near 100 columns;
//! - floats in their shortest round-tripping form, as `f32` when the value
//!   is exactly an `f32` (results are), NaN as `.nan`, infinities as `.inf`;
//! - strings quoted by serde_yaml itself in block context (so multi-line
//!   notes become `|` blocks) and double-quoted inside flow lists, where
//!   commas and brackets would otherwise end a plain scalar.
//!
//! `io::to_yaml` parses the output back and compares before trusting it,
//! so a corner this writer gets wrong costs beauty (a plain serde_yaml
//! layout), never data.

use serde_yaml::{Mapping, Value};

/// Soft line width for wrapped flow lists.
const WIDTH: usize = 100;

pub fn to_string(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Mapping(m) if !m.is_empty() => mapping(&mut out, m, 0, None),
        other => {
            out.push_str(&inline(other, 0, None));
            out.push('\n');
        }
    }
    out
}

fn pad(n: usize) -> String {
    " ".repeat(n)
}

/// The row length of flow lists under a mapping with a `shape` key.
fn row_hint(m: &Mapping) -> Option<usize> {
    match m.get("shape") {
        Some(Value::Sequence(s)) => s.last().and_then(Value::as_u64).map(|n| n as usize),
        _ => None,
    }
    .filter(|&n| n > 0)
}

fn mapping(out: &mut String, m: &Mapping, indent: usize, row: Option<usize>) {
    let row = row_hint(m).or(row);
    for (k, v) in m {
        let key = key_str(k);
        out.push_str(&pad(indent));
        out.push_str(&key);
        out.push(':');
        match v {
            Value::Mapping(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(out, inner, indent + 2, row);
            }
            Value::Sequence(items) if !items.is_empty() && !all_scalars(items) => {
                out.push('\n');
                for item in items {
                    seq_item(out, item, indent, row);
                }
            }
            other => {
                out.push(' ');
                out.push_str(&inline(other, indent, row));
                out.push('\n');
            }
        }
    }
}

/// One `- item` of a block list at `indent`.
fn seq_item(out: &mut String, item: &Value, indent: usize, row: Option<usize>) {
    match item {
        Value::Mapping(m) if !m.is_empty() => {
            // Write the mapping as if nested, then put the dash into the
            // first line's indentation: `- key: value`.
            let mut inner = String::new();
            mapping(&mut inner, m, indent + 2, row);
            out.push_str(&pad(indent));
            out.push_str("- ");
            out.push_str(&inner[indent + 2..]);
        }
        Value::Sequence(items) if !items.is_empty() && !all_scalars(items) => {
            out.push_str(&pad(indent));
            out.push_str("-\n");
            for i in items {
                seq_item(out, i, indent + 2, row);
            }
        }
        other => {
            out.push_str(&pad(indent));
            out.push_str("- ");
            out.push_str(&inline(other, indent, row));
            out.push('\n');
        }
    }
}

fn all_scalars(items: &[Value]) -> bool {
    items.iter().all(|v| {
        matches!(
            v,
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_)
        )
    })
}

/// A value written after `key: ` or `- ` (continuation lines indented
/// relative to `indent`).
fn inline(v: &Value, indent: usize, row: Option<usize>) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => block_string(s, indent),
        Value::Sequence(items) if items.is_empty() => "[]".into(),
        Value::Mapping(m) if m.is_empty() => "{}".into(),
        Value::Sequence(items) => flow_list(items, indent, row),
        // Not produced by sessions (no tags, no non-scalar lists here); let
        // serde_yaml lay it out as an indented block.
        other => {
            let text = serde_yaml::to_string(other).unwrap_or_default();
            let body: Vec<String> = text
                .lines()
                .map(|l| format!("{}{l}", pad(indent + 2)))
                .collect();
            format!("\n{}", body.join("\n"))
        }
    }
}

fn flow_list(items: &[Value], indent: usize, row: Option<usize>) -> String {
    let cells: Vec<String> = items.iter().map(flow_scalar).collect();
    let one_line = format!("[{}]", cells.join(", "));
    let rows_fit = row.is_none_or(|r| r >= cells.len());
    if rows_fit && indent + one_line.len() < WIDTH {
        return one_line;
    }
    let inner = pad(indent + 2);
    let mut lines: Vec<String> = Vec::new();
    match row {
        Some(r) => {
            for chunk in cells.chunks(r) {
                lines.push(chunk.join(", "));
            }
        }
        None => {
            let mut cur = String::new();
            for c in &cells {
                if !cur.is_empty() && inner.len() + cur.len() + c.len() + 2 > WIDTH {
                    lines.push(std::mem::take(&mut cur));
                }
                if !cur.is_empty() {
                    cur.push_str(", ");
                }
                cur.push_str(c);
            }
            lines.push(cur);
        }
    }
    let body: Vec<String> = lines.iter().map(|l| format!("{inner}{l}")).collect();
    format!("[\n{}]", body.join(",\n"))
}

/// A scalar inside a flow list: strings always double-quoted, so `,`,
/// `[`, `#` and friends stay inside them.
fn flow_scalar(v: &Value) -> String {
    match v {
        Value::String(s) => double_quoted(s),
        other => inline(other, 0, None),
    }
}

/// A YAML double-quoted scalar. Characters outside YAML's printable set
/// (control characters, DEL, C1 controls, a stray BOM, U+FFFE/F) are
/// escaped, since a YAML reader refuses them even inside quotes.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            ' '..='~' => out.push(c),
            '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fefe}' | '\u{ff00}'..='\u{fffd}' => {
                out.push(c)
            }
            c if (c as u32) >= 0x10000 => out.push(c),
            c => out.push_str(&format!("\\u{:04X}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn key_str(k: &Value) -> String {
    match k {
        Value::String(s)
            if !s.is_empty()
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !s.starts_with(|c: char| c.is_ascii_digit()) =>
        {
            s.clone()
        }
        Value::String(s) => double_quoted(s),
        other => inline(other, 0, None),
    }
}

/// A string in block context, quoted as serde_yaml would; its multi-line
/// block scalars (`|-` and following lines) are re-indented under `indent`.
fn block_string(s: &str, indent: usize) -> String {
    let text =
        serde_yaml::to_string(&Value::String(s.to_string())).unwrap_or_else(|_| double_quoted(s));
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let mut lines = text.split('\n');
    let mut out = lines.next().unwrap_or("").to_string();
    for l in lines {
        out.push('\n');
        if !l.is_empty() {
            out.push_str(&pad(indent));
        }
        out.push_str(l);
    }
    out
}

fn number(n: &serde_yaml::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let x = n.as_f64().unwrap_or(f64::NAN);
    if x.is_nan() {
        ".nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { ".inf" } else { "-.inf" }.into()
    } else if (x as f32) as f64 == x {
        // `{:?}` is the shortest form that parses back to the same value,
        // with a `.0` or an exponent so it stays a float.
        format!("{:?}", x as f32)
    } else {
        format!("{x:?}")
    }
}
