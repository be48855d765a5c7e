//! Where a headless command's output goes: stdout, or the file named by
//! `--out`.
//!
//! `--out` is where one typo loses work: `export S.yaml --out S.yaml` used to
//! replace the session with a CSV. So an output path is refused when it is
//! one of the command's inputs (the same file, however it is spelled: the
//! comparison is by device and inode, then by canonical path) or an existing
//! session file, since CSV, JSON, SVG and tables are never sessions. Any other
//! existing file is replaced, atomically (a temporary file renamed over it),
//! so a failed write never leaves it truncated; a device or a pipe
//! (`--out /dev/stdout`) is written in place, never replaced.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};

use patchbench::session::io::{is_session_file, write_atomic};
use patchbench::session::SessionError;

/// Writes `text` to `out`, or to stdout when `out` is `None`. `inputs` are
/// the files the command read (sessions, a model file), which it must not
/// overwrite; `ext` is the extension of the format, for the suggested name.
pub fn write_output(out: Option<&Path>, text: &str, inputs: &[&Path], ext: &str) -> Result<()> {
    let Some(out) = out else {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(text.as_bytes())?;
        return Ok(stdout.flush()?);
    };
    refuse_clobber(out, inputs, ext)?;
    if let Ok(meta) = std::fs::metadata(out) {
        if !meta.is_file() && !meta.is_dir() {
            // A device or a pipe (`--out /dev/stdout`): write to it, never
            // rename a file over it.
            return write_special(out, text);
        }
    }
    if out.is_dir() {
        bail!(
            "--out {} is a directory; give a file path such as --out {}",
            out.display(),
            out.join(format!("sweep.{ext}")).display()
        );
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            bail!(
                "--out {}: the directory {} does not exist; create it first or choose another path",
                out.display(),
                parent.display()
            );
        }
    }
    write_atomic(out, text.as_bytes()).map_err(|e| match e {
        SessionError::Write { source, .. } => {
            anyhow::anyhow!("--out {}: cannot write it: {source}", out.display())
        }
        other => anyhow::Error::new(other).context(format!("writing {}", out.display())),
    })
}

/// Writes to an existing device or FIFO in place. A FIFO is opened without
/// blocking, so one with no reader is an error rather than a hang.
fn write_special(out: &Path, text: &str) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let written = opts
        .open(out)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.flush()));
    written.map_err(|e| anyhow::anyhow!("--out {}: cannot write it: {e}", out.display()))
}

/// Refuses an output path that is an input or an existing session file.
pub fn refuse_clobber(out: &Path, inputs: &[&Path], ext: &str) -> Result<()> {
    if let Some(input) = inputs.iter().find(|i| same_file(out, i)) {
        bail!(
            "--out {} is {}, which this command reads; it would be overwritten. \
             Write to another file, e.g. --out {}",
            out.display(),
            if out == *input {
                "an input".to_string()
            } else {
                format!("the same file as the input {}", input.display())
            },
            suggestion(out, ext).display()
        );
    }
    if is_session_file(out) {
        bail!(
            "--out {} is an existing session file; it would be replaced by this output. \
             Write to another file, e.g. --out {}",
            out.display(),
            suggestion(out, ext).display()
        );
    }
    Ok(())
}

/// Whether `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(ca), Ok(cb)) => ca == cb,
        _ => false,
    }
}

/// A name beside `out` with the format's extension: `S.yaml` -> `S.csv`.
fn suggestion(out: &Path, ext: &str) -> std::path::PathBuf {
    let other = out.with_extension(ext);
    if other != out {
        return other;
    }
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}-export.{ext}"))
}
