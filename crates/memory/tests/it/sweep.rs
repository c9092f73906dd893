//! The decay sweep end to end on the oracle engine (feature `sweep`).

use std::path::PathBuf;

use occ_eval::oracle::Oracle;
use occ_memory::sweep::{self, output, DecayConfig};
use occ_memory::ScheduleSpec;

use crate::util::tokenizer;

fn config(schedules: &[&str]) -> DecayConfig {
    DecayConfig {
        rounds: 8,
        round_tokens: 60,
        datasets: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets"),
        needles: 4,
        schedules: schedules.iter().map(|s| s.parse::<ScheduleSpec>().unwrap()).collect(),
        ..DecayConfig::default()
    }
}

#[test]
fn oracle_sweep_scores_rounds_by_representation_and_writes_the_files() {
    let cfg = config(&["paper", "text", "ladder:levels=text@0/dropped@3"]);
    let (mut engine, tap) = Oracle::perfect();
    let mut calls = 0;
    let res = sweep::run(&cfg, "test", &tokenizer(), &mut engine, Some(&tap), &mut |_, _, _| calls += 1).unwrap();
    assert_eq!(res.rows.len(), 8 * 3);
    assert_eq!(calls, 8 * 3);
    // Needles at ages 0, 2, 5, 7 (evenly spaced), depths 10 %, 50 %, 90 %, 10 %.
    let ages: Vec<u64> = res.conversation.needles.iter().map(|n| n.age).collect();
    assert_eq!(ages, vec![0, 2, 5, 7]);
    for n in &res.conversation.needles {
        let round = res.conversation.rounds.iter().find(|r| r.id == n.round_id).unwrap();
        assert!(round.text.contains(&n.fact), "{} not in {}", n.fact, round.id);
    }
    for r in &res.rows {
        let want = if r.representation == "dropped" { 0.0 } else { 1.0 };
        assert!(
            (r.char_precision - want).abs() < 1e-12,
            "{} {} {}: {}",
            r.schedule,
            r.round_id,
            r.representation,
            r.char_precision
        );
    }
    // Paper: ages 0 text, 1 gundam, 2-3 large, 4-7 base; imaged rounds cost their slots.
    let paper: Vec<_> = res.rows.iter().filter(|r| r.schedule == "paper").collect();
    let cost = |age: u32| paper.iter().find(|r| r.age == age).unwrap().cost_tokens;
    assert_eq!((cost(1), cost(2), cost(4), cost(7)), (903, 421, 273, 273));
    // Each page is read once per run: the text schedule and text levels never reach the engine,
    // and the dropping schedule's text rounds reuse nothing imaged.
    assert_eq!(res.pages_read, 7);
    // Needles: retrieved unless dropped.
    let drop = res.needles.iter().filter(|n| n.schedule == "ladder:levels=text@0/dropped@3");
    let got: Vec<(u32, bool)> = drop.map(|n| (n.age, n.retrieved)).collect();
    assert_eq!(got, vec![(7, false), (5, false), (2, true), (0, true)], "rows run oldest round first");
    assert!(res.needles.iter().filter(|n| n.representation != "dropped").all(|n| n.retrieved && n.fact_recalled));
    // Truncation baseline: "text" spends all tokens, so the baseline reads everything.
    let text = res.summaries.iter().find(|s| s.schedule == "text").unwrap();
    assert_eq!((text.baseline_mean_char_precision, text.saving), (1.0, 1.0));
    // 60-token rounds are cheaper as text than as any page (≥ 273 slots): the paper ladder costs more
    // than all text, so the truncation baseline at its size reads everything.
    let paper_s = &res.summaries[0];
    assert!(paper_s.context_tokens > paper_s.all_text_tokens);
    assert_eq!(paper_s.baseline_mean_char_precision, 1.0);
    // Keeping the 3 newest rounds as text: the baseline at that size holds exactly those 3 of 8.
    let keep3 = &res.summaries[2];
    assert_eq!((keep3.baseline_mean_char_precision, keep3.mean_char_precision), (3.0 / 8.0, 3.0 / 8.0));

    let dir = std::env::temp_dir().join(format!("occ-memory-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let meta = output::RunMeta {
        run_id: "test".into(),
        created_utc: "2025-01-01T00:00:00Z".into(),
        command: "test".into(),
        engine: occ_core::OcrEngine::info(&engine),
        tokenizer: "embedded".into(),
        wall_s: 0.0,
    };
    let files = output::write_all(&dir, &cfg, &res, &meta).unwrap();
    for name in [
        "decay.parquet",
        "needles.parquet",
        "manifest.json",
        "report.md",
        "report.html",
        "plots/accuracy_vs_age.svg",
        "plots/tokens_vs_age.svg",
        "plots/accuracy_vs_budget.svg",
        "plots/needles_vs_age.svg",
    ] {
        assert!(files.contains(&dir.join(name)), "{name} missing from {files:?}");
        assert!(std::fs::metadata(dir.join(name)).unwrap().len() > 0, "{name} empty");
    }
    let df = occ_eval::schema::read_parquet(&dir.join("decay.parquet")).unwrap();
    assert_eq!(df.height(), 24);
    let row = serde_json::to_value(&res.rows[0]).unwrap();
    let fields: Vec<String> = row.as_object().unwrap().keys().cloned().collect();
    let mut cols: Vec<String> = df.get_column_names().iter().map(|c| c.to_string()).collect();
    let mut fields_sorted = fields.clone();
    fields_sorted.sort();
    cols.sort();
    assert_eq!(cols, fields_sorted, "every DecayRow field is a column");
    assert_eq!(occ_eval::schema::read_parquet(&dir.join("needles.parquet")).unwrap().height(), 12);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kind"], "decay");
    assert_eq!(manifest["summaries"].as_array().unwrap().len(), 3);
    let svg = std::fs::read_to_string(dir.join("plots/accuracy_vs_age.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("paper"));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("<table>"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sweep_is_deterministic() {
    let cfg = config(&["paper:policy=downsample"]);
    let run = || {
        let (mut engine, tap) = Oracle::drop_every(5);
        sweep::run(&cfg, "det", &tokenizer(), &mut engine, Some(&tap), &mut |_, _, _| {}).unwrap()
    };
    let (a, b) = (run(), run());
    let strip = |rows: &[sweep::DecayRow]| -> Vec<sweep::DecayRow> {
        rows.iter()
            .cloned()
            .map(|mut r| {
                r.ocr_ms = 0.0;
                r
            })
            .collect()
    };
    assert_eq!(strip(&a.rows), strip(&b.rows));
    assert_eq!(a.needles, b.needles);
}

#[test]
fn bad_sweep_configs_are_errors() {
    let (mut engine, tap) = Oracle::perfect();
    let mut cfg = config(&["paper"]);
    cfg.rounds = 0;
    assert!(sweep::run(&cfg, "x", &tokenizer(), &mut engine, Some(&tap), &mut |_, _, _| {})
        .unwrap_err()
        .to_string()
        .contains("rounds"));
    let mut cfg = config(&["paper"]);
    cfg.corpus = "nope".into();
    let err = sweep::run(&cfg, "x", &tokenizer(), &mut engine, Some(&tap), &mut |_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    let mut cfg = config(&["budget:tokens=5"]);
    cfg.rounds = 3;
    let err = sweep::run(&cfg, "x", &tokenizer(), &mut engine, Some(&tap), &mut |_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains("budget of 5 tokens"), "{err}");
}
