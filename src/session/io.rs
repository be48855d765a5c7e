//! All reading and writing of session YAML.
//!
//! Loading is careful before it is clever: the path is checked (a
//! directory, a pipe or a file over [`MAX_SESSION_BYTES`] is refused before
//! a byte is read; `util::fs` does the reading), a UTF-8 byte-order mark is
//! dropped, the text is parsed once into an untyped tree (syntax
//! errors with line and column; serde_yaml's alias-repetition and nesting
//! limits stop a "billion laughs" file in milliseconds), the `version` is
//! checked before anything else (a newer file gets "upgrade patchbench",
//! not a confusing unknown-field error), then the typed parse with
//! `deny_unknown_fields` everywhere, then the semantic checks of
//! `validate.rs`. Loading never writes.
//!
//! Saving goes through [`write_atomic`]: a temporary file in the same
//! directory, written, fsynced, renamed over the target, and the directory
//! fsynced, so at every instant the path holds either the old session or
//! the new one, whole.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde_yaml::Value;

use crate::util::fs as fs_util;

use super::error::{Problem, SessionError, MAX_SESSION_BYTES};
use super::model::{Session, READABLE_VERSIONS, SESSION_VERSION};
use super::{corruption_path, diagnose, emit, validate};

/// A loaded session and the repairs made while loading it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub session: Session,
    /// Warnings: things repaired on load (clamped UI state).
    pub warnings: Vec<Problem>,
}

/// Reads and validates the session at `path`.
pub fn load(path: &Path) -> Result<Loaded, SessionError> {
    let bytes = read_checked(path)?;
    parse_bytes(&bytes, path)
}

/// Reads a file with the checks every session read needs: it exists, is a
/// regular file (opened without blocking, so a FIFO or a device is refused
/// at once), and is not absurdly large (checked before reading, and the read
/// stops at the cap).
pub fn read_checked(path: &Path) -> Result<Vec<u8>, SessionError> {
    fs_util::read_capped(path, MAX_SESSION_BYTES, "session file")
        .map_err(|e| SessionError::from_read(e, path))
}

/// Whether `path` is an existing session file: a YAML mapping with a
/// `version` and a `model` or `prompts`. Never blocks and never reads more
/// than a session may hold; anything unreadable is not a session.
pub fn is_session_file(path: &Path) -> bool {
    let Ok(bytes) = read_checked(path) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(strip_bom(&bytes)) else {
        return false;
    };
    match parse_tree(text) {
        Ok(tree) => {
            tree.get("version").is_some()
                && (tree.get("model").is_some() || tree.get("prompts").is_some())
        }
        Err(_) => false,
    }
}

/// Drops a leading UTF-8 byte-order mark (editors on Windows write one).
pub(crate) fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// Parses session bytes; `origin` names the file in messages.
pub fn parse_bytes(bytes: &[u8], origin: &Path) -> Result<Loaded, SessionError> {
    let invalid = |problems| SessionError::Invalid {
        path: origin.to_path_buf(),
        problems,
    };
    let bytes = strip_bom(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_col(bytes, e.valid_up_to());
        invalid(vec![Problem::error(
            "",
            format!("the file is not UTF-8 text (invalid byte 0x{:02X})", bytes[e.valid_up_to()]),
        )
        .at(line, column)
        .hint("sessions are UTF-8 YAML; re-save the file as UTF-8, or check that this is a session at all")])
    })?;
    parse_str(text, origin)
}

/// Parses session text; `origin` names the file in messages.
pub fn parse_str(text: &str, origin: &Path) -> Result<Loaded, SessionError> {
    let invalid = |problems| SessionError::Invalid {
        path: origin.to_path_buf(),
        problems,
    };
    let tree = parse_tree(text).map_err(|p| invalid(vec![p]))?;
    check_version(&tree).map_err(|p| invalid(vec![p]))?;
    let mut session: Session = serde_yaml::from_str(text).map_err(|e| {
        let mut p = diagnose::from_serde(&e, text, false);
        corruption_path::refine(&mut p, &tree, text);
        invalid(vec![p])
    })?;
    super::upgrade::fill_multi_answer(&mut session);
    let problems = validate::semantics(&mut session);
    let (errors, warnings): (Vec<_>, Vec<_>) = problems.into_iter().partition(|p| p.is_error());
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    Ok(Loaded { session, warnings })
}

/// The untyped parse: syntax, anchors and aliases, a single document.
pub(crate) fn parse_tree(text: &str) -> Result<Value, Problem> {
    if text.trim().is_empty() {
        return Err(Problem::error("", "the file is empty").hint(format!(
            "a session needs at least `version: {SESSION_VERSION}`, `model: {{source: ...}}` and one \
             prompt pair under `prompts:`; see sessions/ for examples"
        )));
    }
    let tree: Value =
        serde_yaml::from_str(text).map_err(|e| diagnose::from_serde(&e, text, true))?;
    if tree.is_null() {
        return Err(Problem::error("", "the file has no YAML content (only comments or blank lines)")
            .hint(format!("a session needs at least `version: {SESSION_VERSION}`, `model: {{source: ...}}` and one prompt pair under `prompts:`")));
    }
    if !matches!(tree, Value::Mapping(_)) {
        return Err(Problem::error(
            "",
            "the top level of a session must be a mapping (`version: ...`, `model: ...`, ...)",
        )
        .hint("this file holds a list or a single value; check that it is a patchbench session"));
    }
    Ok(tree)
}

/// Checks `version` first, so a file from a newer patchbench gets a clear
/// upgrade message rather than an error about its new fields.
pub(crate) fn check_version(tree: &Value) -> Result<(), Problem> {
    let readable = READABLE_VERSIONS
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let field = "version";
    match tree.get("version") {
        None => Err(Problem::error(field, "missing: the file does not say which session format it uses")
            .hint(format!("add `version: {SESSION_VERSION}` as the first line"))),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if v <= u32::MAX as u64 && READABLE_VERSIONS.contains(&(v as u32)) => Ok(()),
            Some(v) if v > SESSION_VERSION as u64 => Err(Problem::error(
                field,
                format!("version {v} was written by a newer patchbench; this build reads version {readable}"),
            )
            .hint("upgrade patchbench to open this session")),
            _ => Err(Problem::error(field, format!("unknown session format version {n}; this build reads version {readable}"))
                .hint(format!("set `version: {SESSION_VERSION}`"))),
        },
        Some(other) => Err(Problem::error(
            field,
            format!("must be a whole number, found {}", short(other)),
        )
        .hint(format!("write `version: {SESSION_VERSION}`"))),
    }
}

fn short(v: &Value) -> String {
    let s = serde_yaml::to_string(v).unwrap_or_default();
    let s = s.trim();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, col)
}

/// The session as YAML in patchbench's layout (see `emit.rs`).
pub fn to_yaml(session: &Session) -> String {
    let plain = || serde_yaml::to_string(session).unwrap_or_default();
    let Ok(tree) = serde_yaml::to_value(session) else {
        return plain();
    };
    let text = emit::to_string(&tree);
    // Trust the custom layout only if it reads back as the same session.
    let same = serde_yaml::from_str::<Session>(&text)
        .ok()
        .and_then(|s| serde_yaml::to_value(&s).ok())
        .is_some_and(|back| back == tree);
    if same {
        text
    } else {
        plain()
    }
}

/// Saves over `path` atomically (see [`write_atomic`]).
pub fn save(session: &Session, path: &Path) -> Result<(), SessionError> {
    write_atomic(path, to_yaml(session).as_bytes())
}

/// Saves under a new name; an existing file is replaced only when
/// `overwrite` (the UI asks first). Missing parent directories are created.
pub fn save_as(session: &Session, path: &Path, overwrite: bool) -> Result<(), SessionError> {
    if !overwrite && fs::symlink_metadata(path).is_ok() {
        return Err(SessionError::Exists {
            path: path.to_path_buf(),
        });
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| SessionError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    }
    save(session, path)
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with `bytes` so that a crash at any moment leaves either
/// the old file or the new one: write a temporary file beside it, fsync it,
/// rename it over `path` (atomic within a directory), fsync the directory so
/// the rename itself survives a power cut. A symlink is followed, so the
/// link stays and its target is replaced; the old file's permissions are
/// kept.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SessionError> {
    let werr = |source| SessionError::Write {
        path: path.to_path_buf(),
        source,
    };
    let target = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path).map_err(werr)?,
        Ok(m) if m.is_dir() => {
            return Err(SessionError::IsDirectory {
                path: path.to_path_buf(),
            })
        }
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .ok_or_else(|| werr(std::io::Error::other("the path has no file name")))?
        .to_string_lossy()
        .into_owned();
    remove_stale_temps(&dir, &name);
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        if let Ok(meta) = fs::metadata(&target) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &target)?;
        sync_dir(&dir);
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(werr)
}

/// Flushes a directory entry change to disk. Best effort: not every
/// platform or file system can open a directory for syncing.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Deletes temporary files of earlier saves of `name` that were killed
/// mid-write. Only old ones: a young one may belong to a save in progress
/// in another process.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let cutoff = SystemTime::now() - Duration::from_secs(600);
    for e in entries.flatten() {
        let stale = e.file_name().to_string_lossy().starts_with(&prefix)
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff);
        if stale {
            let _ = fs::remove_file(e.path());
        }
    }
}
