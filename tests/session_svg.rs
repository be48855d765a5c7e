//! The SVG heatmap: well-formed, labelled, one panel per slice of a
//! three-axis result, NaN cells grey, text escaped.

mod session_support;

use patchbench::patching::{SweepSpec, Target};
use patchbench::session::heatmap_svg;
use session_support::fake_result;

#[test]
fn a_layer_by_position_heatmap_has_title_axes_and_colour_bar() {
    let mut r = fake_result(Target::ResidPre, &["layer", "pos"], &[3, 17], 4);
    r.clean_tokens.strings[2] = "<&\"tok\">".into();
    let svg = heatmap_svg("gpt2", &SweepSpec::new(Target::ResidPre), &r, "logit_diff").unwrap();
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("resid_pre · denoise · prompt corruption — logit_diff"));
    assert!(svg.contains("model gpt2 · clean 1.500, corrupted -1.000"));
    assert!(svg.contains(">layer</text>") && svg.contains(">position (clean token)</text>"));
    assert!(svg.contains("> tok0</text>"), "token labels");
    assert!(
        svg.contains("&lt;&amp;&quot;tok&quot;&gt;"),
        "escaped token"
    );
    assert!(!svg.contains("<&"), "no raw markup from data");
    assert!(svg.contains("fill=\"#d9d9d9\""), "NaN cells are grey");
    // The colour bar shows its range at both ends.
    let scale = r.result.metrics["logit_diff"]
        .iter()
        .filter(|x| x.is_finite())
        .fold(0f32, |m, x| m.max(x.abs()));
    assert!(svg.contains(&format!(">{scale:.3}</text>")));
    assert!(svg.contains(&format!(">{:.3}</text>", -scale)));
    assert_eq!(svg.matches("<rect x=").count(), 3 * 17 + 1);
}

#[test]
fn three_axis_results_draw_one_panel_per_component() {
    let r = fake_result(
        Target::HeadsEvery,
        &["component", "layer", "head"],
        &[5, 2, 4],
        9,
    );
    let svg = heatmap_svg("demo", &SweepSpec::new(Target::HeadsEvery), &r, "kl").unwrap();
    for c in 0..5 {
        assert!(
            svg.contains(&format!(">comp{c}</text>")),
            "panel title comp{c}"
        );
    }
    assert!(svg.contains(">head</text>"));
    assert_eq!(svg.matches("<rect x=").count(), 5 * 2 * 4 + 1);

    let r = fake_result(
        Target::HeadOutByPos,
        &["layer", "pos", "head"],
        &[2, 3, 4],
        9,
    );
    let svg = heatmap_svg("demo", &SweepSpec::new(Target::HeadOutByPos), &r, "kl").unwrap();
    assert!(svg.contains(">layer 1</text>"));
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let r = fake_result(Target::ResidPre, &["layer", "pos"], &[2, 2], 1);
    let spec = SweepSpec::new(Target::ResidPre);
    let e = heatmap_svg("m", &spec, &r, "accuracy")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("unknown metric \"accuracy\"") && e.contains("logit_diff"),
        "{e}"
    );
    let mut flat = r.clone();
    flat.result.axes = vec!["layer".into()];
    flat.result.shape = vec![4];
    assert!(heatmap_svg("m", &spec, &flat, "kl").is_err());
    let mut short = r;
    short.result.metrics.get_mut("kl").unwrap().truncate(1);
    assert!(heatmap_svg("m", &spec, &short, "kl").is_err());
}
