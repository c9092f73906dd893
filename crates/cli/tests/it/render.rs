//! `compress-bench render` end to end: a page off its target ratio warns (and fails with
//! `--strict`, writing nothing), text left off the page warns, and the metadata counts the input,
//! the page and what was dropped; right-to-left lines carry their visual order.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::{assert_ok, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

fn render(text_file: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["render", "--text-file", text_file.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().expect("running compress-bench")
}

fn meta(png: &Path) -> Value {
    let body = std::fs::read_to_string(png.with_extension("json")).unwrap();
    serde_json::from_str(&body).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// English prose of at least `bytes` bytes from the committed corpus.
fn prose(bytes: usize) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/en.jsonl");
    let body = std::fs::read_to_string(path).unwrap();
    let passages: Vec<String> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
    let mut s = String::new();
    for p in passages.iter().cycle() {
        if s.len() >= bytes {
            break;
        }
        s.push_str(p);
        s.push_str("\n\n");
    }
    s
}

const SHORT: &str = "Call me Ishmael. Some years ago, never mind how long precisely, having little money.";

#[test]
fn a_short_text_at_a_high_ratio_warns_and_fails_with_strict() {
    let dir = scratch("render-short");
    let text = dir.join("short.txt");
    std::fs::write(&text, SHORT).unwrap();
    let png = dir.join("p.png");
    let o = render(&text, &png, &["--ratio", "12"]);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(err.contains("warning:") && err.contains("whole text is on the page"), "{err}");
    let m = meta(&png);
    assert_eq!(m["ratio_check"]["off_target"], "text_too_short");
    assert!(m["ratio"]["nominal"].as_f64().unwrap() < 0.5);
    assert_eq!(m["input_tokens"], m["used_tokens"]);
    assert_eq!(m["dropped_tokens"], 0);
    assert_eq!(m["dropped_chars"], 0);
    // An absurd ratio is the same case, not a silent 41×.
    let o = render(&text, &png, &["--ratio", "1e9"]);
    assert_ok(&o);
    assert!(stderr(&o).contains("whole text is on the page"), "{}", stderr(&o));
    // --strict: an error naming the file and the reason, and no file written.
    let strict_png = dir.join("strict.png");
    let o = render(&text, &strict_png, &["--ratio", "12", "--strict"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("short.txt") && err.contains("whole text is on the page") && err.contains("--strict"),
        "{err}"
    );
    assert!(!strict_png.exists() && !strict_png.with_extension("json").exists());
}

#[test]
fn a_ratio_that_rounds_to_no_token_warns_about_the_blank_page() {
    let dir = scratch("render-blank");
    let text = dir.join("t.txt");
    std::fs::write(&text, prose(5_000)).unwrap();
    let png = dir.join("p.png");
    let o = render(&text, &png, &["--ratio", "0.001"]);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(err.contains("blank") && err.contains("0.015625"), "{err}");
    let m = meta(&png);
    assert_eq!(m["used_tokens"], 0);
    assert_eq!(m["ratio_check"]["off_target"], "empty_budget");
    assert_eq!(m["dropped_tokens"], m["input_tokens"]);
    assert!(!render(&text, &png, &["--ratio", "0.001", "--strict"]).status.success());
}

#[test]
fn truncating_a_ten_megabyte_text_to_one_page_is_counted_and_warned() {
    let dir = scratch("render-huge");
    let text_path = dir.join("huge.txt");
    let text = prose(10_000_000);
    std::fs::write(&text_path, &text).unwrap();
    let png = dir.join("p.png");
    let o = render(&text_path, &png, &["--ratio", "10", "--mode", "small", "--strict"]);
    assert_ok(&o);
    let err = stderr(&o);
    assert!(err.contains("are beyond the page's budget of 1000 tokens"), "{err}");
    let m = meta(&png);
    assert_eq!(m["ratio_check"]["off_target"], Value::Null, "on target: --strict passes");
    assert_eq!(m["used_tokens"], 1000);
    let input = m["input_tokens"].as_u64().unwrap();
    assert!(input > 2_000_000, "{input}");
    assert_eq!(m["dropped_tokens"].as_u64().unwrap(), input - 1000);
    let truth = m["ground_truth"].as_str().unwrap();
    assert_eq!(m["dropped_bytes"].as_u64().unwrap() as usize + truth.len(), text.len());
    assert_eq!(m["dropped_chars"].as_u64().unwrap() as usize + truth.chars().count(), text.chars().count());
}

#[test]
fn an_on_target_page_has_no_warning_and_font_size_overflow_is_counted() {
    let dir = scratch("render-ok");
    let text = dir.join("t.txt");
    std::fs::write(&text, prose(20_000)).unwrap();
    let png = dir.join("p.png");
    let o = render(&text, &png, &["--ratio", "8"]);
    assert_ok(&o);
    let m = meta(&png);
    assert_eq!(m["ratio_check"]["off_target"], Value::Null);
    assert!(stderr(&o).contains("beyond the page's budget"), "the rest of the text is reported");
    assert!(!stderr(&o).contains("ratio is"), "{}", stderr(&o));
    // --font-size: the overflow is counted in the same fields.
    let o = render(&text, &png, &["--font-size", "14"]);
    assert_ok(&o);
    assert!(stderr(&o).contains("did not fit the page at 14 px"), "{}", stderr(&o));
    let m = meta(&png);
    assert_eq!(m["ratio_check"], Value::Null);
    assert_eq!(m["dropped_chars"], m["overflow_chars"]);
    assert!(m["dropped_tokens"].as_u64().unwrap() > 0);
    // --strict belongs to ratio fitting.
    assert!(!render(&text, &png, &["--font-size", "14", "--strict"]).status.success());
}

#[test]
fn right_to_left_lines_carry_their_visual_order_in_the_metadata() {
    let dir = scratch("render-rtl");
    let text = dir.join("he.txt");
    std::fs::write(&text, "עברית and English\nسلام").unwrap();
    let png = dir.join("p.png");
    assert_ok(&render(&text, &png, &["--font-size", "20"]));
    let m = meta(&png);
    assert_eq!(m["lines"][0]["text"], "עברית and English");
    // The paragraph starts with Hebrew, so it reads right to left: the English phrase comes first on
    // the left.
    assert_eq!(m["lines"][0]["visual"], "and English תירבע");
    assert_eq!(m["lines"][1]["visual"], "مالس");
}
