//! What the long commands say while and before they work (docs/RELIABILITY.md, "Help and
//! messages"): `--dry-run` of sweep and decay, progress lines on a stderr that is not a terminal,
//! and errors that state each cause once, whole under `--json`.

use std::path::Path;
use std::process::{Command, Output};

use crate::util::{assert_ok, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

fn datasets() -> String {
    format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("running compress-bench")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_messages(o: &Output) -> Vec<serde_json::Value> {
    stdout(o).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A sweep of 8 samples (2 modes × 2 ratios × 2 pages) read by the fake engine.
fn sweep(out: &Path, extra: &[&str]) -> Output {
    let ds = datasets();
    let mut args = vec![
        "sweep",
        "--datasets",
        &ds,
        "--out",
        out.to_str().unwrap(),
        "--name",
        "msg",
        "--engine",
        "fake-perfect",
        "--ratios",
        "8,12",
        "--modes",
        "tiny,small",
        "--pages",
        "2",
        "--no-report",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn decay(out: &Path, extra: &[&str]) -> Output {
    let ds = datasets();
    let mut args = vec!["decay", "--datasets", &ds, "--out", out.to_str().unwrap(), "--engine", "fake-perfect"];
    args.extend_from_slice(&["--rounds", "6", "--round-tokens", "60", "--needles", "2", "--schedule", "paper"]);
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn sweep_dry_run_counts_the_samples_and_estimates_from_a_measured_batch_writing_nothing() {
    let out = scratch("msg-sweep-dry");
    let o = sweep(&out, &["--dry-run"]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.contains("sweep msg: 8 samples (4 cells of 2 pages); 0 already journaled, 8 to run"), "{text}");
    assert!(text.contains("estimated time: ") && text.contains("(measured: 4 samples spread over the plan"), "{text}");
    assert!(!out.join("msg").exists(), "a dry run writes no run folder");

    let o = sweep(&out, &["--dry-run", "--json"]);
    assert_ok(&o);
    let msgs = json_messages(&o);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let d = &msgs[0]["data"];
    assert_eq!(msgs[0]["type"], "dry_run");
    assert_eq!((d["command"].as_str(), d["unit"].as_str()), (Some("sweep"), Some("samples")));
    assert_eq!((d["n_total"].as_u64(), d["n_done"].as_u64(), d["n_pending"].as_u64()), (Some(8), Some(0), Some(8)));
    let e = &d["estimate"];
    assert_eq!(e["method"], "measured");
    assert_eq!(e["measured_items"], 4, "one batch of the fake engine");
    let (per, total) = (e["seconds_per_item"].as_f64().unwrap(), e["estimated_s"].as_f64().unwrap());
    assert!(per > 0.0 && (total - 8.0 * per).abs() < 1e-9, "{e}");

    // A resumed run's dry run counts what its journal lacks.
    let o = sweep(&out, &["--interrupt-after", "3", "--quiet"]);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let dir = std::fs::read_dir(out.join("msg")).unwrap().next().unwrap().unwrap().path();
    let done = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap().lines().count() as u64;
    let o = run(&["--json", "sweep", "--datasets", &datasets(), "--resume", dir.to_str().unwrap(), "--dry-run"]);
    assert_ok(&o);
    let msgs = json_messages(&o);
    let d = &msgs[0]["data"];
    assert_eq!((d["n_done"].as_u64(), d["n_pending"].as_u64()), (Some(done), Some(8 - done)), "{d}");
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap().lines().count() as u64;
    assert_eq!(journal, done, "the dry run journaled nothing");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn decay_dry_run_counts_read_backs_and_pages_and_estimates_from_the_engine_writing_nothing() {
    let out = scratch("msg-decay-dry");
    let o = decay(&out, &["--dry-run", "--json"]);
    assert_ok(&o);
    let msgs = json_messages(&o);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let d = &msgs[0]["data"];
    assert_eq!((d["command"].as_str(), d["unit"].as_str()), (Some("decay"), Some("read-backs")));
    let (total, pages) = (d["n_total"].as_u64().unwrap(), d["n_pages"].as_u64().unwrap());
    assert!(total > 0 && total <= 6, "at most one read-back per round and schedule: {d}");
    assert!(pages > 0, "{d}");
    let e = &d["estimate"];
    assert_eq!(e["method"], "measured");
    let measured = e["measured_items"].as_u64().unwrap();
    assert!(measured >= 1 && measured <= pages, "{e}");
    let expected = e["fixed_s"].as_f64().unwrap() + e["seconds_per_item"].as_f64().unwrap() * pages as f64;
    assert!((e["estimated_s"].as_f64().unwrap() - expected).abs() < 1e-9, "{e}");
    assert!(!out.join("decay").exists(), "a dry run writes no run folder");

    // The same run made for real reads as many pages as the dry run counted.
    let o = decay(&out, &["--run-id", "real", "--quiet"]);
    assert_ok(&o);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("decay/real/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["pages_read"].as_u64(), Some(pages), "{m}");
    let o = decay(&out, &["--dry-run"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains(&format!("{total} read-backs (0 already journaled, {total} to make, {pages} pages")),
        "{}",
        stdout(&o)
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_stderr_that_is_not_a_terminal_gets_progress_lines_at_the_interval() {
    let out = scratch("msg-progress");
    // The test's pipes are not terminals: lines, not bars.
    let o = sweep(&out, &["--progress-interval", "0.000001"]);
    assert_ok(&o);
    let lines: Vec<String> = stderr(&o).lines().filter(|l| l.starts_with("progress: ")).map(str::to_string).collect();
    assert_eq!(lines.len(), 8, "one line per sample at a tiny interval: {}", stderr(&o));
    assert!(lines[0].starts_with("progress: sweep 1/8 samples ("), "{lines:?}");
    assert!(lines[3].contains(" elapsed, about ") && lines[3].contains(" left; "), "{lines:?}");
    assert!(lines[7].starts_with("progress: sweep 8/8 samples (100%), "), "{lines:?}");
    // The default interval (30 s) prints none in a run this short; --quiet and 0 print none.
    for extra in [&[][..], &["--progress-interval", "0.000001", "--quiet"], &["--progress-interval", "0"]] {
        let o = sweep(&out, extra);
        assert_ok(&o);
        assert!(!stderr(&o).contains("progress: "), "{extra:?}: {}", stderr(&o));
    }
    // Under --json stdout stays JSON; the lines go to stderr.
    let o = sweep(&out, &["--progress-interval", "0.000001", "--json"]);
    assert_ok(&o);
    assert!(stderr(&o).contains("progress: sweep 8/8 samples"), "{}", stderr(&o));
    assert!(json_messages(&o).iter().all(|m| m["type"].is_string()));
    let o = decay(&out, &["--progress-interval", "0.000001"]);
    assert_ok(&o);
    assert!(stderr(&o).contains("progress: decay 6/6 rounds (100%)"), "{}", stderr(&o));
    let bad = sweep(&out, &["--progress-interval", "-1"]);
    assert_eq!(bad.status.code(), Some(2), "a usage error: {}", stderr(&bad));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn errors_state_each_cause_once_and_json_errors_carry_the_whole_chain() {
    let out = scratch("msg-errors");
    let missing = out.join("no-such-run");
    let o = run(&["sweep", "--resume", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{err}"));
    assert_eq!(line.matches("No such file or directory").count(), 1, "{line}");
    assert_eq!(line.matches("manifest.json").count(), 1, "{line}");
    let o = run(&["--json", "sweep", "--resume", missing.to_str().unwrap()]);
    let msgs = json_messages(&o);
    let e = &msgs.last().unwrap()["data"];
    assert_eq!(msgs.last().unwrap()["type"], "error");
    let message = e["message"].as_str().unwrap();
    assert_eq!(format!("error: {message}"), line, "the message is the whole chain, as on stderr");
    let causes: Vec<&str> = e["causes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(causes.join(": "), message);
    // A context over a cause it does not repeat keeps both, in order.
    let o = run(&["--json", "score", out.join("absent.jsonl").to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let msgs = json_messages(&o);
    let e = &msgs.last().unwrap()["data"];
    let causes: Vec<&str> = e["causes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(causes.len(), 2, "{causes:?}");
    assert!(causes[0].starts_with("reading predictions ") && causes[1].contains("No such file"), "{causes:?}");
    assert!(e["message"].as_str().unwrap().contains("No such file"), "{e}");
    // An image that cannot be opened is named once.
    let png = out.join("absent.png");
    let o = run(&["ocr", "--engine", "tesseract", "--image", png.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{err}"));
    assert_eq!(line.matches(png.to_str().unwrap()).count(), 1, "{line}");
    // A usage error (exit 2) is an `error` message too; --help is not an error.
    let o = run(&["--json", "sweep", "--pages", "many"]);
    assert_eq!(o.status.code(), Some(2));
    let msgs = json_messages(&o);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0]["type"], "error");
    let message = msgs[0]["data"]["message"].as_str().unwrap();
    assert!(message.contains("'many'") && message.contains("--pages"), "{message}");
    assert!(stderr(&o).starts_with("error: invalid value"), "clap's own text stays on stderr: {}", stderr(&o));
    let o = run(&["--json", "sweep", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).starts_with("Compression sweep"), "{}", stdout(&o));
    std::fs::remove_dir_all(&out).unwrap();
}
