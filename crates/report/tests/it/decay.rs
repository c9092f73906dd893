//! A decay run's files (`occ_report::decay::write_run`): tables, charts, report and manifest.

use std::path::PathBuf;

use occ_core::{OcrEngine, TextTokenizer};
use occ_eval::decay::output::RunMeta;
use occ_eval::decay::{self, DecayConfig, DecayFile, DecayOverrides, DecayRow};

#[test]
fn a_decay_run_writes_every_file_and_a_manifest_listing_them() {
    let flags = DecayOverrides {
        schedules: vec!["paper".into(), "text".into(), "ladder:levels=text@0/dropped@3".into()],
        rounds: Some(8),
        round_tokens: Some(60),
        needles: Some(4),
        datasets: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets")),
        ..DecayOverrides::default()
    };
    let cfg = DecayConfig::resolve(&DecayFile::default(), "", flags).unwrap();
    let tok = TextTokenizer::deepseek_ocr().unwrap();
    let mut engine = occ_core::fakes::FakeOcr::perfect(Default::default()).named("fake-perfect");
    let res = decay::run(&cfg, "test", &tok, &mut engine, &mut |_, _, _| {}).unwrap();
    let dir = std::env::temp_dir().join(format!("occ-report-decay-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let meta = RunMeta {
        run_id: "test".into(),
        created_utc: "2025-01-01T00:00:00Z".into(),
        command: "test".into(),
        engine: engine.info(),
        tokenizer: "embedded".into(),
        wall_s: 0.0,
        reader_flags: None,
        prompt: None,
    };
    let files = occ_report::decay::write_run(&dir, &cfg, &res, &meta).unwrap();
    let names: Vec<String> = files.iter().map(|p| p.strip_prefix(&dir).unwrap().display().to_string()).collect();
    assert_eq!(
        names,
        [
            "decay.parquet",
            "needles.parquet",
            "plots/accuracy_vs_age.svg",
            "plots/tokens_vs_age.svg",
            "plots/accuracy_vs_budget.svg",
            "plots/needles_vs_age.svg",
            "report.md",
            "report.html",
            "manifest.json",
        ]
    );
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() > 0, "{} empty", f.display());
    }
    let df = occ_eval::schema::read_parquet(&dir.join("decay.parquet")).unwrap();
    assert_eq!(df.height(), 24);
    let back = <DecayRow as occ_eval::schema::Table>::from_frame(&df).unwrap();
    assert_eq!(back, res.rows, "decay.parquet reads back as the rows written");
    assert_eq!(occ_eval::schema::read_parquet(&dir.join("needles.parquet")).unwrap().height(), 12);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kind"], "decay");
    assert_eq!(manifest["summaries"].as_array().unwrap().len(), 3);
    assert_eq!(manifest["files"].as_array().unwrap().len(), names.len());
    let svg = std::fs::read_to_string(dir.join("plots/accuracy_vs_age.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("paper"));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("<table>"));
    std::fs::remove_dir_all(&dir).unwrap();
}
