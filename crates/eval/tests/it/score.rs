//! `occ_eval::score` on the committed fixture `tests/fixtures/score/fox-mini.jsonl`, against
//! metrics computed by hand (the comments show the arithmetic).
//!
//! The fixture's scored rows (tiny = 64 vision tokens, small = 100):
//!
//! | id | mode | tokens | truth → prediction | fox-out | fox-gt | char |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | p1 | tiny | 650 | "the cat sat on the mat" → "the cat sat on a mat" | 5/6 | 5/5 | 1 − 3/22 |
//! | p2 | tiny | 700 | "a b c d" → "a b c d e f" | 4/6 | 4/4 | 1 − 4/11 |
//! | p3 | tiny | 699 | "one two three four" → "one two three" | 3/3 | 3/4 | 1 − 5/18 |
//! | p5 | tiny | 620 | "nothing was read here" → "" (empty prediction) | 0 | 0 | 0 |
//! | s1 | small | 650 | exact | 1 | 1 | 1 |
//! | z1 (group other) | tiny | 650 | exact | 1 | 1 | 1 |
//!
//! Left out as bad: p4 (lines 4 and 6, duplicate id), e1 (empty truth), m1 (no prediction),
//! line 12 (invalid JSON), g1 (Gundam without vision_tokens). Under the Fox protocol (100-token
//! bins over [600, 1300)) s2 (1300 tokens), s3 (599) and t1 (a few tokens, counted by the
//! tokenizer) are outside the range. p2 has exactly 700 tokens: it opens the 700–800 bin.

use std::path::{Path, PathBuf};

use occ_core::TextTokenizer;
use occ_eval::schema::{BinRow, SampleRow, SummaryRow};
use occ_eval::score::{self, NoProgress, ParsedInput, Problem, RunMeta, ScoreError, ScoreOptions, Scored, TokenBins};
use occ_eval::{results, schema};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/score/fox-mini.jsonl")
}

fn input() -> ParsedInput {
    score::read_input(&fixture()).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

fn fox_options() -> ScoreOptions {
    ScoreOptions { bins: TokenBins::FOX, ..ScoreOptions::new("fixture") }
}

fn scored(options: &ScoreOptions) -> Scored {
    let tok = TextTokenizer::deepseek_ocr().unwrap();
    score::score_rows(&input(), options, &tok, &mut NoProgress).unwrap()
}

fn row<'a>(s: &'a Scored, id: &str) -> &'a SampleRow {
    s.samples.iter().find(|r| r.sample_id == id).unwrap_or_else(|| panic!("no row {id}"))
}

#[test]
fn rows_score_to_the_hand_computed_metrics() {
    let s = scored(&fox_options());
    let ids: Vec<&str> = s.samples.iter().map(|r| r.sample_id.as_str()).collect();
    assert_eq!(ids, ["p1", "p2", "p3", "p5", "s1", "z1"], "input order, bad and out-of-range rows left out");

    // p1: unique GT words {the, cat, sat, on, mat}; unique output words add "a": 5 common.
    let p1 = row(&s, "p1");
    assert!(close(p1.fox_precision_out_words, 5.0 / 6.0));
    assert!(close(p1.fox_precision_gt_words, 1.0));
    // Prefix "the cat sat on " and suffix " mat" agree; "the" → "a" is 1 substitution + 2 deletions.
    assert_eq!(p1.edit_distance, 3);
    assert!(close(p1.char_precision, 1.0 - 3.0 / 22.0));
    // Word multisets: "the" matches once, cat sat on mat once each: 5 of 6 both ways.
    assert!(close(p1.word_precision, 5.0 / 6.0) && close(p1.word_recall, 5.0 / 6.0));
    assert_eq!((p1.n_text_tokens, p1.n_vision_tokens_nominal, p1.n_vision_slots), (650, 64, 73));
    assert!(close(p1.ratio_nominal, 650.0 / 64.0));
    // The truth is far shorter than 64 tokens: the truncation baseline keeps all of it.
    assert!(close(p1.truncation_char_precision, 1.0));

    let p2 = row(&s, "p2");
    assert!(close(p2.fox_precision_out_words, 4.0 / 6.0) && close(p2.fox_precision_gt_words, 1.0));
    assert!(close(p2.char_precision, 1.0 - 4.0 / 11.0));

    let p3 = row(&s, "p3");
    assert!(close(p3.fox_precision_out_words, 1.0) && close(p3.fox_precision_gt_words, 3.0 / 4.0));
    assert!(close(p3.char_precision, 1.0 - 5.0 / 18.0));

    // An empty prediction is scored, and scores 0 on every metric.
    let p5 = row(&s, "p5");
    assert_eq!(p5.status, "ok");
    assert_eq!(p5.n_chars_out, 0);
    for v in [p5.fox_precision_out_words, p5.fox_precision_gt_words, p5.char_precision, p5.word_f1] {
        assert!(close(v, 0.0));
    }

    let s1 = row(&s, "s1");
    assert_eq!((s1.mode.as_str(), s1.n_vision_tokens_nominal, s1.corpus.as_str()), ("small", 100, "all"));
    assert!(s1.exact_match && close(s1.char_precision, 1.0));
    assert_eq!(row(&s, "z1").corpus, "other");
}

#[test]
fn bad_and_out_of_range_rows_are_named_by_line() {
    let s = scored(&fox_options());
    let bad: Vec<(usize, Option<&str>, &str)> =
        s.bad.iter().map(|b| (b.line, b.id.as_deref(), b.problem.kind())).collect();
    assert_eq!(
        bad,
        vec![
            (4, Some("p4"), "duplicate_id"),
            (6, Some("p4"), "duplicate_id"),
            (10, Some("e1"), "empty_truth"),
            (11, Some("m1"), "missing_field"),
            (12, None, "invalid_json"),
            (13, Some("g1"), "vision_tokens"),
        ]
    );
    assert_eq!(s.bad[0].problem, Problem::DuplicateId { lines: vec![4, 6] });
    let out: Vec<(usize, &str)> = s.out_of_range.iter().map(|o| (o.line, o.id.as_str())).collect();
    assert_eq!(out, vec![(8, "s2"), (9, "s3"), (14, "t1")], "1300 is past [600, 1300), 599 before it");
    assert_eq!(s.n_lines, 15);
}

#[test]
fn fox_bins_have_the_hand_computed_ratios_and_means() {
    let s = scored(&fox_options());
    let cells: Vec<(&str, &str, String, f64, usize)> = s
        .cells
        .iter()
        .map(|c| (c.group.as_str(), c.mode.as_str(), c.bin.to_string(), c.target_ratio, c.members.len()))
        .collect();
    assert_eq!(
        cells,
        vec![
            // (650 + 699 + 620) / 3 / 64 = 10.2552… → 10.26.
            ("all", "tiny", "600–700".to_string(), 10.26, 3),
            // 700 tokens is the first of the 700–800 bin: 700 / 64 = 10.9375 → 10.94.
            ("all", "tiny", "700–800".to_string(), 10.94, 1),
            ("all", "small", "600–700".to_string(), 6.5, 1),
            ("other", "tiny", "600–700".to_string(), 10.16, 1),
        ]
    );
    let summary = occ_eval::summary::summarize(&s.samples, 0);
    let bins = score::bin_rows(&s, &summary);
    let tiny_600 =
        bins.iter().find(|b| b.group == "all" && b.mode == "tiny" && b.tokens_lo == Some(600)).expect("tiny 600–700");
    // fox-out: (5/6 + 1 + 0) / 3 = 11/18; fox-gt: (1 + 3/4 + 0) / 3 = 7/12.
    assert!(close(tiny_600.fox_precision_out_words, 11.0 / 18.0));
    assert!(close(tiny_600.fox_precision_gt_words, 7.0 / 12.0));
    assert!(close(tiny_600.char_precision, ((1.0 - 3.0 / 22.0) + (1.0 - 5.0 / 18.0) + 0.0) / 3.0));
    // Three pages are too few for a CI (occ_eval::stats::MIN_N_FOR_CI): the bounds are NaN.
    assert!(tiny_600.fox_precision_out_words_ci_low.is_nan() && tiny_600.fox_precision_out_words_ci_high.is_nan());
    assert_eq!((tiny_600.n_pages, tiny_600.tokens_hi, tiny_600.mean_vision_tokens), (3, Some(700), Some(64.0)));
    assert!(close(tiny_600.mean_text_tokens, 1969.0 / 3.0));
    assert!(close(tiny_600.compression.unwrap(), 1969.0 / 192.0));
    let tiny_700 = bins.iter().find(|b| b.mode == "tiny" && b.tokens_lo == Some(700)).unwrap();
    assert!(close(tiny_700.fox_precision_out_words, 2.0 / 3.0) && close(tiny_700.fox_precision_gt_words, 1.0));
    // One page: no CI (not a zero-width one).
    assert!(tiny_700.fox_precision_out_words_ci_low.is_nan());

    // Headline over all four tiny pages of group "all": fox-out (5/6 + 4/6 + 1 + 0) / 4 = 0.625,
    // fox-gt (1 + 1 + 3/4 + 0) / 4 = 0.6875.
    let head = score::headline(&s.samples, 0);
    let tiny = head.iter().find(|h| h.group == "all" && h.mode == "tiny").unwrap();
    assert_eq!(tiny.n_pages, 4);
    assert!(close(tiny.fox_precision_out_words.mean, 0.625));
    assert!(close(tiny.fox_precision_gt_words.mean, 0.6875));
}

#[test]
fn without_bins_a_group_and_mode_is_one_cell_and_absent_tokens_are_counted() {
    let s = scored(&ScoreOptions::new("fixture"));
    let tok = TextTokenizer::deepseek_ocr().unwrap();
    let t1 = row(&s, "t1");
    assert_eq!(t1.n_text_tokens as usize, tok.count("Call me Ishmael.").unwrap());
    assert_eq!(s.samples.len(), 9, "s2, s3 and t1 are in without a token range");
    let cells: Vec<(&str, &str, usize)> =
        s.cells.iter().map(|c| (c.group.as_str(), c.mode.as_str(), c.members.len())).collect();
    assert_eq!(cells, vec![("all", "tiny", 5), ("all", "small", 3), ("other", "tiny", 1)]);
    let small = &s.cells[1];
    // (650 + 1300 + 599) / 3 / 100 = 8.4966… → 8.5.
    assert_eq!(small.target_ratio, 8.5);
}

#[test]
fn strict_refuses_with_every_bad_row() {
    let options = ScoreOptions { strict: true, ..fox_options() };
    let tok = TextTokenizer::deepseek_ocr().unwrap();
    match score::score_rows(&input(), &options, &tok, &mut NoProgress) {
        Err(ScoreError::Strict { bad }) => {
            assert_eq!(bad.len(), 6);
            assert!(bad.iter().any(|b| b.problem == Problem::EmptyTruth), "found while scoring, listed too");
        }
        other => panic!("expected a strict refusal, got {:?}", other.map(|s| s.samples.len())),
    }
}

#[test]
fn a_run_writes_the_sweep_files_and_the_bins() {
    let out = std::env::temp_dir().join(format!("occ-eval-it-score-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let options = fox_options();
    let meta = RunMeta {
        input: fixture(),
        input_sha256: score::sha256_hex(&std::fs::read(fixture()).unwrap()),
        out_root: out.clone(),
        git_commit: "abc".into(),
        host: "test".into(),
        tokenizer: "test".into(),
        command: vec![],
        started_utc: "2025-01-01T00:00:00Z".into(),
        wall_time_s: 0.5,
    };
    let (run, lock) = score::write_run_locked(scored(&options), &options, &meta).unwrap();
    assert!(run.dir.join(occ_eval::lock::LOCK_FILE).is_file(), "the run folder is locked while it is written");
    drop(lock);
    assert!(!run.dir.join(occ_eval::lock::LOCK_FILE).exists(), "and released after");
    assert!(run.dir.starts_with(out.join("fixture")));
    let samples = results::read_samples(&run.dir).unwrap();
    assert_eq!(samples.len(), 6);
    assert!(samples.iter().all(|r| r.run_id == run.manifest.run_id && r.git_commit == "abc"));
    // summary.csv is the sweep's summary of the same rows.
    // (Compared as text: cells of fewer than 5 pages have NaN CI bounds, and NaN != NaN.)
    assert_eq!(format!("{:?}", run.summary), format!("{:?}", occ_eval::summary::summarize(&samples, 0)));
    let fox: Vec<&SummaryRow> = run.summary.iter().filter(|r| r.metric == "fox_precision_out_words").collect();
    assert_eq!(fox.len(), 4, "one per cell");
    let csv = std::fs::read_to_string(run.dir.join(score::BINS_FILE)).unwrap();
    assert!(csv.starts_with("group,mode,tokens_lo,tokens_hi,target_ratio,n_pages"), "{csv}");
    let bins = score::read_bins(&run.dir).unwrap();
    assert_eq!(bins.len(), 4);
    assert_eq!(
        bins.iter().map(|b| (b.mode.as_str(), b.tokens_lo, b.n_pages)).collect::<Vec<_>>(),
        run.bins.iter().map(|b| (b.mode.as_str(), b.tokens_lo, b.n_pages)).collect::<Vec<_>>()
    );
    let record = score::ScoreRecord::load(&run.dir).unwrap().expect("score.json");
    assert_eq!(record, run.record);
    assert_eq!(record.bins, TokenBins::FOX);
    assert_eq!((record.n_lines, record.n_scored, record.n_bad, record.n_out_of_range), (15, 6, 6, 3));
    let manifest = results::Manifest::load(&run.dir).unwrap();
    assert_eq!((manifest.status.as_str(), manifest.n_samples_done), ("complete", 6));
    assert_eq!(manifest.spec.ratios_by_mode["tiny"], vec![10.16, 10.26, 10.94]);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn bin_rows_round_trip_as_a_table() {
    let s = scored(&fox_options());
    let bins = score::bin_rows(&s, &occ_eval::summary::summarize(&s.samples, 0));
    let df = <BinRow as schema::Table>::to_frame(&bins).unwrap();
    // Compared as text: bins of fewer than 5 pages have NaN CI bounds, and NaN != NaN.
    assert_eq!(format!("{:?}", <BinRow as schema::Table>::from_frame(&df).unwrap()), format!("{bins:?}"));
}

/// Stops when asked the `n`-th time (before chunk `n`), counting the rows it was told of.
struct StopAt {
    asked: usize,
    n: usize,
    advanced: usize,
}

impl score::ScoreProgress for StopAt {
    fn advanced(&mut self, done: usize) {
        self.advanced = done;
    }

    fn should_stop(&mut self) -> bool {
        self.asked += 1;
        self.asked == self.n
    }
}

#[test]
fn a_stop_request_ends_scoring_before_the_next_chunk_naming_the_rows_done() {
    let tok = TextTokenizer::deepseek_ocr().unwrap();
    let mut stop = StopAt { asked: 0, n: 1, advanced: 0 };
    let err = score::score_rows(&input(), &fox_options(), &tok, &mut stop).unwrap_err();
    assert!(matches!(err, ScoreError::Interrupted { done: 0, total } if total == input().rows.len()), "{err}");
    // Asked before every chunk: the fixture is one chunk, so a stop asked for the second time is never reached.
    let mut late = StopAt { asked: 0, n: 2, advanced: 0 };
    let scored = score::score_rows(&input(), &fox_options(), &tok, &mut late).unwrap();
    assert_eq!((late.asked, late.advanced), (1, input().rows.len()));
    assert_eq!(scored.samples.len(), 6);
}
