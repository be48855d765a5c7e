//! What can go wrong with a session file, worded for the person who has to
//! fix it: every message names the file, the line and column when the YAML
//! parser knows them, the field path otherwise, and what to do.
//!
//! Validation collects [`Problem`]s rather than stopping at the first, so
//! `patchbench check` can list all of them; a load fails on any problem of
//! [`Severity::Error`] and repairs (and reports) those of
//! [`Severity::Warning`], such as a UI cursor pointing past the last sweep.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::util::fs::ReadError;
use crate::util::text::{clip, one_line};

/// The longest file name, field, message or hint shown in one problem.
pub const MAX_PART_CHARS: usize = 1000;

/// Files larger than this are refused before they are read.
pub const MAX_SESSION_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The session cannot be used as written.
    Error,
    /// Repaired on load (UI state clamped); saving writes the repaired value.
    Warning,
}

/// One thing wrong with a session.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub severity: Severity,
    /// 1-based line and column, when the parser knows them.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Field path such as `sweeps[1].spec.target`; empty for the whole file.
    pub field: String,
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Problem {
    pub fn error(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            line: None,
            column: None,
            field: field.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(field, message)
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col: error: field: message` and the hint on the next line,
    /// the shape compilers use so editors can jump to it. Every part may
    /// quote the file (a field name, a prompt), so each is made one line with
    /// control characters escaped and clipped to [`MAX_PART_CHARS`].
    pub fn render(&self, file: &std::path::Path) -> String {
        let part = |s: &str| clip(&one_line(s), MAX_PART_CHARS).into_owned();
        let mut s = part(&file.display().to_string());
        if let Some(l) = self.line {
            s.push_str(&format!(":{l}"));
            if let Some(c) = self.column {
                s.push_str(&format!(":{c}"));
            }
        }
        s.push_str(match self.severity {
            Severity::Error => ": error: ",
            Severity::Warning => ": warning: ",
        });
        if !self.field.is_empty() {
            s.push_str(&part(&self.field));
            s.push_str(": ");
        }
        s.push_str(&part(&self.message));
        if let Some(h) = &self.hint {
            s.push_str("\n  hint: ");
            s.push_str(&part(h));
        }
        s
    }
}

fn render_all(path: &std::path::Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.render(path))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{}: is a directory, not a session file; give the path of a .yaml session inside it", path.display())]
    IsDirectory { path: PathBuf },
    #[error("{}: is {kind}, not a regular file; give the path of a .yaml session file", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error(
        "{}: the file is {} MiB, over the {} MiB limit for a session; this is not a session \
         patchbench wrote (results of even large sweeps take a few MiB) — check the path",
        path.display(), size >> 20, MAX_SESSION_BYTES >> 20
    )]
    TooLarge { path: PathBuf, size: u64 },
    #[error("{}", render_all(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
    /// Any other failure to read the file (missing, unreadable, not UTF-8).
    #[error(transparent)]
    File(#[from] ReadError),
    #[error("{}: cannot write the session: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: already exists; choose another name or confirm overwriting it", path.display())]
    Exists { path: PathBuf },
    #[error("no user data directory could be determined (is $HOME set?); give an explicit path")]
    NoDataDir,
}

impl SessionError {
    /// A failed read of the session at `path`, in the session's own words
    /// where it has them.
    pub fn from_read(e: ReadError, path: &Path) -> Self {
        match e {
            ReadError::NotRegular {
                kind: "a directory",
                ..
            } => SessionError::IsDirectory {
                path: path.to_path_buf(),
            },
            ReadError::NotRegular { kind, .. } => SessionError::NotAFile {
                path: path.to_path_buf(),
                kind,
            },
            ReadError::TooLarge { size, .. } => SessionError::TooLarge {
                path: path.to_path_buf(),
                size,
            },
            e => SessionError::File(e),
        }
    }

    /// The problems behind an `Invalid` error (empty for I/O errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            SessionError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}
