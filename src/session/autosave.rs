//! Autosave and crash recovery.
//!
//! While a session has unsaved changes the TUI writes it through an
//! [`Autosave`] to `autosave/` in the user data directory, one file per
//! session (named after the session file, or `unsaved-<pid>-<time>` for a
//! session never saved), with the same atomic write as a real save. A
//! successful save or a deliberate discard deletes the autosave, so a file
//! still there on the next start means the last run ended without saving:
//! a crash, a killed terminal, a dropped SSH connection. [`find_autosaves`]
//! lists those so the TUI can offer to restore them.
//!
//! Each autosave starts with a comment naming the session file it belongs
//! to; YAML ignores it, so an autosave is itself a loadable session.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::SessionError;
use super::io::{load, to_yaml, write_atomic, Loaded};
use super::model::Session;

const HEADER: &str = "# patchbench autosave of ";
const UNSAVED: &str = "an unsaved session";

/// The default autosave directory.
pub fn autosave_dir() -> Result<PathBuf, SessionError> {
    Ok(super::dirs::data_dir()?.join("autosave"))
}

/// The autosave slot of one open session.
#[derive(Debug, Clone)]
pub struct Autosave {
    dir: PathBuf,
    file: PathBuf,
    original: Option<PathBuf>,
}

impl Autosave {
    /// The slot for the session saved at `original` (`None`: not saved yet)
    /// in the default autosave directory.
    pub fn new(original: Option<&Path>) -> Result<Self, SessionError> {
        Ok(Self::in_dir(&autosave_dir()?, original))
    }

    pub fn in_dir(dir: &Path, original: Option<&Path>) -> Self {
        let original = original.map(absolute);
        let file = dir.join(file_name(original.as_deref()));
        Self {
            dir: dir.to_path_buf(),
            file,
            original,
        }
    }

    /// Where the autosave is written.
    pub fn path(&self) -> &Path {
        &self.file
    }

    pub fn original(&self) -> Option<&Path> {
        self.original.as_deref()
    }

    /// Writes the autosave (atomically, creating the directory).
    pub fn save(&self, session: &Session) -> Result<(), SessionError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| SessionError::Write {
            path: self.dir.clone(),
            source,
        })?;
        let origin = match &self.original {
            Some(p) => serde_json::to_string(&p.to_string_lossy()).unwrap_or_default(),
            None => UNSAVED.to_string(),
        };
        let text = format!("{HEADER}{origin}\n{}", to_yaml(session));
        write_atomic(&self.file, text.as_bytes())
    }

    /// Deletes the autosave (after a successful save, or when the user
    /// discards changes). Absent is fine.
    pub fn discard(&self) -> Result<(), SessionError> {
        remove(&self.file)
    }

    /// After "save as": the session now lives at `original`; the old slot
    /// is removed.
    pub fn set_original(&mut self, original: &Path) -> Result<(), SessionError> {
        let next = Self::in_dir(&self.dir, Some(original));
        if next.file != self.file {
            self.discard()?;
        }
        *self = next;
        Ok(())
    }
}

fn remove(path: &Path) -> Result<(), SessionError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(SessionError::Write {
            path: path.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

fn file_name(original: Option<&Path>) -> String {
    match original {
        Some(p) => {
            let stem: String = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(40)
                .collect();
            let h = p
                .to_string_lossy()
                .bytes()
                .fold(0xcbf29ce484222325u64, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x100000001b3)
                });
            format!("{stem}-{h:016x}.yaml")
        }
        None => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("unsaved-{}-{nanos}.yaml", std::process::id())
        }
    }
}

/// An autosave left behind by a run that did not save.
#[derive(Debug, Clone)]
pub struct Recovery {
    pub autosave: PathBuf,
    /// The session file it belongs to (`None`: never saved).
    pub original: Option<PathBuf>,
    pub saved_at: Option<SystemTime>,
    /// The autosave is newer than the session file (or that file is gone):
    /// restoring it recovers work.
    pub newer_than_original: bool,
}

impl Recovery {
    pub fn load(&self) -> Result<Loaded, SessionError> {
        load(&self.autosave)
    }

    pub fn discard(&self) -> Result<(), SessionError> {
        remove(&self.autosave)
    }
}

/// Every autosave in `dir`, newest first.
pub fn find_autosaves(dir: &Path) -> Vec<Recovery> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out: Vec<Recovery> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml") && p.is_file())
        .map(recovery)
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.saved_at));
    out
}

/// Every autosave in the default directory (for the TUI's start-up offer
/// to restore); empty when there is no data directory.
pub fn leftover_autosaves() -> Vec<Recovery> {
    autosave_dir()
        .map(|d| find_autosaves(&d))
        .unwrap_or_default()
}

/// The autosave of the session at `original`, if one was left behind.
pub fn find_autosave(dir: &Path, original: &Path) -> Option<Recovery> {
    let slot = Autosave::in_dir(dir, Some(original));
    slot.file.is_file().then(|| recovery(slot.file))
}

fn recovery(autosave: PathBuf) -> Recovery {
    let original = header(&autosave)
        .and_then(|line| {
            let rest = line.strip_prefix(HEADER)?;
            serde_json::from_str::<String>(rest.trim()).ok()
        })
        .map(PathBuf::from);
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let saved_at = mtime(&autosave);
    let newer_than_original = match &original {
        Some(o) => match (mtime(o), saved_at) {
            (Some(orig), Some(auto)) => auto > orig,
            _ => true,
        },
        None => true,
    };
    Recovery {
        autosave,
        original,
        saved_at,
        newer_than_original,
    }
}

/// The first line of a file, read from its first 4 KiB only.
fn header(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(4096)
        .read_to_end(&mut buf)
        .ok()?;
    let line = buf.split(|&b| b == b'\n').next()?;
    Some(String::from_utf8_lossy(line).into_owned())
}
