//! `patchbench check-device` on the CPU, where the comparison itself can be
//! checked without a GPU: f32 against f32 and quantized against quantized
//! are exact, bf16 against f32 is within the documented tolerance, and a tolerance nobody can meet makes it
//! fail with one line and a non-zero exit. (The CUDA build's behaviour without
//! a GPU is checked by scripts/check-cuda-binary.sh, run by the test script.)

use std::process::Command;

fn check_device(extra: &[&str]) -> std::process::Output {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(["check-device", "--device", "cpu", "--fixtures", fixtures])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn cpu_against_cpu_passes_every_fixture_in_each_weights_mode() {
    let out = check_device(&["--weights", "f32,bf16,quantized"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let passes = |fixture: &str, mode: &str| {
        stdout.lines().any(|l| {
            l.starts_with(&format!("fixture {fixture} "))
                && l.contains(&format!(" {mode} "))
                && l.ends_with("ok")
        })
    };
    let safetensors = [
        "gemma-tiny",
        "gemma2-tiny",
        "gemma3-tiny",
        "gpt2-tiny",
        "llama-tiny",
        "llama3-tiny",
        "pythia-seq-tiny",
        "pythia-tiny",
        "qwen2-tiny",
    ];
    // Every GGUF model fixture, `gguf/NAME` from tests/fixtures/gguf; their
    // quantized blocks cover every tensor type candle reads.
    let gguf = [
        "llama-tiny-gguf",
        "gguf/gpt2",
        "gguf/gptneox",
        "gguf/gptneox-seq",
        "gguf/kquant",
        "gguf/llama",
        "gguf/llama31",
        "gguf/qwen2",
    ];
    for fixture in safetensors.iter().chain(&gguf) {
        for mode in ["f32", "bf16"] {
            assert!(
                passes(fixture, mode),
                "no passing {mode} line for {fixture}:\n{stdout}"
            );
        }
    }
    for fixture in gguf {
        assert!(
            passes(fixture, "quantized"),
            "no passing quantized line for {fixture}:\n{stdout}"
        );
    }
    // Safetensors weights have no quantized form: not run, not failed.
    for fixture in safetensors {
        assert!(!passes(fixture, "quantized"), "{fixture}:\n{stdout}");
    }
    // The fixtures with a prompt pair also compare both sweeps.
    for target in ["resid_pre", "head_out"] {
        assert!(
            stdout.lines().any(|l| l.starts_with("sweep   gpt2-tiny")
                && l.contains(" cpu bf16 ")
                && l.contains(target)
                && l.ends_with("ok")),
            "no bf16 {target} sweep line for gpt2-tiny:\n{stdout}"
        );
    }
    // f32 and quantized on the CPU against themselves: the same arithmetic.
    for l in stdout
        .lines()
        .filter(|l| l.starts_with("fixture") && (l.contains(" f32 ") || l.contains(" quantized ")))
    {
        let worst: f32 = l
            .split("worst ")
            .nth(1)
            .and_then(|w| w.split_whitespace().next())
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no worst difference in {l:?}"));
        assert!(worst <= 1e-6, "{l}");
    }
    assert!(stdout.trim_end().ends_with(" 0 mismatches"), "{stdout}");
}

#[test]
fn a_difference_beyond_tolerance_fails_in_one_line() {
    let out = check_device(&["--weights", "bf16", "--tol-half", "0"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("MISMATCH"), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("checks on cpu differ beyond tolerance"),
        "{stderr}"
    );
}

#[test]
fn nothing_to_check_is_an_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(["check-device", "--device", "cpu"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("--fixtures DIR"), "{stderr}");
}

#[test]
fn a_sweep_model_sweeps_in_bf16_and_quantized_against_the_cpu() {
    // A GGUF fixture stands in for a `random:` preset here (whose 49k-row
    // embeddings take seconds to draw in a debug build); both go through
    // the same loading and sweeps.
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/gguf/llama.gguf"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(["check-device", "--device", "cpu", "--sweep-model", model])
        .args(["--weights", "bf16,quantized", "--cpu-reference"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let sweep = |l: &str, device_mode: &str| {
        l.starts_with("sweep   ") && l.contains("llama.gguf") && l.contains(device_mode)
    };
    for (mode, reference) in [("bf16", "f32"), ("quantized", "quantized")] {
        assert!(
            stdout
                .lines()
                .any(|l| sweep(l, &format!(" cpu {reference} ")) && l.ends_with("(reference)")),
            "no {reference} reference for {mode}:\n{stdout}"
        );
        for target in ["resid_pre", "head_out"] {
            assert!(
                stdout.lines().any(|l| sweep(l, &format!(" cpu {mode} "))
                    && l.contains(target)
                    && l.ends_with("ok")),
                "no {mode} {target} line:\n{stdout}"
            );
        }
    }
    // Quantized against f32 would measure the quantization: refused.
    let out = Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(["check-device", "--device", "cpu", "--sweep-model", model])
        .args(["--weights", "quantized"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--cpu-reference"), "{stderr}");
}
