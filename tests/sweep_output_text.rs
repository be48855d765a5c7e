//! Sweep outputs with hostile vocabulary strings: a token (or a component
//! label, or the model source) holding ESC, other control characters, a
//! comma, a quote or a newline never reaches the terminal raw in the table,
//! is a single valid field in CSV, and is escaped in JSON without changing
//! the string it parses back to.

use std::collections::BTreeMap;

use patchbench::patching::output::{csv_field, json_text, SweepReport, TokenList};
use patchbench::patching::result::{Baselines, Timing};
use patchbench::patching::{Metrics, SweepResult, SweepSpec, Target, METRICS};

const HOSTILE: &str = "\u{1b}[2J\u{1b}]0;pwned\u{7}";

fn result(axes: &[&str], shape: &[usize], components: &[&str]) -> SweepResult {
    let n: usize = shape.iter().product();
    let metrics: BTreeMap<String, Vec<f32>> = METRICS
        .iter()
        .map(|m| (m.to_string(), (0..n).map(|i| i as f32 * 0.5).collect()))
        .collect();
    SweepResult {
        axes: axes.iter().map(|s| s.to_string()).collect(),
        shape: shape.to_vec(),
        components: components.iter().map(|s| s.to_string()).collect(),
        per_pair: vec![metrics.clone()],
        metrics,
        baselines: Baselines {
            clean: Metrics::default(),
            corrupted: Metrics::default(),
        },
        pair_baselines: vec![],
        timing: Timing {
            sweep_ms: 1.0,
            forward_passes: 1,
            device: "cpu".into(),
        },
        method: "exact".into(),
        position_labels: vec![],
    }
}

fn tokens(strings: &[&str]) -> TokenList {
    TokenList {
        ids: (0..strings.len() as u32).collect(),
        strings: strings.iter().map(|s| s.to_string()).collect(),
    }
}

fn report<'a>(r: &'a SweepResult, spec: &'a SweepSpec, toks: &[&str]) -> SweepReport<'a> {
    SweepReport {
        model: "evil\u{1b}[31mmodel",
        spec,
        clean: tokens(toks),
        corrupted: tokens(toks),
        answer: (1, format!(" Mary{HOSTILE}")),
        wrong: (2, "\u{9b}31m".into()),
        result: r,
        load_ms: 0.0,
    }
}

fn assert_no_controls(text: &str) {
    for line in text.lines() {
        assert!(
            !line.chars().any(|c| c.is_control()),
            "control character in {line:?}"
        );
    }
}

#[test]
fn table_escapes_control_characters_in_tokens_and_the_model_name() {
    let r = result(&["layer", "pos"], &[2, 3], &[]);
    let spec = SweepSpec::new(Target::ResidPre);
    let rep = report(&r, &spec, &[HOSTILE, "\n", "\u{9b}2J"]);
    let table = rep.to_table(METRICS[0], false);
    assert_no_controls(&table);
    // Escaped, not dropped: the reader sees what the token was.
    assert!(table.contains("\\e[2J"), "{table}");
    assert!(table.contains("\\u{9b}"), "{table}");
    assert!(table.contains("⏎"), "{table}");
    assert!(table.contains("evil\\e[31mmodel"), "{table}");
    // One header line, one line per layer, plus the title and range lines.
    assert_eq!(table.lines().count(), 1 + 1 + 2 + 1, "{table}");
}

#[test]
fn table_escapes_component_labels() {
    let r = result(
        &["component", "layer", "pos"],
        &[2, 1, 2],
        &["L0\u{1b}c", "a\nb"],
    );
    let spec = SweepSpec::new(Target::ResidPre);
    let rep = report(&r, &spec, &[" a", " b"]);
    let table = rep.to_table(METRICS[0], false);
    assert_no_controls(&table);
    assert!(table.contains("[L0\\ec]"), "{table}");
    assert!(table.contains("[a\\nb]"), "{table}");
}

/// Splits one CSV line into fields per RFC 4180 (quoted fields, doubled
/// quotes), failing on anything malformed.
fn parse_csv_line(line: &str) -> Vec<String> {
    let mut fields = vec![];
    let mut chars = line.chars().peekable();
    loop {
        let mut f = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        f.push('"');
                    }
                    Some('"') => break,
                    Some(c) => f.push(c),
                    None => panic!("unterminated quoted field in {line:?}"),
                }
            }
            assert!(
                matches!(chars.peek(), None | Some(',')),
                "text after a quoted field in {line:?}"
            );
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                assert_ne!(c, '"', "bare quote in {line:?}");
                f.push(c);
                chars.next();
            }
        }
        fields.push(f);
        match chars.next() {
            Some(',') => continue,
            None => return fields,
            Some(c) => panic!("unexpected {c:?} in {line:?}"),
        }
    }
}

#[test]
fn csv_fields_with_commas_quotes_newlines_and_escapes_stay_one_field() {
    let labels = ["a,b", "say \"hi\"", "two\nlines", HOSTILE];
    let r = result(&["component", "pos"], &[4, 2], &labels);
    let spec = SweepSpec::new(Target::ResidPre);
    let rep = report(&r, &spec, &[" a", " b"]);
    let csv = rep.to_csv();
    assert_no_controls(&csv);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 8, "{csv}");
    let header = parse_csv_line(lines[0]);
    assert_eq!(header.len(), 2 + METRICS.len());
    let mut seen = vec![];
    for line in &lines[1..] {
        let row = parse_csv_line(line);
        assert_eq!(row.len(), header.len(), "{line:?}");
        seen.push(row[0].clone());
    }
    seen.dedup();
    assert_eq!(
        seen,
        vec![
            "a,b".to_string(),
            "say \"hi\"".into(),
            "two\\nlines".into(),
            "\\e[2J\\e]0;pwned\\u{7}".into(),
        ]
    );
}

#[test]
fn csv_field_leaves_plain_text_alone() {
    assert_eq!(csv_field("L3H2"), "L3H2");
    assert_eq!(csv_field("x,y"), "\"x,y\"");
    assert_eq!(csv_field("\"q\""), "\"\"\"q\"\"\"");
    assert_eq!(csv_field("a\r\nb"), "a\\r\\nb");
}

/// A component label or token string that a spreadsheet would evaluate
/// (formula injection) is written as text; the metric numbers, negative
/// ones included, stay numbers.
#[test]
fn csv_text_that_looks_like_a_formula_is_quoted_as_text() {
    for (label, cell) in [
        (
            "=HYPERLINK(\"http://x\")",
            "\"'=HYPERLINK(\"\"http://x\"\")\"",
        ),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\\tx"),
        ("\r=1", "'\\r=1"),
        ("=1,2", "\"'=1,2\""),
    ] {
        assert_eq!(csv_field(label), cell, "{label:?}");
    }
    assert_eq!(csv_field("a=b"), "a=b", "only a leading sign is a formula");

    let labels = ["=cmd|' /C calc'!A0", "-embed"];
    let mut r = result(&["component", "pos"], &[2, 1], &labels);
    for x in r.metrics.values_mut().flatten() {
        *x -= 1.0;
    }
    let spec = SweepSpec::new(Target::ResidPre);
    let rep = report(&r, &spec, &[" a"]);
    let csv = rep.to_csv();
    let rows: Vec<Vec<String>> = csv.lines().skip(1).map(parse_csv_line).collect();
    assert_eq!(rows[0][0], "'=cmd|' /C calc'!A0", "{csv}");
    assert_eq!(rows[1][0], "'-embed", "{csv}");
    let negative = rows
        .iter()
        .flat_map(|r| &r[2..])
        .filter(|c| c.starts_with('-'))
        .count();
    assert!(negative > 0, "some metrics are negative: {csv}");
    for c in rows.iter().flat_map(|r| &r[2..]).filter(|c| !c.is_empty()) {
        assert!(
            c.parse::<f32>().is_ok(),
            "metric cell {c:?} is a plain number"
        );
    }
}

#[test]
fn json_escapes_what_serde_leaves_raw_and_keeps_the_strings_exact() {
    let r = result(&["layer", "pos"], &[1, 3], &[]);
    let spec = SweepSpec::new(Target::ResidPre);
    let toks = [HOSTILE, "\u{9b}2J\u{7f}", "x\u{202e}y"];
    let rep = report(&r, &spec, &toks);
    let text = json_text(&rep.to_json());
    assert_no_controls(&text);
    assert!(!text.contains('\u{202e}'), "{text}");
    assert!(text.contains("\\u009b"), "{text}");
    let back: serde_json::Value = serde_json::from_str(&text).unwrap();
    let strings: Vec<&str> = back["clean_tokens"]["strings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(strings, toks);
    assert_eq!(back["wrong"]["string"], "\u{9b}31m");
    assert_eq!(back, rep.to_json());
}
