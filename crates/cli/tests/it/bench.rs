//! `compress-bench bench` on tiny synthetic weights (CPU): its run folder, journal of finished
//! measurements, lock and status, and SIGINT between configurations.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{assert_ok, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

fn bench(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "bench",
        "--synthetic-weights",
        "tiny",
        "--new-tokens",
        "4",
        "--warmup",
        "0",
        "--encoder-batch",
        "0",
        "--batch",
        "1,2",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().expect("running compress-bench")
}

fn only_dir(root: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root.join("bench")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

fn state(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("bench.json")).unwrap()).unwrap()
}

fn journal(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("bench.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_bench_journals_each_measurement_and_sigint_marks_it_interrupted_with_the_command_to_run_it_again() {
    let out = scratch("bench-run");
    let whole = out.join("whole");
    assert_ok(&bench(&whole, &[]));
    let dir = only_dir(&whole);
    assert_eq!(state(&dir)["status"], "complete");
    let lines = journal(&dir);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!((lines[0]["run"]["batch"].as_u64(), lines[1]["run"]["batch"].as_u64()), (Some(1), Some(2)));
    assert!(!dir.join(occ_eval::lock::LOCK_FILE).exists(), "the lock is released");

    let cut = out.join("cut");
    let o = bench(&cut, &["--interrupt-after", "1"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted with 1 of 2 configurations done"), "{err}");
    let dir = only_dir(&cut);
    assert_eq!((state(&dir)["status"].as_str(), state(&dir)["measured"].as_u64()), (Some("interrupted"), Some(1)));
    let lines = journal(&dir);
    assert_eq!(lines.len(), 1, "the measurement in flight is finished and kept: {lines:?}");
    assert_eq!(lines[0]["run"]["batch"], 1);
    assert!(!dir.join(occ_eval::lock::LOCK_FILE).exists(), "the lock is released");
    let line = err.lines().skip_while(|l| !l.contains("Continue with:")).nth(1).unwrap_or_else(|| panic!("{err}"));
    let cmd: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cmd[..2], ["compress-bench", "bench"], "{cmd:?}");
    assert!(!cmd.contains(&"--interrupt-after"), "{cmd:?}");
    assert_ok(&Command::new(BIN).args(&cmd[1..]).output().unwrap());
    let dirs = std::fs::read_dir(cut.join("bench")).unwrap().count();
    assert_eq!(dirs, 2, "run again, the benchmark measures every configuration in a new run folder");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_failed_bench_is_marked_failed_with_its_error_and_a_resume_or_a_bench_folder_is_refused_with_the_reason() {
    let out = scratch("bench-fail");
    let missing = out.join("no-such-weights");
    let o = Command::new(BIN)
        .args(["bench", "--weights", missing.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    let dir = only_dir(&out);
    let s = state(&dir);
    assert_eq!((s["status"].as_str(), s["measured"].as_u64()), (Some("failed"), Some(0)), "{s}");
    let chain: Vec<&str> = s["error_chain"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(chain[0].contains("no-such-weights"), "the error as printed, outermost first: {chain:?}");
    assert!(err.contains(chain[0]), "{err}");
    assert!(!dir.join(occ_eval::lock::LOCK_FILE).exists(), "the lock is released");

    // No resume: refused with the reason and the command that measures it again (without --resume).
    let o = bench(&out, &["--resume", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("bench has no --resume") && err.contains("measured again"), "{err}");
    let again = err.split("Run it again with: ").nth(1).unwrap_or_else(|| panic!("{err}"));
    assert!(again.contains("compress-bench bench --synthetic-weights tiny") && !again.contains("--resume"), "{err}");
    // A bench run folder given as --out: refused, nothing written into it.
    let o = bench(&dir, &[]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is a bench run folder") && err.contains("not resumed"), "{err}");
    assert!(!dir.join("bench").exists());
    assert_eq!(std::fs::read_dir(out.join("bench")).unwrap().count(), 1, "no run folder was made");
    std::fs::remove_dir_all(&out).unwrap();
}
