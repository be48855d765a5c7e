//! The checkpoint of a running sweep: finished units appended as they
//! finish, so a killed or requeued run resumes where it stopped.
//!
//! The file is text, one record per line, each `DIGEST JSON\n` where
//! DIGEST is the 16-hex-digit FNV-1a of the JSON (`util::digest`). The first
//! record is the header, `{"patchbench_checkpoint":1,"key":{...}}`, whose key
//! is the sweep's identity (spec, model fingerprint, prompts, batching,
//! shard, unit plan); every other record is a finished unit,
//! `{"unit":I,"rows":[[RUN,CELL],...],"values":"HEX"}` (values as in part
//! files). Each record is written by one `write` on a file opened for
//! appending and synced before the next unit starts, so a kill loses at most
//! the unit in flight. On reopening, the first record that is incomplete or
//! whose digest does not match (a torn last write) ends the valid prefix;
//! the file is cut there and appending continues after it. A checkpoint
//! whose key differs is refused, naming the field, never silently reused.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::util::digest::hex_digest;
use crate::util::fs::{limits, read_capped, ReadError};

use super::metrics::Metrics;
use super::part::{metrics_hex, parse_metrics_hex};
use super::work::WorkUnit;

/// The checkpoint format written by this build.
pub const CHECKPOINT_FORMAT: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("checkpoint {path}: cannot write it: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "checkpoint {path} belongs to another sweep: its {field} differs ({theirs} there, {ours} \
         now). Rerun the exact command that wrote it, or delete the file to start over"
    )]
    Foreign {
        path: PathBuf,
        field: String,
        ours: String,
        theirs: String,
    },
    #[error(
        "checkpoint {path}: line 1 is not a patchbench checkpoint header; it is not a file this \
         command wrote. Move it away or choose another --out"
    )]
    NotCheckpoint { path: PathBuf },
    #[error(
        "checkpoint {path}: unit {unit} does not match this sweep's unit plan; delete the file \
         to start over"
    )]
    Mismatch { path: PathBuf, unit: usize },
}

/// An open checkpoint: what it already holds, and the file to append to.
pub struct Checkpoint {
    path: PathBuf,
    file: File,
    /// Units read back on opening: index -> ((run, cell) rows, values).
    known: HashMap<usize, KnownUnit>,
    /// Records dropped on opening (a torn or damaged tail).
    pub dropped: usize,
}

/// One line: digest, space, JSON, newline.
fn record(v: &Value) -> String {
    let text = serde_json::to_string(v).unwrap_or_default();
    format!("{} {text}\n", hex_digest(text.as_bytes()))
}

/// The JSON of a line whose digest matches, or `None` (torn or damaged).
fn parse_record(line: &str) -> Option<Value> {
    let (digest, text) = line.split_once(' ')?;
    (hex_digest(text.as_bytes()) == digest)
        .then(|| serde_json::from_str(text).ok())
        .flatten()
}

impl Checkpoint {
    /// Opens the checkpoint at `path` for the sweep identified by `key` (a
    /// JSON object): resumes an existing one of the same key, refuses one of
    /// another, creates one when there is none.
    pub fn open(path: &Path, key: &Value) -> Result<Checkpoint, CheckpointError> {
        let werr = |source| CheckpointError::Write {
            path: path.to_path_buf(),
            source,
        };
        let header = json!({"patchbench_checkpoint": CHECKPOINT_FORMAT, "key": key});
        let bytes = match read_capped(path, limits::PARTS, "sweep checkpoint") {
            Ok(b) => Some(b),
            Err(ReadError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let (mut known, mut valid, mut dropped) = (HashMap::new(), 0usize, 0usize);
        if let Some(bytes) = bytes.as_deref().filter(|b| !b.is_empty()) {
            let mut lines = bytes.split_inclusive(|&b| b == b'\n');
            let first = lines.next().unwrap_or_default();
            let head = std::str::from_utf8(first)
                .ok()
                .filter(|l| l.ends_with('\n'))
                .and_then(|l| parse_record(l.trim_end_matches('\n')));
            match head {
                Some(h) => {
                    check_key(path, key, &h)?;
                    valid = first.len();
                }
                // A header torn by a kill right after creation: start over.
                None if !first.ends_with(b"\n") => dropped += 1,
                None => {
                    return Err(CheckpointError::NotCheckpoint {
                        path: path.to_path_buf(),
                    })
                }
            }
            if valid > 0 {
                for line in lines {
                    let rec = std::str::from_utf8(line)
                        .ok()
                        .filter(|l| l.ends_with('\n'))
                        .and_then(|l| parse_record(l.trim_end_matches('\n')))
                        .and_then(|v| unit_record(&v));
                    match rec {
                        Some((i, rows, ms)) => {
                            known.insert(i, (rows, ms));
                            valid += line.len();
                        }
                        None => {
                            dropped = bytes[valid..].split_inclusive(|&b| b == b'\n').count();
                            break;
                        }
                    }
                }
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(werr)?;
        file.set_len(valid as u64).map_err(werr)?;
        if valid == 0 {
            file.write_all(record(&header).as_bytes()).map_err(werr)?;
        }
        file.sync_data().map_err(werr)?;
        Ok(Checkpoint {
            path: path.to_path_buf(),
            file,
            known,
            dropped,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Units already in the checkpoint.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// The stored values of unit `index`, checked against the unit planned
    /// now; `None` when the checkpoint lacks it.
    pub fn known(
        &self,
        index: usize,
        unit: &WorkUnit,
    ) -> Result<Option<Vec<Metrics>>, CheckpointError> {
        let Some((rows, ms)) = self.known.get(&index) else {
            return Ok(None);
        };
        let planned: Vec<(usize, usize)> = unit.rows.iter().map(|r| (r.run, r.cell)).collect();
        if *rows != planned || ms.len() != planned.len() {
            return Err(CheckpointError::Mismatch {
                path: self.path.clone(),
                unit: index,
            });
        }
        Ok(Some(ms.clone()))
    }

    /// Appends a finished unit: one write, then a sync.
    pub fn append(
        &mut self,
        index: usize,
        unit: &WorkUnit,
        values: &[Metrics],
    ) -> Result<(), CheckpointError> {
        let rows: Vec<(usize, usize)> = unit.rows.iter().map(|r| (r.run, r.cell)).collect();
        let rec = record(&json!({
            "unit": index,
            "rows": rows,
            "values": metrics_hex(values),
        }));
        let werr = |source| CheckpointError::Write {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(rec.as_bytes()).map_err(werr)?;
        self.file.sync_data().map_err(werr)
    }

    /// Deletes the checkpoint (its sweep's output is written).
    pub fn remove(self) -> Result<(), CheckpointError> {
        let path = self.path.clone();
        drop(self.file);
        std::fs::remove_file(&path).map_err(|source| CheckpointError::Write { path, source })
    }
}

/// What a checkpoint holds, read without the model (to offer resuming it).
#[derive(Debug, Clone, PartialEq)]
pub struct Peek {
    /// The sweep's identity (spec, fingerprint, ...) from the header.
    pub key: Value,
    /// Finished units recorded after it (a torn tail not counted).
    pub units: usize,
}

/// Reads the header and counts the finished units of the checkpoint at
/// `path`; `None` when there is none or it is not a checkpoint.
pub fn peek(path: &Path) -> Option<Peek> {
    let bytes = read_capped(path, limits::PARTS, "sweep checkpoint").ok()?;
    let mut lines = bytes.split_inclusive(|&b| b == b'\n').map(|l| {
        std::str::from_utf8(l)
            .ok()
            .and_then(|l| l.strip_suffix('\n'))
            .and_then(parse_record)
    });
    let header = lines.next()??;
    if header.get("patchbench_checkpoint") != Some(&json!(CHECKPOINT_FORMAT)) {
        return None;
    }
    let units = lines
        .map_while(|r| r.as_ref().and_then(unit_record))
        .count();
    Some(Peek {
        key: header.get("key")?.clone(),
        units,
    })
}

/// A stored unit: its `(run, cell)` rows and their values.
type KnownUnit = (Vec<(usize, usize)>, Vec<Metrics>);

/// A unit record's fields: its index and the stored unit.
type UnitRecord = (usize, Vec<(usize, usize)>, Vec<Metrics>);

fn unit_record(v: &Value) -> Option<UnitRecord> {
    let index = v.get("unit")?.as_u64()? as usize;
    let rows: Vec<(usize, usize)> = serde_json::from_value(v.get("rows")?.clone()).ok()?;
    let ms = parse_metrics_hex(v.get("values")?.as_str()?)?;
    (ms.len() == rows.len()).then_some((index, rows, ms))
}

/// Refuses a header of another format or sweep, naming the first field
/// that differs.
fn check_key(path: &Path, key: &Value, header: &Value) -> Result<(), CheckpointError> {
    let foreign = |field: &str, ours: &Value, theirs: &Value| {
        let clip = |v: &Value| crate::util::text::clip(&v.to_string(), 100).into_owned();
        CheckpointError::Foreign {
            path: path.to_path_buf(),
            field: field.to_string(),
            ours: clip(ours),
            theirs: clip(theirs),
        }
    };
    let format = header.get("patchbench_checkpoint").unwrap_or(&Value::Null);
    if *format != json!(CHECKPOINT_FORMAT) {
        return Err(foreign("format", &json!(CHECKPOINT_FORMAT), format));
    }
    let theirs = header.get("key").unwrap_or(&Value::Null);
    if theirs == key {
        return Ok(());
    }
    let null = Value::Null;
    if let (Some(a), Some(b)) = (key.as_object(), theirs.as_object()) {
        for (field, ours) in a {
            let t = b.get(field).unwrap_or(&null);
            if t != ours {
                return Err(foreign(field, ours, t));
            }
        }
    }
    Err(foreign("key", key, theirs))
}
