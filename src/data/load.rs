//! Reading dataset files: JSONL (one object per line) or CSV (a header row
//! naming the columns), checked field by field.
//!
//! Every problem names the file, the line, the field and the fix, and a
//! file with any bad row loads nothing: a sweep over the rows that happened
//! to parse would answer a different question than the one asked. The file
//! is read through `util::fs` (regular files only, capped, BOM dropped).
//!
//! CSV cells hold lists as text: `answers` and `wrongs` separate their
//! tokens with `|` (` Mary| John`), and `labels` writes `NAME=POS` items
//! separated by `;`, a span as `NAME=START..END` (`IO=2;S1=4;END=-1`).

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::util::fs::{limits, read_text_capped, ReadError};
use crate::util::text::{clip, one_line};

use super::csv;
use super::dataset::{digest, Dataset, DatasetPair, Labels, Span};

/// At most this many pairs in one dataset.
pub const MAX_PAIRS: usize = 1_000_000;

/// The fields a pair may have, in the order messages list them.
pub const FIELDS: &[&str] = &[
    "id",
    "clean",
    "corrupted",
    "answer",
    "wrong",
    "answers",
    "wrongs",
    "labels",
];

/// Why a dataset did not load.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read dataset: {0}")]
    Read(#[from] ReadError),
    #[error("{path}:{line}: {}{message} — {fix}", field_prefix(field))]
    Row {
        path: String,
        line: usize,
        field: Option<String>,
        message: String,
        fix: String,
    },
    #[error("{path}: holds no prompt pairs — write one JSON object per line (JSONL) or a CSV header row and one row per pair")]
    Empty { path: String },
    #[error("{path}: {n} pairs is more than the {max} a dataset may have; split it")]
    TooMany { path: String, n: usize, max: usize },
}

fn field_prefix(f: &Option<String>) -> String {
    match f {
        Some(f) => format!("field `{f}`: "),
        None => String::new(),
    }
}

impl DatasetError {
    /// The line of the row at fault, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            DatasetError::Row { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// File formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    /// By extension (`.jsonl`, `.ndjson`, `.json`, `.csv`), else by the
    /// first character: `{` is JSONL.
    pub fn detect(path: &Path, text: &str) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => Format::Csv,
            Some("jsonl" | "ndjson" | "json") => Format::Jsonl,
            _ if text.trim_start().starts_with('{') => Format::Jsonl,
            _ => Format::Csv,
        }
    }
}

/// Loads a dataset file.
pub fn load(path: &Path) -> Result<Dataset, DatasetError> {
    let text = read_text_capped(path, limits::DATASET, "dataset file (JSONL or CSV)")?;
    let shown = one_line(&path.display().to_string()).into_owned();
    let mut ds = parse(&text, Format::detect(path, &text), &shown)?;
    ds.path = Some(path.to_path_buf());
    Ok(ds)
}

/// Parses dataset text; `path` is only for messages.
pub fn parse(text: &str, format: Format, path: &str) -> Result<Dataset, DatasetError> {
    let rows = match format {
        Format::Jsonl => jsonl_rows(text, path)?,
        Format::Csv => csv_rows(text, path)?,
    };
    if rows.is_empty() {
        return Err(DatasetError::Empty { path: path.into() });
    }
    if rows.len() > MAX_PAIRS {
        return Err(DatasetError::TooMany {
            path: path.into(),
            n: rows.len(),
            max: MAX_PAIRS,
        });
    }
    let mut pairs = Vec::with_capacity(rows.len());
    let lines = rows.iter().map(|r| r.0).collect();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (line, obj) in rows {
        let p = pair_from(obj, line, path)?;
        if let Some(id) = &p.id {
            if let Some(first) = ids.insert(id.clone(), line) {
                return Err(row(
                    path,
                    line,
                    Some("id"),
                    format!("{} is also the id of line {first}", q(id)),
                    "give every pair its own id",
                ));
            }
        }
        pairs.push(p);
    }
    Ok(Dataset {
        pairs,
        path: None,
        digest: digest(text.as_bytes()),
        lines,
    })
}

fn row(path: &str, line: usize, field: Option<&str>, message: String, fix: &str) -> DatasetError {
    DatasetError::Row {
        path: path.into(),
        line,
        field: field.map(String::from),
        message,
        fix: fix.into(),
    }
}

fn q(s: &str) -> String {
    format!("{:?}", clip(s, 60))
}

/// A row of the file: its line and its fields.
type Row = (usize, Map<String, Value>);

fn jsonl_rows(text: &str, path: &str) -> Result<Vec<Row>, DatasetError> {
    let mut rows = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line = i + 1;
        if l.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => rows.push((line, m)),
            Ok(v) => {
                return Err(row(
                    path,
                    line,
                    None,
                    format!("a JSON {} where a pair object belongs", kind(&v)),
                    "write one object per line: {\"clean\": ..., \"corrupted\": ..., \"answer\": ..., \"wrong\": ...}",
                ))
            }
            Err(e) => {
                return Err(row(
                    path,
                    line,
                    None,
                    format!("not valid JSON ({e})"),
                    "each line must be one complete JSON object (a pretty-printed object spread over lines is not JSONL)",
                ))
            }
        }
    }
    Ok(rows)
}

fn csv_rows(text: &str, path: &str) -> Result<Vec<Row>, DatasetError> {
    let records =
        csv::records(text).map_err(|e| row(path, e.line, None, e.message, "fix the quoting"))?;
    let Some((header, body)) = records.split_first() else {
        return Ok(vec![]);
    };
    let names: Vec<String> = header.fields.iter().map(|h| h.trim().to_string()).collect();
    for (i, n) in names.iter().enumerate() {
        if !FIELDS.contains(&n.as_str()) {
            return Err(row(
                path,
                header.line,
                Some(n),
                "is not a dataset column".into(),
                &format!("the header names columns among {}", FIELDS.join(", ")),
            ));
        }
        if names[..i].contains(n) {
            return Err(row(
                path,
                header.line,
                Some(n),
                "named twice in the header".into(),
                "name each column once",
            ));
        }
    }
    let mut rows = Vec::new();
    for r in body {
        if r.fields.len() != names.len() {
            return Err(row(
                path,
                r.line,
                None,
                format!(
                    "{} fields, but the header names {}",
                    r.fields.len(),
                    names.len()
                ),
                "give every row one field per header column (quote fields that hold commas)",
            ));
        }
        let mut m = Map::new();
        for (name, cell) in names.iter().zip(&r.fields) {
            let v = match name.as_str() {
                "answers" | "wrongs" => Value::Array(
                    cell.split('|')
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.into()))
                        .collect(),
                ),
                "labels" => csv_labels(cell).map_err(|m| {
                    row(path, r.line, Some("labels"), m, "write labels as NAME=POS or NAME=START..END, separated by ';' (e.g. IO=2;S1=4;END=-1)")
                })?,
                "id" if cell.is_empty() => continue,
                _ => Value::String(cell.clone()),
            };
            m.insert(name.clone(), v);
        }
        rows.push((r.line, m));
    }
    Ok(rows)
}

fn csv_labels(cell: &str) -> Result<Value, String> {
    let mut m = Map::new();
    for item in cell.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, pos) = item
            .split_once('=')
            .ok_or_else(|| format!("{} has no '='", q(item)))?;
        let int = |s: &str| {
            s.trim()
                .parse::<i64>()
                .map_err(|_| format!("{} is not a position", q(s)))
        };
        let v = match pos.split_once("..") {
            Some((a, b)) => Value::from(vec![int(a)?, int(b)?]),
            None => Value::from(int(pos)?),
        };
        m.insert(name.trim().to_string(), v);
    }
    Ok(Value::Object(m))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Checks one row's fields and builds the pair.
fn pair_from(
    mut m: Map<String, Value>,
    line: usize,
    path: &str,
) -> Result<DatasetPair, DatasetError> {
    if let Some(k) = m.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(row(
            path,
            line,
            Some(&one_line(k)),
            "is not a dataset field".into(),
            &format!("fields are {}", FIELDS.join(", ")),
        ));
    }
    let mut text = |name: &str, required: bool| -> Result<Option<String>, DatasetError> {
        match m.remove(name) {
            None if required => Err(row(
                path,
                line,
                Some(name),
                "missing".into(),
                "every pair needs clean, corrupted, answer and wrong",
            )),
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() && required => Err(row(
                path,
                line,
                Some(name),
                "is empty".into(),
                "write the text (answers are one token, e.g. \" Mary\")",
            )),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(Value::Number(n)) if name == "id" => Ok(Some(n.to_string())),
            Some(v) => Err(row(
                path,
                line,
                Some(name),
                format!("is a {}, not a string", kind(&v)),
                "write it as a JSON string in quotes",
            )),
        }
    };
    let id = text("id", false)?;
    let clean = text("clean", true)?.unwrap_or_default();
    let corrupted = text("corrupted", true)?.unwrap_or_default();
    let answer = text("answer", true)?.unwrap_or_default();
    let wrong = text("wrong", true)?.unwrap_or_default();
    let answers = list(m.remove("answers"), "answers", line, path)?;
    let wrongs = list(m.remove("wrongs"), "wrongs", line, path)?;
    let labels = labels(m.remove("labels"), line, path)?;
    Ok(DatasetPair {
        id,
        clean,
        corrupted,
        answer,
        wrong,
        answers,
        wrongs,
        labels,
    })
}

fn list(
    v: Option<Value>,
    name: &str,
    line: usize,
    path: &str,
) -> Result<Vec<String>, DatasetError> {
    let fix = "write a list of one-token strings, e.g. [\" Mary\", \" John\"]";
    match v {
        None => Ok(vec![]),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, x)| match x {
                Value::String(s) if !s.is_empty() => Ok(s),
                x => Err(row(
                    path,
                    line,
                    Some(name),
                    format!(
                        "item {i} is {}",
                        if x.as_str() == Some("") {
                            "empty".into()
                        } else {
                            format!("a {}", kind(&x))
                        }
                    ),
                    fix,
                )),
            })
            .collect(),
        Some(v) => Err(row(
            path,
            line,
            Some(name),
            format!("is a {}, not a list", kind(&v)),
            fix,
        )),
    }
}

fn labels(v: Option<Value>, line: usize, path: &str) -> Result<Labels, DatasetError> {
    let fix = "write an object of label -> token position or [start, end] span, e.g. {\"IO\": 2, \"S2\": [9, 11], \"END\": -1}";
    let m = match v {
        None => return Ok(Labels::new()),
        Some(Value::Object(m)) => m,
        Some(v) => {
            return Err(row(
                path,
                line,
                Some("labels"),
                format!("is a {}, not an object", kind(&v)),
                fix,
            ))
        }
    };
    let mut out = Labels::new();
    for (name, v) in m {
        let bad = |what: String| {
            row(
                path,
                line,
                Some(&format!("labels.{}", one_line(&name))),
                what,
                fix,
            )
        };
        if name.trim().is_empty() {
            return Err(bad("a label needs a name".into()));
        }
        let span: Span = serde_json::from_value(v.clone()).map_err(|_| {
            bad(format!(
                "{} is not a position or a [start, end] span",
                clip(&v.to_string(), 40)
            ))
        })?;
        if let Span::Range([s, e]) = span {
            if (s >= 0) == (e >= 0) && s >= e {
                return Err(bad(format!(
                    "the span [{s}, {e}] is empty (end is exclusive)"
                )));
            }
        }
        out.insert(name, span);
    }
    Ok(out)
}
