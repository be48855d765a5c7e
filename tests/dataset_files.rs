//! Dataset files: valid JSONL and CSV read to the same pairs; every file in
//! `tests/invalid-datasets/` fails with the line, field and message its
//! `EXPECT` row names, and loads nothing.

use std::path::{Path, PathBuf};

use patchbench::data::{self, DatasetPair, Format, Span};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn every_invalid_dataset_names_its_line_field_and_fix() {
    let dir = repo("tests/invalid-datasets");
    let expect = std::fs::read_to_string(dir.join("EXPECT")).unwrap();
    let mut seen = 0;
    for l in expect
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let cols: Vec<&str> = l.split('\t').collect();
        let (file, line, text) = (cols[0], cols[1], cols[2]);
        let err = match data::load(&dir.join(file)) {
            Ok(d) => panic!("{file} loaded {} pairs, but it is invalid", d.len()),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(
            msg.contains(file),
            "{file}: the message must name the file: {msg}"
        );
        assert!(msg.contains(text), "{file}: expected {text:?} in: {msg}");
        if line != "-" {
            let n: usize = line.parse().unwrap();
            assert_eq!(err.line(), Some(n), "{file}: {msg}");
            assert!(msg.contains(&format!("{file}:{n}:")), "{file}: {msg}");
            assert!(
                msg.contains(" — "),
                "{file}: the message must say the fix: {msg}"
            );
        }
        seen += 1;
    }
    let files = std::fs::read_dir(&dir).unwrap().count() - 1;
    assert_eq!(seen, files, "every file in {dir:?} needs an EXPECT row");
}

#[test]
fn jsonl_and_csv_read_to_the_same_pairs() {
    let jsonl = concat!(
        r#"{"id": "p1", "clean": "a b c", "corrupted": "a d c", "answer": " x", "wrong": " y", "answers": [" x", " z"], "labels": {"IO": 1, "END": -1, "S": [0, 2]}}"#,
        "\n\n",
        r#"{"clean": "say \"hi\", then", "corrupted": "e f g", "answer": "x", "wrong": "y"}"#,
        "\n"
    );
    let csv = "id,clean,corrupted,answer,wrong,answers,labels\n\
               p1,a b c,a d c, x, y, x| z,IO=1;END=-1;S=0..2\n\
               ,\"say \"\"hi\"\", then\",e f g,x,y,,\n";
    let a = data::parse(jsonl, Format::Jsonl, "a.jsonl").unwrap();
    let b = data::parse(csv, Format::Csv, "a.csv").unwrap();
    assert_eq!(a.pairs, b.pairs);
    let p: &DatasetPair = &a.pairs[0];
    assert_eq!(p.id.as_deref(), Some("p1"));
    assert_eq!(p.answers, [" x", " z"]);
    assert_eq!(p.labels["END"], Span::At(-1));
    assert_eq!(p.labels["S"], Span::Range([0, 2]));
    assert_eq!(a.pairs[1].clean, "say \"hi\", then");
    // The JSONL a generator writes reads back to the same pairs.
    let again = data::parse(&a.to_jsonl(), Format::Jsonl, "b.jsonl").unwrap();
    assert_eq!(again.pairs, a.pairs);
    assert!(a.digest.starts_with("sha256:") && a.digest != b.digest);
}
