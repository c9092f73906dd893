//! `compress-bench sweep / report / merge` end to end: the fake engine for bookkeeping (files,
//! determinism, resume after a crash, shards), Tesseract for a real reader, and every bad input
//! failing before any work.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{assert_ok, scratch};

use occ_eval::results::{self, Manifest};
use occ_eval::schema::{self, SampleRow};

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

fn datasets() -> String {
    format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"))
}

fn sweep(out: &Path, extra: &[&str]) -> Output {
    let ds = datasets();
    let mut args = vec!["sweep", "--datasets", &ds, "--out", out.to_str().unwrap(), "--name", "e2e"];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().expect("running compress-bench")
}

const SMALL_GRID: [&str; 8] =
    ["--engine", "fake-perfect", "--ratios", "8,12,16", "--modes", "tiny,small", "--pages", "2"];

/// The single run directory under `out/e2e`.
fn run_dirs(out: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(out.join("e2e")).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

/// samples.parquet of two runs, volatile columns dropped, compared cell by cell (nulls equal).
fn stable_frames_equal(a: &Path, b: &Path) -> bool {
    let read = |d: &Path| schema::without_volatile(&schema::read_parquet(&d.join(results::SAMPLES_FILE)).unwrap());
    read(a).equals_missing(&read(b))
}

fn stable_rows(dir: &Path) -> Vec<SampleRow> {
    let mut rows = results::read_samples(dir).unwrap();
    for r in &mut rows {
        r.run_id.clear();
        r.render_ms = 0.0;
        r.ocr_ms = 0.0;
        r.preprocess_ms = 0.0;
        r.vision_ms = 0.0;
        r.prefill_ms = 0.0;
        r.decode_ms = 0.0;
    }
    rows
}

#[test]
fn fake_sweep_writes_every_file_and_a_json_stream() {
    let out = scratch("files");
    let o = sweep(&out, &[&SMALL_GRID[..], &["--json"]].concat());
    assert_ok(&o);
    let stdout = String::from_utf8(o.stdout).unwrap();
    let msgs: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let types: Vec<&str> = msgs.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(types.first(), Some(&"run_start"));
    assert_eq!(types.last(), Some(&"summary"));
    assert_eq!(types.iter().filter(|t| **t == "sample").count(), 12, "3 ratios x 2 modes x 2 pages");
    assert_eq!(msgs[0]["data"]["schema_version"], 1);
    assert_eq!(msgs[0]["data"]["n_samples"], 12);
    // Two pages per cell are too few for a CI: none is given, and the summary says why.
    let cells = msgs.last().unwrap()["data"]["cells"].as_array().unwrap();
    assert!(cells.iter().all(|c| c["n"] == 2 && c["char_precision_ci"].is_null() && c["ci_method"] == "n too small"));
    // Both readings of Fox precision, side by side; a perfect reader scores 1 on each.
    assert!(cells.iter().all(|c| c["fox_precision_out_words"] == 1.0 && c["fox_precision_gt_words"] == 1.0));
    let dirs = run_dirs(&out);
    assert_eq!(dirs.len(), 1);
    let dir = &dirs[0];
    for f in [
        "samples.parquet",
        "predictions.parquet",
        "summary.csv",
        "manifest.json",
        "journal.jsonl",
        "report.md",
        "report.html",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert!(dir.join("plots/en_char_precision.svg").is_file());
    let rows = results::read_samples(dir).unwrap();
    assert_eq!(rows.len(), 12);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.sample_index, i as u64);
        assert_eq!(r.status, "ok", "{:?}", r.error);
        assert_eq!(r.char_precision, 1.0, "the fake engine reads perfectly");
        assert!(r.exact_match);
        assert_eq!(r.n_vision_tokens_nominal, if r.mode == "tiny" { 64 } else { 100 });
        let want = (r.target_ratio * f64::from(r.n_vision_tokens_nominal)).round();
        assert!((f64::from(r.n_text_tokens) - want).abs() <= 2.0, "{} tokens for target {want}", r.n_text_tokens);
        assert!(r.truncation_char_precision < 0.2, "truncation reads ~1/r: {}", r.truncation_char_precision);
        assert!(r.font_px > 0.0 && r.page_w_px == r.base_size_px);
    }
    let m = Manifest::load(dir).unwrap();
    assert_eq!((m.status.as_str(), m.n_samples_done, m.n_failed), ("complete", 12, 0));
    assert_eq!(m.engines[0].name, "fake-perfect");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("<table>") && !html.contains("synthetic weights"));
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert!(csv.starts_with("corpus,mode,target_ratio,degradation,font_family,line_height,metric,n,"));
    assert!(csv.lines().next().unwrap().ends_with(",ci_low,ci_high,ci_method"));
    assert!(csv.lines().skip(1).all(|l| l.ends_with(",NaN,NaN,n too small")), "n = 2 cells: no CI");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("[n too small]") && md.contains(occ_eval::stats::CI_METHOD));
}

#[test]
fn same_command_twice_gives_identical_samples() {
    let out = scratch("twice");
    assert_ok(&sweep(&out, &SMALL_GRID));
    assert_ok(&sweep(&out, &SMALL_GRID));
    let dirs = run_dirs(&out);
    assert_eq!(dirs.len(), 2, "runs are immutable: a second run gets a new directory");
    assert_ne!(dirs[0], dirs[1]);
    assert_eq!(stable_rows(&dirs[0]), stable_rows(&dirs[1]));
    assert!(stable_frames_equal(&dirs[0], &dirs[1]));
}

#[test]
fn crash_then_resume_equals_an_uninterrupted_run() {
    let out = scratch("resume");
    let grid = ["--engine", "fake-perfect", "--ratios", "8,12,16", "--modes", "tiny,small", "--pages", "3"];
    assert_ok(&sweep(&out, &grid));
    let crashed = sweep(&out, &[&grid[..], &["--crash-after", "5"]].concat());
    assert!(!crashed.status.success(), "the crash hook aborts the process");
    let dirs = run_dirs(&out);
    let crashed_dir = dirs.iter().find(|d| !d.join("samples.parquet").exists()).unwrap().clone();
    let full_dir = dirs.iter().find(|d| d.join("samples.parquet").exists()).unwrap().clone();
    // Simulate a torn write as well: half a line at the end of the journal.
    let journal = crashed_dir.join("journal.jsonl");
    let before = std::fs::read_to_string(&journal).unwrap();
    let done = before.lines().count();
    assert!((5..18).contains(&done), "journal holds {done} samples at the crash");
    std::fs::write(&journal, before.clone() + "{\"sample\": {\"experiment\": \"e2").unwrap();
    let ds = datasets();
    let resumed = Command::new(BIN)
        .args(["sweep", "--datasets", &ds, "--resume", crashed_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ok(&resumed);
    let m = Manifest::load(&crashed_dir).unwrap();
    assert_eq!((m.status.as_str(), m.n_samples_done, m.sessions.len()), ("complete", 18, 1));
    assert_eq!(stable_rows(&crashed_dir), stable_rows(&full_dir));
    assert!(stable_frames_equal(&crashed_dir, &full_dir));
    let again = Command::new(BIN).args(["sweep", "--resume", crashed_dir.to_str().unwrap()]).output().unwrap();
    assert!(!again.status.success(), "a complete run cannot be resumed");
}

#[test]
fn a_sweep_stopped_by_an_error_is_marked_failed_with_it_and_resumes() {
    let out = scratch("failed");
    let crashed = sweep(&out, &[&SMALL_GRID[..], &["--crash-after", "3"]].concat());
    assert!(!crashed.status.success(), "the crash hook aborts the process");
    let dir = run_dirs(&out)[0].clone();
    assert_eq!(Manifest::load(&dir).unwrap().status.as_str(), "running", "killed: still running");
    // A failure that is not a signal: samples.parquet cannot be written (a folder of that name).
    std::fs::create_dir(dir.join(results::SAMPLES_FILE)).unwrap();
    let ds = datasets();
    let resume =
        || Command::new(BIN).args(["sweep", "--datasets", &ds, "--resume", dir.to_str().unwrap()]).output().unwrap();
    let o = resume();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is marked failed; continue it with: compress-bench sweep"), "{err}");
    let m = Manifest::load(&dir).unwrap();
    assert_eq!(m.status.as_str(), "failed");
    assert!(m.error_chain[0].starts_with("writing the results of"), "outermost first: {:?}", m.error_chain);
    assert!(m.error_chain.iter().any(|c| c.contains(results::SAMPLES_FILE)), "{:?}", m.error_chain);
    assert!(err.contains(&m.error_chain.join(": ")), "the chain as printed: {err}");
    assert_eq!(m.sessions.len(), 1, "the failed session is recorded (the killed one never was)");
    assert!(!dir.join(occ_eval::lock::LOCK_FILE).exists(), "the lock is released");
    // A failed run resumes like an interrupted one; the complete run carries no error.
    std::fs::remove_dir(dir.join(results::SAMPLES_FILE)).unwrap();
    assert_ok(&resume());
    let m = Manifest::load(&dir).unwrap();
    assert_eq!((m.status.as_str(), m.n_samples_done, m.error_chain.len()), ("complete", 12, 0));
}

#[test]
fn two_shards_merged_equal_the_single_run() {
    let out = scratch("shards");
    assert_ok(&sweep(&out, &SMALL_GRID));
    let single = run_dirs(&out)[0].clone();
    let shard_out = out.join("shards");
    for k in ["1/2", "2/2"] {
        assert_ok(&sweep(&shard_out, &[&SMALL_GRID[..], &["--shard", k, "--no-report"]].concat()));
    }
    let shards = run_dirs(&shard_out);
    assert_eq!(shards.len(), 2);
    assert_eq!(results::read_samples(&shards[0]).unwrap().len(), 6);
    let merged_out = out.join("merged");
    let o = Command::new(BIN)
        .args([
            "merge",
            shards[0].to_str().unwrap(),
            shards[1].to_str().unwrap(),
            "--out",
            merged_out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_ok(&o);
    let merged = run_dirs(&merged_out)[0].clone();
    assert_eq!(stable_rows(&merged), stable_rows(&single));
    assert!(stable_frames_equal(&merged, &single));
    assert!(merged.join("report.html").is_file());
    let m = Manifest::load(&merged).unwrap();
    assert_eq!(m.merged_from.len(), 2);
    let one = Command::new(BIN)
        .args(["merge", shards[0].to_str().unwrap(), "--out", merged_out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!one.status.success());
    assert!(String::from_utf8_lossy(&one.stderr).contains("missing shards 2/2"));
}

#[test]
fn bad_input_fails_before_any_work() {
    let out = scratch("bad");
    let file = out.join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let unwritable = file.join("results");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--modes", "tiny,huge", "--engine", "fake-perfect"], "unknown mode \"huge\""),
        (vec!["--ratios", "25..5", "--engine", "fake-perfect"], "is empty"),
        (vec!["--ratios", "0,10", "--engine", "fake-perfect"], "must be greater than 0"),
        (vec!["--ratios", "-3..5", "--engine", "fake-perfect"], "greater than 0"),
        (vec!["--pages", "100000", "--engine", "fake-perfect"], "pages per cell were asked for"),
        (vec!["--corpora", "klingon", "--engine", "fake-perfect"], "klingon"),
        (vec!["--engine", "deepseek-ocr", "--weights", "/nonexistent/deepseek-ocr"], "opening DeepSeek-OCR weights"),
        (vec!["--shard", "3/2", "--engine", "fake-perfect"], "--shard"),
    ];
    for (args, want) in cases {
        let o = sweep(&out, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: expected {want:?} in:\n{err}");
        assert!(!out.join("e2e").exists(), "{args:?} created a run directory");
    }
    let ds = datasets();
    let o = Command::new(BIN)
        .args([
            "sweep",
            "--datasets",
            &ds,
            "--out",
            unwritable.to_str().unwrap(),
            "--engine",
            "fake-perfect",
            "--pages",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is not writable"), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn tesseract_sweep_reads_large_print_and_fails_at_small_print() {
    let out = scratch("tesseract");
    let o = sweep(&out, &["--engine", "tesseract", "--ratios", "5,20", "--modes", "tiny,base", "--pages", "2"]);
    assert_ok(&o);
    let dir = run_dirs(&out)[0].clone();
    let rows = results::read_samples(&dir).unwrap();
    assert_eq!(rows.len(), 8);
    let mean = |mode: &str, ratio: f64| {
        let v: Vec<f64> =
            rows.iter().filter(|r| r.mode == mode && r.target_ratio == ratio).map(|r| r.char_precision).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    // Base at 5x: 1280 tokens on a 1024² page, ~11 px type: Tesseract reads it.
    assert!(mean("base", 5.0) > 0.8, "base 5x: {}", mean("base", 5.0));
    // Tiny at 20x: 1280 tokens on 512², ~4 px type: illegible to Tesseract.
    assert!(mean("tiny", 20.0) < 0.5, "tiny 20x: {}", mean("tiny", 20.0));
    assert!(rows.iter().all(|r| r.engine == "tesseract" && r.engine_version.contains("-l eng --psm 6")));
    assert!(rows.iter().all(|r| r.n_prompt_tokens.is_none()), "Tesseract takes no prompt");
    assert_eq!(Manifest::load(&run_dirs(&out)[0]).unwrap().prompt, None);
}

#[test]
fn a_sweep_over_two_degradation_levels_writes_them_as_columns_and_facets() {
    let out = scratch("axes");
    let spec = out.join("axes.toml");
    std::fs::write(
        &spec,
        "corpora = [\"en\"]\nmodes = [\"tiny\"]\nratios = [4.0]\npages = 2\nengine = \"tesseract\"\n\
         degradations = [\"none\", \"blur:2.5\"]\n",
    )
    .unwrap();
    let o = sweep(&out, &[spec.to_str().unwrap(), "--json"]);
    assert_ok(&o);
    let dir = run_dirs(&out)[0].clone();
    // Columns: every axis of the page, in samples.parquet.
    let df = schema::read_parquet(&dir.join(results::SAMPLES_FILE)).unwrap();
    for c in ["degradation", "blur_sigma", "jpeg_quality", "noise_sigma", "downscale", "font_family", "line_height"] {
        assert!(df.column(c).is_ok(), "column {c} missing");
    }
    let rows = results::read_samples(&dir).unwrap();
    assert_eq!(rows.len(), 4, "2 pages x 2 degradation levels");
    let (clean, blurred): (Vec<&SampleRow>, Vec<&SampleRow>) = rows.iter().partition(|r| r.degradation == "none");
    assert_eq!((clean.len(), blurred.len()), (2, 2));
    for r in &blurred {
        assert_eq!(r.degradation, "blur:2.5");
        assert_eq!((r.blur_sigma, r.jpeg_quality, r.noise_sigma, r.downscale), (2.5, None, 0.0, 1.0));
        assert!(r.sample_id.ends_with("/tiny/r4/blur:2.5"), "{}", r.sample_id);
    }
    for r in &rows {
        assert_eq!((r.font_family.as_str(), r.line_height, r.status.as_str()), ("dejavu-sans", 1.2, "ok"));
    }
    // The same pages, degraded after fitting: same text, tokens and font size.
    for (c, b) in clean.iter().zip(&blurred) {
        assert_eq!((&c.passage_id, c.n_text_tokens, c.font_px), (&b.passage_id, b.n_text_tokens, b.font_px));
    }
    let mean = |v: &[&SampleRow]| v.iter().map(|r| r.char_precision).sum::<f64>() / v.len() as f64;
    assert!(
        mean(&blurred) < mean(&clean),
        "a 2.5 px blur costs Tesseract accuracy: {} vs {}",
        mean(&blurred),
        mean(&clean)
    );
    // The --json summary: one cell per level, each with its own setting and scores.
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    let cells = last["data"]["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for (cell, level, rows) in [(&cells[0], "none", &clean), (&cells[1], "blur:2.5", &blurred)] {
        assert_eq!((cell["degradation"].as_str(), cell["font_family"].as_str()), (Some(level), Some("dejavu-sans")));
        let close = |v: &serde_json::Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-12;
        assert!(close(&cell["char_precision"], mean(rows)), "{level}: {cell}");
        let fox = rows.iter().map(|r| r.fox_precision_out_words).sum::<f64>() / 2.0;
        assert!(close(&cell["fox_precision_out_words"], fox), "{level}: the cell's own pages: {cell}");
    }
    // summary.csv: one cell per level.
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert!(csv.lines().any(|l| l.starts_with("en,tiny,4.0,none,dejavu-sans,1.2,char_precision,2,")), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("en,tiny,4.0,blur:2.5,dejavu-sans,1.2,char_precision,2,")), "{csv}");
    // Facets: the curves of each level, the levels compared, a table by setting, pages per cell.
    for f in ["en_char_precision_none.svg", "en_char_precision_blur-2.5.svg", "en_tiny_char_precision_by_setting.svg"] {
        assert!(dir.join("plots").join(f).is_file(), "plots/{f} missing");
    }
    assert!(!dir.join("plots/en_char_precision.svg").exists(), "a faceted run has no pooled curve");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("### en: character precision (1 − NED) by page setting, %"), "{md}");
    assert!(md.contains("| degradation | tiny (mean over ratios) |"), "{md}");
    assert!(md.contains("— degradation blur:2.5") && md.contains("— degradation none"), "{md}");
    assert!(md.contains("page settings: degradations / fonts / line heights**: none, blur:2.5 / dejavu-sans / 1.2"));
    let pages = std::fs::read_to_string(dir.join("pages.html")).unwrap();
    assert!(pages.contains("en · tiny · 4× · blur:2.5"));
    assert_eq!(pages.matches("<img class=\"thumb\"").count(), 4, "every page, blurred ones too, is redrawn");
}

#[test]
fn a_sweep_over_two_fonts_and_two_line_heights_writes_them_as_columns_and_facets() {
    let out = scratch("typography");
    let spec = out.join("typography.toml");
    std::fs::write(
        &spec,
        "corpora = [\"en\"]\nmodes = [\"tiny\"]\nratios = [4.0]\npages = 2\nengine = \"tesseract\"\n\
         fonts = [\"dejavu-sans\", \"dejavu-serif\"]\nline_heights = [1.2, 1.6]\n",
    )
    .unwrap();
    let o = sweep(&out, &[spec.to_str().unwrap(), "--json"]);
    assert_ok(&o);
    let dir = run_dirs(&out)[0].clone();
    // Columns: the font family and line height of every page, in samples.parquet.
    let df = schema::read_parquet(&dir.join(results::SAMPLES_FILE)).unwrap();
    assert!(df.column("font_family").is_ok() && df.column("line_height").is_ok());
    let rows = results::read_samples(&dir).unwrap();
    assert_eq!(rows.len(), 8, "2 pages x 2 fonts x 2 line heights");
    let setting = |r: &SampleRow| (r.font_family.clone(), r.line_height);
    let mut settings: Vec<(String, f64)> = rows.iter().map(setting).collect();
    settings.sort_by(|a, b| a.partial_cmp(b).unwrap());
    settings.dedup();
    let want = [("dejavu-sans", 1.2), ("dejavu-sans", 1.6), ("dejavu-serif", 1.2), ("dejavu-serif", 1.6)];
    assert_eq!(settings, want.map(|(f, l)| (f.to_string(), l)));
    for r in &rows {
        assert_eq!((r.degradation.as_str(), r.status.as_str()), ("none", "ok"));
        let suffix = match (r.font_family.as_str(), r.line_height) {
            ("dejavu-sans", 1.2) => "/tiny/r4".to_string(),
            ("dejavu-sans", lh) => format!("/tiny/r4/lh{lh}"),
            (font, 1.2) => format!("/tiny/r4/{font}"),
            (font, lh) => format!("/tiny/r4/{font}/lh{lh}"),
        };
        assert!(r.sample_id.ends_with(&suffix), "{} for {:?}", r.sample_id, setting(r));
        assert!(r.char_precision > 0.9, "Tesseract reads 4x in Tiny in every setting: {r:?}");
    }
    // The same passages in every setting, fitted again: a wider line pitch takes a smaller font.
    for font in ["dejavu-sans", "dejavu-serif"] {
        let pick = |lh: f64| -> Vec<&SampleRow> {
            rows.iter().filter(|r| r.font_family == font && r.line_height == lh).collect()
        };
        for (tight, loose) in pick(1.2).iter().zip(pick(1.6)) {
            assert_eq!((&tight.passage_id, tight.n_text_tokens), (&loose.passage_id, loose.n_text_tokens));
            assert!(loose.font_px < tight.font_px, "{font}: {} at 1.6 vs {} at 1.2", loose.font_px, tight.font_px);
        }
    }
    // The --json summary: one cell per setting, each with its own pages' scores.
    let last: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    let cells = last["data"]["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4);
    for (cell, (font, lh)) in cells.iter().zip(want) {
        assert_eq!((cell["font_family"].as_str(), cell["line_height"].as_f64()), (Some(font), Some(lh)), "{cell}");
        let own: Vec<&SampleRow> = rows.iter().filter(|r| r.font_family == font && r.line_height == lh).collect();
        let mean = own.iter().map(|r| r.char_precision).sum::<f64>() / own.len() as f64;
        assert!((cell["char_precision"].as_f64().unwrap() - mean).abs() < 1e-12, "{cell}");
    }
    // summary.csv: one cell per setting.
    let csv = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    for (font, lh) in want {
        let key = format!("en,tiny,4.0,none,{font},{lh},char_precision,2,");
        assert!(csv.lines().any(|l| l.starts_with(&key)), "{key} in {csv}");
    }
    // Facets: each setting's curves, the settings compared, a table by setting, every page redrawn.
    for f in [
        "en_char_precision_dejavu-sans_lh1.2.svg",
        "en_char_precision_dejavu-sans_lh1.6.svg",
        "en_char_precision_dejavu-serif_lh1.2.svg",
        "en_char_precision_dejavu-serif_lh1.6.svg",
        "en_tiny_char_precision_by_setting.svg",
    ] {
        assert!(dir.join("plots").join(f).is_file(), "plots/{f} missing");
    }
    assert!(!dir.join("plots/en_char_precision.svg").exists(), "a faceted run has no pooled curve");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| font_family | line_height | tiny (mean over ratios) |"), "{md}");
    assert!(md.contains("— font dejavu-serif, line height 1.6"), "{md}");
    assert!(md
        .contains("page settings: degradations / fonts / line heights**: none / dejavu-sans, dejavu-serif / 1.2, 1.6"));
    let pages = std::fs::read_to_string(dir.join("pages.html")).unwrap();
    assert!(pages.contains("en · tiny · 4× · dejavu-serif · lh1.6") && pages.contains("en · tiny · 4× · lh1.6"));
    assert_eq!(pages.matches("<img class=\"thumb\"").count(), 8, "every page is drawn again in its own setting");
}

#[test]
fn report_subcommand_rewrites_the_report() {
    let out = scratch("report");
    assert_ok(&sweep(&out, &[&SMALL_GRID[..], &["--no-report"]].concat()));
    let dir = run_dirs(&out)[0].clone();
    assert!(!dir.join("report.md").exists());
    let o = Command::new(BIN).args(["report", dir.to_str().unwrap(), "--json"]).output().unwrap();
    assert_ok(&o);
    let line: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(line["type"], "report");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("character precision") && md.contains("truncation"));
}

#[test]
fn deepseek_engine_on_tiny_synthetic_weights_runs_end_to_end() {
    let out = scratch("deepseek");
    let o = sweep(
        &out,
        &[
            "--engine",
            "deepseek-ocr",
            "--synthetic-weights",
            "tiny",
            "--ratios",
            "10",
            "--modes",
            "tiny,small",
            "--pages",
            "1",
            "--max-new-tokens",
            "16",
        ],
    );
    assert_ok(&o);
    let dir = run_dirs(&out)[0].clone();
    let rows = results::read_samples(&dir).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!((r.engine.as_str(), r.status.as_str()), ("deepseek-ocr", "ok"));
        assert!(r.synthetic_weights && r.weights.as_deref().is_some_and(|w| w.starts_with("synthetic:")));
        assert!(r.n_generated_tokens.is_some_and(|n| n <= 16));
        // The prompt: its text tokens and the page's vision slots.
        let prompt = r.n_prompt_tokens.unwrap_or_else(|| panic!("a model reader has a prompt: {r:?}"));
        assert!(prompt > r.n_vision_slots && prompt < r.n_vision_slots + 16, "{prompt} for {} slots", r.n_vision_slots);
        assert!((0.0..=1.0).contains(&r.char_precision));
    }
    let m = Manifest::load(&dir).unwrap();
    assert!(m.synthetic_weights);
    assert_eq!(m.prompt.as_deref(), Some("<image>\nFree OCR. "), "the prompt is recorded");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("synthetic weights — scores are meaningless"), "{md}");
}

#[test]
fn a_resumed_sweep_restores_its_reader_flags_and_refuses_changed_ones() {
    let out = scratch("resume-engine");
    let grid = [
        "--engine",
        "deepseek-ocr",
        "--synthetic-weights",
        "tiny",
        "--weights-seed",
        "3",
        "--resize-order",
        "pillow13",
        "--ratios",
        "10",
        "--modes",
        "tiny,small",
        "--pages",
        "1",
        "--max-new-tokens",
        "8",
    ];
    let crashed = sweep(&out, &[&grid[..], &["--crash-after", "1"]].concat());
    assert!(!crashed.status.success(), "the crash hook aborts the process");
    let dir = run_dirs(&out)[0].clone();
    let recorded = Manifest::load(&dir).unwrap();
    let flags: Vec<String> =
        ["--synthetic-weights", "tiny", "--weights-seed", "3", "--resize-order", "pillow13"].map(String::from).into();
    assert_eq!(recorded.reader_flags.as_ref(), Some(&flags), "the manifest records the reader flags as given");
    assert!(recorded.engines[0].version.contains("resize order pillow13"), "{:?}", recorded.engines);
    let ds = datasets();
    let resume = |extra: &[&str]| {
        Command::new(BIN)
            .args([&["sweep", "--datasets", &ds, "--resume", dir.to_str().unwrap()][..], extra].concat())
            .output()
            .unwrap()
    };
    // A reader flag given again with another value is refused, naming the flag and both values.
    let other = resume(&["--resize-order", "pillow12", "--weights-seed", "4"]);
    assert!(!other.status.success(), "another resize order would mix two readers' outputs");
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(err.contains(r#"--resize-order: the run started with "pillow13", this command gives "pillow12""#), "{err}");
    assert!(err.contains(r#"--weights-seed: the run started with "3", this command gives "4""#), "{err}");
    // So is one the run started without (its default is what the run was read with).
    let err = String::from_utf8_lossy(&resume(&["--dtype", "bf16"]).stderr).to_string();
    assert!(err.contains(r#"--dtype: the run started without it, this command gives "bf16""#), "{err}");
    assert_eq!(Manifest::load(&dir).unwrap().n_samples_done, recorded.n_samples_done, "nothing was read");
    // The same value again is accepted and a placement flag may change (a dry run here); and
    // `--resume DIR` alone reads with the recorded flags: the rows equal an uninterrupted run's.
    let same = resume(&["--resize-order", "pillow13", "--threads", "1", "--dry-run"]);
    assert_ok(&same);
    let err = String::from_utf8_lossy(&same.stderr);
    assert!(err.contains(r#"--threads is "1" in this session (the run started without it)"#), "{err}");
    assert!(err.contains("reader flags restored from the run's manifest: --synthetic-weights tiny"), "{err}");
    assert_ok(&resume(&[]));
    let m = Manifest::load(&dir).unwrap();
    assert_eq!((m.status.as_str(), m.n_samples_done), ("complete", 2));
    assert_eq!(m.reader_flags.as_ref(), Some(&flags), "the flags the run started with stay recorded");
    let fresh = scratch("resume-engine-fresh");
    assert_ok(&sweep(&fresh, &grid));
    let fresh_dir = run_dirs(&fresh)[0].clone();
    assert_eq!(stable_rows(&dir), stable_rows(&fresh_dir), "resumed with the restored flags = uninterrupted");
    // A run written before reader flags were recorded takes the resuming command's flags, and a
    // changed reader is still refused by the engines' identity (naming both).
    let old = scratch("resume-engine-old");
    let crashed = sweep(&old, &[&grid[..], &["--crash-after", "1"]].concat());
    assert!(!crashed.status.success());
    let old_dir = run_dirs(&old)[0].clone();
    let path = old_dir.join(results::MANIFEST_FILE);
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("reader_flags");
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let o = Command::new(BIN)
        .args(["sweep", "--datasets", &ds, "--resume", old_dir.to_str().unwrap()])
        .args(["--synthetic-weights", "tiny", "--weights-seed", "3"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("resize order pillow13") && err.contains("resize order pillow12"), "{err}");
}
