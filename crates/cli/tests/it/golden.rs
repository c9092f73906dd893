//! Output goldens of a fixed small sweep and a fixed small decay run (fake-perfect engine), so that
//! moving code between crates provably leaves what the commands write unchanged.
//!
//! Each run's files are reduced to their stable content and compared with
//! `crates/cli/tests/golden/{sweep,decay}.txt` (refresh with `UPDATE_GOLDEN=1` and review the diff).
//! What is left out, because it differs between two runs of the same command:
//! - Parquet tables: the volatile columns (`occ_eval::schema::VOLATILE_COLUMNS`: run id and wall-clock
//!   timings); the rest is written as CSV text with the git commit (the `git_commit` column) replaced
//!   by a placeholder, each row of `predictions.parquet` (page texts) as its length and hash.
//! - `manifest.json`: `run_id`, `created_utc`, `git_commit`, `host`, `tool_version`, `sessions`,
//!   `wall_time_s` / `wall_s`, `command`; every other field is kept.
//! - Text files (Markdown, HTML, SVG, CSV, the manifest): the run id, run directory, datasets folder,
//!   git commit, host and creation time are replaced by placeholders, and lines naming a wall time or
//!   the command line are dropped; HTML and SVG files (large) are recorded as their length and a 64-bit
//!   FNV-1a hash of that text.
//! - The `--json` stream: values of `run_id`, `run_dir`, `dir`, `git_commit`, `host`, `wall_time_s`,
//!   `ocr_ms`, `load_seconds` and the file paths of `files` become `"<volatile>"`.
//! - `journal.jsonl` (the sweep's rows are `samples.parquet`'s and `predictions.parquet`'s; the decay
//!   run's read-backs are its tables' source). The run folder's lock (`run.lock`) is gone when a run
//!   ends, so it is never listed.
//!
//! Deliberate changes recorded in the goldens: the decay manifest's `"status": "complete"` (decay
//! runs write a `running` manifest first, so that they can be resumed and reported on); the page
//! setting columns of `samples.parquet` (`degradation` … `line_height`) and `summary.csv`
//! (`degradation`, `font_family`, `line_height`), the robustness axes of a sweep; the one manifest
//! shape of every run (`occ_eval::manifest`: `manifest_version` 2 and `kind` in the sweep's manifest,
//! `manifest_version`, `engines` and `wall_time_s` in the decay run's); the decay report written by the
//! sweep report's writer (`occ_report::document`: facts in bold, its lists as tables, chart titles as
//! image names, the needles actually planted); dashed series (the truncation baseline, a decay
//! chart's baselines) drawn dashed in their legends too; the reader flags a run was started with
//! (`reader_flags` in both manifests, restored by `--resume`: none in the sweep's, `--engine fake-perfect`
//! in the decay run's); the `n_prompt_tokens` column of `samples.parquet` (null: the fake engine takes
//! no prompt).
//!
//! The sweep runs in the repository root with `--datasets datasets`, so its spec (recorded with the
//! datasets folder, and hashed into the spec fingerprint) is the same in every checkout.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{assert_ok, scratch};

use occ_eval::schema;

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

fn datasets() -> String {
    format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"))
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.txt"))
}

fn check_golden(name: &str, got: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display()));
    if got != want {
        let first = got.lines().zip(want.lines()).position(|(a, b)| a != b).unwrap_or(0);
        let show = |t: &str| t.lines().skip(first).take(3).collect::<Vec<_>>().join("\n");
        panic!(
            "{} changed at line {}:\n--- golden\n{}\n--- now\n{}\nreview and refresh with UPDATE_GOLDEN=1",
            path.display(),
            first + 1,
            show(&want),
            show(got)
        );
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Values that differ between two runs of one command, with their placeholders.
struct Volatile(Vec<(String, &'static str)>);

impl Volatile {
    fn from_manifest(m: &serde_json::Value, dir: &Path) -> Volatile {
        let mut v = vec![(dir.display().to_string(), "<run_dir>"), (datasets(), "<datasets>")];
        for (key, placeholder) in
            [("run_id", "<run_id>"), ("git_commit", "<git_commit>"), ("host", "<host>"), ("created_utc", "<created>")]
        {
            if let Some(s) = m[key].as_str().filter(|s| !s.is_empty()) {
                v.push((s.to_string(), placeholder));
            }
        }
        // Longest first, so a run id inside the run directory is not replaced before the directory.
        v.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Volatile(v)
    }

    /// `text` with every volatile value replaced by its placeholder.
    fn values(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (value, placeholder) in &self.0 {
            t = t.replace(value.as_str(), placeholder);
        }
        t
    }

    /// [`Volatile::values`], without the lines naming a wall time or the command line.
    fn text(&self, text: &str) -> String {
        self.values(text)
            .lines()
            .filter(|l| {
                let l = l.to_lowercase();
                !(l.contains("wall time") || l.contains("command"))
            })
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

fn table_csv(path: &Path) -> String {
    let df = schema::without_volatile(&schema::read_parquet(path).unwrap());
    let tmp = path.with_extension("golden.csv");
    schema::write_csv(&mut df.clone(), &tmp).unwrap();
    let text = std::fs::read_to_string(&tmp).unwrap();
    std::fs::remove_file(&tmp).unwrap();
    text
}

fn stable_manifest(m: &serde_json::Value) -> String {
    let mut m = m.clone();
    if let Some(o) = m.as_object_mut() {
        for key in [
            "run_id",
            "created_utc",
            "git_commit",
            "host",
            "tool_version",
            "sessions",
            "wall_time_s",
            "wall_s",
            "command",
        ] {
            o.remove(key);
        }
    }
    serde_json::to_string_pretty(&m).unwrap() + "\n"
}

fn mask_json(v: &mut serde_json::Value) {
    const KEYS: [&str; 8] = ["run_id", "run_dir", "dir", "git_commit", "host", "wall_time_s", "ocr_ms", "load_seconds"];
    match v {
        serde_json::Value::Object(o) => {
            for (k, val) in o.iter_mut() {
                if KEYS.contains(&k.as_str()) {
                    *val = serde_json::Value::String("<volatile>".into());
                } else if k == "files" {
                    if let Some(files) = val.as_object_mut() {
                        for f in files.values_mut() {
                            *f = serde_json::Value::String("<volatile>".into());
                        }
                    }
                } else {
                    mask_json(val);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(mask_json),
        _ => {}
    }
}

fn stable_stream(stdout: &[u8]) -> String {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            mask_json(&mut v);
            serde_json::to_string(&v).unwrap() + "\n"
        })
        .collect()
}

/// Every file under `dir` (relative paths, sorted), but the journal.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.retain(|p| p != Path::new("journal.jsonl"));
    out.sort();
    out
}

/// The stable content of a run directory and its `--json` stream, as one text.
fn stable_run(dir: &Path, stdout: &[u8]) -> String {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let volatile = Volatile::from_manifest(&manifest, dir);
    let mut out = String::from("=== --json stream\n");
    out.push_str(&volatile.text(&stable_stream(stdout)));
    for rel in files_under(dir) {
        let path = dir.join(&rel);
        let name = rel.display().to_string();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let body = match ext {
            "parquet" if name == "predictions.parquet" => {
                let csv = table_csv(&path);
                let mut lines = csv.lines();
                let header = lines.next().unwrap_or_default().to_string();
                lines.fold(header + "\n", |acc, l| acc + &format!("{} bytes, fnv1a {:016x}\n", l.len(), fnv1a(l)))
            }
            "parquet" => volatile.values(&table_csv(&path)),
            "json" if name == "manifest.json" => volatile.text(&stable_manifest(&manifest)),
            "html" | "svg" => {
                let text = volatile.text(&std::fs::read_to_string(&path).unwrap());
                format!("{} bytes, fnv1a {:016x}\n", text.len(), fnv1a(&text))
            }
            "png" => {
                let bytes = std::fs::read(&path).unwrap();
                format!("{} bytes\n", bytes.len())
            }
            _ => volatile.text(&std::fs::read_to_string(&path).unwrap()),
        };
        out.push_str(&format!("=== {name}\n{body}"));
    }
    out
}

#[test]
fn fixed_sweep_writes_the_golden_files() {
    let out = scratch("golden-sweep");
    // From the repository root with a relative datasets folder: the spec records the folder, and its
    // fingerprint (in the run id, the manifest and the stream) must not depend on the checkout's path.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new(BIN)
        .current_dir(&root)
        .args(["sweep", "--datasets", "datasets", "--out", out.to_str().unwrap(), "--name", "golden", "--json"])
        .args(["--engine", "fake-perfect", "--corpora", "en,probes", "--modes", "tiny,small"])
        .args(["--ratios", "8,16", "--pages", "2", "--seed", "3"])
        .output()
        .unwrap();
    assert_ok(&o);
    let runs: Vec<PathBuf> = std::fs::read_dir(out.join("golden")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1);
    check_golden("sweep", &stable_run(&runs[0], &o.stdout));
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn fixed_decay_run_writes_the_golden_files() {
    let out = scratch("golden-decay");
    let ds = datasets();
    let o = Command::new(BIN)
        .args(["decay", "--datasets", &ds, "--out", out.to_str().unwrap(), "--run-id", "golden", "--json"])
        .args(["--engine", "fake-perfect", "--rounds", "6", "--round-tokens", "80", "--needles", "3"])
        .args(["--schedule", "paper", "--schedule", "hybrid:k=2,width=1,modes=base/tiny,policy=downsample"])
        .args(["--schedule", "budget:tokens=600", "--seed", "5"])
        .output()
        .unwrap();
    assert_ok(&o);
    check_golden("decay", &stable_run(&out.join("decay/golden"), &o.stdout));
    std::fs::remove_dir_all(&out).unwrap();
}
