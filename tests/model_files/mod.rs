//! Building corrupted model files at test time from the committed fixtures:
//! Hugging Face directories with an edited `config.json` or weights, and GGUF
//! files re-written with edited metadata, tensor table or data. Nothing
//! hostile is committed; every bad file is derived here, in a tempdir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::GgmlDType;
use patchbench::model::gguf_header;
use patchbench::model::loaded::LoadOptions;
use patchbench::model::LoadedModel;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copies a fixture model directory (config, weights, tokenizer) to `to`.
pub fn copy_model(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture(name).join(f), to.join(f)).unwrap();
    }
}

/// A copy of fixture `name` in `dir/sub` with `config.json` edited.
pub fn hf_with_config(
    dir: &Path,
    sub: &str,
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> PathBuf {
    let to = dir.join(sub);
    copy_model(name, &to);
    let p = to.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    to
}

/// Makes a FIFO at `p` (nothing ever writes to it).
#[cfg(unix)]
pub fn mkfifo(p: &Path) {
    let _ = std::fs::remove_file(p);
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// The `[header length][JSON][data]` parts of a safetensors file.
pub fn safetensors_parts(bytes: &[u8]) -> (serde_json::Value, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

pub fn safetensors_bytes(header: &serde_json::Value, data: &[u8]) -> Vec<u8> {
    let mut h = serde_json::to_vec(header).unwrap();
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

/// Overwrites element `index` of f32 tensor `name` in a safetensors file.
pub fn poke_f32(bytes: &mut [u8], name: &str, index: usize, v: f32) {
    let (header, _) = safetensors_parts(bytes);
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let t = &header[name];
    assert_eq!(t["dtype"], "F32", "{name}");
    let start = t["data_offsets"][0].as_u64().unwrap() as usize;
    let at = 8 + n + start + 4 * index;
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// One tensor of a GGUF file: name, candle-order dims, ggml type, raw data.
#[derive(Clone)]
pub struct GgufTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub dtype: u32,
    pub data: Vec<u8>,
}

/// A GGUF file taken apart, to be edited and written back.
#[derive(Clone)]
pub struct Gguf {
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<GgufTensor>,
    pub alignment: u64,
}

fn ggml_code(t: GgmlDType) -> u32 {
    match t {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q8_0 => 8,
        GgmlDType::BF16 => 30,
        other => panic!("fixture uses {other:?}; extend ggml_code"),
    }
}

impl Gguf {
    /// The committed Llama GGUF fixture.
    pub fn fixture() -> Self {
        let bytes = std::fs::read(fixture("llama-tiny-gguf").join("model.gguf")).unwrap();
        let c = gguf_header::parse_bytes(&bytes).unwrap();
        let mut metadata: Vec<(String, Value)> = c.metadata.into_iter().collect();
        metadata.sort_by(|a, b| a.0.cmp(&b.0));
        let mut tensors: Vec<GgufTensor> = c
            .tensor_infos
            .iter()
            .map(|(name, info)| {
                let elems = info.shape.elem_count();
                let size = elems / info.ggml_dtype.block_size() * info.ggml_dtype.type_size();
                let start = (c.tensor_data_offset + info.offset) as usize;
                GgufTensor {
                    name: name.clone(),
                    dims: info.shape.dims().iter().map(|&d| d as u64).collect(),
                    dtype: ggml_code(info.ggml_dtype),
                    data: bytes[start..start + size].to_vec(),
                }
            })
            .collect();
        tensors.sort_by(|a, b| a.name.cmp(&b.name));
        Gguf {
            metadata,
            tensors,
            alignment: 32,
        }
    }

    pub fn set(&mut self, key: &str, v: Value) -> &mut Self {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), v));
        self
    }

    pub fn tensor(&mut self, name: &str) -> &mut GgufTensor {
        self.tensors.iter_mut().find(|t| t.name == name).unwrap()
    }

    /// Serialises as GGUF v3; tensor data laid out in order, aligned.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend((self.tensors.len() as u64).to_le_bytes());
        b.extend((self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut b, k);
            b.extend(type_code(v).to_le_bytes());
            put_value(&mut b, v);
        }
        let align = self.alignment.max(1) as usize;
        let mut offset = 0usize;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            offsets.push(offset);
            offset += t.data.len().div_ceil(align) * align;
        }
        for (t, off) in self.tensors.iter().zip(&offsets) {
            put_str(&mut b, &t.name);
            b.extend((t.dims.len() as u32).to_le_bytes());
            for d in t.dims.iter().rev() {
                b.extend(d.to_le_bytes());
            }
            b.extend(t.dtype.to_le_bytes());
            b.extend((*off as u64).to_le_bytes());
        }
        b.resize(b.len().div_ceil(align) * align, 0);
        for t in &self.tensors {
            let start = b.len();
            b.extend(&t.data);
            b.resize(start + t.data.len().div_ceil(align) * align, 0);
        }
        b
    }

    /// Writes the file as `dir/name` and returns its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, self.bytes()).unwrap();
        p
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

fn type_code(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

fn put_value(b: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => b.push(*x),
        Value::I8(x) => b.push(*x as u8),
        Value::U16(x) => b.extend(x.to_le_bytes()),
        Value::I16(x) => b.extend(x.to_le_bytes()),
        Value::U32(x) => b.extend(x.to_le_bytes()),
        Value::I32(x) => b.extend(x.to_le_bytes()),
        Value::F32(x) => b.extend(x.to_le_bytes()),
        Value::Bool(x) => b.push(*x as u8),
        Value::String(s) => put_str(b, s),
        Value::Array(items) => {
            let t = items.first().map(type_code).unwrap_or(4);
            b.extend(t.to_le_bytes());
            b.extend((items.len() as u64).to_le_bytes());
            for i in items {
                put_value(b, i);
            }
        }
        Value::U64(x) => b.extend(x.to_le_bytes()),
        Value::I64(x) => b.extend(x.to_le_bytes()),
        Value::F64(x) => b.extend(x.to_le_bytes()),
    }
}

pub fn cpu() -> LoadOptions {
    LoadOptions::cpu()
}

/// Loads `path` expecting a refusal whose message names the file and
/// contains every one of `needles`.
pub fn refused(path: &Path, needles: &[&str]) -> String {
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

/// Runs `patchbench sweep --model MODEL` under `ulimit -v` (4 GB) with a
/// deadline, asserting a prompt, clean refusal.
pub fn cli_refuses(model: &Path, needle: &str) {
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

/// The committed GGUF with one edit, written to `tmp/label.gguf`.
pub fn gguf_case(tmp: &Path, label: &str, edit: impl FnOnce(&mut Gguf)) -> PathBuf {
    let mut g = Gguf::fixture();
    edit(&mut g);
    g.write(tmp, &format!("{label}.gguf"))
}

pub fn safetensors_dir(tmp: &Path, label: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let dir = tmp.join(label);
    copy_model("gpt2-tiny", &dir);
    let p = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    edit(&mut bytes);
    std::fs::write(&p, bytes).unwrap();
    dir
}
