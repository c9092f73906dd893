use std::collections::HashMap;
use std::path::PathBuf;

use occ_core::fakes::FakeOcr;
use occ_core::{Prompt, TextTokenizer};
use occ_eval::corpus::{Corpus, Passage};
use occ_eval::plan::{build_plan, PlannedSample, Shard};
use occ_eval::render::{BlankRenderer, PageRenderer};
use occ_eval::runner::{execute, Engines, RunContext, Silent};
use occ_eval::spec::{ExperimentSpec, SpecFile, SpecOverrides};
use occ_eval::{journal, results, Lang};

fn corpus() -> Corpus {
    let words = "the whale swam far beyond the grey horizon while the crew watched in silence and awe";
    let passages = (0..6)
        .map(|i| Passage {
            id: format!("p{i}"),
            source: String::new(),
            lang: Lang::En,
            n_tokens: 300,
            text: format!("Passage {i}. ") + &[words; 18].join(" "),
        })
        .collect();
    Corpus { name: "en".into(), lang: Lang::En, passages }
}

fn spec() -> ExperimentSpec {
    let o = SpecOverrides {
        name: Some("it".into()),
        modes: Some(vec!["tiny".into(), "small".into()]),
        ratios: Some("2,4".into()),
        pages: Some(2),
        engine: Some(occ_eval::EngineKind::FakePerfect),
        ..SpecOverrides::default()
    };
    ExperimentSpec::resolve(SpecFile::default(), o).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("occ-eval-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Fixture {
    spec: ExperimentSpec,
    tok: TextTokenizer,
    renderer: BlankRenderer,
    plan: Vec<PlannedSample>,
}

fn fixture() -> Fixture {
    let spec = spec();
    let tok = TextTokenizer::deepseek_ocr().unwrap();
    let renderer = BlankRenderer::new(tok.clone());
    let plan = build_plan(&spec, &[corpus()], &renderer).unwrap();
    Fixture { spec, tok, renderer, plan }
}

fn truth(f: &Fixture) -> HashMap<String, String> {
    f.plan
        .iter()
        .map(|s| {
            let page = f.renderer.render(&s.source_text, s.lang, s.mode, s.target_ratio, &s.setting).unwrap();
            (s.sample_id.clone(), page.text)
        })
        .collect()
}

fn ctx<'a>(f: &'a Fixture, dir: &std::path::Path) -> RunContext<'a> {
    RunContext {
        spec: &f.spec,
        run_id: "run".into(),
        run_dir: dir.to_path_buf(),
        git_commit: "test".into(),
        renderer: &f.renderer,
        tokenizer: &f.tok,
        prompt: Prompt::FreeOcr,
    }
}

#[test]
fn plan_is_deterministic_and_ordered() {
    let f = fixture();
    assert_eq!(f.plan.len(), 2 * 2 * 2);
    let again = build_plan(&f.spec, &[corpus()], &f.renderer).unwrap();
    let ids = |p: &[PlannedSample]| p.iter().map(|s| s.sample_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&f.plan), ids(&again));
    assert!(f.plan[0].sample_id.ends_with("/tiny/r2"), "{}", f.plan[0].sample_id);
    assert!(f.plan.windows(2).all(|w| w[0].index + 1 == w[1].index));
    // Paired design: the same passages in every cell.
    let firsts: Vec<&str> = f
        .plan
        .iter()
        .filter(|s| s.target_ratio == 2.0 && s.mode.to_string() == "tiny")
        .map(|s| s.passage_id.as_str())
        .collect();
    let lasts: Vec<&str> = f
        .plan
        .iter()
        .filter(|s| s.target_ratio == 4.0 && s.mode.to_string() == "small")
        .map(|s| s.passage_id.as_str())
        .collect();
    assert_eq!(firsts, lasts);
    let mut other = f.spec.clone();
    other.seed = 99;
    let reseeded = build_plan(&other, &[corpus()], &f.renderer).unwrap();
    assert_ne!(ids(&f.plan), ids(&reseeded), "the seed picks the passages");
    // Small at ratio 4 needs 400 + margin tokens: more than one 300-token passage is joined.
    let long = f.plan.iter().find(|s| s.target_ratio == 4.0 && s.mode.to_string() == "small").unwrap();
    assert!(long.source_text.contains("\n\nPassage "));
}

#[test]
fn page_settings_cross_the_grid_with_the_same_passages_and_unique_ids() {
    let f = fixture();
    let mut spec = f.spec.clone();
    spec.degradations =
        vec![occ_eval::axes::DegradationLevel::none(), occ_eval::axes::DegradationLevel::parse("blur:1.5").unwrap()];
    spec.fonts = vec![occ_render::FontFamily::DejavuSans, occ_render::FontFamily::DejavuSerif];
    let plan = build_plan(&spec, &[corpus()], &f.renderer).unwrap();
    assert_eq!(plan.len(), 4 * f.plan.len(), "two degradations x two fonts");
    // The default setting comes first, with the sample ids of a run without axes.
    let ids: Vec<&str> = plan.iter().map(|s| s.sample_id.as_str()).collect();
    let plain: Vec<&str> = f.plan.iter().map(|s| s.sample_id.as_str()).collect();
    assert_eq!(&ids[..plain.len()], &plain[..]);
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "sample ids are unique");
    let last = plan.last().unwrap();
    assert!(last.sample_id.ends_with("/r4/blur:1.5/dejavu-serif"), "{}", last.sample_id);
    assert_eq!(last.setting.degradation.blur_sigma(), 1.5);
    // Paired design across settings: the same passages and texts.
    let n = f.plan.len();
    for k in 1..4 {
        for (a, b) in plan[..n].iter().zip(&plan[k * n..(k + 1) * n]) {
            assert_eq!((&a.passage_id, a.mode, a.target_ratio), (&b.passage_id, b.mode, b.target_ratio));
            assert_eq!(a.source_text, b.source_text);
        }
    }
}

#[test]
fn too_few_pages_is_an_error_naming_the_corpus() {
    let f = fixture();
    let mut s = f.spec.clone();
    s.pages = 7;
    let err = build_plan(&s, &[corpus()], &f.renderer).unwrap_err().to_string();
    assert!(err.contains("corpus en") && err.contains("6 passages") && err.contains('7'), "{err}");
}

#[test]
fn perfect_engine_scores_one_and_resume_does_nothing_twice() {
    let f = fixture();
    let dir = scratch("perfect");
    let c = ctx(&f, &dir);
    let mut engines = Engines::Shared(Box::new(FakeOcr::perfect(truth(&f))));
    let counts = execute(&c, &f.plan, &mut engines, &mut Silent).unwrap();
    assert_eq!((counts.total, counts.resumed, counts.done, counts.failed), (8, 0, 8, 0));
    let (entries, _) = journal::read(&dir.join(journal::JOURNAL_FILE)).unwrap();
    assert_eq!(entries.len(), 8);
    for e in entries.values() {
        let r = &e.sample;
        assert_eq!((r.status.as_str(), r.char_precision, r.word_f1), ("ok", 1.0, 1.0));
        assert_eq!(u64::from(r.n_text_tokens), (r.target_ratio * f64::from(r.n_vision_tokens_nominal)).round() as u64);
        assert!(r.truncation_char_precision > 0.2 && r.truncation_char_precision < 0.6, "1/r of the text at r = 2..4");
        assert_eq!(e.prediction.ground_truth, e.prediction.prediction);
    }
    let again = execute(&c, &f.plan, &mut engines, &mut Silent).unwrap();
    assert_eq!((again.resumed, again.done), (8, 0));
    let (written, summary) = results::write_outputs(&dir, f.spec.seed).unwrap();
    assert_eq!((written.samples, written.failed), (8, 0));
    let cp: Vec<_> = summary.iter().filter(|r| r.metric == "char_precision").collect();
    assert_eq!(cp.len(), 4, "one row per cell");
    // Two pages per cell are too few for a CI: "n too small", NaN bounds (not a min–max interval).
    assert!(cp.iter().all(|r| r.n == 2 && r.mean == 1.0 && r.ci_low.is_nan() && r.ci_high.is_nan()));
    assert!(cp.iter().all(|r| r.ci_method == occ_eval::stats::NO_CI));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An engine that fails on every page.
struct Broken;

impl occ_core::OcrEngine for Broken {
    fn info(&self) -> occ_core::EngineInfo {
        FakeOcr::fixed("").info()
    }

    fn ocr(
        &mut self,
        pages: &[occ_core::OcrPage],
        _: &Prompt,
        _: &occ_core::OcrOptions,
    ) -> Result<Vec<occ_core::OcrOutput>, occ_core::EngineError> {
        Err(occ_core::EngineError::Input { page: pages[0].id.clone(), message: "broken".into() })
    }
}

#[test]
fn degraded_and_failing_engines_are_scored_and_recorded() {
    let f = fixture();
    let dir = scratch("degraded");
    let c = ctx(&f, &dir);
    let mut engines = Engines::Shared(Box::new(FakeOcr::drop_every(truth(&f), 10)));
    execute(&c, &f.plan, &mut engines, &mut Silent).unwrap();
    let (entries, _) = journal::read(&dir.join(journal::JOURNAL_FILE)).unwrap();
    for e in entries.values() {
        // Dropping every 10th character costs ~10% of the characters.
        assert!((0.85..0.95).contains(&e.sample.char_precision), "{}", e.sample.char_precision);
    }
    let dir2 = scratch("failing");
    let c2 = ctx(&f, &dir2);
    let mut broken = Engines::Shared(Box::new(Broken));
    let counts = execute(&c2, &f.plan, &mut broken, &mut Silent).unwrap();
    assert_eq!(counts.failed, 8);
    let (entries, _) = journal::read(&dir2.join(journal::JOURNAL_FILE)).unwrap();
    assert!(entries.values().all(|e| e.sample.status == "engine_error" && e.sample.error.is_some()));
    let (_, summary) = results::write_outputs(&dir2, 0).unwrap();
    assert!(summary.iter().all(|r| r.n == 0 && r.n_failed == 2));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&dir2).unwrap();
}

#[test]
fn shards_partition_the_plan_and_merge_back() {
    let f = fixture();
    let root = scratch("shards");
    let mut dirs = Vec::new();
    for k in 1..=3 {
        let shard = Shard { index: k, count: 3 };
        let (dir, run_id) = results::create_run_dir(&root, &f.spec, Some(shard)).unwrap();
        let part: Vec<PlannedSample> = f.plan.iter().filter(|s| shard.contains(s.index)).cloned().collect();
        let mut c = ctx(&f, &dir);
        c.run_id = run_id.clone();
        let mut engines = Engines::Shared(Box::new(FakeOcr::perfect(truth(&f))));
        execute(&c, &part, &mut engines, &mut Silent).unwrap();
        let (created, _) = results::utc_now();
        let m = results::Manifest {
            manifest_version: results::MANIFEST_VERSION,
            tool: "t".into(),
            tool_version: "0".into(),
            git_commit: "test".into(),
            experiment: f.spec.name.clone(),
            run_id,
            created_utc: created,
            status: occ_eval::RunStatus::Complete,
            spec: f.spec.clone(),
            spec_fingerprint: f.spec.fingerprint(),
            shard: Some(shard),
            merged_from: vec![],
            engines: vec![],
            synthetic_weights: false,
            renderer: f.renderer.describe(),
            tokenizer: String::new(),
            host: String::new(),
            n_samples_planned: part.len(),
            n_samples_done: part.len(),
            n_failed: 0,
            sessions: vec![],
            wall_time_s: 0.0,
            reader_flags: None,
            prompt: None,
            error_chain: vec![],
        };
        m.save(&dir).unwrap();
        dirs.push(dir);
    }
    let (merged, manifest) = results::merge(&dirs, &root.join("merged"), "test").unwrap();
    assert_eq!((manifest.status.as_str(), manifest.n_samples_done), ("complete", 8));
    let rows = results::read_samples(&merged).unwrap();
    assert_eq!(rows.iter().map(|r| r.sample_index).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    assert!(rows.iter().all(|r| r.run_id == manifest.run_id));
    let err = results::merge(&dirs[..2], &root.join("merged"), "test").unwrap_err().to_string();
    assert!(err.contains("missing shards 3/3"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}
