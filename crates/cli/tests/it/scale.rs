//! `sweep --workers N`, `--shard-dir`, `--merge-shards` and `--emit-slurm` end to end
//! (docs/SCALE.md): a sweep over worker processes, or over Slurm array tasks, merges into a run
//! equal to a single process's (samples.parquet without the volatile columns, summary.csv); a
//! dead worker is named with its shard and the rerun finishes only what is missing.
//!
//! The `slurm_*` tests need a running Slurm cluster (`scripts/slurm-ci.sh` starts one and runs
//! them with `--ignored`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::util::{assert_ok, scratch};

use occ_eval::results::{self, Manifest};
use occ_eval::schema::{self, SampleRow};

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

fn datasets() -> String {
    format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"))
}

const FAKE_GRID: [&str; 8] =
    ["--engine", "fake-perfect", "--ratios", "8,12,16", "--modes", "tiny,small", "--pages", "2"];
const TESSERACT_GRID: [&str; 8] =
    ["--engine", "tesseract", "--ratios", "6,8,10,12", "--modes", "tiny,small", "--pages", "2"];

fn sweep(out: &Path, extra: &[&str]) -> Output {
    let ds = datasets();
    let mut args = vec!["sweep", "--datasets", &ds, "--out", out.to_str().unwrap(), "--name", "sc"];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().expect("running compress-bench")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The run folders under `out/sc` (the merged or single runs; shards live in `out/sc.shards`).
fn run_dirs(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(out.join("sc")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn only_run(out: &Path) -> PathBuf {
    let dirs = run_dirs(out);
    assert_eq!(dirs.len(), 1, "one run under {}: {dirs:?}", out.display());
    dirs[0].clone()
}

fn stable_rows(dir: &Path) -> Vec<SampleRow> {
    let mut rows = results::read_samples(dir).unwrap();
    for r in &mut rows {
        r.run_id.clear();
        r.git_commit.clear();
        r.render_ms = 0.0;
        r.ocr_ms = 0.0;
        r.preprocess_ms = 0.0;
        r.vision_ms = 0.0;
        r.prefill_ms = 0.0;
        r.decode_ms = 0.0;
    }
    rows
}

/// Two runs hold the same results: samples.parquet cell by cell without the volatile columns (run
/// id, timings), the same rows as `SampleRow`s, and the same summary.csv, byte for byte.
fn assert_same_results(a: &Path, b: &Path) {
    // git_commit too: on a shared checkout HEAD may move between the two runs.
    let read = |d: &Path| {
        let df = schema::without_volatile(&schema::read_parquet(&d.join(results::SAMPLES_FILE)).unwrap());
        df.drop("git_commit").unwrap()
    };
    assert!(read(a).equals_missing(&read(b)), "samples.parquet of {} and {} differ", a.display(), b.display());
    assert_eq!(stable_rows(a), stable_rows(b));
    let summary = |d: &Path| std::fs::read_to_string(d.join(results::SUMMARY_FILE)).unwrap();
    assert_eq!(summary(a), summary(b), "summary.csv of {} and {}", a.display(), b.display());
}

/// Journal lines of a run, and whether each sample index appears once.
fn journal_indices(dir: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let mut v: Vec<u64> = text
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            e["sample"]["sample_index"].as_u64().or_else(|| e["sample_index"].as_u64()).expect("a sample index")
        })
        .collect();
    v.sort_unstable();
    v
}

/// The shard runs under a shard root (`ROOT/sK/<name>/<run_id>`), in shard order.
fn shard_runs(root: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut k = 1;
    while root.join(format!("s{k}")).is_dir() {
        let name_dir = root.join(format!("s{k}/sc"));
        let runs: Vec<PathBuf> = std::fs::read_dir(&name_dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(runs.len(), 1, "one run in {}", name_dir.display());
        v.push(runs[0].clone());
        k += 1;
    }
    v
}

/// The one shard root `out/sc.shards/<fingerprint>-of<N>`.
fn shard_root(out: &Path) -> PathBuf {
    let roots: Vec<PathBuf> = std::fs::read_dir(out.join("sc.shards")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(roots.len(), 1, "{roots:?}");
    roots[0].clone()
}

#[test]
fn two_workers_equal_a_single_process_run_and_a_rerun_adds_nothing() {
    let out = scratch("scale-workers");
    assert_ok(&sweep(&out.join("single"), &[&FAKE_GRID[..], &["--no-report"]].concat()));
    let single = only_run(&out.join("single"));
    let multi_out = out.join("multi");
    let o = sweep(&multi_out, &[&FAKE_GRID[..], &["--workers", "2"]].concat());
    assert_ok(&o);
    let merged = only_run(&multi_out);
    assert_same_results(&merged, &single);
    assert!(merged.join("report.html").is_file(), "the merged run has its report");
    let m = Manifest::load(&merged).unwrap();
    assert_eq!((m.status.as_str(), m.n_samples_done, m.merged_from.len()), ("complete", 12, 2));
    let root = shard_root(&multi_out);
    let shards = shard_runs(&root);
    assert_eq!(shards.len(), 2);
    for (k, s) in shards.iter().enumerate() {
        let sm = Manifest::load(s).unwrap();
        assert_eq!(sm.shard.map(|s| (s.index, s.count)), Some((k as u32 + 1, 2)));
        assert_eq!(journal_indices(s).len(), 6);
    }
    assert_eq!(journal_indices(&merged), (0..12).collect::<Vec<u64>>());
    // The same command again: the sweep is done, nothing runs and no second run is made.
    let again = sweep(&multi_out, &[&FAKE_GRID[..], &["--workers", "2"]].concat());
    assert_ok(&again);
    assert!(String::from_utf8_lossy(&again.stdout).contains("merged into"), "{}", stderr(&again));
    assert_eq!(run_dirs(&multi_out).len(), 1);
    // `--merge-shards` on the same root finds the marker too.
    let merge = Command::new(BIN)
        .args(["sweep", "--merge-shards", root.to_str().unwrap(), "--out", multi_out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ok(&merge);
    assert_eq!(run_dirs(&multi_out).len(), 1);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_dead_worker_is_named_with_its_shard_and_the_rerun_finishes_only_what_is_missing() {
    let out = scratch("scale-dead");
    assert_ok(&sweep(&out.join("single"), &[&FAKE_GRID[..], &["--no-report"]].concat()));
    let single = only_run(&out.join("single"));
    let multi_out = out.join("multi");
    // Every worker aborts (as `kill -9` would) after 2 journaled samples.
    let o = sweep(&multi_out, &[&FAKE_GRID[..], &["--workers", "2", "--crash-after", "2", "--no-report"]].concat());
    assert!(!o.status.success());
    let err = stderr(&o);
    for k in ["shard 1/2", "shard 2/2"] {
        assert!(err.contains(&format!("worker of {k} died")), "{k} named: {err}");
    }
    assert!(err.contains("killed by signal 6"), "the exit status says how it died: {err}");
    assert!(err.contains("Continue with the same command"), "{err}");
    assert!(err.contains("--workers 2"), "the resume command is the command: {err}");
    assert!(err.contains("this shard alone: compress-bench sweep"), "{err}");
    assert!(run_dirs(&multi_out).is_empty(), "no merged run from dead workers");
    let root = shard_root(&multi_out);
    for s in shard_runs(&root) {
        let n = journal_indices(&s).len();
        assert!((2..6).contains(&n), "{n} samples journaled before the crash in {}", s.display());
    }
    // The rerun (without the crash hook) resumes both shards and merges.
    let o = sweep(&multi_out, &[&FAKE_GRID[..], &["--workers", "2", "--no-report"]].concat());
    assert_ok(&o);
    let merged = only_run(&multi_out);
    assert_same_results(&merged, &single);
    for s in shard_runs(&root) {
        let m = Manifest::load(&s).unwrap();
        // A session killed outright records no session of its own: the resume is the one recorded.
        assert_eq!((m.status.as_str(), m.sessions.len()), ("complete", 1), "{}", s.display());
        let idx = journal_indices(&s);
        let mut unique = idx.clone();
        unique.dedup();
        assert_eq!((idx.len(), unique.len()), (6, 6), "nothing duplicated in {}", s.display());
    }
    assert_eq!(journal_indices(&merged), (0..12).collect::<Vec<u64>>());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn two_tesseract_workers_equal_a_single_process_run() {
    let out = scratch("scale-tesseract");
    let grid = ["--engine", "tesseract", "--ratios", "8,14", "--modes", "tiny,small", "--pages", "1", "--no-report"];
    assert_ok(&sweep(&out.join("single"), &[&grid[..], &["--threads", "2"]].concat()));
    let single = only_run(&out.join("single"));
    let o = sweep(&out.join("multi"), &[&grid[..], &["--workers", "2"]].concat());
    assert_ok(&o);
    assert_same_results(&only_run(&out.join("multi")), &single);
    std::fs::remove_dir_all(&out).unwrap();
}

/// Runs `bash script` with `env`, asserting it succeeds.
fn bash(script: &Path, env: &[(&str, &str)]) {
    let o = Command::new("bash").arg(script).envs(env.iter().copied()).output().unwrap();
    assert_ok(&o);
}

#[test]
fn emitted_slurm_scripts_run_as_slurm_would_and_merge_to_the_single_run() {
    let out = scratch("scale-emit");
    assert_ok(&sweep(&out.join("single"), &[&FAKE_GRID[..], &["--no-report"]].concat()));
    let single = only_run(&out.join("single"));
    let job = out.join("job");
    let merged_out = out.join("merged");
    let o = sweep(
        &merged_out,
        &[&FAKE_GRID[..], &["--emit-slurm", job.to_str().unwrap(), "--array", "3", "--partition", "gpu"]].concat(),
    );
    assert_ok(&o);
    assert!(run_dirs(&merged_out).is_empty(), "--emit-slurm runs nothing");
    let array = std::fs::read_to_string(job.join("array.sbatch")).unwrap();
    for line in ["#SBATCH --array=1-3", "#SBATCH --partition=gpu", "--shard \"${SLURM_ARRAY_TASK_ID}/3\""] {
        assert!(array.contains(line), "{line} in:\n{array}");
    }
    let merge = std::fs::read_to_string(job.join("merge.sbatch")).unwrap();
    assert!(merge.contains("--merge-shards"), "{merge}");
    let submit = std::fs::read_to_string(job.join("submit.sh")).unwrap();
    assert!(submit.contains("--dependency=afterok:"), "{submit}");
    for f in ["array.sbatch", "merge.sbatch", "submit.sh"] {
        let o = Command::new("bash").args(["-n", job.join(f).to_str().unwrap()]).output().unwrap();
        assert_ok(&o);
    }
    // Each task as Slurm starts it (the #SBATCH lines are comments to bash); task 2 twice, as a
    // re-submission would: its complete shard exits at once.
    for k in ["1", "2", "2", "3"] {
        bash(&job.join("array.sbatch"), &[("SLURM_ARRAY_TASK_ID", k)]);
    }
    bash(&job.join("merge.sbatch"), &[]);
    let merged = only_run(&merged_out);
    assert_same_results(&merged, &single);
    assert_eq!(journal_indices(&merged), (0..12).collect::<Vec<u64>>());
    assert_eq!(Manifest::load(&merged).unwrap().merged_from.len(), 3);
    // The merge job again (a second submission): nothing new.
    bash(&job.join("merge.sbatch"), &[]);
    assert_eq!(run_dirs(&merged_out).len(), 1);
    std::fs::remove_dir_all(&out).unwrap();
}

// ---------------------------------------------------------------------------------------------
// A real Slurm cluster (scripts/slurm-ci.sh)

/// Output of a Slurm client command, which must succeed.
fn slurm(program: &str, args: &[&str]) -> String {
    let o = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert_ok(&o);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The job ids `submit.sh` recorded (`array ID` / `merge ID` lines), the last of each.
fn submitted(job: &Path) -> (String, String) {
    let text = std::fs::read_to_string(job.join("jobs")).unwrap();
    let last = |kind: &str| {
        text.lines().filter_map(|l| l.strip_prefix(&format!("{kind} "))).next_back().unwrap().trim().to_string()
    };
    (last("array"), last("merge"))
}

/// Waits (at most `limit`) until no job of `ids` is queued or running.
fn wait_gone(ids: &[&str], limit: Duration, job: &Path) {
    let t = Instant::now();
    loop {
        let queued = slurm("squeue", &["-h", "-r", "-j", &ids.join(","), "-o", "%i %T %r"]);
        if queued.trim().is_empty() {
            return;
        }
        if t.elapsed() > limit {
            let logs: Vec<String> = std::fs::read_dir(job.join("logs"))
                .map(|d| {
                    d.map(|e| {
                        let p = e.unwrap().path();
                        format!("--- {}\n{}", p.display(), std::fs::read_to_string(&p).unwrap_or_default())
                    })
                    .collect()
                })
                .unwrap_or_default();
            panic!("jobs still queued after {limit:?}:\n{queued}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The state of a job (`scontrol show job`; finished jobs stay known for MinJobAge).
fn job_state(id: &str) -> String {
    let text = slurm("scontrol", &["show", "job", id]);
    text.split_whitespace().find_map(|w| w.strip_prefix("JobState=")).unwrap_or_default().to_string()
}

/// A single-process Tesseract run of [`TESSERACT_GRID`] to compare the Slurm runs with.
fn tesseract_reference(out: &Path) -> PathBuf {
    assert_ok(&sweep(&out.join("single"), &[&TESSERACT_GRID[..], &["--threads", "1", "--no-report"]].concat()));
    only_run(&out.join("single"))
}

fn emit(job: &Path, merged_out: &Path) {
    let o = sweep(
        merged_out,
        &[
            &TESSERACT_GRID[..],
            &["--threads", "1", "--emit-slurm", job.to_str().unwrap(), "--array", "2", "--time", "10"],
        ]
        .concat(),
    );
    assert_ok(&o);
}

#[test]
#[ignore = "needs a running Slurm (scripts/slurm-ci.sh)"]
fn slurm_array_and_merge_jobs_equal_a_single_process_run() {
    let out = scratch("slurm-ok");
    let single = tesseract_reference(&out);
    let (job, merged_out) = (out.join("job"), out.join("merged"));
    emit(&job, &merged_out);
    let t = Instant::now();
    bash(&job.join("submit.sh"), &[]);
    let (array, merge) = submitted(&job);
    wait_gone(&[&array, &merge], Duration::from_secs(180), &job);
    assert_eq!(job_state(&merge), "COMPLETED", "the merge job ran after the array");
    let merged = only_run(&merged_out);
    assert_same_results(&merged, &single);
    assert_eq!(journal_indices(&merged), (0..16).collect::<Vec<u64>>());
    eprintln!("array + merge on Slurm: {:.1} s", t.elapsed().as_secs_f64());
    // submit.sh again: already merged, nothing submitted.
    let o = Command::new("bash").arg(job.join("submit.sh")).output().unwrap();
    assert_ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("already merged"));
    assert_eq!(submitted(&job), (array, merge));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
#[ignore = "needs a running Slurm (scripts/slurm-ci.sh)"]
fn slurm_a_cancelled_array_task_resubmitted_completes_with_nothing_lost_or_duplicated() {
    let out = scratch("slurm-cancel");
    let single = tesseract_reference(&out);
    let (job, merged_out) = (out.join("job"), out.join("merged"));
    emit(&job, &merged_out);
    bash(&job.join("submit.sh"), &[]);
    let (array, merge) = submitted(&job);
    // Cancel task 2 once its shard has journaled a sample (mid-run: it has 8).
    let journal = job.join("shards/s2");
    let t = Instant::now();
    let journaled =
        || shard_journal(&journal).is_some_and(|p| std::fs::read_to_string(p).unwrap_or_default().lines().count() >= 1);
    while !journaled() {
        assert!(t.elapsed() < Duration::from_secs(120), "task 2 journaled nothing in 2 minutes");
        std::thread::sleep(Duration::from_millis(100));
    }
    slurm("scancel", &[&format!("{array}_2")]);
    wait_gone(&[&array], Duration::from_secs(120), &job);
    let run2 = shard_journal(&journal).unwrap().parent().unwrap().to_path_buf();
    let done = journal_indices(&run2).len();
    assert!((1..8).contains(&done), "task 2 was cancelled mid-run ({done} of 8 samples journaled)");
    assert_ne!(Manifest::load(&run2).unwrap().status.as_str(), "complete");
    assert!(run_dirs(&merged_out).is_empty(), "no merge after a failed array");
    // Submitted again: task 1 finds its shard complete, task 2 resumes, the new merge job runs and
    // the old one (waiting on the failed array) is cancelled.
    bash(&job.join("submit.sh"), &[]);
    let (array2, merge2) = submitted(&job);
    assert_ne!((&array2, &merge2), (&array, &merge));
    wait_gone(&[&array2, &merge2, &merge], Duration::from_secs(180), &job);
    assert_eq!(job_state(&merge2), "COMPLETED");
    let merged = only_run(&merged_out);
    assert_same_results(&merged, &single);
    assert_eq!(journal_indices(&merged), (0..16).collect::<Vec<u64>>(), "nothing lost or duplicated");
    let m2 = Manifest::load(&run2).unwrap();
    assert_eq!((m2.status.as_str(), m2.sessions.len()), ("complete", 2), "shard 2 resumed once");
    let idx = journal_indices(&run2);
    let mut unique = idx.clone();
    unique.dedup();
    assert_eq!((idx.len(), unique.len()), (8, 8), "shard 2's journal: nothing duplicated");
    let log1 = std::fs::read_to_string(job.join("logs/shard-1.log")).unwrap();
    assert!(log1.contains("shard 1/2 is complete"), "task 1 of the second array did nothing: {log1}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// The journal of the run under a shard folder, once it exists.
fn shard_journal(shard_dir: &Path) -> Option<PathBuf> {
    let name = shard_dir.join("sc");
    let run = std::fs::read_dir(&name).ok()?.next()?.ok()?.path();
    let j = run.join("journal.jsonl");
    j.is_file().then_some(j)
}
