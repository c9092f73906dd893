//! Rendered pages are legible to a real reader: Tesseract (Debian `tesseract-ocr`).

use std::process::Command;

use occ_core::Mode;
use occ_render::fit::fit_to_ratio;
use occ_render::{Lang, RenderSpec};

use crate::common::{en_prose, tokenizer};

/// Levenshtein distance over chars.
fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn collapse(s: &str) -> Vec<char> {
    s.split_whitespace().collect::<Vec<_>>().join(" ").chars().collect()
}

/// 1 − Levenshtein / max(len), whitespace collapsed.
fn char_accuracy(truth: &str, read: &str) -> f64 {
    let (a, b) = (collapse(truth), collapse(read));
    let m = a.len().max(b.len()).max(1);
    1.0 - levenshtein(&a, &b) as f64 / m as f64
}

#[test]
fn levenshtein_matches_hand_computed_values() {
    let d = |a: &str, b: &str| levenshtein(&a.chars().collect::<Vec<_>>(), &b.chars().collect::<Vec<_>>());
    assert_eq!(d("kitten", "sitting"), 3);
    assert_eq!(d("", "abc"), 3);
    assert_eq!(d("三国演义", "三国演義"), 1);
    assert_eq!(char_accuracy("a  b\nc", "a b c"), 1.0);
}

#[test]
fn tesseract_reads_a_base_page_at_ratio_5_with_98_percent_accuracy() {
    let version = Command::new("tesseract").arg("--version").output();
    assert!(
        matches!(&version, Ok(o) if o.status.success()),
        "this test needs Tesseract: install Debian `tesseract-ocr` and `tesseract-ocr-eng` \
         (apt-get install -y tesseract-ocr tesseract-ocr-eng; .ci/run does this) — got {version:?}"
    );
    // Moby-Dick's running prose (chapter 1 on).
    let text = en_prose(20_000);
    let spec = RenderSpec::for_mode(Mode::Base, Lang::En);
    let fitted = fit_to_ratio(&text, tokenizer(), Mode::Base, 5.0, &spec).unwrap();
    assert!((fitted.ratio.nominal - 5.0).abs() <= 0.1);
    let dir = std::env::temp_dir().join(format!("occ-render-legibility-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("page.png");
    fitted.page.image.save(&png).unwrap();
    let out = Command::new("tesseract").arg(&png).arg("-").args(["-l", "eng"]).output().unwrap();
    assert!(out.status.success(), "tesseract failed: {}", String::from_utf8_lossy(&out.stderr));
    let read = String::from_utf8_lossy(&out.stdout);
    let acc = char_accuracy(&fitted.page.text, &read);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        acc >= 0.98,
        "Tesseract char accuracy {acc:.4} < 0.98 at {} px\n--- truth ---\n{}\n--- read ---\n{read}",
        fitted.font_px,
        fitted.page.text
    );
}
