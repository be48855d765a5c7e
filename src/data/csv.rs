//! A small RFC 4180 reader: comma-separated fields, double-quoted fields
//! that may hold commas, doubled quotes and newlines. Each record carries
//! the line it starts on, so errors point at the line a user sees.

/// One record: its 1-based starting line and its fields.
pub(crate) struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Why the text is not CSV.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CsvError {
    pub line: usize,
    pub message: String,
}

/// Splits `text` into records; blank lines are skipped.
pub(crate) fn records(text: &str) -> Result<Vec<Record>, CsvError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut start = 1;
    let mut in_quotes = false;
    let mut quoted_field = false;
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                in_quotes = true;
                quoted_field = true;
                at_field_start = false;
            }
            '"' => {
                return Err(CsvError {
                    line,
                    message: "a quote inside an unquoted field; quote the whole field \
                              (\"...\") and double the quotes inside it"
                        .into(),
                })
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_field_start = true;
                quoted_field = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                if !(fields.len() == 1 && fields[0].is_empty() && !quoted_field) {
                    out.push(Record {
                        line: start,
                        fields: std::mem::take(&mut fields),
                    });
                }
                fields.clear();
                line += 1;
                start = line;
                at_field_start = true;
                quoted_field = false;
            }
            c => {
                if quoted_field {
                    return Err(CsvError {
                        line,
                        message: format!(
                            "text {c:?} after a closing quote; a quoted field ends at its quote"
                        ),
                    });
                }
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if in_quotes {
        return Err(CsvError {
            line: start,
            message: "a quoted field is never closed; add the closing quote".into(),
        });
    }
    if !field.is_empty() || !fields.is_empty() || quoted_field {
        fields.push(field);
        out.push(Record {
            line: start,
            fields,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_commas_and_newlines() {
        let r = records("a,b\n\"x, y\",\"say \"\"hi\"\"\"\n\n\"two\nlines\",z\r\nlast,1").unwrap();
        let f: Vec<(usize, Vec<&str>)> = r
            .iter()
            .map(|r| (r.line, r.fields.iter().map(|s| s.as_str()).collect()))
            .collect();
        assert_eq!(
            f,
            vec![
                (1, vec!["a", "b"]),
                (2, vec!["x, y", "say \"hi\""]),
                (4, vec!["two\nlines", "z"]),
                (6, vec!["last", "1"]),
            ]
        );
    }

    #[test]
    fn broken_quotes_name_their_line() {
        assert_eq!(records("a,b\nx,\"open\n").err().unwrap().line, 2);
        assert_eq!(records("a,b\nx,y\"z\n").err().unwrap().line, 2);
    }
}
