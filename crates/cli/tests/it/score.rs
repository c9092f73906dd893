//! `compress-bench score` end to end: the committed fixture under the paper's Fox protocol (files,
//! `--json` stream, report with the paper's points), `--strict`, an unwritable output folder, a
//! line that is not UTF-8, SIGINT while scoring and `--resume`, and 1,000 Fox-sized predictions timed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::util::{assert_ok, scratch};

use occ_eval::corpus::Corpus;
use occ_eval::results;

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");
const FOX: [&str; 6] = ["--bin-tokens", "100", "--min-tokens", "600", "--max-tokens", "1300"];

fn fixture() -> String {
    format!("{}/../eval/tests/fixtures/score/fox-mini.jsonl", env!("CARGO_MANIFEST_DIR"))
}

fn score(input: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["score", input, "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().expect("running compress-bench")
}

fn messages(o: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Run directories under `out/score`.
fn run_dirs(out: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(out.join("score")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn fixture_scores_into_a_sweeps_files_with_a_json_stream() {
    let out = scratch("score-files");
    let o = score(&fixture(), &out, &[&FOX[..], &["--json", "--engine", "fixture-reader"]].concat());
    assert_ok(&o);
    let msgs = messages(&o);
    let types: Vec<&str> = msgs.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"score_start"));
    assert_eq!(types.last(), Some(&"score_summary"));
    assert_eq!(types.iter().filter(|t| **t == "bad_row").count(), 6);
    assert_eq!(msgs[0]["data"]["schema_version"], 1);
    assert_eq!(msgs[0]["data"]["n_lines"], 15);
    let bad_lines: Vec<u64> =
        msgs.iter().filter(|m| m["type"] == "bad_row").map(|m| m["data"]["line"].as_u64().unwrap()).collect();
    assert_eq!(bad_lines, [4, 6, 10, 11, 12, 13]);
    let summary = &msgs.last().unwrap()["data"];
    assert_eq!((summary["n_scored"].as_u64(), summary["n_bad"].as_u64()), (Some(6), Some(6)));
    assert_eq!(summary["n_out_of_range"], 3);
    let tiny_600 = summary["bins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["group"] == "all" && b["mode"] == "tiny" && b["tokens_lo"] == 600)
        .expect("tiny 600–700");
    assert_eq!(tiny_600["n_pages"], 3);
    // (5/6 + 1 + 0) / 3 and (1 + 3/4 + 0) / 3, as in occ-eval's fixture test.
    assert!((tiny_600["fox_precision_out_words"].as_f64().unwrap() - 11.0 / 18.0).abs() < 1e-12);
    assert!((tiny_600["fox_precision_gt_words"].as_f64().unwrap() - 7.0 / 12.0).abs() < 1e-12);

    let dirs = run_dirs(&out);
    assert_eq!(dirs.len(), 1);
    let dir = &dirs[0];
    for f in [
        "samples.parquet",
        "predictions.parquet",
        "summary.csv",
        "bins.csv",
        "score.json",
        "manifest.json",
        "report.md",
        "report.html",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let samples = results::read_samples(dir).unwrap();
    assert_eq!(samples.len(), 6);
    assert!(samples.iter().all(|s| s.engine == "fixture-reader"));
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.starts_with("# Scored predictions: score"), "{report}");
    for needle in ["Headline", "paper tiny (compression)", "Bad rows, left out (6)", "duplicate id (lines 4, 6"] {
        assert!(report.contains(needle), "report.md lacks {needle:?}");
    }
    // The paper's points go on the output-words reading (and character precision), not on fox-gt.
    let plot = |name: &str| std::fs::read_to_string(dir.join("plots").join(name)).unwrap();
    assert!(plot("all_fox_precision_out_words.svg").contains("paper Table 2, tiny"));
    assert!(!plot("all_fox_precision_gt_words.svg").contains("paper Table 2"));
}

#[test]
fn strict_refuses_the_input_and_writes_no_run() {
    let out = scratch("score-strict");
    let o = score(&fixture(), &out, &[&FOX[..], &["--strict"]].concat());
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("strict") && stderr.contains("6 bad row"), "{stderr}");
    assert!(stderr.contains("line 12"), "every bad row is listed: {stderr}");
    assert!(run_dirs(&out).is_empty());
}

#[test]
fn an_unwritable_output_folder_is_refused_before_any_work() {
    let out = scratch("score-unwritable");
    let file = out.join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    // The input does not exist either: the output folder is checked first.
    let o = score("/nonexistent/predictions.jsonl", &file, &[]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("not writable"), "{stderr}");
}

#[test]
fn an_input_without_a_good_row_lists_its_bad_rows_and_fails() {
    let out = scratch("score-empty");
    let input = out.join("p.jsonl");
    std::fs::write(&input, "{\"id\": \"a\", \"truth\": \"\", \"prediction\": \"x\"}\nnot json\n").unwrap();
    let o = score(input.to_str().unwrap(), &out, &[]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("nothing to score") && stderr.contains("line 1") && stderr.contains("line 2"), "{stderr}");
    assert!(run_dirs(&out).is_empty());
}

#[test]
fn a_line_that_is_not_utf8_is_a_bad_row() {
    let out = scratch("score-utf8");
    let input = out.join("p.jsonl");
    let mut bytes = br#"{"id": "a", "truth": "one two", "prediction": "one two", "mode": "tiny"}"#.to_vec();
    bytes.extend_from_slice(b"\n{\"id\": \"b\", \"truth\": \"x\", \"prediction\": \"\xff\"}\n");
    std::fs::write(&input, bytes).unwrap();
    let o = score(input.to_str().unwrap(), &out, &["--json", "--no-report"]);
    assert_ok(&o);
    let msgs = messages(&o);
    let bad: Vec<&serde_json::Value> = msgs.iter().filter(|m| m["type"] == "bad_row").collect();
    assert_eq!(bad.len(), 1);
    assert_eq!((bad[0]["data"]["line"].as_u64(), bad[0]["data"]["kind"].as_str()), (Some(2), Some("not_utf8")));
    assert_eq!(msgs.last().unwrap()["data"]["n_scored"], 1);
    assert!(!run_dirs(&out)[0].join("report.md").exists(), "--no-report");
}

#[test]
fn a_headline_of_fewer_than_five_pages_prints_n_too_small() {
    let out = scratch("score-n-too-small");
    let input = out.join("p.jsonl");
    let mut lines = String::new();
    for (i, mode) in ["tiny", "tiny", "tiny", "tiny", "tiny", "small", "small"].iter().enumerate() {
        let prediction = if i % 2 == 0 { "one two three four" } else { "one two three" };
        let row = serde_json::json!({"id": i, "mode": mode, "truth": "one two three four", "prediction": prediction});
        lines.push_str(&format!("{row}\n"));
    }
    std::fs::write(&input, lines).unwrap();
    let o = score(input.to_str().unwrap(), &out, &["--no-report"]);
    assert_ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let line = |mode: &str| stderr.lines().find(|l| l.contains(&format!("all/{mode}:"))).unwrap_or("").to_string();
    assert!(line("small").contains("100.0% [n too small]") && line("small").contains("2 pages"), "{stderr}");
    let tiny = line("tiny");
    assert!(tiny.contains("% [") && !tiny.contains("n too small") && tiny.contains("5 pages"), "{stderr}");
    assert!(!stderr.contains("NaN"), "{stderr}");
}

/// 1,000 Fox-sized predictions (passages of the en corpus, 420–1,367 tokens, each read in Tiny and
/// Small with words dropped and replaced; text tokens counted by the tokenizer) through the whole
/// command, report included. Prints the wall time (docs/PERFORMANCE.md records it); CI machines
/// differ, so only correctness is asserted.
#[test]
fn thousand_predictions_timed() {
    let out = scratch("score-timed");
    let datasets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
    let en = Corpus::load("en", &datasets).unwrap();
    let mut lines = String::new();
    for i in 0..1000 {
        let passage = &en.passages[(i / 2) % en.passages.len()];
        let prediction: Vec<&str> = passage
            .text
            .split_whitespace()
            .enumerate()
            .filter(|(k, _)| k % 23 != 7)
            .map(|(k, w)| if k % 17 == 3 { "the" } else { w })
            .collect();
        let row = serde_json::json!({
            "id": format!("page-{i}"),
            "mode": if i % 2 == 0 { "tiny" } else { "small" },
            "truth": passage.text,
            "prediction": prediction.join(" "),
        });
        lines.push_str(&row.to_string());
        lines.push('\n');
    }
    let input = out.join("predictions-1000.jsonl");
    std::fs::write(&input, lines).unwrap();
    let t0 = Instant::now();
    let o = score(input.to_str().unwrap(), &out, &[&FOX[..], &["--json"]].concat());
    let wall = t0.elapsed().as_secs_f64();
    assert_ok(&o);
    let summary = messages(&o).pop().unwrap();
    let n_scored = summary["data"]["n_scored"].as_u64().unwrap();
    let n_out = summary["data"]["n_out_of_range"].as_u64().unwrap();
    assert_eq!(n_scored + n_out, 1000);
    let scoring = summary["data"]["wall_time_s"].as_f64().unwrap();
    println!(
        "score: 1000 predictions ({n_scored} in 600..1300 tokens) in {wall:.2} s wall, report included \
         (reading and scoring {scoring:.2} s); input {}",
        input.display()
    );
}

/// `n` predictions, every one read perfectly.
fn perfect_predictions(path: &Path, n: usize) {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let text = format!("page {i}: the quick brown fox jumps over the lazy dog");
            serde_json::json!({"id": format!("p{i}"), "truth": text, "prediction": text}).to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// `n` predictions, most read with a mistake, one in ten bad (an empty truth).
fn mixed_predictions(path: &Path, n: usize) {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let text = format!("page {i}: the quick brown fox jumps over the lazy dog {}", i % 7);
            let truth = if i % 10 == 3 { String::new() } else { text.clone() };
            let prediction = if i % 3 == 0 { text.replace("fox", "box") } else { text };
            serde_json::json!({"id": format!("p{i}"), "truth": truth, "prediction": prediction}).to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The tables of a score run with the run id taken out.
fn tables(dir: &Path) -> (Vec<occ_eval::schema::SampleRow>, String, String, serde_json::Value) {
    let mut samples = results::read_samples(dir).unwrap();
    for s in &mut samples {
        s.run_id.clear();
    }
    let mut record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("score.json")).unwrap()).unwrap();
    record["input"] = serde_json::Value::Null;
    (
        samples,
        std::fs::read_to_string(dir.join("summary.csv")).unwrap(),
        std::fs::read_to_string(dir.join("bins.csv")).unwrap(),
        record,
    )
}

#[test]
fn sigint_journals_the_scored_rows_and_the_printed_command_resumes_to_the_uninterrupted_tables() {
    let out = scratch("score-sigint");
    let input = out.join("preds.jsonl");
    mixed_predictions(&input, 200);
    let whole = out.join("whole");
    assert_ok(&score(input.to_str().unwrap(), &whole, &["--seed", "3", "--no-report"]));
    let root = out.join("runs");
    let o = score(input.to_str().unwrap(), &root, &["--seed", "3", "--interrupt-after", "64"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted with 64 of 200 rows done") && err.contains("is marked interrupted"), "{err}");
    let dirs = run_dirs(&root);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let dir = &dirs[0];
    let m = results::Manifest::load(dir).unwrap();
    assert_eq!((m.status.as_str(), m.n_samples_planned), ("interrupted", 200));
    assert!(!dir.join(occ_eval::lock::LOCK_FILE).exists(), "the lock is released");
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    // The chunk in flight is finished: 64 rows handled, of which the bad ones are not journaled.
    assert_eq!(journal.lines().count(), 64 - 7, "{journal}");
    assert_eq!(m.n_samples_done, 57);
    // The report of the interrupted run names the command that continues it.
    let r = Command::new(BIN).args(["report", dir.to_str().unwrap()]).output().unwrap();
    assert_ok(&r);
    let rerr = String::from_utf8_lossy(&r.stderr);
    assert!(rerr.contains("compress-bench score ") && rerr.contains(&format!("--resume {}`", dir.display())), "{rerr}");
    // A torn line (a crash while appending) is dropped on resume.
    std::fs::write(dir.join("journal.jsonl"), journal.clone() + "{\"sample\": {\"run").unwrap();
    let line = err.lines().skip_while(|l| !l.contains("Continue with:")).nth(1).unwrap_or_else(|| panic!("{err}"));
    let cmd: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cmd[..2], ["compress-bench", "score"], "{cmd:?}");
    assert!(!cmd.contains(&"--interrupt-after"), "{cmd:?}");
    assert!(cmd.windows(2).any(|w| w == ["--seed", "3"]), "{cmd:?}");
    assert!(cmd.windows(2).any(|w| w == ["--resume", dir.to_str().unwrap()]), "{cmd:?}");

    // A second process on the locked folder is refused and writes nothing.
    let holder = occ_eval::lock::LockHolder {
        pid: std::process::id(),
        host: occ_eval::lock::host_name(),
        started_utc: "2030-01-02T03:04:05Z".into(),
        process_start: occ_eval::lock::process_start(std::process::id()),
        command: "compress-bench score (test holder)".into(),
    };
    let lock = dir.join(occ_eval::lock::LOCK_FILE);
    std::fs::write(&lock, serde_json::to_string(&holder).unwrap()).unwrap();
    let refused = Command::new(BIN).args(&cmd[1..]).output().unwrap();
    let rerr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{rerr}");
    assert!(rerr.contains("in use by process") && rerr.contains("2030-01-02T03:04:05Z"), "{rerr}");
    assert_eq!(results::Manifest::load(dir).unwrap().status.as_str(), "interrupted");
    std::fs::remove_file(&lock).unwrap();

    // Another input is refused.
    let other = out.join("other.jsonl");
    mixed_predictions(&other, 199);
    let o = score(other.to_str().unwrap(), &root, &["--seed", "3", "--resume", dir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("another input"), "{}", String::from_utf8_lossy(&o.stderr));

    let again = Command::new(BIN).args(&cmd[1..]).output().unwrap();
    assert_ok(&again);
    assert_eq!(run_dirs(&root).len(), 1);
    let m = results::Manifest::load(dir).unwrap();
    assert_eq!((m.status.as_str(), m.n_samples_done), ("complete", 180));
    assert!(!dir.join(occ_eval::lock::LOCK_FILE).exists(), "the lock is released at the end");
    assert!(dir.join("report.md").is_file());
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 180, "every scored row once");
    let (resumed, uninterrupted) = (tables(dir), tables(&run_dirs(&whole)[0]));
    assert_eq!(resumed.0.len(), uninterrupted.0.len());
    for (a, b) in resumed.0.iter().zip(&uninterrupted.0) {
        // Debug, so that NaN (no vision tokens: no ratio, no truncation baseline) equals NaN.
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "resumed equals uninterrupted");
    }
    assert_eq!((&resumed.1, &resumed.2, &resumed.3), (&uninterrupted.1, &uninterrupted.2, &uninterrupted.3));
    let o = Command::new(BIN).args(&cmd[1..]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("complete"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn sigint_while_the_tables_are_written_skips_the_report_and_prints_the_report_command() {
    let out = scratch("score-sigint-late");
    let input = out.join("preds.jsonl");
    perfect_predictions(&input, 50);
    let root = out.join("runs");
    // The signal comes after the last chunk: the rows are all scored and the tables written.
    let o = score(input.to_str().unwrap(), &root, &["--interrupt-after", "50"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(130), "{err}");
    let dirs = run_dirs(&root);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    assert!(err.contains("interrupted with 50 of 50 rows done") && err.contains("its report is not written"), "{err}");
    let m = results::Manifest::load(&dirs[0]).unwrap();
    assert_eq!((m.status.as_str(), m.n_samples_done), ("complete", 50));
    assert!(!dirs[0].join("report.md").exists() && !dirs[0].join(occ_eval::lock::LOCK_FILE).exists());
    let line = err.lines().skip_while(|l| !l.contains("Continue with:")).nth(1).unwrap_or_else(|| panic!("{err}"));
    let cmd: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cmd, ["compress-bench", "report", dirs[0].to_str().unwrap()]);
    assert_ok(&Command::new(BIN).args(&cmd[1..]).output().unwrap());
    assert!(dirs[0].join("report.md").is_file());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_failed_score_run_is_marked_failed_with_its_error_and_a_resumed_run_keeps_every_session() {
    let out = scratch("score-failed");
    let input = out.join("preds.jsonl");
    mixed_predictions(&input, 200);
    let root = out.join("runs");
    let o = score(input.to_str().unwrap(), &root, &["--seed", "3", "--interrupt-after", "64", "--no-report"]);
    assert_eq!(o.status.code(), Some(130), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = run_dirs(&root).pop().unwrap();
    let first = results::Manifest::load(&dir).unwrap();
    assert_eq!((first.status.as_str(), first.sessions.len(), first.sessions[0].samples), ("interrupted", 1, 57));
    // A failure that is not a signal: samples.parquet cannot be written (a folder of that name).
    std::fs::create_dir(dir.join(results::SAMPLES_FILE)).unwrap();
    let resume =
        || score(input.to_str().unwrap(), &root, &["--seed", "3", "--no-report", "--resume", dir.to_str().unwrap()]);
    let o = resume();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is marked failed; continue it with: compress-bench score"), "{err}");
    let failed = results::Manifest::load(&dir).unwrap();
    assert_eq!(failed.status.as_str(), "failed");
    assert_eq!(failed.error_chain[0], "writing the score run", "outermost first: {:?}", failed.error_chain);
    assert!(failed.error_chain.iter().any(|c| c.contains(results::SAMPLES_FILE)), "{:?}", failed.error_chain);
    assert!(err.contains(&failed.error_chain.join(": ")), "the chain as printed: {err}");
    let samples: Vec<usize> = failed.sessions.iter().map(|s| s.samples).collect();
    assert_eq!(samples, [57, 123], "both sessions, each with the rows it scored");
    assert!(failed.sessions[1].wall_time_s > 0.0 && failed.sessions[1].command.contains(&"--resume".to_string()));
    assert_eq!(failed.created_utc, first.created_utc, "the run keeps its creation time");
    assert!(!dir.join(occ_eval::lock::LOCK_FILE).exists(), "the lock is released");
    // A failed run is resumed like an interrupted one, and its manifest keeps every session. The
    // scoring flags are the run's: another value is refused naming both, none given restores them.
    std::fs::remove_dir(dir.join(results::SAMPLES_FILE)).unwrap();
    let d = dir.to_str().unwrap();
    let o = score(input.to_str().unwrap(), &root, &["--seed", "4", "--mode", "small", "--resume", d]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(r#"--seed: the run started with "3", this command gives "4""#), "{err}");
    assert!(err.contains(r#"--mode: the run started without it, this command gives "small""#), "{err}");
    assert_eq!(results::Manifest::load(&dir).unwrap().sessions.len(), 2, "refused before anything is written");
    assert_ok(&score(input.to_str().unwrap(), &root, &["--no-report", "--resume", d]));
    let m = results::Manifest::load(&dir).unwrap();
    assert_eq!((m.status.as_str(), m.n_samples_done), ("complete", 180));
    assert!(m.error_chain.is_empty(), "a complete run carries no error");
    let samples: Vec<usize> = m.sessions.iter().map(|s| s.samples).collect();
    assert_eq!(samples, [57, 123, 0]);
    assert_eq!(m.sessions[..2], failed.sessions[..], "earlier sessions as recorded");
    assert_eq!(m.wall_time_s, m.sessions.iter().map(|s| s.wall_time_s).sum::<f64>());
    assert_eq!(m.created_utc, first.created_utc);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_score_run_killed_with_sigkill_from_outside_resumes_to_the_uninterrupted_tables() {
    let out = scratch("score-sigkill");
    let datasets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
    let en = Corpus::load("en", &datasets).unwrap();
    // Enough Fox-sized rows that the run is still scoring when its first chunk is journaled.
    let mut lines = String::new();
    for i in 0..3000 {
        let passage = &en.passages[i % en.passages.len()];
        let prediction: Vec<&str> = passage.text.split_whitespace().filter(|w| w.len() % 5 != i % 5).collect();
        let mode = if i % 2 == 0 { "tiny" } else { "small" };
        let row = serde_json::json!({"id": i, "mode": mode, "truth": passage.text, "prediction": prediction.join(" ")});
        lines.push_str(&format!("{row}\n"));
    }
    let input = out.join("preds.jsonl");
    std::fs::write(&input, lines).unwrap();
    let root = out.join("killed");
    let mut child = Command::new(BIN)
        .args(["score", input.to_str().unwrap(), "--out", root.to_str().unwrap(), "--seed", "5", "--no-report"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first journaled chunk, then `kill -9`.
    let t0 = Instant::now();
    let dir = loop {
        if let Some(d) = run_dirs(&root).pop() {
            if std::fs::read_to_string(d.join("journal.jsonl")).map_or(0, |j| j.lines().count()) >= 1 {
                break d;
            }
        }
        assert!(t0.elapsed().as_secs() < 120, "no row journaled in 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it was killed");
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    let killed = results::Manifest::load(&dir).unwrap();
    assert_eq!(killed.status.as_str(), "running", "killed mid-run");
    assert!(dir.join(occ_eval::lock::LOCK_FILE).is_file(), "a killed run leaves its lock behind");
    // Whole lines only: a line torn by the kill is dropped on resume.
    let journaled = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap().matches('\n').count();
    assert!(journaled < 3000, "killed before the end: {journaled} rows journaled");
    let resumed =
        score(input.to_str().unwrap(), &root, &["--seed", "5", "--no-report", "--resume", dir.to_str().unwrap()]);
    assert_ok(&resumed);
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(err.contains("took over the stale lock"), "{err}");
    assert!(!dir.join(occ_eval::lock::LOCK_FILE).exists(), "the lock is released at the end");
    let whole = out.join("whole");
    assert_ok(&score(input.to_str().unwrap(), &whole, &["--seed", "5", "--no-report"]));
    let (a, b) = (tables(&dir), tables(&run_dirs(&whole)[0]));
    assert_eq!(a.0.len(), 3000);
    assert_eq!(format!("{:?}", a.0), format!("{:?}", b.0), "samples: resumed equals uninterrupted");
    assert_eq!((&a.1, &a.2, &a.3), (&b.1, &b.2, &b.3), "summary.csv, bins.csv and score.json");
    for f in [results::SAMPLES_FILE, results::PREDICTIONS_FILE] {
        let read = |d: &Path| {
            let df = occ_eval::schema::read_parquet(&d.join(f)).unwrap();
            let mut df = occ_eval::schema::without_volatile(&df);
            let tmp = d.join(format!("{f}.cmp.csv"));
            occ_eval::schema::write_csv(&mut df, &tmp).unwrap();
            std::fs::read(&tmp).unwrap()
        };
        assert!(read(&dir) == read(&run_dirs(&whole)[0]), "{f}: byte for byte as CSV, run id aside");
    }
    let m = results::Manifest::load(&dir).unwrap();
    assert_eq!(m.status.as_str(), "complete");
    let samples: Vec<usize> = m.sessions.iter().map(|s| s.samples).collect();
    assert_eq!(samples, [journaled, 3000 - journaled], "the killed session is kept with the rows it journaled");
    let lines = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap().lines().count();
    assert_eq!(lines, 3000, "every row journaled once");
    std::fs::remove_dir_all(&out).unwrap();
}
