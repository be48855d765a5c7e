//! Key-to-frame latency samples, written when `PATCHBENCH_LATENCY_LOG` names
//! a file: one line per key (`ms running`), then a summary line.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct LatencyLog {
    path: Option<PathBuf>,
    samples: Vec<(f64, bool)>,
}

impl LatencyLog {
    pub fn from_env() -> Self {
        LatencyLog {
            path: std::env::var_os("PATCHBENCH_LATENCY_LOG").map(PathBuf::from),
            samples: vec![],
        }
    }

    /// One key: time from reading it to the end of the frame showing it.
    pub fn record(&mut self, d: Duration, sweep_running: bool) {
        if self.path.is_some() {
            self.samples.push((d.as_secs_f64() * 1e3, sweep_running));
        }
    }

    /// `(count, median, p95, max)` in ms over the samples matching `running`.
    pub fn summary(&self, running: bool) -> Option<(usize, f64, f64, f64)> {
        let mut v: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.1 == running)
            .map(|s| s.0)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Some((v.len(), at(0.5), at(0.95), v[v.len() - 1]))
    }

    pub fn write(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut f = std::fs::File::create(path)?;
        for (ms, running) in &self.samples {
            writeln!(
                f,
                "key {ms:.3} {}",
                if *running { "running" } else { "idle" }
            )?;
        }
        for running in [true, false] {
            if let Some((n, p50, p95, max)) = self.summary(running) {
                let what = if running { "running" } else { "idle" };
                writeln!(
                    f,
                    "summary {what} n={n} p50={p50:.3}ms p95={p95:.3}ms max={max:.3}ms"
                )?;
            }
        }
        Ok(())
    }
}
