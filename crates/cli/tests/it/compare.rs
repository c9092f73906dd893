//! `compress-bench compare` end to end, and the per-sample pages of a sweep's report: two Tesseract
//! settings (page segmentation 6 and 11) and the perfect fake reader on the same six Tiny pages; the
//! paired differences checked against values computed here from the runs' samples.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use occ_eval::results;
use occ_eval::schema::{self, PredictionRow, SampleRow, Table};
use occ_eval::{Lang, Normalization};

use crate::util::{assert_ok, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

/// Tiny at 8x and 16x, three pages per cell: six pages, so a cell (3 pairs) has no CI and the pooled
/// row (6 pairs) has one.
const GRID: [&str; 6] = ["--ratios", "8,16", "--modes", "tiny", "--pages", "3"];

fn sweep(out: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let ds = format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"));
    let mut args = vec!["sweep", "--datasets", &ds, "--out", out.to_str().unwrap(), "--name", name, "-q"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&GRID);
    assert_ok(&Command::new(BIN).args(&args).output().unwrap());
    let dirs: Vec<PathBuf> = std::fs::read_dir(out.join(name)).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1);
    dirs[0].clone()
}

fn compare(args: &[&str]) -> Output {
    Command::new(BIN).arg("compare").args(args).output().unwrap()
}

/// The fields of one CSV line (polars quotes fields that hold commas).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// paired.csv as maps of column → value.
fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = csv_fields(lines.next().unwrap());
    lines.map(|l| header.iter().cloned().zip(csv_fields(l)).collect()).collect()
}

fn num(row: &HashMap<String, String>, col: &str) -> f64 {
    row[col].parse().unwrap_or_else(|_| panic!("{col} = {:?}", row[col]))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}

/// The text of a diff with the spans of `drop` removed and the tags of `keep` taken off.
fn side(diff: &str, keep: &str, drop: &str) -> String {
    let mut s = diff.to_string();
    let (open, close) = (format!("<{drop}>"), format!("</{drop}>"));
    while let Some(i) = s.find(&open) {
        let j = s[i..].find(&close).unwrap() + i + close.len();
        s.replace_range(i..j, "");
    }
    unescape(&s.replace(&format!("<{keep}>"), "").replace(&format!("</{keep}>"), ""))
}

#[test]
fn compare_of_two_tesseract_settings_and_a_perfect_reader_gives_the_paired_differences() {
    let out = scratch("compare");
    let spec = out.join("psm11.toml");
    std::fs::write(&spec, "tesseract_psm = 11\n").unwrap();
    let psm6 = sweep(&out, "psm6", &["--engine", "tesseract"]);
    let psm11 = sweep(&out, "psm11", &[spec.to_str().unwrap(), "--engine", "tesseract"]);
    let perfect = sweep(&out, "perfect", &["--engine", "fake-perfect"]);
    let cmp_out = out.join("cmp");
    let o = compare(&[
        psm6.to_str().unwrap(),
        psm11.to_str().unwrap(),
        perfect.to_str().unwrap(),
        "--labels",
        "psm6,psm11,perfect",
        "--out",
        cmp_out.to_str().unwrap(),
        "--json",
    ]);
    assert_ok(&o);
    let msg: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(msg["type"], "compare");
    let data = &msg["data"];
    for (k, other) in ["psm11", "perfect"].iter().enumerate() {
        let p = &data["pairings"][k];
        assert_eq!((p["baseline"].as_str(), p["other"].as_str()), (Some("psm6"), Some(*other)));
        assert_eq!(
            (p["n_paired"].as_u64(), p["n_scored"].as_u64(), p["n_page_differs"].as_u64()),
            (Some(6), Some(6), Some(0))
        );
        assert_eq!((p["n_baseline_only"].as_u64(), p["n_other_only"].as_u64()), (Some(0), Some(0)));
    }
    let dir = PathBuf::from(data["out_dir"].as_str().unwrap());
    for f in ["compare.md", "compare.html", "paired.csv", "compare.json", "plots/en_tiny_char_precision.svg"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }

    // The differences, computed here from the three runs' samples.
    let samples = |d: &Path| -> HashMap<String, SampleRow> {
        results::read_samples(d).unwrap().into_iter().map(|r| (r.sample_id.clone(), r)).collect()
    };
    let base = samples(&psm6);
    let rows = read_csv(&dir.join("paired.csv"));
    assert_eq!(rows.len(), 2 * 3 * occ_eval::metrics::METRICS.len(), "2 comparisons x (2 ratios + pooled) x metrics");
    for (label, run) in [("psm11", &psm11), ("perfect", &perfect)] {
        let other = samples(run);
        for metric in ["char_precision", "word_f1"] {
            for ratio in [Some(8.0), Some(16.0), None] {
                let diffs: Vec<f64> = base
                    .values()
                    .filter(|a| ratio.is_none_or(|r| a.target_ratio == r))
                    .map(|a| {
                        let b = &other[&a.sample_id];
                        occ_eval::summary::sample_metric(b, metric).unwrap()
                            - occ_eval::summary::sample_metric(a, metric).unwrap()
                    })
                    .collect();
                let want = diffs.iter().sum::<f64>() / diffs.len() as f64;
                let ratio_text = ratio.map_or(String::new(), |r| format!("{r:.1}"));
                let row = rows
                    .iter()
                    .find(|r| r["other"] == label && r["metric"] == metric && r["target_ratio"] == ratio_text)
                    .unwrap_or_else(|| panic!("no row {label} {metric} {ratio_text:?}"));
                assert_eq!(num(row, "n_pairs") as usize, diffs.len());
                assert!((num(row, "mean_diff") - want).abs() < 1e-12, "{label} {metric} {ratio:?}: {row:?} vs {want}");
                let better = diffs.iter().filter(|d| **d > 0.0).count();
                let worse = diffs.iter().filter(|d| **d < 0.0).count();
                assert_eq!((num(row, "n_other_better") as usize, num(row, "n_other_worse") as usize), (better, worse));
                if ratio.is_some() {
                    assert_eq!(row["ci_method"], "n too small", "3 pairs: no CI");
                    assert!(row["ci_low"] == "NaN" && row["ci_high"] == "NaN");
                } else {
                    assert_eq!(row["ci_method"], occ_eval::stats::CI_METHOD, "6 pairs: a CI");
                    assert!(num(row, "ci_low") <= want + 1e-12 && want <= num(row, "ci_high") + 1e-12, "{row:?}");
                }
            }
        }
    }
    // The perfect reader is better on every page Tesseract did not read exactly.
    let pooled = rows
        .iter()
        .find(|r| r["other"] == "perfect" && r["metric"] == "char_precision" && r["target_ratio"].is_empty())
        .unwrap();
    assert!(num(pooled, "mean_diff") > 0.0 && num(pooled, "n_other_worse") == 0.0);
    let md = std::fs::read_to_string(dir.join("compare.md")).unwrap();
    assert!(
        md.contains("| psm6 | psm11 | same page (corpus, passage, mode, ratio, identical page) | 6 / 6 | 6 | 6 | 0 | 0 | 0 | 0 | 0 |"),
        "{md}"
    );
    assert!(!md.contains("_overlay_"), "the runs read the same modes: no overlay chart");
    assert!(md.contains("psm11 − psm6, pp [95% CI]") && md.contains("[n too small]"));
    let html = std::fs::read_to_string(dir.join("compare.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 4, "one chart per metric of the one corpus and mode");
    assert!(!html.contains("src=\""), "no external files");

    // The per-sample pages of the baseline: the worst page of the first cell first, its thumbnail,
    // and a diff that is the ground truth on one side and the output on the other.
    let pages = std::fs::read_to_string(psm6.join("pages.html")).unwrap();
    let cell8: Vec<&SampleRow> = {
        let mut v: Vec<&SampleRow> = base.values().filter(|r| r.target_ratio == 8.0).collect();
        v.sort_by(|a, b| a.char_precision.total_cmp(&b.char_precision).then(a.sample_index.cmp(&b.sample_index)));
        v
    };
    let first_cell = &pages[pages.find("id=\"cell-0\"").unwrap()..];
    let first_id = first_cell.split("data-sample-id=\"").nth(1).unwrap().split('"').next().unwrap();
    assert_eq!(first_id, cell8[0].sample_id, "the worst page of the cell comes first");
    let section = first_cell.split("</section>").next().unwrap();
    assert!(section.contains("<img class=\"thumb\"") && section.contains("src=\"data:image/png;base64,"));
    let diff = section.split("<p class=\"diff\">").nth(1).unwrap().split("</p>").next().unwrap();
    let preds: Vec<PredictionRow> =
        PredictionRow::from_frame(&schema::read_parquet(&psm6.join("predictions.parquet")).unwrap()).unwrap();
    let p = preds.iter().find(|p| p.sample_id == cell8[0].sample_id).unwrap();
    let norm = Normalization::default();
    assert_eq!(side(diff, "del", "ins"), norm.apply(&p.ground_truth, Lang::En), "missing + same = ground truth");
    assert_eq!(side(diff, "ins", "del"), norm.apply(&p.prediction, Lang::En), "extra + same = output");
    if cell8[0].char_precision < 1.0 {
        assert!(diff.contains("<del>") || diff.contains("<ins>"), "differences are marked");
    }
    let report = std::fs::read_to_string(psm6.join("report.html")).unwrap();
    assert!(report.contains("href=\"pages.html\"") && report.contains("worst page per cell"));
    assert!(psm6.join("plots/en_font_char_precision.svg").is_file(), "accuracy against font size");
}

#[test]
fn runs_with_nothing_in_common_are_refused() {
    let out = scratch("compare-disjoint");
    let ds = format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"));
    let run = |name: &str, modes: &str, ratios: &str| {
        let args = ["sweep", "--datasets", &ds, "--out", out.to_str().unwrap(), "--name", name, "-q"];
        let grid = ["--engine", "fake-perfect", "--ratios", ratios, "--modes", modes, "--pages", "2", "--seed", "0"];
        assert_ok(&Command::new(BIN).args(args).args(grid).output().unwrap());
        std::fs::read_dir(out.join(name)).unwrap().next().unwrap().unwrap().path()
    };
    // No mode in common (so pages are paired by passage and ratio) and no ratio in common.
    let tiny = run("tiny", "tiny", "8");
    let small = run("small", "small", "12");
    let cmp_out = out.join("cmp");
    let o = compare(&[tiny.to_str().unwrap(), small.to_str().unwrap(), "--out", cmp_out.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("runs A and B have no sample in common") && err.contains("modes small"), "{err}");
    assert!(err.contains("ratios 8") && err.contains("ratios 12") && err.contains("same passage and ratio"), "{err}");
    assert!(!cmp_out.exists(), "nothing is written");
    let o = compare(&[tiny.to_str().unwrap(), small.to_str().unwrap(), "--labels", "one"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("1 labels given for 2 runs"));
    let o = compare(&[tiny.to_str().unwrap(), out.to_str().unwrap(), "--json"]);
    assert!(!o.status.success());
    let msg: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(msg["type"], "error");
    assert!(msg["data"]["causes"].to_string().contains("manifest.json"), "{msg}");
}
