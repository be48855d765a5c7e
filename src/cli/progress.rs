//! The progress line of headless sweeps: cells done and ETA on stderr, only
//! when stderr is a terminal (a log file gets no carriage returns).

use std::io::{IsTerminal, Write};

use patchbench::patching::Progress;

/// A progress line on stderr with cells done and ETA, when stderr is a terminal.
pub struct ProgressLine {
    enabled: bool,
}

impl ProgressLine {
    pub fn new() -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
        }
    }

    pub fn update(&mut self, p: &Progress) {
        if !self.enabled {
            return;
        }
        let width = 30;
        let filled = (width * p.done / p.total.max(1)).min(width);
        let eta = p
            .eta
            .map(|e| format!("{:.1}s", e.as_secs_f64()))
            .unwrap_or_else(|| "?".into());
        eprint!(
            "\r[{}{}] {}/{} cells  {:.1}s elapsed  ETA {eta}   ",
            "#".repeat(filled),
            "-".repeat(width - filled),
            p.done,
            p.total,
            p.elapsed.as_secs_f64()
        );
        let _ = std::io::stderr().flush();
    }

    pub fn finish(&mut self) {
        if self.enabled {
            eprint!("\r{}\r", " ".repeat(80));
        }
    }
}

impl Default for ProgressLine {
    fn default() -> Self {
        Self::new()
    }
}
