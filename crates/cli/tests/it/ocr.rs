//! `compress-bench ocr --truth` end to end with Tesseract: rendered pages and their ground truth
//! become a predictions file, which `score` turns into a run with one row per joined page; join
//! problems (an image without truth, a truth row without image, a name given twice) are named and
//! counted, and refuse the run with `--strict`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::{assert_ok, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

const TEXTS: [&str; 3] = [
    "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, \
     and nothing particular to interest me on shore, I thought I would sail about a little.",
    "It is a way I have of driving off the spleen and regulating the circulation. Whenever I find myself \
     growing grim about the mouth, I account it high time to get to sea as soon as I can.",
    "There now is your insular city of the Manhattoes, belted round by wharves as Indian isles by coral \
     reefs; commerce surrounds it with her surf.",
];

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("running compress-bench")
}

fn messages(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Renders `TEXTS` as `pages/page-{1,2,3}.png` in Small mode at a legible size, plus `extra.png`
/// (no truth row) and `dup.png` (two truth rows), and writes `truth.jsonl` with a row whose image
/// does not exist. Returns the pages folder and the truth file.
fn document_set(dir: &Path) -> (PathBuf, PathBuf) {
    let pages = dir.join("pages");
    let mut truth = String::new();
    for (i, text) in TEXTS.iter().enumerate() {
        let txt = dir.join(format!("text-{i}.txt"));
        std::fs::write(&txt, text).unwrap();
        let png = pages.join(format!("page-{}.png", i + 1));
        let meta = dir.join(format!("page-{}.json", i + 1));
        let o = run(&[
            "render",
            "--text-file",
            txt.to_str().unwrap(),
            "--mode",
            "small",
            "--font-size",
            "22",
            "--out",
            png.to_str().unwrap(),
            "--meta",
            meta.to_str().unwrap(),
        ]);
        assert_ok(&o);
        let meta: Value = serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
        let gt = meta["ground_truth"].as_str().unwrap();
        // The truth file may name images with folders; the join uses the file name.
        let row = match i {
            1 => serde_json::json!({"image": format!("scans/page-{}.png", i + 1), "truth": gt, "id": "second"}),
            _ => serde_json::json!({"image": format!("page-{}.png", i + 1), "truth": gt}),
        };
        truth.push_str(&format!("{row}\n"));
    }
    std::fs::copy(pages.join("page-1.png"), pages.join("extra.png")).unwrap();
    std::fs::copy(pages.join("page-2.png"), pages.join("dup.png")).unwrap();
    truth.push_str("{\"image\": \"dup.png\", \"truth\": \"one\"}\n{\"image\": \"dup.png\", \"truth\": \"two\"}\n");
    truth.push_str("{\"image\": \"missing.png\", \"truth\": \"no such page\"}\n");
    let truth_file = dir.join("truth.jsonl");
    std::fs::write(&truth_file, truth).unwrap();
    (pages, truth_file)
}

fn ocr(pages: &Path, truth: &Path, predictions: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "ocr",
        "--engine",
        "tesseract",
        "--mode",
        "small",
        "--threads",
        "2",
        "--images",
        pages.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
        "--predictions-out",
        predictions.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn tesseract_pages_with_truth_become_predictions_that_score_reads() {
    let dir = scratch("ocr-truth");
    let (pages, truth) = document_set(&dir);
    let predictions = dir.join("p.jsonl");
    let o = ocr(&pages, &truth, &predictions, &["--json"]);
    assert_ok(&o);
    let msgs = messages(&o);
    let problems: Vec<(&str, &str)> = msgs
        .iter()
        .filter(|m| m["type"] == "truth_problem")
        .map(|m| (m["data"]["kind"].as_str().unwrap(), m["data"]["image"].as_str().unwrap()))
        .collect();
    assert_eq!(problems, [("duplicate_truth", "dup.png"), ("no_truth", "extra.png"), ("no_image", "missing.png")]);
    let read: Vec<&str> =
        msgs.iter().filter(|m| m["type"] == "ocr").map(|m| m["data"]["id"].as_str().unwrap()).collect();
    assert_eq!(read, ["page-1.png", "second", "page-3.png"]);
    let summary = &msgs.last().unwrap();
    assert_eq!(summary["type"], "predictions");
    assert_eq!(summary["data"]["n_written"], 3);
    assert_eq!((summary["data"]["n_images"].as_u64(), summary["data"]["n_truth_lines"].as_u64()), (Some(5), Some(6)));
    assert_eq!(summary["data"]["problems"], serde_json::json!({"duplicate_truth": 1, "no_image": 1, "no_truth": 1}));
    assert!(!dir.join("p.jsonl.partial").exists());

    // Exactly score's input: id, truth, prediction, mode, vision_tokens (and the image's name).
    let lines: Vec<Value> =
        std::fs::read_to_string(&predictions).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for (line, id) in lines.iter().zip(["page-1.png", "second", "page-3.png"]) {
        let mut keys: Vec<&str> = line.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["id", "image", "mode", "prediction", "truth", "vision_tokens"], "{line}");
        assert_eq!(
            (line["id"].as_str(), line["mode"].as_str(), line["vision_tokens"].as_u64()),
            (Some(id), Some("small"), Some(100))
        );
    }

    let out = dir.join("results");
    let o = run(&[
        "score",
        predictions.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--engine",
        "tesseract",
        "--no-report",
    ]);
    assert_ok(&o);
    let runs: Vec<PathBuf> = std::fs::read_dir(out.join("score")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1);
    let samples = occ_eval::results::read_samples(&runs[0]).unwrap();
    let ids: Vec<&str> = samples.iter().map(|s| s.sample_id.as_str()).collect();
    assert_eq!(ids, ["page-1.png", "second", "page-3.png"]);
    for s in &samples {
        assert_eq!((s.mode.as_str(), s.n_vision_tokens_nominal, s.engine.as_str()), ("small", 100, "tesseract"));
        assert!(s.n_text_tokens > 20 && (s.ratio_nominal - f64::from(s.n_text_tokens) / 100.0).abs() < 1e-12);
        // 22 px type on a clean page: Tesseract reads it.
        assert!(s.char_precision > 0.9, "{}: {}", s.sample_id, s.char_precision);
    }
}

#[test]
fn strict_refuses_a_join_with_problems_naming_them_and_reads_nothing() {
    let dir = scratch("ocr-truth-strict");
    let (pages, truth) = document_set(&dir);
    let predictions = dir.join("p.jsonl");
    let o = ocr(&pages, &truth, &predictions, &["--strict"]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    for needle in ["--strict refuses", "3 problem(s)", "dup.png", "extra.png", "missing.png"] {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}:\n{stderr}");
    }
    assert!(!predictions.exists() && !dir.join("p.jsonl.partial").exists());
}

#[test]
fn truth_needs_a_predictions_file() {
    let o = run(&["ocr", "--engine", "tesseract", "--images", ".", "--truth", "t.jsonl"]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--predictions-out"));
}
