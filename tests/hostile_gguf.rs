//! Hostile GGUF files: corrupted metadata (zero or negative counts,
//! absurd context lengths, non-finite epsilon or theta), a corrupted header
//! or tensor table (alignment 0, overflowing shapes, unknown types,
//! truncation) and NaN tensors, each rewritten at test time from the
//! committed fixture, are refused naming the file and the value.

mod model_files;

use std::path::PathBuf;

use candle_core::quantized::gguf_file::Value;
use model_files::*;

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
            // Small enough for the size checks, far more blocks than tensors.
            gguf_case(t, "layers10000", |g| {
                g.set("llama.block_count", Value::U32(10_000));
            }),
            &["block count is 10000", "tensors", "corrupt"],
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
            &["ggml type 99 (unknown)"],
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
