//! `compress-bench sweep --baseline ENGINE`: the same pages read by a second engine into a run of
//! its own inside the main run (`baseline-<engine>/`), compared with it (`compare/`), summarised in
//! the main report; resume, dry run and the refusals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{assert_ok, scratch};

use occ_eval::results::{self, Manifest};
use occ_eval::schema::{self, PredictionRow, Table};

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

fn datasets() -> String {
    format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"))
}

fn sweep(out: &Path, extra: &[&str]) -> Output {
    let ds = datasets();
    let mut args = vec!["sweep", "--datasets", &ds, "--out", out.to_str().unwrap(), "--name", "base"];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().expect("running compress-bench")
}

fn resume(dir: &Path, extra: &[&str]) -> Output {
    let ds = datasets();
    let mut args = vec!["sweep", "--datasets", &ds, "--resume", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().expect("running compress-bench")
}

/// Four Tiny pages (two ratios × two pages), Tesseract one page at a time.
const GRID: [&str; 8] = ["--modes", "tiny", "--ratios", "8,12", "--pages", "2", "--threads", "1"];

fn main_dir(out: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(out.join("base")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

/// (sample id, target ratio) → ground truth of every page of a run.
fn pages(dir: &Path) -> BTreeMap<(String, String), String> {
    let samples = results::read_samples(dir).unwrap();
    let frame = schema::read_parquet(&dir.join(results::PREDICTIONS_FILE)).unwrap();
    let truths: BTreeMap<String, String> = PredictionRow::from_frame(&frame)
        .unwrap()
        .into_iter()
        .map(|p| (p.sample_id.clone(), p.ground_truth.clone()))
        .collect();
    samples
        .iter()
        .map(|s| ((s.sample_id.clone(), format!("{}", s.target_ratio)), truths[&s.sample_id].clone()))
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn a_tesseract_baseline_reads_the_same_pages_and_is_compared_and_reported() {
    let out = scratch("baseline-run");
    let o = sweep(&out, &[&["--engine", "fake-perfect", "--baseline", "tesseract", "--json"][..], &GRID].concat());
    assert_ok(&o);
    let dir = main_dir(&out);
    let bdir = dir.join("baseline-tesseract");
    let m = Manifest::load(&dir).unwrap();
    let bm = Manifest::load(&bdir).unwrap();
    assert_eq!((m.status.as_str(), m.n_samples_done), ("complete", 4));
    assert_eq!((bm.status.as_str(), bm.n_samples_done), ("complete", 4));
    assert_eq!(m.spec.baseline, Some(occ_eval::EngineKind::Tesseract));
    assert_eq!((bm.spec.engine, bm.spec.baseline), (occ_eval::EngineKind::Tesseract, None));
    assert_eq!(bm.engines[0].name, "tesseract");
    // Exactly the same pages: the same ids, ratios and ground truths.
    let (mine, theirs) = (pages(&dir), pages(&bdir));
    assert_eq!(mine.len(), 4);
    assert_eq!(mine, theirs);
    // The comparison pairs every page, the baseline first.
    let cmp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("compare/compare.json")).unwrap()).unwrap();
    let runs = cmp["runs"].as_array().unwrap();
    assert_eq!((runs[0]["label"].as_str(), runs[1]["label"].as_str()), (Some("tesseract"), Some("fake-perfect")));
    let p = &cmp["pairings"][0];
    assert_eq!((p["n_paired"].as_u64(), p["n_page_differs"].as_u64()), (Some(4), Some(0)), "{p}");
    assert_eq!((p["n_baseline_only"].as_u64(), p["n_other_only"].as_u64()), (Some(0), Some(0)));
    for f in ["compare.md", "compare.html", "paired.csv"] {
        assert!(dir.join("compare").join(f).is_file(), "{f}");
    }
    // The main report says which engine read which pages, links both, and puts the means side by side.
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("## Baseline"), "{md}");
    assert!(md.contains("fake-perfect (this run, 4 samples) and the baseline tesseract (4 samples"), "{md}");
    assert!(md.contains("[compare/compare.html](compare/compare.html)"));
    assert!(md.contains("[baseline-tesseract/report.html](baseline-tesseract/report.html)"));
    assert!(md.contains("| corpus | mode | ratio | pages | fake-perfect (this run) | tesseract (baseline) |"), "{md}");
    assert!(md.contains("| en | tiny | 8 | 2 / 2 | 1.000 |"), "{md}");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("href=\"compare/compare.html\""));
    assert!(bdir.join("report.html").is_file());
    // --json: the main run's samples only, then the baseline, then the main summary with both paths.
    let msgs: Vec<serde_json::Value> =
        String::from_utf8(o.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let types: Vec<&str> = msgs.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(types.iter().filter(|t| **t == "sample").count(), 4, "{types:?}");
    assert_eq!(&types[types.len() - 2..], &["baseline", "summary"], "{types:?}");
    let b = &msgs[msgs.len() - 2]["data"];
    assert_eq!(b["engine"], "tesseract");
    assert_eq!(b["main_engine"], "fake-perfect");
    assert_eq!(b["run_dir"].as_str(), Some(bdir.to_str().unwrap()));
    assert_eq!(b["compare_dir"].as_str(), Some(dir.join("compare").to_str().unwrap()));
    assert_eq!(
        (b["n_samples"].as_u64(), b["n_pairs"].as_u64(), b["status"].as_str()),
        (Some(4), Some(4), Some("complete"))
    );
    assert!(b["files"]["compare/compare.html"].is_string() && b["files"]["baseline/report.html"].is_string());
    assert_eq!(b["headline"][0]["char_precision_other"], 1.0);
    let files = &msgs.last().unwrap()["data"]["files"];
    assert_eq!(files["baseline_run"].as_str(), Some(bdir.to_str().unwrap()));
    assert_eq!(files["compare"].as_str(), Some(dir.join("compare").to_str().unwrap()));
    // The baseline folder is a normal run: report and compare take it.
    assert_ok(&Command::new(BIN).args(["report", bdir.to_str().unwrap()]).output().unwrap());
    let cmp_out = out.join("cmp");
    assert_ok(
        &Command::new(BIN)
            .args(["compare", bdir.to_str().unwrap(), dir.to_str().unwrap(), "--out", cmp_out.to_str().unwrap()])
            .output()
            .unwrap(),
    );
}

#[test]
fn an_unfinished_baseline_is_finished_by_resume_and_a_finished_one_is_not_redone() {
    let out = scratch("baseline-resume");
    // The spec's field; Tesseract reads one page per batch (--threads 1), so the crash leaves part of it.
    let spec = out.join("spec.toml");
    std::fs::write(&spec, "engine = \"fake-perfect\"\nbaseline = \"tesseract\"\n").unwrap();
    // 4 main samples, then the crash hook aborts after the baseline's 2nd sample.
    let crashed = sweep(&out, &[&[spec.to_str().unwrap(), "--crash-after", "6"][..], &GRID].concat());
    assert!(!crashed.status.success(), "the crash hook aborts the process");
    let dir = main_dir(&out);
    let bdir = dir.join("baseline-tesseract");
    let main_journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    assert_eq!(Manifest::load(&dir).unwrap().status.as_str(), "complete", "the main run was finished first");
    let done = std::fs::read_to_string(bdir.join("journal.jsonl")).unwrap().lines().count();
    assert!((2..4).contains(&done), "the baseline journal holds {done} samples at the crash");
    assert!(!dir.join("compare").exists());
    // --dry-run counts the baseline's samples left.
    let dry = resume(&dir, &["--dry-run", "--json"]);
    assert_ok(&dry);
    let msg: serde_json::Value = serde_json::from_str(String::from_utf8(dry.stdout).unwrap().trim()).unwrap();
    let d = &msg["data"];
    assert_eq!((d["n_pending"].as_u64(), d["baseline"]["n_total"].as_u64()), (Some(0), Some(4)), "{d}");
    assert_eq!(d["baseline"]["n_done"].as_u64(), Some(done as u64), "{d}");
    // Resume finishes the baseline only.
    let resumed = resume(&dir, &[]);
    assert_ok(&resumed);
    assert_eq!(std::fs::read_to_string(dir.join("journal.jsonl")).unwrap(), main_journal, "the main run is not redone");
    let bm = Manifest::load(&bdir).unwrap();
    assert_eq!((bm.status.as_str(), bm.n_samples_done), ("complete", 4));
    assert_eq!(pages(&dir), pages(&bdir));
    assert!(dir.join("compare/compare.json").is_file());
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("fake-perfect (this run, 4 samples) and the baseline tesseract (4 samples"), "{md}");
    // Everything finished: nothing to resume.
    let again = resume(&dir, &[]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already complete"), "{}", stderr(&again));
    // A finished baseline whose comparison is gone: compared again, not read again.
    let baseline_journal = std::fs::read_to_string(bdir.join("journal.jsonl")).unwrap();
    let sessions = bm.sessions.len();
    std::fs::remove_dir_all(dir.join("compare")).unwrap();
    assert_ok(&resume(&dir, &[]));
    assert_eq!(std::fs::read_to_string(bdir.join("journal.jsonl")).unwrap(), baseline_journal);
    assert_eq!(Manifest::load(&bdir).unwrap().sessions.len(), sessions);
    assert!(dir.join("compare/compare.json").is_file());
}

#[test]
fn a_new_dry_run_counts_the_baseline_samples() {
    let out = scratch("baseline-dry");
    // The reverse pair: Tesseract reads, the perfect reader is the baseline.
    let o = sweep(
        &out,
        &[&["--engine", "tesseract", "--baseline", "fake-perfect", "--dry-run", "--json"][..], &GRID].concat(),
    );
    assert_ok(&o);
    let msg: serde_json::Value = serde_json::from_str(String::from_utf8(o.stdout).unwrap().trim()).unwrap();
    let d = &msg["data"];
    assert_eq!((d["n_total"].as_u64(), d["n_pending"].as_u64()), (Some(4), Some(4)));
    let b = &d["baseline"];
    assert_eq!((b["n_total"].as_u64(), b["n_pending"].as_u64()), (Some(4), Some(4)), "{b}");
    assert_eq!(
        (d["engine"][0]["name"].as_str(), b["engine"][0]["name"].as_str()),
        (Some("tesseract"), Some("fake-perfect"))
    );
    assert!(b["estimate"]["estimated_s"].as_f64().unwrap() > 0.0);
    assert!(!out.join("base").exists(), "a dry run writes nothing");
}

#[test]
fn a_baseline_that_cannot_be_one_is_refused_naming_the_flag() {
    let out = scratch("baseline-refused");
    let cases: [(&[&str], &str); 5] = [
        (&["--engine", "tesseract", "--baseline", "tesseract"], "another engine than the run's own"),
        (
            &["--engine", "deepseek-ocr-2", "--modes", "v2", "--baseline", "deepseek-ocr"],
            "cannot read the run's mode v2",
        ),
        (&["--engine", "fake-perfect", "--baseline", "tesseract", "--shard", "1/2"], "--shard"),
        (&["--engine", "fake-perfect", "--baseline", "tesseract", "--workers", "2"], "--workers"),
        (&["--engine", "mini", "--baseline", "deepseek-ocr"], "two model readers"),
    ];
    for (flags, why) in cases {
        let o = sweep(&out, flags);
        assert!(!o.status.success(), "{flags:?} was accepted");
        let e = stderr(&o);
        assert!(e.contains("--baseline") && e.contains(why), "{flags:?}: {e}");
    }
    assert!(!out.join("base").exists(), "nothing is written");
    // --resume keeps the run's own baseline.
    let o = resume(&out, &["--baseline", "tesseract"]);
    assert!(!o.status.success() && stderr(&o).contains("--baseline"), "{}", stderr(&o));
}
