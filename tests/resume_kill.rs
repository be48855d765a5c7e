//! Resumable sweeps: a sweep with `--out` keeps a checkpoint beside its
//! output; killed with SIGKILL at random moments twenty times and rerun each
//! time, it finishes with the result of an uninterrupted run, bit for bit.
//! A checkpoint of another sweep is refused, a torn last record dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Every head component of the demo model over 8 noise samples: about a
/// hundred small batches, so there is nearly always one in flight to kill.
fn args(out: &Path, seed: &str) -> Vec<String> {
    [
        "sweep",
        "--model",
        "demo",
        "--device",
        "cpu",
        "--target",
        "heads_every",
        "--clean",
        "when mary and john went to the store , john gave a drink to",
        "--corrupted",
        "when mary and john went to the store , mary gave a drink to",
        "--answer",
        "mary",
        "--wrong",
        "john",
        "--corruption",
        "gaussian",
        "--samples",
        "8",
        "--seed",
        seed,
        "--out",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(args)
        .output()
        .unwrap()
}

fn without_timing(text: &str) -> Value {
    let mut v: Value = serde_json::from_str(text).unwrap();
    v.as_object_mut().unwrap().remove("timing");
    v
}

/// Valid records in a checkpoint (header included), 0 when there is none.
fn records(ckpt: &Path) -> usize {
    std::fs::File::open(ckpt)
        .map(|f| BufReader::new(f).split(b'\n').filter(|l| l.is_ok()).count())
        .unwrap_or(0)
}

#[test]
fn killed_twenty_times_then_resumed_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.json");
    let out = run(&args(&reference, "3"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = without_timing(&std::fs::read_to_string(&reference).unwrap());

    let target = dir.path().join("resumed.json");
    let ckpt = dir.path().join("resumed.json.ckpt");
    let seed: u64 = rand::rng().random();
    println!("kill moments drawn with seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kills = 0;
    let mut progress = vec![];
    let mut finished_early = 0;
    while kills < 20 {
        let before = records(&ckpt);
        let mut child = Command::new(env!("CARGO_BIN_EXE_patchbench"))
            .args(args(&target, "3"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill after a random number of new records plus a random delay,
        // so kills land before the first batch, between batches and
        // during writes alike.
        // The last kill waits for at least one finished batch, so the
        // final run below always has something to resume (with shared
        // batches a sweep is only a few units, and a kill right after a
        // restart would otherwise leave an empty checkpoint).
        let least = if kills == 19 { 2 } else { 0 };
        let wait_for = (before + rng.random_range(0..3)).max(least);
        let deadline = Instant::now() + Duration::from_secs(60);
        while records(&ckpt) < wait_for && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_micros(rng.random_range(0..5_000)));
        if child.try_wait().unwrap().is_some() {
            // It finished first (a fast machine): start over, so the kills
            // still land mid-sweep.
            finished_early += 1;
            std::fs::remove_file(&target).unwrap();
            continue;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        progress.push(records(&ckpt));
    }
    println!("checkpoint records after each kill: {progress:?}; {finished_early} runs finished before their kill");
    // A kill can land after the output was written and before the
    // checkpoint was removed (the sweep's last two steps): the output is
    // then complete, and the rerun below must still reproduce it.
    if target.exists() && ckpt.exists() {
        std::fs::remove_file(&target).unwrap();
    }
    assert!(!target.exists(), "no output before the sweep completes");
    let out = run(&args(&target, "3"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("resumed:"),
        "the last run resumed: {stderr}"
    );
    assert!(!ckpt.exists(), "the checkpoint is removed at the end");
    let resumed = without_timing(&std::fs::read_to_string(&target).unwrap());
    assert!(
        resumed == reference,
        "the resumed result differs from the uninterrupted run"
    );
}

#[test]
fn a_checkpoint_of_another_sweep_is_refused_and_a_torn_record_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("r.json");
    let ckpt = dir.path().join("r.json.ckpt");
    // Leave a checkpoint behind: kill once some batches are in it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_patchbench"))
        .args(args(&target, "5"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while records(&ckpt) < 4 && Instant::now() < deadline {
        assert!(child.try_wait().unwrap().is_none(), "finished too soon");
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // Another seed is another sweep: refused, naming the field.
    let out = run(&args(&target, "6"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("belongs to another sweep") && err.contains("its spec differs"),
        "{err}"
    );

    // A torn last record (half a line, as a kill mid-write leaves it).
    let mut text = std::fs::read_to_string(&ckpt).unwrap();
    text.truncate(text.trim_end().len());
    let cut = text.rfind('\n').unwrap() + 1 + (text.len() - text.rfind('\n').unwrap()) / 2;
    text.truncate(cut);
    std::fs::write(&ckpt, &text).unwrap();
    let out = run(&args(&target, "5"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 damaged records dropped"), "{err}");
    let reference = dir.path().join("ref.json");
    assert!(run(&args(&reference, "5")).status.success());
    assert_eq!(
        without_timing(&std::fs::read_to_string(&target).unwrap()),
        without_timing(&std::fs::read_to_string(&reference).unwrap())
    );
}
