//! Where sessions live, and the listing the session browser shows.
//!
//! The default home of sessions is `sessions/` in the user data directory
//! from `directories` (`~/.local/share/patchbench/sessions` on Linux,
//! `~/Library/Application Support/patchbench/sessions` on macOS,
//! `%APPDATA%\patchbench\data\sessions` on Windows); autosaves go to
//! `autosave/` beside it. `PATCHBENCH_DATA_DIR` overrides the data
//! directory (tests, and machines with an odd `$HOME`). The browser also
//! lists the worked examples in the repository's `sessions/`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::error::SessionError;
use super::io::load;

/// patchbench's user data directory.
pub fn data_dir() -> Result<PathBuf, SessionError> {
    if let Some(d) = std::env::var_os("PATCHBENCH_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    directories::ProjectDirs::from("", "", "patchbench")
        .map(|p| p.data_dir().to_path_buf())
        .ok_or(SessionError::NoDataDir)
}

/// The default directory for saved sessions (not created here).
pub fn sessions_dir() -> Result<PathBuf, SessionError> {
    Ok(data_dir()?.join("sessions"))
}

/// The directories the browser lists: the user's sessions, then the
/// examples in `./sessions` and in the source tree this binary was built
/// from, when those exist (duplicates removed).
pub fn default_session_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(d) = sessions_dir() {
        dirs.push(d);
    }
    for d in [
        PathBuf::from("sessions"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions"),
    ] {
        let same = |a: &Path| std::fs::canonicalize(a).ok() == std::fs::canonicalize(&d).ok();
        if d.is_dir() && !dirs.iter().any(|x| same(x)) {
            dirs.push(d);
        }
    }
    dirs
}

/// One row of the session browser.
#[derive(Debug, Clone)]
pub struct SessionListing {
    pub path: PathBuf,
    /// File name without `.yaml`.
    pub name: String,
    pub modified: Option<SystemTime>,
    /// The model source, when the file loads.
    pub model: Option<String>,
    /// The first clean prompt, when the file loads.
    pub first_prompt: Option<String>,
    pub n_sweeps: usize,
    /// Why the file does not load (it is still listed, so the user sees it).
    pub error: Option<String>,
}

/// Every `*.yaml` / `*.yml` file directly in `dirs`, newest first. Missing
/// directories are skipped; files that fail to load are listed with their
/// error.
pub fn list_sessions(dirs: &[PathBuf]) -> Vec<SessionListing> {
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let is_yaml = path.extension().is_some_and(|x| x == "yaml" || x == "yml");
            let hidden = e.file_name().to_string_lossy().starts_with('.');
            if is_yaml && !hidden && !path.is_dir() {
                out.push(listing(path));
            }
        }
    }
    out.sort_by(|a, b| b.modified.cmp(&a.modified).then(a.path.cmp(&b.path)));
    out
}

fn listing(path: PathBuf) -> SessionListing {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let mut row = SessionListing {
        path,
        name,
        modified,
        model: None,
        first_prompt: None,
        n_sweeps: 0,
        error: None,
    };
    match load(&row.path) {
        Ok(l) => {
            row.model = Some(l.session.model.source.clone());
            row.first_prompt = l.session.prompts.first().map(|p| p.clean.clone());
            row.n_sweeps = l.session.sweeps.len();
        }
        Err(e) => row.error = Some(e.to_string()),
    }
    row
}

/// A session's model source as the loader should see it: a relative path
/// that does not exist from the working directory but does from the
/// session file's directory is taken relative to the session file, so a
/// session and a model directory shipped side by side work from anywhere.
/// Everything else (hub ids, `demo`, `~/...`, absolute paths) is unchanged.
pub fn resolve_model_source(source: &str, session_file: &Path) -> String {
    let p = Path::new(source);
    if source.starts_with('~') || !p.is_relative() || p.exists() {
        return source.to_string();
    }
    match session_file.parent() {
        Some(dir) if dir.join(p).exists() => dir.join(p).to_string_lossy().into_owned(),
        _ => source.to_string(),
    }
}
