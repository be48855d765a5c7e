//! Hostile model files: every corrupted config, header, tensor table and
//! weight file (built at test time from the fixtures) is refused with an
//! error that names the file and the bad value: no panic, no abort, no huge
//! allocation, no hang. The CLI cases run the binary under `ulimit -v`.

mod model_files;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::Value;
use candle_core::{DType, Device};
use model_files::*;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;
use serde_json::json;

fn cpu() -> LoadOptions {
    LoadOptions {
        device: Device::Cpu,
        dtype: DType::F32,
    }
}

/// Loads `path` expecting a refusal whose message names the file and
/// contains every one of `needles`.
fn refused(path: &Path, needles: &[&str]) -> String {
    let e = match LoadedModel::load(path.to_str().unwrap(), &cpu()) {
        Ok(_) => panic!("{} loaded but should be refused", path.display()),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains(path.to_str().unwrap()),
        "message does not name {}: {e}",
        path.display()
    );
    for n in needles {
        assert!(e.contains(n), "message lacks {n:?}: {e}");
    }
    e
}

type Edit = fn(&mut serde_json::Value);

/// `(fixture, label, edit, words the message must contain)`.
const CONFIG_CASES: &[(&str, &str, Edit, &[&str])] = &[
    (
        "gpt2-tiny",
        "n_head0",
        |v| v["n_head"] = json!(0),
        &["\"n_head\" is 0"],
    ),
    (
        "gpt2-tiny",
        "n_head-4",
        |v| v["n_head"] = json!(-4),
        &["n_head", "-4"],
    ),
    (
        "gpt2-tiny",
        "n_layer0",
        |v| v["n_layer"] = json!(0),
        &["n_layers is 0"],
    ),
    (
        "gpt2-tiny",
        "n_head7",
        |v| v["n_head"] = json!(7),
        &["64 is not a multiple of 7"],
    ),
    (
        "gpt2-tiny",
        "n_embd2^62",
        |v| v["n_embd"] = json!(1u64 << 62),
        &["4611686018427387904"],
    ),
    (
        "gpt2-tiny",
        "n_positions_max",
        |v| v["n_positions"] = json!(u64::MAX),
        &["18446744073709551615"],
    ),
    (
        "gpt2-tiny",
        "eps-1",
        |v| v["layer_norm_epsilon"] = json!(-1.0),
        &["epsilon is -1"],
    ),
    (
        "gpt2-tiny",
        "vocab0",
        |v| v["vocab_size"] = json!(0),
        &["d_vocab is 0"],
    ),
    (
        "gpt2-tiny",
        "vocab2^62",
        |v| v["vocab_size"] = json!(1u64 << 62),
        &["4611686018427387904"],
    ),
    (
        "gpt2-tiny",
        "n_inner2^61",
        |v| v["n_inner"] = json!(1u64 << 61),
        &["d_mlp 2305843009213693952"],
    ),
    (
        "gpt2-tiny",
        "n_head_str",
        |v| v["n_head"] = json!("4"),
        &["n_head", "\"4\""],
    ),
    (
        "gpt2-tiny",
        "n_head_float",
        |v| v["n_head"] = json!(4.5),
        &["n_head", "4.5"],
    ),
    (
        "llama-tiny",
        "heads0",
        |v| v["num_attention_heads"] = json!(0),
        &["num_attention_heads\" is 0"],
    ),
    (
        "llama-tiny",
        "kv0",
        |v| v["num_key_value_heads"] = json!(0),
        &["n_kv_heads is 0"],
    ),
    (
        "llama-tiny",
        "kv3",
        |v| v["num_key_value_heads"] = json!(3),
        &["multiple of n_kv_heads (3)"],
    ),
    (
        "llama-tiny",
        "layers-1",
        |v| v["num_hidden_layers"] = json!(-1),
        &["num_hidden_layers", "-1"],
    ),
    (
        "llama-tiny",
        "ctx_max",
        |v| v["max_position_embeddings"] = json!(u64::MAX),
        &["rotary", "18446744073709551615"],
    ),
    (
        "llama-tiny",
        "ctx2^40",
        |v| v["max_position_embeddings"] = json!(1u64 << 40),
        &["rotary", "1099511627776"],
    ),
    (
        "llama-tiny",
        "theta0",
        |v| v["rope_theta"] = json!(0.0),
        &["rope theta is 0"],
    ),
    (
        "llama-tiny",
        "theta-1",
        |v| v["rope_theta"] = json!(-1.0),
        &["rope theta is -1"],
    ),
    (
        "llama-tiny",
        "eps-neg",
        |v| v["rms_norm_eps"] = json!(-1e-6),
        &["epsilon is -0.000001"],
    ),
    (
        "llama-tiny",
        "width7",
        |v| {
            v["num_attention_heads"] = json!(7);
            v.as_object_mut().unwrap().remove("head_dim");
        },
        &["64 is not a multiple of 7"],
    ),
    (
        "llama-tiny",
        "head_dim0",
        |v| v["head_dim"] = json!(0),
        &["d_head is 0"],
    ),
    (
        "llama-tiny",
        "head_dim2^62",
        |v| v["head_dim"] = json!(1u64 << 62),
        &["overflows"],
    ),
    (
        "llama-tiny",
        "linear0",
        |v| v["rope_scaling"] = json!({"rope_type": "linear", "factor": 0.0}),
        &["factor is 0"],
    ),
    (
        "llama-tiny",
        "llama3_equal",
        |v| {
            v["rope_scaling"] = json!({
                "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 1.0, "original_max_position_embeddings": 64
            })
        },
        &["high_freq_factor (1)"],
    ),
    (
        "llama-tiny",
        "vocab_small",
        |v| v["vocab_size"] = json!(10),
        &["400", "10"],
    ),
    (
        "llama-tiny",
        "mlp2^62",
        |v| v["intermediate_size"] = json!(1u64 << 62),
        &["d_mlp 4611686018427387904"],
    ),
    (
        "pythia-tiny",
        "heads0",
        |v| v["num_attention_heads"] = json!(0),
        &["num_attention_heads\" is 0"],
    ),
    (
        "pythia-tiny",
        "rotary0",
        |v| v["rotary_pct"] = json!(0.0),
        &["rotary fraction 0"],
    ),
    (
        "pythia-tiny",
        "ctx_max",
        |v| v["max_position_embeddings"] = json!(u64::MAX),
        &["18446744073709551615"],
    ),
    (
        "pythia-tiny",
        "eps-1",
        |v| v["layer_norm_eps"] = json!(-1.0),
        &["epsilon is -1"],
    ),
    (
        "qwen2-tiny",
        "theta-inf",
        |v| v["rope_theta"] = json!(-1e300),
        &["rope theta"],
    ),
];

#[test]
fn corrupt_configs_are_refused_naming_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    for (i, (fixture, label, edit, needles)) in CONFIG_CASES.iter().enumerate() {
        let dir = hf_with_config(tmp.path(), &format!("{i}-{label}"), fixture, edit);
        refused(&dir, needles);
    }
}

#[test]
fn unreadable_configs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("not-json");
    copy_model("gpt2-tiny", &dir);
    std::fs::write(dir.join("config.json"), "{\"n_head\": ").unwrap();
    refused(&dir, &["config.json", "invalid JSON"]);

    let dir = tmp.path().join("bom");
    copy_model("gpt2-tiny", &dir);
    let text = std::fs::read(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        [b"\xEF\xBB\xBF".as_slice(), &text].concat(),
    )
    .unwrap();
    LoadedModel::load(dir.to_str().unwrap(), &cpu()).expect("a BOM in config.json is accepted");
}

fn safetensors_dir(tmp: &Path, label: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let dir = tmp.join(label);
    copy_model("gpt2-tiny", &dir);
    let p = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    edit(&mut bytes);
    std::fs::write(&p, bytes).unwrap();
    dir
}

#[test]
fn corrupt_safetensors_are_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let cases: Vec<(PathBuf, &[&str])> = vec![
        (
            safetensors_dir(t, "empty", |b| b.clear()),
            &["model.safetensors"],
        ),
        (
            safetensors_dir(t, "half", |b| b.truncate(b.len() / 2)),
            &["truncated"],
        ),
        (
            safetensors_dir(t, "header-only", |b| b.truncate(100)),
            &["truncated"],
        ),
        (
            safetensors_dir(t, "huge-header", |b| {
                b[..8].copy_from_slice(&(1u64 << 63).to_le_bytes())
            }),
            &["header"],
        ),
        (
            safetensors_dir(t, "absurd-shape", |b| {
                let (mut h, data) = safetensors_parts(b);
                h["transformer.wte.weight"]["shape"] = json!([1u64 << 62, 1u64 << 62]);
                *b = safetensors_bytes(&h, &data);
            }),
            &["overflow"],
        ),
        (
            safetensors_dir(t, "wrong-range", |b| {
                let (mut h, data) = safetensors_parts(b);
                h["transformer.wte.weight"]["data_offsets"] = json!([0, 1u64 << 40]);
                *b = safetensors_bytes(&h, &data);
            }),
            &["model.safetensors"],
        ),
        (
            safetensors_dir(t, "nan", |b| {
                poke_f32(b, "transformer.h.1.mlp.c_fc.weight", 5, f32::NAN)
            }),
            &["transformer.h.1.mlp.c_fc.weight", "NaN", "element 5"],
        ),
        (
            safetensors_dir(t, "inf", |b| {
                poke_f32(b, "transformer.ln_f.bias", 0, f32::NEG_INFINITY)
            }),
            &["transformer.ln_f.bias", "infinity"],
        ),
        (
            safetensors_dir(t, "garbage", |b| b.iter_mut().for_each(|x| *x = 0xff)),
            &["model.safetensors"],
        ),
    ];
    for (dir, needles) in cases {
        refused(&dir, needles);
    }
}

/// The committed GGUF with one edit, written to `tmp/label.gguf`.
fn gguf_case(tmp: &Path, label: &str, edit: impl FnOnce(&mut Gguf)) -> PathBuf {
    let mut g = Gguf::fixture();
    edit(&mut g);
    g.write(tmp, &format!("{label}.gguf"))
}

#[test]
fn corrupt_gguf_metadata_is_refused_naming_the_value() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let cases: Vec<(PathBuf, &[&str])> = vec![
        (
            gguf_case(t, "heads0", |g| {
                g.set("llama.attention.head_count", Value::U32(0));
            }),
            &["head_count\" is 0"],
        ),
        (
            gguf_case(t, "heads-4", |g| {
                g.set("llama.attention.head_count", Value::I32(-4));
            }),
            &["head_count", "-4"],
        ),
        (
            gguf_case(t, "kv0", |g| {
                g.set("llama.attention.head_count_kv", Value::U32(0));
            }),
            &["n_kv_heads is 0"],
        ),
        (
            gguf_case(t, "kv3", |g| {
                g.set("llama.attention.head_count_kv", Value::U32(3));
            }),
            &["n_kv_heads (3)"],
        ),
        (
            gguf_case(t, "layers0", |g| {
                g.set("llama.block_count", Value::U32(0));
            }),
            &["block_count\" is 0"],
        ),
        (
            gguf_case(t, "width0", |g| {
                g.set("llama.embedding_length", Value::U32(0));
            }),
            &["embedding_length\" is 0"],
        ),
        (
            gguf_case(t, "width2^62", |g| {
                g.set("llama.embedding_length", Value::U64(1 << 62));
            }),
            &["token_embd.weight", "4611686018427387904"],
        ),
        (
            gguf_case(t, "width-odd", |g| {
                g.set("llama.attention.head_count", Value::U32(7));
            }),
            &["not a multiple of", "7"],
        ),
        (
            gguf_case(t, "keylen0", |g| {
                g.set("llama.attention.key_length", Value::U32(0));
            }),
            &["d_head is 0"],
        ),
        (
            gguf_case(t, "ctx_max", |g| {
                g.set("llama.context_length", Value::U64(u64::MAX));
            }),
            &["18446744073709551615"],
        ),
        (
            gguf_case(t, "ctx_i64", |g| {
                g.set("llama.context_length", Value::I64(-1));
            }),
            &["context_length", "-1"],
        ),
        (
            gguf_case(t, "ctx2^40", |g| {
                g.set("llama.context_length", Value::U64(1 << 40));
            }),
            &["rotary", "1099511627776"],
        ),
        (
            gguf_case(t, "theta0", |g| {
                g.set("llama.rope.freq_base", Value::F32(0.0));
            }),
            &["rope theta is 0"],
        ),
        (
            gguf_case(t, "thetaNaN", |g| {
                g.set("llama.rope.freq_base", Value::F32(f32::NAN));
            }),
            &["rope theta is NaN"],
        ),
        (
            gguf_case(t, "theta-inf", |g| {
                g.set("llama.rope.freq_base", Value::F32(f32::INFINITY));
            }),
            &["rope theta is inf"],
        ),
        (
            gguf_case(t, "eps-1", |g| {
                g.set("llama.attention.layer_norm_rms_epsilon", Value::F32(-1.0));
            }),
            &["epsilon is -1"],
        ),
        (
            gguf_case(t, "epsNaN", |g| {
                g.set(
                    "llama.attention.layer_norm_rms_epsilon",
                    Value::F32(f32::NAN),
                );
            }),
            &["epsilon is NaN"],
        ),
        (
            gguf_case(t, "scale0", |g| {
                g.set("llama.rope.scaling.type", Value::String("linear".into()));
                g.set("llama.rope.scaling.factor", Value::F32(0.0));
            }),
            &["factor is 0"],
        ),
        (
            gguf_case(t, "heads_str", |g| {
                g.set("llama.attention.head_count", Value::String("4".into()));
            }),
            &["head_count", "not an integer"],
        ),
        (
            gguf_case(t, "bos2^40", |g| {
                g.set("tokenizer.ggml.bos_token_id", Value::U64(1 << 40));
            }),
            &["bos_token_id", "1099511627776"],
        ),
        (
            gguf_case(t, "arch", |g| {
                g.set("general.architecture", Value::String("gpt-j".into()));
            }),
            &["gpt-j"],
        ),
        (
            gguf_case(t, "no-tokens", |g| {
                g.metadata.retain(|(k, _)| k != "tokenizer.ggml.tokens");
            }),
            &["tokenizer.ggml.tokens"],
        ),
    ];
    for (path, needles) in cases {
        refused(&path, needles);
    }
}

#[test]
fn corrupt_gguf_structure_is_refused_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let full = Gguf::fixture().bytes();
    let raw = |label: &str, bytes: Vec<u8>| {
        let p = t.join(format!("{label}.gguf"));
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let mut huge_counts = full[..24].to_vec();
    huge_counts[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let cases: Vec<(PathBuf, &[&str])> = vec![
        (
            gguf_case(t, "align0", |g| {
                g.set("general.alignment", Value::U32(0));
            }),
            &["general.alignment is 0"],
        ),
        (
            gguf_case(t, "align3", |g| {
                g.set("general.alignment", Value::U32(3));
            }),
            &["general.alignment is 3"],
        ),
        (
            gguf_case(t, "align-neg", |g| {
                g.set("general.alignment", Value::I32(-32));
            }),
            &["general.alignment is -32"],
        ),
        (
            gguf_case(t, "dims-overflow", |g| {
                g.tensor("token_embd.weight").dims = vec![1 << 40, 1 << 40];
            }),
            &["token_embd.weight", "overflowing"],
        ),
        (
            gguf_case(t, "dims-huge", |g| {
                g.tensor("output_norm.weight").dims = vec![1 << 40];
            }),
            &["output_norm.weight", "truncated"],
        ),
        (
            gguf_case(t, "dims-zero", |g| {
                g.tensor("output_norm.weight").dims = vec![0];
            }),
            &["output_norm.weight", "empty"],
        ),
        (
            gguf_case(t, "dims-five", |g| {
                g.tensor("output_norm.weight").dims = vec![1, 1, 1, 1, 64];
            }),
            &["5 dimensions"],
        ),
        (
            gguf_case(t, "dtype-99", |g| {
                g.tensor("output_norm.weight").dtype = 99;
            }),
            &["unknown ggml type 99"],
        ),
        (
            gguf_case(t, "shape-1d-embd", |g| {
                g.tensor("token_embd.weight").dims = vec![64];
            }),
            &["token_embd.weight"],
        ),
        (
            gguf_case(t, "nan", |g| {
                let d = &mut g.tensor("blk.1.ffn_up.weight").data;
                d[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
            }),
            &["blk.1.ffn_up.weight", "NaN"],
        ),
        (
            raw("truncated-data", full[..full.len() * 3 / 5].to_vec()),
            &["truncated"],
        ),
        (
            raw("truncated-header", full[..100].to_vec()),
            &["truncated"],
        ),
        (raw("huge-counts", huge_counts), &["truncated"]),
        (raw("empty", Vec::new()), &["truncated"]),
        (
            raw("not-gguf", b"PK\x03\x04 this is a zip".to_vec()),
            &["not a GGUF file"],
        ),
        (
            raw(
                "version9",
                [b"GGUF".as_slice(), &9u32.to_le_bytes(), &[0; 16]].concat(),
            ),
            &["version 9"],
        ),
    ];
    for (path, needles) in cases {
        refused(&path, needles);
    }
}

/// Runs `patchbench sweep --model MODEL` under `ulimit -v` (4 GB) with a
/// deadline, asserting a prompt, clean refusal.
fn cli_refuses(model: &Path, needle: &str) {
    let bin = env!("CARGO_BIN_EXE_patchbench");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 4000000; exec \"$0\" \"$@\"")
        .arg(bin)
        .args(["sweep", "--model", model.to_str().unwrap()])
        .args(["--clean", "a b c", "--corrupted", "a c b", "--answer", " a"])
        .args(["--wrong", " b", "--target", "resid_pre"])
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("{}: patchbench hung", model.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}: accepted", model.display());
    assert!(
        out.status.code().is_some(),
        "{}: killed by a signal: {err}",
        model.display()
    );
    assert!(
        !err.contains("panicked") && !err.contains("stack backtrace"),
        "{err}"
    );
    let name = model.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(name),
        "{}: message does not name it: {err}",
        model.display()
    );
    assert!(
        err.contains(needle),
        "{}: lacks {needle:?}: {err}",
        model.display()
    );
}

#[test]
fn the_cli_refuses_hostile_models_under_a_memory_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let ctx = hf_with_config(t, "ctx-max", "llama-tiny", |v| {
        v["max_position_embeddings"] = json!(u64::MAX)
    });
    cli_refuses(&ctx, "18446744073709551615");
    let width = hf_with_config(t, "width", "gpt2-tiny", |v| v["n_embd"] = json!(1u64 << 62));
    cli_refuses(&width, "4611686018427387904");
    let heads = hf_with_config(t, "heads", "pythia-tiny", |v| {
        v["num_attention_heads"] = json!(0)
    });
    cli_refuses(&heads, "num_attention_heads");
    cli_refuses(
        &gguf_case(t, "align0", |g| {
            g.set("general.alignment", Value::U32(0));
        }),
        "general.alignment is 0",
    );
    cli_refuses(
        &gguf_case(t, "ctx", |g| {
            g.set("llama.context_length", Value::U64(1 << 40));
        }),
        "1099511627776",
    );
    cli_refuses(
        &gguf_case(t, "dims", |g| {
            g.tensor("token_embd.weight").dims = vec![1 << 40, 1 << 40];
        }),
        "token_embd.weight",
    );
    let nan = safetensors_dir(t, "nan", |b| {
        poke_f32(b, "transformer.wte.weight", 3, f32::NAN)
    });
    cli_refuses(&nan, "transformer.wte.weight");
}

#[cfg(unix)]
#[test]
fn fifos_and_devices_as_model_files_are_refused_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    for (label, file) in [
        ("config", "config.json"),
        ("weights", "model.safetensors"),
        ("tokenizer", "tokenizer.json"),
    ] {
        let dir = t.join(format!("fifo-{label}"));
        copy_model("gpt2-tiny", &dir);
        mkfifo(&dir.join(file));
        cli_refuses(&dir, "FIFO");
        let dir = t.join(format!("zero-{label}"));
        copy_model("gpt2-tiny", &dir);
        std::fs::remove_file(dir.join(file)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join(file)).unwrap();
        cli_refuses(&dir, "character device");
    }
    let gguf = t.join("model.gguf");
    mkfifo(&gguf);
    cli_refuses(&gguf, "FIFO");
    let zero = t.join("zero.gguf");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    cli_refuses(&zero, "character device");
}
