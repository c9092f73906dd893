//! `compress-bench serve`, the `openai` engine and `ocr --pdf` end to end on tiny synthetic weights:
//! `ocr --engine openai` against `serve` reads the token ids `ocr` reads in-process, SIGTERM drains
//! and stops the server, and a PDF's pages are read one by one as their rendered images would be.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::util::{assert_ok, scratch};

const BIN: &str = env!("CARGO_BIN_EXE_compress-bench");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("running compress-bench")
}

/// The `ocr` messages of a `--json` run: (image, token ids).
fn pages_read(o: &Output) -> Vec<(String, Vec<u64>)> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|m| m["type"] == "ocr")
        .map(|m| {
            let ids = m["data"]["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            (m["data"]["image"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

/// Three pages of different text, as PNG files.
fn pages(dir: &Path) -> Vec<String> {
    let pdf = occ_serve::pdf::text_pdf(&["One page of text.", "Another page,\nof two lines.", "A third."]);
    let images = occ_serve::pdf::rasterize(&pdf, occ_serve::pdf::PageRange::ALL, 40.0, u64::MAX, 10).unwrap();
    images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            let p = dir.join(format!("page-{i}.png"));
            img.save(&p).unwrap();
            p.display().to_string()
        })
        .collect()
}

/// A running `serve`, killed if a test fails before stopping it.
struct Served(Option<Child>);

impl Served {
    /// SIGTERM, then the exit status and stderr.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let child = self.0.take().expect("invariant: running");
        let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(kill.success());
        let out = child.wait_with_output().unwrap();
        (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `compress-bench {global} serve --synthetic-weights tiny --port 0 {extra}`: the running server and
/// its stdout.
fn spawn_serve(global: &[&str], extra: &[&str]) -> (Served, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(BIN)
        .args(global)
        .args(["serve", "--synthetic-weights", "tiny", "--port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting compress-bench serve");
    let stdout = child.stdout.take().unwrap();
    (Served(Some(child)), BufReader::new(stdout))
}

/// `serve` on a free port; returns it and its base URL (read from its first stdout line).
fn serve(extra: &[&str]) -> (Served, String) {
    let (served, mut stdout) = spawn_serve(&[], extra);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap_or_else(|| panic!("{line}"));
    (served, url.to_string())
}

#[test]
fn the_openai_engine_against_serve_reads_what_ocr_reads_in_process_and_sigterm_stops_the_server() {
    let dir = scratch("serve-openai");
    let images = pages(&dir);
    let mut common: Vec<&str> = vec!["--json", "ocr", "--mode", "tiny", "--max-new-tokens", "12"];
    for p in &images {
        common.extend(["--image", p]);
    }
    let local = run(&[common.as_slice(), &["--synthetic-weights", "tiny"]].concat());
    assert_ok(&local);
    let want = pages_read(&local);
    assert_eq!(want.len(), 3);

    let (server, url) = serve(&[]);
    let endpoint = format!("{url}/v1");
    let remote = run(&[
        common.as_slice(),
        &[
            "--engine",
            "openai",
            "--endpoint",
            &endpoint,
            "--model",
            "deepseek-ocr",
            "--send-mode",
            "--concurrency",
            "3",
        ],
    ]
    .concat());
    assert_ok(&remote);
    assert_eq!(pages_read(&remote), want);
    // the manifest's engine line names the endpoint and the model
    let engine: Value = String::from_utf8_lossy(&remote.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|m| m["type"] == "engine")
        .unwrap();
    assert_eq!(engine["data"]["info"]["name"], "openai");
    assert_eq!(engine["data"]["info"]["weights"], format!("deepseek-ocr at {endpoint}"));

    // an unknown model is the server's 404, with its message, and no retry
    let wrong =
        run(&[common.as_slice(), &["--engine", "openai", "--endpoint", &endpoint, "--model", "gpt-x"]].concat());
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("HTTP 404") && stderr.contains("gpt-x"), "{stderr}");

    let (status, stderr) = server.terminate();
    assert!(status.success(), "serve exits 0 after SIGTERM: {status:?}\n{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
}

#[test]
fn the_openai_engine_needs_an_endpoint_and_a_model() {
    let dir = scratch("serve-openai-flags");
    let images = pages(&dir);
    let o = run(&["ocr", "--engine", "openai", "--image", &images[0]]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--endpoint URL and --model NAME"));
}

#[test]
fn serve_has_no_batch_window_flag_since_it_always_serves_live() {
    let o = run(&["serve", "--synthetic-weights", "tiny", "--port", "0", "--batch-window-ms", "10"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--batch-window-ms"), "{err}");
    let help = String::from_utf8_lossy(&run(&["serve", "--help"]).stdout).to_string();
    assert!(!help.contains("batch-window") && help.contains("--max-pdf-pages"), "{help}");
}

#[test]
fn ocr_reads_a_pdf_page_by_page_like_its_rendered_pages() {
    let dir = scratch("ocr-pdf");
    let pdf = dir.join("doc.pdf");
    std::fs::write(&pdf, occ_serve::pdf::text_pdf(&["One page of text.", "Another page,\nof two lines.", "A third."]))
        .unwrap();
    let images = pages(&dir);
    let pdf_arg = pdf.display().to_string();
    let common = ["--json", "ocr", "--synthetic-weights", "tiny", "--mode", "tiny", "--max-new-tokens", "6"];
    let read = run(&[common.as_slice(), &["--pdf", &pdf_arg, "--pages", "2-3", "--dpi", "40"]].concat());
    assert_ok(&read);
    let got = pages_read(&read);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, [format!("{pdf_arg}#page=2"), format!("{pdf_arg}#page=3")]);
    let png = run(&[common.as_slice(), &["--image", &images[1], "--image", &images[2]]].concat());
    assert_ok(&png);
    let want: Vec<Vec<u64>> = pages_read(&png).into_iter().map(|(_, ids)| ids).collect();
    assert_eq!(got.into_iter().map(|(_, ids)| ids).collect::<Vec<_>>(), want);
    // a range past the end names the page count
    let bad = run(&[common.as_slice(), &["--pdf", &pdf_arg, "--pages", "3-5"]].concat());
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("the PDF has 3 pages"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// The rows of a sweep run with what names the run and the engine and the timings set alike.
fn comparable_rows(dir: &Path) -> Vec<occ_eval::schema::SampleRow> {
    let mut rows = occ_eval::results::read_samples(dir).unwrap();
    for r in &mut rows {
        r.run_id.clear();
        r.experiment.clear();
        (r.engine, r.engine_version, r.weights, r.synthetic_weights) = (String::new(), String::new(), None, false);
        (r.device, r.dtype) = (String::new(), String::new());
        (r.render_ms, r.ocr_ms, r.preprocess_ms, r.vision_ms, r.prefill_ms, r.decode_ms) =
            (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    }
    rows
}

#[test]
fn a_sweep_through_the_openai_engine_killed_and_resumed_equals_the_in_process_sweep() {
    let out = scratch("serve-sweep");
    let ds = format!("{}/../../datasets", env!("CARGO_MANIFEST_DIR"));
    let grid = ["--ratios", "8,12", "--modes", "tiny", "--pages", "3", "--max-new-tokens", "10"];
    let sweep = |name: &str, extra: &[&str]| {
        let mut args = vec!["sweep", "--datasets", &ds, "--out", out.to_str().unwrap(), "--name", name];
        args.extend_from_slice(&grid);
        args.extend_from_slice(extra);
        run(&args)
    };
    let only_run = |name: &str| {
        let dirs: Vec<_> = std::fs::read_dir(out.join(name)).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(dirs.len(), 1, "{dirs:?}");
        dirs[0].clone()
    };
    assert_ok(&sweep("local", &["--engine", "deepseek-ocr", "--synthetic-weights", "tiny"]));
    let local = comparable_rows(&only_run("local"));
    assert_eq!(local.len(), 6);

    let (server, url) = serve(&[]);
    let endpoint = format!("{url}/v1");
    let remote = ["--engine", "openai", "--endpoint", &endpoint, "--model", "deepseek-ocr", "--send-mode"];
    // the process aborts after 3 samples (as a kill -9 would), then the run is resumed
    let crashed = sweep("remote", &[&remote[..], &["--crash-after", "3", "--concurrency", "1"]].concat());
    assert!(!crashed.status.success(), "the crash hook aborts the process");
    let dir = only_run("remote");
    assert!(!dir.join("samples.parquet").exists());
    let resumed = run(&[
        "sweep",
        "--datasets",
        &ds,
        "--resume",
        dir.to_str().unwrap(),
        "--endpoint",
        &endpoint,
        "--model",
        "deepseek-ocr",
        "--send-mode",
    ]);
    assert_ok(&resumed);
    let manifest = occ_eval::results::Manifest::load(&dir).unwrap();
    assert_eq!((manifest.status.as_str(), manifest.n_samples_done), ("complete", 6));
    // the manifest names the endpoint and the model
    let engine = &manifest.engines[0];
    assert_eq!((engine.name.as_str(), engine.version.as_str()), ("openai", "deepseek-ocr"));
    assert_eq!(engine.device, endpoint);
    let rows = occ_eval::results::read_samples(&dir).unwrap();
    assert!(rows.iter().all(|r| r.engine == "openai" && r.status == "ok"), "{rows:?}");
    // the text sent after each page image, and the prompt tokens the server counted
    assert_eq!(manifest.prompt.as_deref(), Some("Free OCR. "));
    assert!(rows.iter().all(|r| r.n_prompt_tokens.is_some_and(|n| n > r.n_vision_slots)), "{rows:?}");
    // nothing lost, nothing read twice, and each sample as the in-process engine read it (the
    // prompt tokens included)
    assert_eq!(comparable_rows(&dir), local);
    assert!(server.terminate().0.success());
}

/// `serve --json` on a free port with `extra`: the running server and its `serve_start` message.
fn serve_json(extra: &[&str]) -> (Served, Value) {
    let (served, stdout) = spawn_serve(&["--json"], extra);
    let start = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
        .find(|m| m["type"] == "serve_start")
        .expect("a serve_start message");
    (served, start["data"].clone())
}

/// `GET {url}/health` (HTTP/1.1 over a plain socket), its body as JSON.
fn health(url: &str) -> Value {
    use std::io::{Read, Write};
    let addr = url.strip_prefix("http://").unwrap();
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(conn, "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{text}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{text}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// A `--max-batch` above what `--free-memory-gb` holds (issue 16): the server runs the slots that
/// fit, says so at the start (`serve_start`, a warning) and on /health, and answers requests.
#[test]
fn serve_lowers_a_max_batch_above_what_fits_the_free_memory_and_reports_both() {
    // the tiny reader's slot for answers of 8,192 tokens takes ~15 MB: 0.7 GB less the planner's
    // margin (10 % and 512 MiB) holds a few, not 8
    let (server, start) = serve_json(&["--max-batch", "8", "--free-memory-gb", "0.7"]);
    let (slots, requested, fits) =
        (start["slots"].as_u64().unwrap(), start["requested_slots"].as_u64(), start["fits_slots"].as_u64());
    assert!((1..8).contains(&slots), "{start}");
    assert_eq!((requested, fits), (Some(8), Some(slots)), "{start}");
    assert_eq!(start["free_gpu_gb"].as_f64(), Some(0.7), "{start}");
    assert!(start["gb_per_slot"].as_f64().unwrap() > 0.0, "{start}");
    let url = start["url"].as_str().unwrap().to_string();

    // /health says the same
    let h = health(&url);
    assert_eq!((h["slots"].as_u64(), h["requested_slots"].as_u64()), (Some(slots), Some(8)), "{h}");
    assert_eq!(h["fits_slots"].as_u64(), Some(slots), "{h}");

    // requests are answered (three pages through the openai engine, three at a time)
    let dir = scratch("serve-lowered");
    let images = pages(&dir);
    let endpoint = format!("{url}/v1");
    let mut args = vec!["--json", "ocr", "--mode", "tiny", "--max-new-tokens", "6", "--engine", "openai"];
    args.extend(["--endpoint", &endpoint, "--model", "deepseek-ocr", "--concurrency", "3"]);
    for p in &images {
        args.extend(["--image", p]);
    }
    let remote = run(&args);
    assert_ok(&remote);
    assert_eq!(pages_read(&remote).len(), 3);

    let (status, stderr) = server.terminate();
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(stderr.contains("8 decoder slots asked for (--max-batch)"), "{stderr}");
    assert!(stderr.contains(&format!("serving with {slots}")), "{stderr}");
}

#[test]
fn serve_refuses_to_start_when_not_even_one_slot_fits() {
    let o = run(&["serve", "--synthetic-weights", "tiny", "--port", "0", "--free-memory-gb", "0.5"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("out of memory") && err.contains("decoder slot"), "{err}");
}
