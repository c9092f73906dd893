//! Run folders of the long commands (docs/RELIABILITY.md, "Run folders"): an unwritable output
//! folder refused before any page is read, the lock of a run folder (a live holder refuses a second
//! process, a stale one is taken over), a decay run killed and resumed equal to an uninterrupted
//! one, SIGINT leaving an `interrupted` manifest and a working resume command, and `report` on
//! unfinished and decay folders.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{assert_ok, scratch};

use occ_eval::lock::{self, LockHolder, LOCK_FILE};
use occ_eval::schema;

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

fn datasets() -> String {
    format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("running compress-bench")
}

fn sweep(out: &Path, extra: &[&str]) -> Output {
    let ds = datasets();
    let mut args = vec![
        "sweep",
        "--datasets",
        &ds,
        "--out",
        out.to_str().unwrap(),
        "--name",
        "rel",
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

const DECAY: [&str; 10] =
    ["--engine", "fake-perfect", "--rounds", "8", "--round-tokens", "60", "--needles", "3", "--schedule", "paper"];

fn decay(out: &Path, run_id: &str, extra: &[&str]) -> Output {
    let ds = datasets();
    let mut args = vec!["decay", "--datasets", &ds, "--out", out.to_str().unwrap(), "--run-id", run_id];
    args.extend_from_slice(&DECAY);
    args.extend_from_slice(extra);
    run(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn only_dir(parent: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(parent).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// A Parquet table of a run without its volatile columns (run id, timings) as CSV text.
fn stable_table(path: &Path) -> String {
    let df = schema::without_volatile(&schema::read_parquet(path).unwrap());
    let tmp = path.with_extension("cmp.csv");
    schema::write_csv(&mut df.clone(), &tmp).unwrap();
    let text = std::fs::read_to_string(&tmp).unwrap();
    std::fs::remove_file(&tmp).unwrap();
    text
}

/// The command printed after "Continue with:" on stderr, split into arguments.
fn printed_resume(o: &Output) -> Vec<String> {
    let err = stderr(o);
    let line = err
        .lines()
        .skip_while(|l| !l.contains("Continue with:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no resume command in {err}"));
    line.split_whitespace().map(str::to_string).collect()
}

/// Runs a printed resume command (its program is the binary under test).
/// The `report` message of a `--json` stream (warnings come before it).
fn report_message(o: &Output) -> serde_json::Value {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|m| m["type"] == "report")
        .expect("a report message")
}

fn run_printed(cmd: &[String]) -> Output {
    assert_eq!(cmd[0], "compress-bench", "{cmd:?}");
    Command::new(BIN).args(&cmd[1..]).output().unwrap()
}

#[test]
fn an_unwritable_output_folder_is_refused_before_any_page_is_read() {
    let out = scratch("rel-unwritable");
    let file = out.join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let bad = file.join("results");
    let o = sweep(&bad, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not writable"), "{}", stderr(&o));
    let o = decay(&bad, "x", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not writable"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("decay run x:"), "refused before the run starts: {}", stderr(&o));
    let config = format!("{}/../../experiments/train/tiny.toml", env!("CARGO_MANIFEST_DIR"));
    let o = run(&["train", "--config", &config, "--out", bad.join("train").to_str().unwrap(), "--steps", "1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("a-file"), "the error names the folder: {}", stderr(&o));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_decay_run_killed_and_resumed_equals_an_uninterrupted_run() {
    let out = scratch("rel-decay-kill");
    let (killed_root, full_root) = (out.join("killed"), out.join("full"));
    let o = decay(&killed_root, "same", &["--crash-after", "3", "--quiet"]);
    assert!(!o.status.success(), "the crash hook aborts the process");
    let dir = killed_root.join("decay/same");
    assert_eq!(manifest(&dir)["status"], "running");
    assert!(dir.join(LOCK_FILE).is_file(), "a killed run leaves its lock behind");
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 3, "every read-back before the kill is journaled");
    // A torn last line (a kill in the middle of a write) is dropped on resume.
    std::fs::write(dir.join("journal.jsonl"), format!("{journal}{{\"round_id\":\"r0")).unwrap();
    let ds = datasets();
    // The manifest records the reader flags; a resume that changes one is refused naming both values.
    assert_eq!(manifest(&dir)["reader_flags"], serde_json::json!(["--engine", "fake-perfect"]));
    let other = run(&["decay", "--datasets", &ds, "--engine", "tesseract", "--resume", dir.to_str().unwrap()]);
    assert!(!other.status.success());
    assert!(
        stderr(&other).contains(r#"--engine: the run started with "fake-perfect", this command gives "tesseract""#),
        "{}",
        stderr(&other)
    );
    // `--resume DIR` alone reads with the recorded engine.
    let resumed = run(&["decay", "--datasets", &ds, "--resume", dir.to_str().unwrap()]);
    assert_ok(&resumed);
    assert!(stderr(&resumed).contains("took over the stale lock"), "{}", stderr(&resumed));
    assert!(!dir.join(LOCK_FILE).exists(), "the lock is released at the end");
    assert_ok(&decay(&full_root, "same", &["--quiet"]));
    let full = full_root.join("decay/same");
    for f in ["decay.parquet", "needles.parquet"] {
        assert_eq!(stable_table(&dir.join(f)), stable_table(&full.join(f)), "{f}");
    }
    let (a, b) = (manifest(&dir), manifest(&full));
    assert_eq!(a["status"], "complete");
    assert_eq!(a["summaries"], b["summaries"]);
    assert_eq!(a["pages_read"], b["pages_read"], "each page read once over both sessions");
    let lines = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap().lines().count();
    let full_lines = std::fs::read_to_string(full.join("journal.jsonl")).unwrap().lines().count();
    assert_eq!(lines, full_lines, "nothing read twice");
    // A complete run is not resumed.
    let again = run(&["decay", "--datasets", &ds, "--engine", "fake-perfect", "--resume", dir.to_str().unwrap()]);
    assert!(stderr(&again).contains("already complete"), "{}", stderr(&again));
    std::fs::remove_dir_all(&out).unwrap();
}

/// A lock held by this test process (alive for as long as the test runs).
fn live_lock(dir: &Path) -> LockHolder {
    let holder = LockHolder {
        pid: std::process::id(),
        host: lock::host_name(),
        started_utc: "2030-01-02T03:04:05Z".into(),
        process_start: lock::process_start(std::process::id()),
        command: "compress-bench sweep (test holder)".into(),
    };
    std::fs::write(dir.join(LOCK_FILE), serde_json::to_string(&holder).unwrap()).unwrap();
    holder
}

#[test]
fn a_second_process_on_a_locked_run_folder_is_refused() {
    let out = scratch("rel-locked");
    let o = sweep(&out, &["--crash-after", "3", "--quiet"]);
    assert!(!o.status.success());
    let dir = only_dir(&out.join("rel"));
    let holder = live_lock(&dir);
    let ds = datasets();
    let o = run(&["sweep", "--datasets", &ds, "--resume", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(&holder.pid.to_string()) && err.contains("2030-01-02T03:04:05Z"), "{err}");
    assert!(err.contains("in use by process"), "{err}");
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 4, "the refused process wrote nothing");

    let o = decay(&out, "locked", &["--crash-after", "2", "--quiet"]);
    assert!(!o.status.success());
    let ddir = out.join("decay/locked");
    live_lock(&ddir);
    let o = run(&["decay", "--datasets", &ds, "--engine", "fake-perfect", "--resume", ddir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("in use by process") && stderr(&o).contains("2030-01-02T03:04:05Z"), "{}", stderr(&o));

    // Once the holder is gone (here: the lock names a process that has exited), it is taken over.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = LockHolder { pid: child.id(), ..holder };
    child.wait().unwrap();
    std::fs::write(dir.join(LOCK_FILE), serde_json::to_string(&dead).unwrap()).unwrap();
    let o = run(&["sweep", "--datasets", &ds, "--resume", dir.to_str().unwrap(), "--no-report"]);
    assert_ok(&o);
    assert!(stderr(&o).contains("took over the stale lock"), "{}", stderr(&o));
    assert_eq!(manifest(&dir)["status"], "complete");
    assert_eq!(manifest(&dir)["n_samples_done"], 8);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn sigint_marks_the_run_interrupted_and_prints_a_working_resume_command() {
    let out = scratch("rel-sigint");
    let o = sweep(&out, &["--interrupt-after", "1"]);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let dir = only_dir(&out.join("rel"));
    let m = manifest(&dir);
    assert_eq!(m["status"], "interrupted");
    let done = m["n_samples_done"].as_u64().unwrap();
    assert!((1..8).contains(&done), "{done} samples at the interrupt");
    assert_eq!(m["sessions"].as_array().unwrap().len(), 1, "the interrupted session is recorded");
    assert!(!dir.join(LOCK_FILE).exists(), "the lock is released");
    // `report` on the interrupted folder states what is missing.
    let r = run(&["report", dir.to_str().unwrap()]);
    assert_ok(&r);
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("Incomplete run") && md.contains(&format!("{done} of 8 planned samples")), "{md}");
    let cmd = printed_resume(&o);
    assert!(cmd.contains(&"--resume".to_string()) && cmd.contains(&"--no-report".to_string()), "{cmd:?}");
    assert!(!cmd.contains(&"--interrupt-after".to_string()), "{cmd:?}");
    assert!(cmd.windows(2).any(|w| w[0] == "--datasets" && w[1] == datasets()), "--datasets is kept: {cmd:?}");
    let resumed = run_printed(&cmd);
    assert_ok(&resumed);
    let m = manifest(&dir);
    assert_eq!((m["status"].as_str(), m["n_samples_done"].as_u64()), (Some("complete"), Some(8)));
    assert_eq!(m["sessions"].as_array().unwrap().len(), 2);
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 8, "nothing lost, nothing duplicated");

    let o = decay(&out, "int", &["--interrupt-after", "2"]);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let ddir = out.join("decay/int");
    assert_eq!(manifest(&ddir)["status"], "interrupted");
    assert_eq!(manifest(&ddir)["reads_journaled"], 2);
    let cmd = printed_resume(&o);
    assert!(cmd.contains(&"--engine".to_string()), "{cmd:?}");
    let resumed = run_printed(&cmd);
    assert_ok(&resumed);
    assert_eq!(manifest(&ddir)["status"], "complete");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn report_works_on_killed_interrupted_and_decay_folders() {
    let out = scratch("rel-report");
    // A killed sweep: no tables yet, the rows come from the journal.
    let o = sweep(&out, &["--crash-after", "3", "--quiet"]);
    assert!(!o.status.success());
    let dir = only_dir(&out.join("rel"));
    let r = run(&["--json", "report", dir.to_str().unwrap()]);
    assert_ok(&r);
    let msg = report_message(&r);
    let missing: Vec<String> =
        msg["data"]["missing"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert!(missing.iter().any(|m| m.contains("samples.parquet")), "{missing:?}");
    assert!(missing.iter().any(|m| m.contains("4 of 8 planned samples")), "{missing:?}");
    assert!(dir.join("report.html").is_file() && dir.join("pages.html").is_file());

    // An interrupted decay run: a report of what it has and what is missing.
    let o = decay(&out, "d", &["--interrupt-after", "2", "--quiet"]);
    assert_eq!(o.status.code(), Some(130));
    let ddir = out.join("decay/d");
    let r = run(&["report", ddir.to_str().unwrap()]);
    assert_ok(&r);
    let md = std::fs::read_to_string(ddir.join("report.md")).unwrap();
    assert!(md.contains("(interrupted)") && md.contains("decay.parquet") && md.contains("--resume"), "{md}");
    // A complete decay run: its plots and report rebuilt from the journal, the same as written.
    let ds = datasets();
    assert_ok(&run(&["decay", "--datasets", &ds, "--engine", "fake-perfect", "--resume", ddir.to_str().unwrap()]));
    let written = std::fs::read_to_string(ddir.join("report.md")).unwrap();
    std::fs::remove_file(ddir.join("report.md")).unwrap();
    let r = run(&["--json", "report", ddir.to_str().unwrap()]);
    assert_ok(&r);
    let msg = report_message(&r);
    assert_eq!(msg["data"]["status"], "complete");
    assert_eq!(msg["data"]["missing"].as_array().map(Vec::len), Some(0));
    assert_eq!(std::fs::read_to_string(ddir.join("report.md")).unwrap(), written);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_damaged_journal_names_its_line_and_the_repair_not_the_failing_command_alone() {
    let out = scratch("rel-damaged");
    let o = sweep(&out, &["--crash-after", "3", "--quiet"]);
    assert!(!o.status.success());
    let dir = only_dir(&out.join("rel"));
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let mut lines: Vec<&str> = journal.lines().collect();
    lines[1] = "{damaged";
    std::fs::write(dir.join("journal.jsonl"), lines.join("\n") + "\n").unwrap();
    let ds = datasets();
    let o = run(&["sweep", "--datasets", &ds, "--resume", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("is damaged; fix or delete the line") && err.contains("line 2"), "{err}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_real_sigint_from_outside_stops_a_tesseract_sweep_that_then_resumes() {
    let out = scratch("rel-kill-int");
    let ds = datasets();
    let child = Command::new(BIN)
        .args(["sweep", "--datasets", &ds, "--out", out.to_str().unwrap(), "--name", "rel", "--engine", "tesseract"])
        .args(["--ratios", "6,8,10,12", "--modes", "tiny,small", "--pages", "2", "--threads", "1", "--no-report"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first journaled sample, then send SIGINT as `kill -INT` would.
    let journaled = |out: &Path| {
        std::fs::read_dir(out.join("rel"))
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.unwrap().path().join("journal.jsonl")).ok())
            .is_some_and(|j| j.lines().count() >= 1)
    };
    let t0 = std::time::Instant::now();
    while !journaled(&out) {
        assert!(t0.elapsed().as_secs() < 120, "no sample journaled in 2 minutes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let dir = only_dir(&out.join("rel"));
    let m = manifest(&dir);
    assert_eq!(m["status"], "interrupted");
    let done = m["n_samples_done"].as_u64().unwrap();
    assert!((1..16).contains(&done), "{done}");
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert!(!journal.contains("engine_error"), "no sample lost to the signal");
    let resumed = run_printed(&printed_resume(&o));
    assert_ok(&resumed);
    let m = manifest(&dir);
    assert_eq!((m["status"].as_str(), m["n_samples_done"].as_u64()), (Some("complete"), Some(16)));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_sweep_resumed_with_datasets_reads_its_corpora_where_they_are_now() {
    let out = scratch("rel-sweep-datasets");
    let (first, moved) = (out.join("ds-first"), out.join("ds-moved"));
    std::fs::create_dir_all(&first).unwrap();
    std::fs::copy(Path::new(&datasets()).join("en.jsonl"), first.join("en.jsonl")).unwrap();
    let mut args: Vec<String> = ["sweep", "--out", out.join("runs").to_str().unwrap(), "--name", "moved"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(
        ["--engine", "fake-perfect", "--ratios", "8,12", "--modes", "tiny,small", "--pages", "4", "--no-report"]
            .map(str::to_string),
    );
    args.extend(["--datasets".to_string(), first.display().to_string(), "--interrupt-after".into(), "1".into()]);
    let o = Command::new(BIN).args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let dir = only_dir(&out.join("runs/moved"));
    std::fs::rename(&first, &moved).unwrap();
    // Without --datasets the run looks where it was started, and says so.
    let o = run(&["sweep", "--resume", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&first.display().to_string()), "{}", stderr(&o));
    // With it, the run continues from the moved corpus (16 samples in batches of 4: stopped after
    // the second batch); the printed command keeps --datasets.
    let o = run(&[
        "sweep",
        "--resume",
        dir.to_str().unwrap(),
        "--datasets",
        moved.to_str().unwrap(),
        "--interrupt-after",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let cmd = printed_resume(&o);
    assert!(cmd.windows(2).any(|w| w[0] == "--datasets" && w[1] == moved.display().to_string()), "{cmd:?}");
    let o = run_printed(&cmd);
    assert_ok(&o);
    let m = manifest(&dir);
    assert_eq!((m["status"].as_str(), m["n_samples_done"].as_u64()), (Some("complete"), Some(16)));
    assert_eq!(m["spec"]["datasets_dir"], first.display().to_string(), "the manifest keeps where the run began");
    std::fs::remove_dir_all(&out).unwrap();
}

/// The Python that reads the Parquet files: `$OCC_PYARROW_PYTHON`, else the virtual environment
/// with pyarrow 14 (the last version without Arrow's string-view type) that `.ci/run` makes, else
/// `python3`.
fn pyarrow_python() -> String {
    std::env::var("OCC_PYARROW_PYTHON").unwrap_or_else(|_| {
        let ci = std::env::var("HOME").map(|h| format!("{h}/.cache/occ-pyarrow14/bin/python")).unwrap_or_default();
        if Path::new(&ci).is_file() {
            ci
        } else {
            "python3".into()
        }
    })
}

#[test]
fn parquet_files_of_sweep_and_decay_runs_are_read_by_pyarrow() {
    let out = scratch("rel-pyarrow");
    assert_ok(&sweep(&out.join("sweep"), &[]));
    assert_ok(&decay(&out.join("decay"), "pa", &[]));
    let sweep_dir = only_dir(&out.join("sweep/rel"));
    let decay_dir = out.join("decay/decay/pa");
    let files: Vec<PathBuf> = ["samples.parquet", "predictions.parquet"]
        .iter()
        .map(|f| sweep_dir.join(f))
        .chain(["decay.parquet", "needles.parquet"].iter().map(|f| decay_dir.join(f)))
        .collect();
    let script = "import sys, pyarrow, pyarrow.parquet as pq\n\
                  print('pyarrow', pyarrow.__version__, file=sys.stderr)\n\
                  for p in sys.argv[1:]:\n    \
                      t = pq.read_table(p)\n    \
                      print(p, t.num_rows, ' '.join(sorted({str(c.type) for c in t.schema})))\n";
    let python = pyarrow_python();
    let o = Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("running {python} (the test needs pyarrow: .ci/run installs pyarrow 14): {e}"));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "pyarrow ({python}) could not read the files (without pyarrow: run .ci/run once, or set \
         OCC_PYARROW_PYTHON to a Python with pyarrow 14):\n{}",
        stderr(&o)
    );
    eprintln!("{}{text}", stderr(&o));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), files.len(), "{text}");
    for (line, file) in lines.iter().zip(&files) {
        let rows = schema::read_parquet(file).unwrap().height();
        assert!(line.starts_with(&format!("{} {rows} ", file.display())), "{line}");
        assert!(line.contains("large_string") && !line.contains("view"), "plain strings only: {line}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_tesseract_decay_run_killed_with_sigkill_from_outside_resumes_to_the_uninterrupted_tables() {
    let out = scratch("rel-decay-sigkill");
    let ds = datasets();
    let decay_args = |root: &Path| -> Vec<String> {
        ["decay", "--datasets", &ds, "--out", root.to_str().unwrap(), "--run-id", "same", "--engine", "tesseract"]
            .iter()
            .chain(&["--rounds", "6", "--round-tokens", "60", "--needles", "2", "--schedule", "paper", "--quiet"])
            .map(|s| s.to_string())
            .collect()
    };
    let (killed_root, full_root) = (out.join("killed"), out.join("full"));
    let mut child = Command::new(BIN)
        .args(decay_args(&killed_root))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first journaled read-back, then `kill -9`.
    let dir = killed_root.join("decay/same");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(dir.join("journal.jsonl")).map_or(0, |j| j.lines().count()) < 1 {
        assert!(t0.elapsed().as_secs() < 120, "no read-back journaled in 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it was killed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    assert_eq!(manifest(&dir)["status"], "running", "killed mid-run");
    let resumed = run(&["decay", "--datasets", &ds, "--engine", "tesseract", "--resume", dir.to_str().unwrap()]);
    assert_ok(&resumed);
    assert!(stderr(&resumed).contains("took over the stale lock"), "{}", stderr(&resumed));
    let full_args = decay_args(&full_root);
    assert_ok(&run(&full_args.iter().map(String::as_str).collect::<Vec<_>>()));
    let full = full_root.join("decay/same");
    for f in ["decay.parquet", "needles.parquet"] {
        assert_eq!(stable_table(&dir.join(f)), stable_table(&full.join(f)), "{f}");
    }
    let (a, b) = (manifest(&dir), manifest(&full));
    assert_eq!(a["status"], "complete");
    assert_eq!((&a["summaries"], &a["pages_read"]), (&b["summaries"], &b["pages_read"]));
    let lines = |d: &Path| std::fs::read_to_string(d.join("journal.jsonl")).unwrap().lines().count();
    assert_eq!(lines(&dir), lines(&full), "nothing read twice");
    std::fs::remove_dir_all(&out).unwrap();
}
