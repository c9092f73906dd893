//! The decay sweep (`occ_eval::decay`) end to end on the fake engine (handed each page's text).

use std::path::PathBuf;

use occ_core::fakes::FakeOcr;
use occ_core::TextTokenizer;
use occ_eval::decay::{self as sweep, DecayConfig, DecayFile, DecayOverrides};
use occ_memory::ScheduleSpec;

fn tokenizer() -> TextTokenizer {
    TextTokenizer::deepseek_ocr().expect("embedded tokenizer loads")
}

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
fn fake_engine_sweep_scores_rounds_by_representation_and_writes_the_files() {
    let cfg = config(&["paper", "text", "ladder:levels=text@0/dropped@3"]);
    let mut engine = FakeOcr::perfect(Default::default());
    let mut calls = 0;
    let res = sweep::run(&cfg, "test", &tokenizer(), &mut engine, &mut |_, _, _| calls += 1).unwrap();
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
        // Text and dropped rounds have no page: no reading mode and no font (null, not "" and 0).
        let imaged = r.representation != "text" && r.representation != "dropped";
        assert_eq!(r.mode.is_some(), imaged, "{} {} {}: mode {:?}", r.schedule, r.round_id, r.representation, r.mode);
        assert_eq!(
            r.font_px.is_some(),
            imaged,
            "{} {} {}: font {:?}",
            r.schedule,
            r.round_id,
            r.representation,
            r.font_px
        );
        assert!(r.font_px.is_none_or(|f| f > 0.0));
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
}

#[test]
fn sweep_is_deterministic() {
    let cfg = config(&["paper:policy=downsample"]);
    let run = || {
        let mut engine = FakeOcr::drop_every(Default::default(), 5);
        sweep::run(&cfg, "det", &tokenizer(), &mut engine, &mut |_, _, _| {}).unwrap()
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
    let mut engine = FakeOcr::perfect(Default::default());
    let mut cfg = config(&["paper"]);
    cfg.rounds = 0;
    assert!(sweep::run(&cfg, "x", &tokenizer(), &mut engine, &mut |_, _, _| {})
        .unwrap_err()
        .to_string()
        .contains("rounds"));
    let mut cfg = config(&["paper"]);
    cfg.corpus = "nope".into();
    let err = sweep::run(&cfg, "x", &tokenizer(), &mut engine, &mut |_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    let mut cfg = config(&["budget:tokens=5"]);
    cfg.rounds = 3;
    let err = sweep::run(&cfg, "x", &tokenizer(), &mut engine, &mut |_, _, _| {}).unwrap_err().to_string();
    assert!(err.contains("budget of 5 tokens"), "{err}");
}

#[test]
fn the_experiment_file_and_the_flags_merge_over_the_defaults() {
    let file: DecayFile = toml::from_str(
        r#"
        [decay]
        rounds = 12
        seed = 3
        [[schedule]]
        name = "keep2"
        levels = [{ from = 0, repr = "text" }, { from = 2, repr = "dropped" }]
        "#,
    )
    .unwrap();
    let cfg = DecayConfig::resolve(&file, "x.toml", DecayOverrides { seed: Some(9), ..Default::default() }).unwrap();
    assert_eq!((cfg.rounds, cfg.seed, cfg.round_tokens), (12, 9, DecayConfig::default().round_tokens));
    assert_eq!(cfg.schedules.len(), 1);
    let flags = DecayOverrides { schedules: vec!["paper".into(), "text".into()], ..Default::default() };
    assert_eq!(DecayConfig::resolve(&file, "x.toml", flags).unwrap().schedules.len(), 2, "flags replace the file's");
    let bad = DecayOverrides { schedules: vec!["paper:ages=-1/2".into()], ..Default::default() };
    let err = DecayConfig::resolve(&file, "x.toml", bad).unwrap_err().to_string();
    assert!(err.contains("--schedule") && err.contains("negative"), "{err}");
    let zero = DecayOverrides { rounds: Some(0), ..Default::default() };
    assert!(DecayConfig::resolve(&DecayFile::default(), "", zero).unwrap_err().to_string().contains("rounds"));
}
