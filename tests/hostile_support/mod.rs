//! Running the `patchbench` binary as a hostile user would, and checking
//! that it fails well.
//!
//! A [`Case`] is one invocation: arguments, the words the message must
//! contain, and the user's files that must survive it. [`run_all`] runs a
//! table of cases and reports every case that went wrong at once (not just
//! the first), so a corpus of hundreds of cases stays readable when a
//! change breaks some of them.
//!
//! Each case runs the built binary (never cargo) through
//! `sh -c 'ulimit -v LIMIT; exec patchbench ARGS <&-'`: an address-space cap
//! (4 GiB unless the case says otherwise) turns an unbounded allocation into
//! a failed one, and stdin is closed, as under CI with no terminal. A child
//! still running after the case's timeout is killed and reported as a hang.
//!
//! What "fails well" means, checked on every case ([`Outcome::Refused`]):
//! - the exit status is non-zero and the process was not killed by a signal
//!   (an abort from a failed allocation, a stack overflow);
//! - neither stdout nor stderr mentions a panic or a backtrace
//!   (`panicked`, `RUST_BACKTRACE`, `stack backtrace`);
//! - neither contains a raw ESC byte (terminal safety: strings from files are
//!   escaped before they are printed) and stderr stays under
//!   [`MAX_STDERR_BYTES`] (a 100k-character prompt is clipped, not echoed);
//! - the output contains every expected word, case-insensitively (the bad
//!   file or value, and a word of the fix);
//! - every listed file, or directory (its regular files and their bytes, and
//!   the names of everything else), is byte-for-byte the same afterwards;
//!   and every path listed as absent still does not exist.
//!
//! Cases that should be accepted ([`Outcome::Succeeds`], e.g. a session with
//! a UTF-8 BOM) get the same checks except that the exit status must be 0.
//!
//! # The corpus
//! Issue 11's classes of hostile input, and where their cases live (run one
//! file with `cargo test --test FILE -- --nocapture` to see its case count):
//! - *data loss*: `hostile_cli.rs` (`--out` naming an input however spelled,
//!   another session, the model file), and `untouched` on every case;
//! - *panics* and *aborts/unbounded memory*: every case (exit by signal,
//!   `panicked`); sizes in `hostile_cli.rs` (bounded arguments) and
//!   `hostile_sessions.rs` (absurd numbers, shapes, zero-length axes);
//!   model files in `hostile_models.rs`;
//! - *hangs*: FIFOs, devices and links to them in `hostile_session_files.rs`
//!   and `hostile_cli.rs`, under the timeout;
//! - *wrong results passed off as right*: stored results off their tokens
//!   or axes (`hostile_sessions.rs`), unknown words (`hostile_cli.rs`);
//! - *terminal safety*: control characters and 100k-character strings in
//!   every kind of session string (`hostile_sessions.rs`), and the raw-ESC
//!   and length checks on every case;
//! - *clear words*: every refusal lists the words it must say; every field
//!   of the example sessions removed or retyped (`hostile_session_fields.rs`),
//!   damaged and misencoded files (`hostile_session_files.rs`), unknown
//!   values (`hostile_cli.rs`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Address-space cap for every case, in KiB (`ulimit -v` units): 4 GiB.
pub const MEMORY_LIMIT_KIB: u64 = 4 << 20;
/// A case still running after this long is a hang. Generous: the machine
/// running the tests may be busy, and a real hang never ends.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest stderr a refusal may print.
pub const MAX_STDERR_BYTES: usize = 16 * 1024;
/// Words that mean a panic or a backtrace reached the user.
pub const FORBIDDEN: [&str; 3] = ["panicked", "RUST_BACKTRACE", "stack backtrace"];

/// The repository root.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_patchbench")
}

/// What the case expects of the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A non-zero exit with a clear message.
    Refused,
    /// Exit 0 (hostile-looking input that is in fact valid).
    Succeeds,
}

/// One invocation of the binary and what must hold afterwards.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub args: Vec<OsString>,
    pub outcome: Outcome,
    /// Words the output (stderr and stdout) must contain, case-insensitively.
    pub expect: Vec<String>,
    /// Files or directories that must be unchanged.
    pub untouched: Vec<PathBuf>,
    /// Paths that must not exist afterwards (an output that must not be created).
    pub absent: Vec<PathBuf>,
    pub timeout: Duration,
    pub memory_kib: u64,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(OsString, OsString)>,
}

impl Case {
    /// A case that must be refused.
    pub fn new<I, S>(name: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Self {
            name: name.into(),
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            outcome: Outcome::Refused,
            expect: vec![],
            untouched: vec![],
            absent: vec![],
            timeout: DEFAULT_TIMEOUT,
            memory_kib: MEMORY_LIMIT_KIB,
            cwd: None,
            env: vec![],
        }
    }

    /// The words the message must contain (the bad file or value, the fix).
    pub fn expect<I, S>(mut self, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.expect.extend(words.into_iter().map(Into::into));
        self
    }

    /// Files or directories that must be byte-for-byte the same afterwards.
    pub fn untouched<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
    {
        self.untouched
            .extend(paths.into_iter().map(|p| p.as_ref().to_path_buf()));
        self
    }

    /// Paths that must not exist afterwards.
    pub fn absent<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
    {
        self.absent
            .extend(paths.into_iter().map(|p| p.as_ref().to_path_buf()));
        self
    }

    /// The case must succeed (exit 0) instead of being refused.
    pub fn succeeds(mut self) -> Self {
        self.outcome = Outcome::Succeeds;
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn memory_kib(mut self, kib: u64) -> Self {
        self.memory_kib = kib;
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }
}

/// What a finished (or killed) run produced.
#[derive(Debug)]
pub struct Run {
    /// `None` when the process was killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub hung: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl Run {
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs the binary for `case` under the memory cap, with stdin closed,
/// killing it at the timeout.
pub fn run(case: &Case) -> Run {
    let script = format!("ulimit -v {} && exec \"$0\" \"$@\" <&-", case.memory_kib);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg(bin())
        .args(&case.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A panic must not be made to look better or worse by the caller's
        // environment: no backtrace unless the program asks for one.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env("NO_COLOR", "1");
    if let Some(dir) = &case.cwd {
        cmd.current_dir(dir);
    }
    for (k, v) in &case.env {
        cmd.env(k, v);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawning sh");
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out_pipe, &mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err_pipe, &mut b);
        b
    });
    let mut hung = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting for the child") {
            break s;
        }
        if start.elapsed() > case.timeout {
            hung = true;
            let _ = child.kill();
            break child.wait().expect("waiting for the killed child");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    #[cfg(unix)]
    let signal = std::os::unix::process::ExitStatusExt::signal(&status);
    #[cfg(not(unix))]
    let signal = None;
    Run {
        code: status.code(),
        signal,
        hung,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
        elapsed,
    }
}

/// The state of a file or directory, for the before/after comparison. A
/// directory records its entries (not recursively); only regular files are
/// read, so a FIFO in a case's directory is never opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshot {
    Missing,
    File(Vec<u8>),
    Dir(BTreeMap<OsString, Snapshot>),
    Other(String),
}

pub fn snapshot(path: &Path) -> Snapshot {
    snapshot_at(path, true)
}

fn snapshot_at(path: &Path, top: bool) -> Snapshot {
    let Ok(meta) = std::fs::metadata(path) else {
        return Snapshot::Missing;
    };
    if meta.is_file() {
        Snapshot::File(std::fs::read(path).unwrap_or_default())
    } else if meta.is_dir() && top {
        let mut entries = BTreeMap::new();
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            entries.insert(e.file_name(), snapshot_at(&e.path(), false));
        }
        Snapshot::Dir(entries)
    } else {
        Snapshot::Other(format!("{:?}", meta.file_type()))
    }
}

fn describe_change(before: &Snapshot, after: &Snapshot) -> String {
    match (before, after) {
        (Snapshot::Dir(a), Snapshot::Dir(b)) => {
            let mut parts = vec![];
            for (k, v) in b {
                match a.get(k) {
                    None => parts.push(format!("{k:?} appeared")),
                    Some(old) if old != v => parts.push(format!("{k:?} changed")),
                    _ => {}
                }
            }
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                parts.push(format!("{k:?} disappeared"));
            }
            parts.join(", ")
        }
        (Snapshot::File(a), Snapshot::File(b)) => {
            format!("{} bytes became {} bytes", a.len(), b.len())
        }
        (a, b) => format!("{} became {}", kind(a), kind(b)),
    }
}

fn kind(s: &Snapshot) -> &'static str {
    match s {
        Snapshot::Missing => "missing",
        Snapshot::File(_) => "a file",
        Snapshot::Dir(_) => "a directory",
        Snapshot::Other(_) => "another kind of entry",
    }
}

/// Runs one case and returns what went wrong (empty when it failed well).
pub fn check(case: &Case) -> Vec<String> {
    let before: Vec<Snapshot> = case.untouched.iter().map(|p| snapshot(p)).collect();
    let r = run(case);
    let mut wrong = vec![];
    if r.hung {
        wrong.push(format!(
            "hung: still running after {:.0} s, killed",
            case.timeout.as_secs_f64()
        ));
    }
    match (case.outcome, r.code, r.signal) {
        (_, _, Some(sig)) if !r.hung => wrong.push(format!(
            "killed by signal {sig} (an abort, e.g. a failed allocation)"
        )),
        (Outcome::Refused, Some(0), _) => {
            wrong.push("exit status 0: the input was accepted".into())
        }
        (Outcome::Succeeds, Some(c), _) if c != 0 => wrong.push(format!("exit status {c}")),
        _ => {}
    }
    let err = r.stderr_text();
    let out = r.stdout_text();
    for (stream, text) in [("stderr", &err), ("stdout", &out)] {
        for word in FORBIDDEN {
            if text.contains(word) {
                wrong.push(format!("{stream} contains {word:?}"));
            }
        }
    }
    for (stream, bytes) in [("stderr", &r.stderr), ("stdout", &r.stdout)] {
        if let Some(at) = bytes.iter().position(|&b| b == 0x1b) {
            wrong.push(format!("{stream} contains a raw ESC byte at offset {at}"));
        }
    }
    if r.stderr.len() > MAX_STDERR_BYTES {
        wrong.push(format!(
            "stderr is {} bytes (cap {MAX_STDERR_BYTES})",
            r.stderr.len()
        ));
    }
    if case.outcome == Outcome::Refused && case.expect.is_empty() {
        wrong.push("the case lists no expected words".into());
    }
    let all = format!("{err}\n{out}").to_lowercase();
    for word in &case.expect {
        if !all.contains(&word.to_lowercase()) {
            wrong.push(format!("the output does not contain {word:?}"));
        }
    }
    for (p, b) in case.untouched.iter().zip(&before) {
        let a = snapshot(p);
        if a != *b {
            wrong.push(format!(
                "{} changed: {}",
                p.display(),
                describe_change(b, &a)
            ));
        }
    }
    for p in &case.absent {
        if std::fs::symlink_metadata(p).is_ok() {
            wrong.push(format!("{} was created", p.display()));
        }
    }
    if !wrong.is_empty() {
        let clip = |s: &str| -> String {
            let s: String = s.chars().take(1500).collect();
            s.escape_debug().to_string()
        };
        wrong.push(format!(
            "  args: {:?}\n  exit: {:?} signal: {:?} in {:.1} s\n  stderr: {}\n  stdout: {}",
            case.args,
            r.code,
            r.signal,
            r.elapsed.as_secs_f64(),
            clip(&err),
            clip(&out)
        ));
    }
    wrong
}

/// Runs every case (two at a time: the machines running the tests are
/// small) and panics with a report of every case that went wrong.
pub fn run_all(cases: Vec<Case>) {
    assert!(!cases.is_empty(), "no cases");
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(
            names.insert(c.name.clone()),
            "duplicate case name {}",
            c.name
        );
    }
    let total = cases.len();
    let queue = Mutex::new(cases.into_iter());
    let failures = Mutex::new(Vec::<(String, Vec<String>)>::new());
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 2);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().next() else {
                    break;
                };
                let wrong = check(&case);
                if !wrong.is_empty() {
                    failures.lock().unwrap().push((case.name.clone(), wrong));
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    if failures.is_empty() {
        // Shown with --nocapture: the size of the corpus.
        eprintln!("{total} hostile cases failed well");
        return;
    }
    failures.sort();
    let mut report = format!("{} of {total} hostile cases went wrong:\n", failures.len());
    for (name, wrong) in failures {
        let _ = writeln!(report, "\n[{name}]");
        for w in wrong {
            let _ = writeln!(report, "  {w}");
        }
    }
    panic!("{report}");
}

/// Makes a FIFO (named pipe) at `path`.
#[cfg(unix)]
pub fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo reads the NUL-terminated path and nothing else.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {path:?}"
    );
}
