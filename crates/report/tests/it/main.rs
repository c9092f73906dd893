//! Report tests: the table golden (refresh with `UPDATE_GOLDEN=1`) and a full report on a run
//! directory with synthetic weights.

mod decay;

use std::path::{Path, PathBuf};

use occ_core::EngineInfo;
use occ_eval::journal::{JournalEntry, JournalWriter, JOURNAL_FILE};
use occ_eval::results::{self, Manifest};
use occ_eval::schema::{PredictionRow, SampleRow, SampleStatus};
use occ_eval::spec::{ExperimentSpec, SpecFile, SpecOverrides};

/// A deterministic run: en, tiny at the paper's first two Tiny ratios and small at its first
/// Small ratio, with hand-set scores: six pages at tiny 10.5 (a CI), three at tiny 11.8 of which one
/// fails (n = 2: no CI) and one at small 6.7 (n = 1: no CI).
fn rows() -> Vec<SampleRow> {
    let cells = [("tiny", 10.5, 64u32, 6u32), ("tiny", 11.8, 64, 3), ("small", 6.7, 100, 1)];
    let mut out = Vec::new();
    for (c, (mode, ratio, vt, pages)) in cells.iter().enumerate() {
        for page in 0..*pages {
            let i = out.len() as u64;
            let k = f64::from(page);
            out.push(SampleRow {
                experiment: "golden".into(),
                run_id: "run".into(),
                sample_index: i,
                sample_id: format!("en/p{page}/{mode}/r{ratio}"),
                status: if c == 1 && page == 2 { SampleStatus::RenderError } else { SampleStatus::Ok },
                corpus: "en".into(),
                lang: "en".into(),
                mode: (*mode).into(),
                target_ratio: *ratio,
                n_text_tokens: (ratio * f64::from(*vt)).round() as u32,
                n_vision_tokens_nominal: *vt,
                ratio_nominal: (ratio * f64::from(*vt)).round() / f64::from(*vt),
                char_precision: 0.9 - 0.1 * c as f64 + 0.01 * k,
                word_f1: 0.8 - 0.1 * c as f64 + 0.02 * k,
                fox_precision_gt_words: 0.95 - 0.05 * c as f64 - 0.01 * k,
                fox_precision_out_words: 0.97 - 0.02 * k,
                runaway: page == 0 && c == 0,
                truncation_char_precision: 1.0 / ratio,
                truncation_word_f1: 1.5 / ratio,
                truncation_fox_precision_gt_words: 1.2 / ratio,
                truncation_fox_precision_out_words: 1.0,
                engine: "fake-perfect".into(),
                ..SampleRow::default()
            });
        }
    }
    out
}

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/tables.md")
}

#[test]
fn report_tables_match_golden() {
    let summary = occ_eval::summary::summarize(&rows(), 0);
    let got = occ_report::tables::tables(&summary).iter().map(|t| t.markdown()).collect::<Vec<_>>().join("\n");
    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display()));
    assert_eq!(got, want, "report tables changed; review and refresh with UPDATE_GOLDEN=1");
}

#[test]
fn cells_of_one_and_two_samples_show_no_ci() {
    let summary = occ_eval::summary::summarize(&rows(), 0);
    let tables = occ_report::tables::tables(&summary);
    let chars = tables.iter().find(|t| t.title == "en: character precision (1 − NED), %").unwrap();
    let cell = |ratio: &str, col: usize| chars.rows.iter().find(|r| r[0] == ratio).unwrap()[col].clone();
    // Columns: ratio, tiny, small, truncation. Six pages: an interval.
    let six = cell("10.5", 1);
    assert!(six.starts_with("92.5 [") && six.ends_with(']') && six.contains(", "), "{six}");
    // Two pages (one of three failed) and one page: the mean and "n too small", no interval.
    assert_eq!(cell("11.8", 1), "80.5 [n too small]");
    assert_eq!(cell("6.7", 2), "70.0 [n too small]");
    let by_n = |n: u32| summary.iter().find(|r| r.metric == "char_precision" && r.n == n).unwrap();
    for n in [1, 2] {
        assert!(by_n(n).ci_low.is_nan() && by_n(n).ci_high.is_nan(), "n = {n}");
        assert_eq!(by_n(n).ci_method, occ_eval::stats::NO_CI);
    }
    assert_eq!(by_n(6).ci_method, occ_eval::stats::CI_METHOD);
}

#[test]
fn paper_comparison_appears_only_at_the_papers_ratios() {
    let summary = occ_eval::summary::summarize(&rows(), 0);
    let tables = occ_report::tables::tables(&summary);
    let paper = tables.iter().find(|t| t.title.contains("paper Table 2")).expect("paper table");
    // Bins 600-700 (tiny 10.5 and small 6.7) and 700-800 (tiny 11.8) are in the run.
    assert_eq!(paper.rows.len(), 2);
    assert_eq!(paper.rows[0][0], "600–700");
    assert_eq!(paper.rows[0][1], "96.5");
}

#[test]
fn pages_put_the_worst_page_of_each_cell_first_and_mark_its_differences() {
    let samples = rows();
    let predictions: Vec<PredictionRow> = samples
        .iter()
        .map(|r| PredictionRow {
            run_id: r.run_id.clone(),
            sample_index: r.sample_index,
            sample_id: r.sample_id.clone(),
            mode: r.mode.clone(),
            ground_truth: format!("the whale of page {}", r.sample_index),
            prediction: format!("the whale  of paqe {}", r.sample_index),
        })
        .collect();
    let m = manifest(false);
    let html = occ_report::pages::pages_html(&m, &samples, &predictions);
    // Cell tiny 10.5: six pages, char precision 0.90 + 0.01·page, so page 0 (index 0) is the worst.
    let ids: Vec<&str> = html.split("data-sample-id=\"").skip(1).map(|s| s.split('"').next().unwrap()).collect();
    assert_eq!(ids.len(), samples.len(), "every page is listed");
    assert_eq!(
        &ids[..6],
        [
            "en/p0/tiny/r10.5",
            "en/p1/tiny/r10.5",
            "en/p2/tiny/r10.5",
            "en/p3/tiny/r10.5",
            "en/p4/tiny/r10.5",
            "en/p5/tiny/r10.5"
        ]
    );
    // Cell tiny 11.8: the failed page first, then by char precision.
    assert_eq!(&ids[6..9], ["en/p2/tiny/r11.8", "en/p0/tiny/r11.8", "en/p1/tiny/r11.8"]);
    // The diff of the normalised texts (whitespace collapsed): one misread word.
    assert!(html.contains("the whale of <del>page</del><ins>paqe</ins> 0"), "marked diff");
    assert!(html.contains("No thumbnails: this run's pages were not drawn by occ-render"));
    assert!(!html.contains("<img"), "a run not drawn by occ-render has no thumbnails");
    let worst = occ_report::pages::worst_table(&samples);
    assert_eq!(worst.rows.len(), 3);
    assert_eq!(worst.rows[1][4], "en/p2/tiny/r11.8");
    assert_eq!(worst.rows[1][5], "render_error");
}

fn manifest(synthetic: bool) -> Manifest {
    let spec = ExperimentSpec::resolve(
        SpecFile::default(),
        SpecOverrides { name: Some("golden".into()), ..Default::default() },
    )
    .unwrap();
    Manifest {
        manifest_version: results::MANIFEST_VERSION,
        tool: "compress-bench".into(),
        tool_version: "0".into(),
        git_commit: "abc".into(),
        experiment: "golden".into(),
        run_id: "run".into(),
        created_utc: "2025-01-01T00:00:00Z".into(),
        status: occ_eval::RunStatus::Complete,
        spec_fingerprint: spec.fingerprint(),
        spec,
        shard: None,
        merged_from: vec![],
        engines: vec![EngineInfo {
            name: "deepseek-ocr".into(),
            version: "0".into(),
            weights: Some("synthetic:tiny".into()),
            synthetic_weights: synthetic,
            device: "cpu".into(),
            dtype: "f32".into(),
        }],
        synthetic_weights: synthetic,
        renderer: "test".into(),
        tokenizer: "test".into(),
        host: "test".into(),
        n_samples_planned: rows().len(),
        n_samples_done: rows().len(),
        n_failed: 1,
        sessions: vec![],
        wall_time_s: 1.0,
        reader_flags: None,
        prompt: None,
        error_chain: vec![],
    }
}

fn write_run(dir: &Path, synthetic: bool) {
    std::fs::create_dir_all(dir).unwrap();
    let mut w = JournalWriter::open(&dir.join(JOURNAL_FILE), 0).unwrap();
    for r in rows() {
        let prediction = PredictionRow {
            run_id: r.run_id.clone(),
            sample_index: r.sample_index,
            sample_id: r.sample_id.clone(),
            mode: r.mode.clone(),
            ground_truth: "gt".into(),
            prediction: "out".into(),
        };
        w.append(&JournalEntry { sample: r, prediction }).unwrap();
    }
    w.flush().unwrap();
    let m = manifest(synthetic);
    m.save(dir).unwrap();
    results::write_outputs(dir, 0).unwrap();
}

#[test]
fn full_report_is_self_contained_and_flags_synthetic_weights() {
    let dir = std::env::temp_dir().join(format!("occ-report-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_run(&dir, true);
    let files = occ_report::write_report(&dir).unwrap();
    let html = std::fs::read_to_string(&files.html).unwrap();
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    assert!(html.contains(occ_report::SYNTHETIC_WARNING) && md.contains(occ_report::SYNTHETIC_WARNING));
    // The CI method is named, and why some cells have none.
    for text in [&html, &md] {
        assert!(text.contains(occ_eval::stats::CI_METHOD) && text.contains("n too small"));
    }
    assert_eq!(html.matches("<svg").count(), files.plots.len(), "every chart inlined");
    assert!(!html.contains("src=\""), "no external files");
    assert_eq!(files.plots.len(), occ_report::CURVE_METRICS.len() + 1);
    // The per-sample pages are written and linked (no font sizes here: no font chart).
    assert!(files.pages.as_ref().is_some_and(|p| p.is_file()));
    assert!(html.contains("<a href=\"pages.html\">") && md.contains("[pages.html](pages.html)"));
    // The paper's points sit on the output-words reading of Fox precision, not the GT-words one.
    let curve = std::fs::read_to_string(dir.join("plots/en_fox_precision_out_words.svg")).unwrap();
    assert!(curve.contains("paper Table 2, tiny") && curve.contains("truncation baseline"));
    let other = std::fs::read_to_string(dir.join("plots/en_fox_precision_gt_words.svg")).unwrap();
    assert!(!other.contains("paper Table 2") && other.contains("truncation baseline"));
    std::fs::remove_dir_all(&dir).unwrap();
    write_run(&dir, false);
    let files = occ_report::write_report(&dir).unwrap();
    assert!(!std::fs::read_to_string(&files.html).unwrap().contains(occ_report::SYNTHETIC_WARNING));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A run folder as the toolkit wrote it before the robustness axes and the one manifest shape:
/// `samples.parquet` without the page-setting columns and a version-1 manifest (no `kind`).
fn make_old(dir: &Path) {
    let path = dir.join(results::SAMPLES_FILE);
    let mut old = occ_eval::schema::read_parquet(&path).unwrap().drop_many([
        "degradation",
        "blur_sigma",
        "jpeg_quality",
        "noise_sigma",
        "downscale",
        "font_family",
        "line_height",
    ]);
    occ_eval::schema::write_parquet(&mut old, &path).unwrap();
    let mpath = dir.join(results::MANIFEST_FILE);
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
    m.as_object_mut().unwrap().remove("kind");
    m["manifest_version"] = 1.into();
    std::fs::write(&mpath, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

#[test]
fn a_run_written_before_the_axes_and_the_one_manifest_shape_reports_as_it_did() {
    let dir = std::env::temp_dir().join(format!("occ-report-old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_run(&dir, false);
    let now = occ_report::write_report(&dir).unwrap();
    let (md, html) = (std::fs::read_to_string(&now.markdown).unwrap(), std::fs::read_to_string(&now.html).unwrap());
    make_old(&dir);
    let input = occ_report::ReportInput::load(&dir).unwrap();
    assert!(input.samples.iter().all(|s| s.degradation == "none" && s.font_family == "dejavu-sans"));
    assert_eq!(input.manifest.manifest_version, results::MANIFEST_VERSION, "read through the migration");
    let then = occ_report::write_report(&dir).unwrap();
    assert_eq!(std::fs::read_to_string(&then.markdown).unwrap(), md);
    assert_eq!(std::fs::read_to_string(&then.html).unwrap(), html);
    std::fs::remove_dir_all(&dir).unwrap();
}
