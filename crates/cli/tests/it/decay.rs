//! `compress-bench decay` end to end: Tesseract on a small conversation (files exist and are well
//! formed), the fake engine under `--json`, and bad schedules failing before any work.

use std::path::Path;
use std::process::{Command, Output};

use crate::util::{assert_ok, scratch};

use occ_eval::schema::read_parquet;

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

fn decay(out: &Path, extra: &[&str]) -> Output {
    let ds = format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"));
    let mut args = vec!["decay", "--datasets", &ds, "--out", out.to_str().unwrap(), "--run-id", "e2e"];
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().expect("running compress-bench")
}

#[test]
fn decay_paper_tesseract_writes_parquet_manifest_and_report() {
    let out = scratch("decay-tess");
    let o = decay(
        &out,
        &[
            "--schedule",
            "paper",
            "--engine",
            "tesseract",
            "--rounds",
            "12",
            "--round-tokens",
            "200",
            "--needles",
            "4",
            "--quiet",
        ],
    );
    assert_ok(&o);
    let dir = out.join("decay/e2e");
    for f in ["decay.parquet", "needles.parquet", "manifest.json", "report.md", "report.html"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    for p in ["accuracy_vs_age", "tokens_vs_age", "accuracy_vs_budget", "needles_vs_age"] {
        let svg = std::fs::read_to_string(dir.join(format!("plots/{p}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{p}.svg is not an SVG");
    }
    let df = read_parquet(&dir.join("decay.parquet")).unwrap();
    assert_eq!(df.height(), 12, "one row per round");
    let reprs: Vec<String> =
        df.column("representation").unwrap().str().unwrap().iter().map(|s| s.unwrap().to_string()).collect();
    // Oldest first: ages 11..8 small, 7..4 base, 3..2 large, 1 gundam, 0 text.
    let want: Vec<&str> = [["small"; 4].as_slice(), &["base"; 4], &["large"; 2], &["gundam"], &["text"]].concat();
    assert_eq!(reprs, want);
    let cp = df.column("char_precision").unwrap().f64().unwrap();
    assert_eq!(cp.get(11), Some(1.0), "the text round reads back exactly");
    assert!(cp.iter().all(|v| v.is_some_and(|v| (0.0..=1.0).contains(&v))));
    let cost = df.column("cost_tokens").unwrap().u32().unwrap();
    assert_eq!((cost.get(0), cost.get(4), cost.get(8), cost.get(10)), (Some(111), Some(273), Some(421), Some(903)));
    let needles = read_parquet(&dir.join("needles.parquet")).unwrap();
    assert_eq!(needles.height(), 4);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!((manifest["kind"].as_str(), manifest["run_id"].as_str()), (Some("decay"), Some("e2e")));
    // The keys every run's manifest has (occ_eval::manifest), under the sweep's names.
    assert_eq!((manifest["manifest_version"].as_u64(), manifest["status"].as_str()), (Some(2), Some("complete")));
    assert!(manifest["engines"][0]["name"] == "tesseract" && manifest["wall_time_s"].is_f64());
    assert_eq!(manifest["summaries"][0]["schedule"], "paper");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("| `paper` |") && md.contains("plots/accuracy_vs_age.svg"), "{md}");
    // The next run with the same id gets a fresh directory.
    assert_ok(&decay(
        &out,
        &["--schedule", "text", "--engine", "fake-perfect", "--rounds", "2", "--round-tokens", "20", "--quiet"],
    ));
    assert!(out.join("decay/e2e-2/decay.parquet").is_file());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn decay_json_stream_has_run_start_and_summaries() {
    let out = scratch("decay-json");
    let o = decay(
        &out,
        &[
            "--json",
            "--engine",
            "fake-perfect",
            "--rounds",
            "5",
            "--round-tokens",
            "40",
            "--needles",
            "2",
            "--schedule",
            "text",
            "--schedule",
            "hybrid:k=2,width=1,modes=base/tiny",
        ],
    );
    assert_ok(&o);
    let msgs: Vec<serde_json::Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = msgs.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["run_start", "summary", "summary"]);
    assert_eq!(msgs[1]["data"]["schedule"], "text");
    assert_eq!(msgs[1]["data"]["mean_char_precision"], 1.0);
    // hybrid: ages 0-1 text, 2 base, 3 tiny, 4 dropped → the fake engine reads 4 of 5 rounds exactly.
    assert_eq!(msgs[2]["data"]["mean_char_precision"], 0.8);
    assert_eq!(msgs[2]["data"]["dropped_rounds"], 1);
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn decay_rejects_bad_schedules_and_budgets() {
    let out = scratch("decay-bad");
    let cases: [(&[&str], &str); 4] = [
        (&["--schedule", "paper:ages=-1/2/4/8/16"], "is negative"),
        (&["--schedule", "ladder:levels="], "has no levels"),
        (&["--schedule", "paper:ages=8/4/16/32/64"], "must strictly increase"),
        (&["--schedule", "budget:tokens=5", "--rounds", "3", "--round-tokens", "30"], "budget of 5 tokens"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["--engine", "fake-perfect"];
        args.extend_from_slice(extra);
        let o = decay(&out, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: expected {want:?} in {err}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn a_decay_run_records_its_reader_flags_and_prompt_and_resumes_with_them() {
    let out = scratch("decay-model-resume");
    let model = ["--engine", "deepseek-ocr", "--synthetic-weights", "tiny", "--weights-seed", "2"];
    let conversation =
        ["--rounds", "3", "--round-tokens", "40", "--needles", "1", "--schedule", "paper", "--max-new-tokens", "4"];
    let o = decay(&out, &[&model[..], &conversation[..], &["--crash-after", "2", "--quiet"]].concat());
    assert!(!o.status.success(), "the crash hook aborts the process");
    let dir = out.join("decay/e2e");
    let manifest = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("manifest.json")).unwrap()).unwrap()
    };
    let m = manifest(&dir);
    assert_eq!(m["status"], "running");
    assert_eq!(m["reader_flags"], serde_json::json!(model), "the reader flags as given");
    assert_eq!(m["prompt"], "<image>\nFree OCR. ", "the prompt the model reads with");
    // `--resume DIR` alone loads the same synthetic reader (without the flags it would look for
    // real weights) and the run equals an uninterrupted one.
    let ds = format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"));
    let resumed = Command::new(BIN).args(["decay", "--datasets", &ds, "--resume", dir.to_str().unwrap()]).output();
    let resumed = resumed.unwrap();
    assert_ok(&resumed);
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(err.contains("reader flags restored from the run's manifest: --engine deepseek-ocr"), "{err}");
    let whole = scratch("decay-model-whole");
    assert_ok(&decay(&whole, &[&model[..], &conversation[..], &["--quiet"]].concat()));
    let (a, b) = (manifest(&dir), manifest(&whole.join("decay/e2e")));
    assert_eq!(a["status"], "complete");
    assert_eq!((&a["summaries"], &a["pages_read"], &a["prompt"]), (&b["summaries"], &b["pages_read"], &b["prompt"]));
    let stable = |d: &Path| occ_eval::schema::without_volatile(&read_parquet(&d.join("decay.parquet")).unwrap());
    let (a, b) = (stable(&dir), stable(&whole.join("decay/e2e")));
    assert!(a.height() > 0 && a.equals_missing(&b), "decay.parquet: resumed equals uninterrupted\n{a}\n{b}");
}
