//! `patchbench circuit --format svg`: a well-formed SVG document that draws
//! the listed top edges in layer columns, written by patchbench itself.

use std::process::Command;

const CLEAN: &str = "when mary and john went to the store , john gave a drink to";
const CORRUPTED: &str = "when mary and john went to the store , mary gave a drink to";

fn circuit(format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(["circuit", "--model", "demo", "--clean", CLEAN])
        .args([
            "--corrupted",
            CORRUPTED,
            "--answer",
            "mary",
            "--wrong",
            "john",
        ])
        .args([
            "--top",
            "8",
            "--check-exact",
            "0",
            "--faithfulness-points",
            "4",
        ])
        .args(["--format", format])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Checks XML well-formedness as far as an SVG written by a program needs:
/// every tag closed in order, attributes quoted, no raw `<` or stray `&`
/// in text. Returns the element names in document order.
fn well_formed(doc: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = doc.trim();
    while !rest.is_empty() {
        match rest.find('<') {
            Some(0) => {}
            Some(i) => {
                check_text(&rest[..i]);
                rest = &rest[i..];
            }
            None => {
                check_text(rest);
                break;
            }
        }
        let end = rest.find('>').expect("an unclosed tag");
        let tag = &rest[1..end];
        assert!(!tag.contains('<'), "a '<' inside tag {tag:?}");
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack
                .pop()
                .unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(open, name.trim(), "mismatched closing tag");
        } else {
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name: String = body.chars().take_while(|c| !c.is_whitespace()).collect();
            assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()));
            check_attributes(&body[name.len()..]);
            names.push(name.clone());
            if !self_closing {
                stack.push(name);
            }
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    names
}

fn check_attributes(mut attrs: &str) {
    loop {
        attrs = attrs.trim_start();
        if attrs.is_empty() {
            return;
        }
        let eq = attrs.find('=').expect("an attribute without a value");
        let name = &attrs[..eq];
        assert!(name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':'));
        let value = attrs[eq + 1..]
            .strip_prefix('"')
            .expect("an unquoted attribute");
        let close = value.find('"').expect("an unterminated attribute");
        check_text(&value[..close]);
        attrs = &value[close + 1..];
    }
}

fn check_text(t: &str) {
    assert!(!t.contains('<'), "raw '<' in {t:?}");
    for (i, _) in t.match_indices('&') {
        let entity = &t[i..t[i..].find(';').map_or(t.len(), |j| i + j + 1)];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity),
            "stray '&' in {t:?}"
        );
    }
}

#[test]
fn the_svg_is_well_formed_and_draws_the_top_edges_in_layer_columns() {
    let json: serde_json::Value = serde_json::from_str(&circuit("json")).unwrap();
    let svg = circuit("svg");
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    let names = well_formed(&svg);
    let edges = json["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 8);
    assert_eq!(names.iter().filter(|n| *n == "path").count(), 8);
    for (i, e) in edges.iter().enumerate() {
        let (s, r) = (
            e["sender"].as_str().unwrap(),
            e["receiver"].as_str().unwrap(),
        );
        let r = r.replace('<', "&lt;").replace('>', "&gt;");
        let title = format!("<title>#{} {s} \u{2192} {r}: ", i + 1);
        assert!(svg.contains(&title), "edge {title} missing:\n{svg}");
        // Each end of the edge is a drawn node.
        let node = |n: &str| format!("text-anchor=\"middle\">{n}</text></g>");
        let recv = e["receiver"].as_str().unwrap().split('<').next().unwrap();
        assert!(svg.contains(&node(s)) && svg.contains(&node(recv)));
    }
    // Columns run from the input to the logits.
    let x_of = |label: &str| {
        let at = svg
            .find(&format!("fill=\"#555555\">{label}</text>"))
            .unwrap();
        let x = &svg[..at].rsplit("<text x=\"").next().unwrap();
        x[..x.find('"').unwrap()].parse::<f32>().unwrap()
    };
    assert!(svg.contains(">logits</text>"));
    assert!(svg.contains(&format!(
        "top 8 of {} edges by |logit_diff|",
        json["n_edges"]
    )));
    if svg.contains("fill=\"#555555\">input</text>") {
        assert!(x_of("input") < x_of("logits"));
    }
}
