//! The `deepseek-ocr-2` engine in the CLI on reduced synthetic weights (CPU): `ocr` on committed
//! pages in both v2 modes with the v2 token accounting, a tiny `sweep` whose samples count the v2
//! modes' tokens, `bench` (its encoder batched, resumed), the v1 and v2 halves of the comparison
//! spec compared (paired by passage and ratio, one overlay chart), and v1 modes (or `--tiny`)
//! refused before any model load.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use occ_core::Mode;
use occ_eval::results;
use serde_json::Value;

use crate::util::{assert_ok, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

const V2: [&str; 4] = ["--engine", "deepseek-ocr-2", "--synthetic-weights", "reduced"];

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("running compress-bench")
}

fn page(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/encoder_v2/inputs").join(name)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The `ocr` messages of a `--json` run.
fn ocr_messages(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|m| m["type"] == "ocr")
        .map(|m| m["data"].clone())
        .collect()
}

#[test]
fn ocr_reads_pages_with_deepseek_ocr_2_in_both_v2_modes() {
    let img = page("page_tall.png");
    for mode in [Mode::V2Single, Mode::V2] {
        let name = mode.to_string();
        let o = run(&[
            &["--json", "ocr", "--image", img.to_str().unwrap(), "--mode", &name, "--max-new-tokens", "6"][..],
            &V2,
        ]
        .concat());
        assert_ok(&o);
        let msgs = ocr_messages(&o);
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        let m = &msgs[0];
        assert_eq!(m["engine"], "deepseek-ocr-2");
        assert_eq!(m["synthetic_weights"], true);
        assert_eq!(m["mode"], name.as_str());
        let want = mode.vision_tokens(700, 1500).unwrap();
        let got = &m["vision_tokens"];
        assert_eq!(got["nominal"], want.nominal, "{mode}: {got}");
        assert_eq!(got["slots"], want.slots, "{mode}: {got}");
        // The prompt holds the page's slots and the prompt's few text tokens.
        let prompt = m["n_prompt_tokens"].as_u64().unwrap();
        assert!(prompt > u64::from(want.slots) && prompt < u64::from(want.slots) + 16, "{prompt} for {want:?}");
        let generated = m["token_ids"].as_array().unwrap().len();
        assert!((1..=6).contains(&generated), "{generated}");
    }
    // v2 tiles the tall page, v2-single does not: the two modes differ in tokens.
    assert!(
        Mode::V2.vision_tokens(700, 1500).unwrap().nominal > Mode::V2Single.vision_tokens(700, 1500).unwrap().nominal
    );
}

#[test]
fn deepseek_ocr_2_refuses_v1_modes_and_tiny_weights_before_loading() {
    let img = page("page_square640.png");
    let o = run(&[&["ocr", "--image", img.to_str().unwrap(), "--mode", "small"][..], &V2].concat());
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("--mode small") && err.contains("deepseek-ocr-2 engine reads modes v2 and v2-single"),
        "{err}"
    );
    assert!(!err.contains("synthetic weights"), "refused before building the engine: {err}");
    // The reverse: a v2 mode given to DeepSeek-OCR (v1).
    let o = run(&["ocr", "--image", img.to_str().unwrap(), "--mode", "v2", "--synthetic-weights", "tiny"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("deepseek-ocr engine reads DeepSeek-OCR (v1)'s modes") && err.contains("--engine deepseek-ocr-2"),
        "{err}"
    );
    // No tiny v2.
    let o = run(&[
        "ocr",
        "--image",
        img.to_str().unwrap(),
        "--mode",
        "v2",
        "--engine",
        "deepseek-ocr-2",
        "--synthetic-weights",
        "tiny",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("deepseek-ocr-2 has no tiny synthetic size"), "{}", stderr(&o));
    // A sweep spec is refused at resolution, naming the field.
    let out = scratch("ocr2-refused");
    let o = sweep(&out, &["--modes", "v2,small"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("modes = small") && err.contains("deepseek-ocr-2 engine reads modes v2 and v2-single"),
        "{err}"
    );
}

fn sweep(out: &Path, extra: &[&str]) -> Output {
    let ds = format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"));
    let mut args = vec!["sweep", "--datasets", &ds, "--out", out.to_str().unwrap(), "--name", "v2"];
    args.extend_from_slice(&V2);
    args.extend_from_slice(extra);
    Command::new(BIN).args(&args).output().expect("running compress-bench")
}

#[test]
fn sweep_with_deepseek_ocr_2_counts_the_v2_modes_tokens() {
    let out = scratch("ocr2-sweep");
    let o = sweep(&out, &["--ratios", "10", "--modes", "v2-single,v2", "--pages", "1", "--max-new-tokens", "8"]);
    assert_ok(&o);
    let dirs: Vec<PathBuf> = std::fs::read_dir(out.join("v2")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let rows = results::read_samples(&dirs[0]).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!((r.engine.as_str(), r.status.as_str()), ("deepseek-ocr-2", "ok"), "{r:?}");
        assert!(r.synthetic_weights);
        let mode: Mode = r.mode.parse().unwrap();
        assert!(mode.is_v2(), "{}", r.mode);
        let want = mode.vision_tokens(r.page_w_px, r.page_h_px).unwrap();
        assert_eq!(
            (r.n_vision_tokens_nominal, r.n_vision_tokens_valid, r.n_vision_slots),
            (want.nominal, want.valid, want.slots),
            "{}",
            r.mode
        );
        let prompt = r.n_prompt_tokens.unwrap_or_else(|| panic!("a model reader has a prompt: {r:?}"));
        assert!(prompt > r.n_vision_slots && prompt < r.n_vision_slots + 16, "{prompt} for {} slots", r.n_vision_slots);
        assert!(r.n_generated_tokens.is_some_and(|n| (1..=8).contains(&n)));
    }
    let modes: Vec<&str> = rows.iter().map(|r| r.mode.as_str()).collect();
    assert!(modes.contains(&"v2") && modes.contains(&"v2-single"), "{modes:?}");
    let m = results::Manifest::load(&dirs[0]).unwrap();
    assert_eq!(m.prompt.as_deref(), Some("<image>\nFree OCR. "), "the prompt is recorded");
}

#[test]
fn bench_times_deepseek_ocr_2_and_refuses_v1_modes() {
    let out = scratch("ocr2-bench");
    let common = [
        "bench",
        "--new-tokens",
        "3",
        "--warmup",
        "0",
        "--encoder-batch",
        "1",
        "--batch",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    let o = run(&[&common[..], &V2, &["--modes", "v2-single", "--json"]].concat());
    assert_ok(&o);
    let report: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|m| m["data"]["runs"].is_array())
        .collect();
    assert_eq!(report.len(), 1, "{}", String::from_utf8_lossy(&o.stdout));
    let runs = report[0]["data"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["mode"], "v2-single");
    assert!(report[0]["data"]["weights"].as_str().unwrap().starts_with("synthetic:"));
    let o = run(&[&common[..], &V2, &["--modes", "small"]].concat());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--modes small: the deepseek-ocr-2 engine reads modes v2"), "{}", stderr(&o));
}

/// `(kind, mode, batch, session)` of each line of a bench run folder's journal.
fn bench_journal(dir: &Path) -> Vec<(String, String, u64, u64)> {
    let text = std::fs::read_to_string(dir.join("bench.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let (kind, m) = v.as_object().unwrap().iter().next().unwrap();
            let batch = if kind == "run" { &m["requested_batch"] } else { &m["batch"] };
            (
                kind.clone(),
                m["mode"].as_str().unwrap().to_string(),
                batch.as_u64().unwrap(),
                m["session"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn bench_times_deepseek_ocr_2_s_encoder_batched_and_resumes_it() {
    let out = scratch("ocr2-bench-encoder");
    let common = [
        "bench",
        "--new-tokens",
        "2",
        "--warmup",
        "0",
        "--batch",
        "1",
        "--encoder-batch",
        "3",
        "--out",
        out.to_str().unwrap(),
    ];
    // Interrupted after the first configuration: v2-single's run and its encoder batch are journaled.
    let o = run(&[&common[..], &V2, &["--modes", "v2-single,v2", "--interrupt-after", "1"]].concat());
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let dirs: Vec<PathBuf> = std::fs::read_dir(out.join("bench")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let dir = &dirs[0];
    let line = |kind: &str, mode: &str, batch: u64, session: u64| (kind.to_string(), mode.to_string(), batch, session);
    let first = [line("run", "v2-single", 1, 0), line("encoder", "v2-single", 3, 0)];
    assert_eq!(bench_journal(dir), first);
    // Resumed: only v2 (tiled pages: views of two sizes through the batched tower) is measured.
    // (`--json` after the subcommand: a global flag there is not taken for a recorded reader flag)
    let o = run(&["bench", "--resume", dir.to_str().unwrap(), "--json"]);
    assert_ok(&o);
    let all = [&first[..], &[line("run", "v2", 1, 1), line("encoder", "v2", 3, 1)]].concat();
    assert_eq!(bench_journal(dir), all);
    let report: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|m| m["data"]["runs"].is_array())
        .collect();
    assert_eq!(report.len(), 1, "{}", String::from_utf8_lossy(&o.stdout));
    let encoder = report[0]["data"]["encoder"].as_array().unwrap();
    assert_eq!(encoder.len(), 2);
    for (e, mode) in encoder.iter().zip(["v2-single", "v2"]) {
        assert_eq!((e["mode"].as_str(), e["batch"].as_u64()), (Some(mode), Some(3)), "{e}");
        assert!(e["s_per_page"].as_f64().is_some_and(|s| s > 0.0), "{e}");
    }
    // The prompts spliced from the batched rows carry each mode's image slots.
    let runs = report[0]["data"]["runs"].as_array().unwrap();
    let prompt = |i: usize| runs[i]["prompt_tokens"].as_u64().unwrap();
    let page = |mode: Mode| {
        let spec = occ_render::RenderSpec::for_mode(mode, occ_render::Lang::En);
        let slots = mode.vision_tokens(spec.width, spec.height).unwrap().slots;
        slots as u64
    };
    let single: Mode = "v2-single".parse().unwrap();
    let tiled: Mode = "v2".parse().unwrap();
    assert_eq!(prompt(1) - prompt(0), page(tiled) - page(single), "{runs:?}");
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn decay_reads_v2_ladders_with_deepseek_ocr_2_and_refuses_v1_schedules_before_loading() {
    let out = scratch("ocr2-decay");
    let ds = format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"));
    let decay = |id: &str, schedule: &str| {
        let common = ["decay", "--datasets", &ds, "--out", out.to_str().unwrap(), "--run-id", id];
        let conversation = ["--rounds", "3", "--round-tokens", "40", "--needles", "1", "--max-new-tokens", "4"];
        run(&[&common[..], &V2, &conversation, &["--quiet", "--schedule", schedule]].concat())
    };
    let o = decay("v1", "paper");
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("schedule paper: the deepseek-ocr-2 engine reads modes v2 and v2-single"), "{err}");
    assert!(!err.contains("synthetic weights"), "refused before building the engine: {err}");
    let o = decay("v2", "ladder:levels=v2@0/v2-single@1/dropped@2");
    assert_ok(&o);
    let m: Value = serde_json::from_str(&std::fs::read_to_string(out.join("decay/v2/manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "complete");
    assert_eq!(m["prompt"], "<image>\nFree OCR. ");
    assert!(m["pages_read"].as_u64().is_some_and(|n| n > 0), "{}", m["pages_read"]);
}

#[test]
fn the_v1_vs_v2_experiment_specs_sweep_the_same_passages() {
    let out = scratch("ocr2-compare");
    let ds = format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"));
    let spec = |name: &str| format!("{}/../../experiments/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let small = ["--ratios", "10", "--pages", "1", "--max-new-tokens", "4", "--datasets", &ds, "--out"];
    let (v1, v2) = (spec("ocr2-compare-v1"), spec("ocr2-compare-v2"));
    let o =
        run(&[&["sweep", v1.as_str()][..], &small, &[out.to_str().unwrap(), "--synthetic-weights", "tiny"]].concat());
    assert_ok(&o);
    let o = run(
        &[&["sweep", v2.as_str()][..], &small, &[out.to_str().unwrap(), "--synthetic-weights", "reduced"]].concat()
    );
    assert_ok(&o);
    let only = |name: &str| -> PathBuf {
        let dirs: Vec<PathBuf> = std::fs::read_dir(out.join(name)).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs[0].clone()
    };
    let (a, b) = (only("ocr2-compare-v1"), only("ocr2-compare-v2"));
    let engines = |d: &Path| {
        let rows = results::read_samples(d).unwrap();
        let mut v: Vec<(String, String)> = rows.iter().map(|r| (r.engine.clone(), r.mode.clone())).collect();
        v.sort();
        v
    };
    let pair = |e: &str, m: &str| (e.to_string(), m.to_string());
    assert_eq!(engines(&a), [pair("deepseek-ocr", "base"), pair("deepseek-ocr", "small")]);
    assert_eq!(engines(&b), [pair("deepseek-ocr-2", "v2"), pair("deepseek-ocr-2", "v2-single")]);
    // The same passages in both runs.
    let passages = |d: &Path| {
        let mut v: Vec<String> = results::read_samples(d).unwrap().into_iter().map(|r| r.passage_id).collect();
        v.sort();
        v
    };
    assert_eq!(passages(&a), passages(&b));
    // The two engines share no mode: `compare` pairs their pages by passage and ratio (every v1 mode
    // with every v2 mode) and overlays every run × mode on one chart per metric.
    let o = run(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--labels",
        "v1,v2",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_ok(&o);
    let msg: Value = serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    let data = &msg["data"];
    let p = &data["pairings"][0];
    assert_eq!(p["rule"], "same_passage_and_ratio", "{p}");
    assert_eq!(
        (
            p["n_paired"].as_u64(),
            p["n_page_differs"].as_u64(),
            p["n_baseline_only"].as_u64(),
            p["n_other_only"].as_u64()
        ),
        (Some(4), Some(0), Some(0), Some(0)),
        "one passage at one ratio: 2 v1 modes x 2 v2 modes: {p}"
    );
    let mut headline: Vec<(String, String)> = data["headline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["mode"].as_str().unwrap().to_string(), h["other_mode"].as_str().unwrap().to_string()))
        .collect();
    headline.sort();
    let modes = |x: &str, y: &str| (x.to_string(), y.to_string());
    assert_eq!(
        headline,
        [modes("base", "v2"), modes("base", "v2-single"), modes("small", "v2"), modes("small", "v2-single")]
    );
    // Each pair of modes' difference is the difference of the two pages' scores.
    let dir = PathBuf::from(data["out_dir"].as_str().unwrap());
    let (rows_a, rows_b) = (results::read_samples(&a).unwrap(), results::read_samples(&b).unwrap());
    let score = |rows: &[occ_eval::schema::SampleRow], mode: &str| {
        rows.iter().find(|r| r.mode == mode).map(|r| r.char_precision).unwrap()
    };
    for h in data["headline"].as_array().unwrap() {
        let (x, y) = (h["mode"].as_str().unwrap(), h["other_mode"].as_str().unwrap());
        let want = score(&rows_b, y) - score(&rows_a, x);
        assert!((h["char_precision_diff"].as_f64().unwrap() - want).abs() < 1e-12, "{h} vs {want}");
    }
    let overlay = std::fs::read_to_string(dir.join("plots/en_overlay_char_precision.svg")).unwrap();
    for series in ["v1 · small", "v1 · base", "v2 · v2-single", "v2 · v2"] {
        assert!(overlay.contains(series), "{series} missing from the overlay");
    }
    let md = std::fs::read_to_string(dir.join("compare.md")).unwrap();
    assert!(md.contains("## Curves of every run and mode") && md.contains("plots/en_overlay_char_precision.svg"));
    assert!(md.contains("same passage and ratio across modes"), "the pairing rule is named");
    assert!(md.contains("v2 − v1 on the same passages and ratios") && md.contains("mode (v1 → v2)"), "{md}");
    for row in [
        "| small → v2-single | 10 | 1 |",
        "| small → v2 | 10 | 1 |",
        "| base → v2-single | 10 | 1 |",
        "| base → v2 | 10 | 1 |",
    ] {
        assert!(md.contains(row), "{row} missing: {md}");
    }
    let html = std::fs::read_to_string(dir.join("compare.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 4 + 4 * 4, "4 overlays, then 4 metrics x 4 modes");
    assert!(html.contains("v1 · small") && html.contains("v2 · v2-single"));
}

#[test]
fn inspect_shows_deepseek_ocr_2_modes_and_tower_tensors() {
    let o = run(&["--json", "inspect", "--engine", "deepseek-ocr-2", "--image-size", "700x1500", "--tensors"]);
    assert_ok(&o);
    let msgs: Vec<Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect();
    let tokens = msgs.iter().find(|m| m["data"]["modes"].is_array()).expect("a vision-token table");
    let modes: Vec<&str> =
        tokens["data"]["modes"].as_array().unwrap().iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["v2", "v2-single"]);
    assert_eq!(tokens["data"]["modes"][0]["nominal"], Mode::V2.vision_tokens(700, 1500).unwrap().nominal);
    let tensors = msgs.iter().find(|m| m["data"]["tensors"].is_array()).expect("a tensor table");
    let names: Vec<&str> =
        tensors["data"]["tensors"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"model.view_seperator") && names.iter().any(|n| n.starts_with("model.qwen2_model.")));
    assert!(!names.iter().any(|n| n.starts_with("model.vision_model.")), "no CLIP in v2");
    // A checkpoint with a misshaped tower tensor is refused, naming the counts.
    let dir = scratch("ocr2-inspect");
    let file = dir.join("bad.safetensors");
    let header = serde_json::json!({"model.view_seperator": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}});
    let header = serde_json::to_vec(&header).unwrap();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&[0u8; 16]);
    std::fs::write(&file, bytes).unwrap();
    let o = run(&["inspect", "--engine", "deepseek-ocr-2", "--tensors", "--checkpoint", file.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("are missing from the checkpoint") && err.contains("1 encoder tensors have a different shape"),
        "{err}"
    );
    // v1 modes and v1's config are refused.
    let o = run(&["inspect", "--engine", "deepseek-ocr-2", "--modes", "base"]);
    assert!(!o.status.success() && stderr(&o).contains("--modes base: the deepseek-ocr-2 engine reads modes v2"));
}

/// The token ids of each page of an `ocr --json` run.
fn token_ids(o: &Output) -> Vec<Vec<u64>> {
    ocr_messages(o)
        .iter()
        .map(|m| m["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect())
        .collect()
}

#[test]
fn ocr_with_deepseek_ocr_2_honours_top_p() {
    let img = page("page_square640.png");
    let read =
        |extra: &[&str]| {
            let o =
                run(&[
                    &[
                        "--json",
                        "ocr",
                        "--image",
                        img.to_str().unwrap(),
                        "--mode",
                        "v2-single",
                        "--max-new-tokens",
                        "6",
                    ][..],
                    &V2,
                    extra,
                ]
                .concat());
            assert_ok(&o);
            token_ids(&o)
        };
    let greedy = read(&[]);
    let sample = ["--temperature", "1.5", "--sample-seed", "3", "--top-p"];
    // the whole distribution at this temperature reads otherwise than greedy decoding; a nucleus of
    // one token is greedy decoding: --top-p reaches the sampler
    assert_ne!(read(&[&sample[..], &["1"]].concat()), greedy);
    assert_eq!(read(&[&sample[..], &["0.000000001"]].concat()), greedy);
}

/// `serve` of DeepSeek-OCR-2 on reduced synthetic weights, on a free port: the child and its URL.
fn serve_v2(extra: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = Command::new(BIN)
        .args(["serve", "--port", "0"])
        .args(V2)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting compress-bench serve");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    match line.split_whitespace().find(|w| w.starts_with("http://")) {
        Some(url) => (child, url.to_string()),
        None => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("serve printed {line:?}; stderr: {}", stderr(&out))
        }
    }
}

#[test]
fn serve_with_deepseek_ocr_2_reads_what_ocr_reads_in_process() {
    let (tall, square) = (page("page_tall.png"), page("page_square640.png"));
    for mode in ["v2", "v2-single"] {
        let common = [
            "--json",
            "ocr",
            "--image",
            tall.to_str().unwrap(),
            "--image",
            square.to_str().unwrap(),
            "--mode",
            mode,
            "--max-new-tokens",
            "6",
        ];
        let local = run(&[&common[..], &V2].concat());
        assert_ok(&local);
        let want = token_ids(&local);
        assert_eq!(want.len(), 2);
        let (mut server, url) = serve_v2(&[]);
        let endpoint = format!("{url}/v1");
        let remote = run(&[
            &common[..],
            &["--engine", "openai", "--endpoint", &endpoint, "--model", "deepseek-ocr-2", "--send-mode"],
        ]
        .concat());
        let _ = server.kill();
        let _ = server.wait();
        assert_ok(&remote);
        assert_eq!(token_ids(&remote), want, "{mode}");
    }
    // a v1 default mode is refused at start, naming it
    let o = run(&[&["serve", "--port", "0", "--mode", "small"][..], &V2].concat());
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("--mode") && err.contains("small") && err.contains("v2 and v2-single"), "{err}");
}
