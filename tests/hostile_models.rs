//! Hostile Hugging Face model directories: every corrupted config and
//! weight file (built at test time from the fixtures) is refused with an
//! error that names the file and the bad value: no panic, no abort, no huge
//! allocation, no hang. The CLI cases run the binary under `ulimit -v`.
//! GGUF files are in `hostile_gguf.rs`.

mod model_files;

use std::path::PathBuf;

use candle_core::quantized::gguf_file::Value;
use model_files::*;
use patchbench::model::LoadedModel;
use serde_json::json;

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

/// A tensor candle cannot read (a dtype it does not support) keeps
/// candle's error as the source, with the file and the tensor named.
#[test]
fn a_tensor_candle_cannot_read_keeps_its_typed_error() {
    use patchbench::model::ModelError;
    let tmp = tempfile::tempdir().unwrap();
    let dir = safetensors_dir(tmp.path(), "bool", |b| {
        let (mut h, data) = safetensors_parts(b);
        let t = &mut h["transformer.ln_f.bias"];
        let n: u64 = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .product();
        // The same bytes, one per element.
        t["dtype"] = json!("BOOL");
        t["shape"] = json!([n * 4]);
        *b = safetensors_bytes(&h, &data);
    });
    let e = LoadedModel::load(dir.to_str().unwrap(), &cpu()).unwrap_err();
    let ModelError::TensorRead {
        path,
        tensor,
        source,
    } = &e
    else {
        panic!("wrong error: {e:?}");
    };
    assert_eq!(path, &dir.join("model.safetensors"));
    assert_eq!(tensor, "transformer.ln_f.bias");
    assert!(
        matches!(**source, candle_core::Error::UnsupportedSafeTensorDtype(_)),
        "{source:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("\"transformer.ln_f.bias\"") && msg.contains("BOOL"),
        "{msg}"
    );
    assert!(std::error::Error::source(&e).is_some());
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

#[test]
fn a_hostile_shard_index_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for (label, shard) in [
        ("climbs", "../model.safetensors"),
        ("absolute", "/dev/zero"),
        ("empty", ""),
    ] {
        let dir = tmp.path().join(label);
        copy_model("gpt2-tiny", &dir);
        std::fs::rename(
            dir.join("model.safetensors"),
            dir.join("model-00001.safetensors"),
        )
        .unwrap();
        let index = json!({"weight_map": {"transformer.wte.weight": shard}});
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
        refused(&dir, &["not a file name in the model directory"]);
    }
}
