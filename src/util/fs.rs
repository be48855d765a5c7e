//! Reading user files defensively.
//!
//! Every file patchbench reads comes from a user: a model, a session, a
//! keymap, a theme. A FIFO or a device file named by mistake must not block
//! forever (`open` on a FIFO waits for a writer; `/dev/zero` never ends), and a
//! huge file must not be read whole. So files are opened without blocking,
//! checked to be regular with `fstat` on the open descriptor (no window between
//! the check and the read), and read up to a cap that the caller states.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a user file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: no such file; check the path")]
    NotFound { path: PathBuf },
    #[error("{path}: is {kind}, not a regular file; give the path of a {expected}")]
    NotRegular {
        path: PathBuf,
        kind: &'static str,
        expected: &'static str,
    },
    #[error("{path}: is {kind}, not a directory; give the path of a directory")]
    NotDirectory { path: PathBuf, kind: &'static str },
    #[error("{path}: {size} bytes is more than the {limit} bytes a {what} may have; is this the right file?")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
        what: &'static str,
    },
    #[error("{path}: not UTF-8 text (invalid byte at offset {offset}); save it as UTF-8")]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ReadError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            ReadError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            ReadError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

/// Caps for the kinds of text file patchbench reads. Generous for real files,
/// small enough that a wrong file is refused before it is read.
pub mod limits {
    /// Sessions hold stored results; a 64-layer × 4096-position sweep of six
    /// metrics in YAML is about 30 MB.
    pub const SESSION: u64 = 256 << 20;
    /// Keymaps and themes are a few kilobytes.
    pub const CONFIG: u64 = 1 << 20;
    /// `config.json`, `generation_config.json` and the like.
    pub const MODEL_JSON: u64 = 16 << 20;
    /// `tokenizer.json` with a 262k vocabulary and its merges is ~35 MB.
    pub const TOKENIZER: u64 = 512 << 20;
    /// Weight-index JSON files (`model.safetensors.index.json`).
    pub const INDEX_JSON: u64 = 64 << 20;
    /// Sweep part files and checkpoints: hex metrics, ~100 bytes per cell
    /// and run; a 200-pair sweep of a 32-layer model over 20 positions is
    /// ~13 MB.
    pub const PARTS: u64 = 1 << 30;
    /// Prompt-pair datasets (JSONL or CSV): a million pairs of short prompts.
    pub const DATASET: u64 = 256 << 20;
}

/// What a file system entry is, in words, for messages.
pub fn kind_of(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if ft.is_char_device() {
            return "a character device";
        }
        if ft.is_block_device() {
            return "a block device";
        }
        if ft.is_socket() {
            return "a socket";
        }
    }
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Opens `path` for reading if it is a regular file (following symlinks),
/// without ever blocking on a FIFO or a device. `expected` names what the
/// file should have been ("session file", "GGUF model") for the message.
pub fn open_regular(path: &Path, expected: &'static str) -> Result<File, ReadError> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // O_NONBLOCK: opening a FIFO with no writer returns at once instead
        // of waiting; for regular files the flag has no effect on reads.
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path).map_err(|e| ReadError::io(path, e))?;
    let meta = file.metadata().map_err(|e| ReadError::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(&meta.file_type()),
            expected,
        });
    }
    Ok(file)
}

/// Checks that `path` is a directory (following symlinks).
pub fn require_dir(path: &Path) -> Result<(), ReadError> {
    let meta = std::fs::metadata(path).map_err(|e| ReadError::io(path, e))?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(ReadError::NotDirectory {
            path: path.to_path_buf(),
            kind: kind_of(&meta.file_type()),
        })
    }
}

/// Reads a regular file of at most `limit` bytes. The size is checked before
/// reading and the read itself stops at the cap, so a file that grows while
/// being read cannot exceed it either.
pub fn read_capped(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path, what)?;
    let size = file.metadata().map_err(|e| ReadError::io(path, e))?.len();
    let too_large = |size| ReadError::TooLarge {
        path: path.to_path_buf(),
        size,
        limit,
        what,
    };
    if size > limit {
        return Err(too_large(size));
    }
    let mut buf = Vec::with_capacity(size as usize);
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ReadError::io(path, e))?;
    if buf.len() as u64 > limit {
        return Err(too_large(buf.len() as u64));
    }
    Ok(buf)
}

/// Reads a UTF-8 text file of at most `limit` bytes, dropping a leading
/// UTF-8 byte-order mark (editors on Windows write one).
pub fn read_text_capped(path: &Path, limit: u64, what: &'static str) -> Result<String, ReadError> {
    let bytes = read_capped(path, limit, what)?;
    let bytes = match bytes.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => rest.to_vec(),
        None => bytes,
    };
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8 {
        path: path.to_path_buf(),
        offset: e.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_small_files_and_drops_a_bom() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.yaml");
        std::fs::write(&p, b"\xEF\xBB\xBFversion: 1\n").unwrap();
        assert_eq!(
            read_text_capped(&p, 100, "session").unwrap(),
            "version: 1\n"
        );
    }

    #[test]
    fn refuses_large_files_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b'x'; 1000]).unwrap();
        let e = read_capped(&p, 999, "theme").unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::TooLarge {
                    size: 1000,
                    limit: 999,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn refuses_directories_and_devices() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_capped(dir.path(), 10, "keymap").unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        #[cfg(unix)]
        {
            let e = read_capped(Path::new("/dev/zero"), 10, "theme").unwrap_err();
            assert!(e.to_string().contains("character device"), "{e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_capped(&p, 10, "session").unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
    }

    #[test]
    fn missing_files_say_so() {
        let e = read_capped(Path::new("/nonexistent/x.yaml"), 10, "session").unwrap_err();
        assert!(matches!(e, ReadError::NotFound { .. }), "{e}");
    }
}
