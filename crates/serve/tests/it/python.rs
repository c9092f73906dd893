//! The official `openai` Python package as a client (`pip install openai`; .ci/run installs it).

use std::process::Command;

use occ_core::{Mode, OcrEngine, OcrOptions, OcrPage, Prompt};
use serde_json::Value;

use crate::common::*;

#[test]
fn the_openai_python_package_reads_a_page_streams_it_gets_errors_and_goes_away_mid_stream() {
    let img = page(7);
    let max_tokens = 8;
    let mut engine = tiny_engine();
    let want = OcrEngine::ocr(
        &mut engine,
        &[OcrPage { id: "p".into(), image: img.clone(), mode: Mode::Tiny }],
        &Prompt::FreeOcr,
        &OcrOptions { max_new_tokens: max_tokens, ..OcrOptions::default() },
    )
    .unwrap()
    .remove(0);
    let dir = std::env::temp_dir().join(format!("occ-serve-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let png_path = dir.join("page.png");
    std::fs::write(&png_path, png(&img)).unwrap();
    // one decoder slot: the completion after the closed stream needs the slot that stream held
    let mut engine = tiny_engine();
    engine.max_batch = 1;
    let server = occ_serve::Server::start(config(), Box::new(engine)).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/openai_client.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("http://{}/v1", server.addr()))
        .arg("tiny")
        .arg(&png_path)
        .arg(max_tokens.to_string())
        .output()
        .expect("python3 runs (the test needs python3 with the openai package: pip install openai)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the openai client failed (pip install openai if it is missing):\n{stderr}");
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["text"], want.text.as_str());
    assert_eq!(got["streamed"], want.text.as_str());
    assert_eq!(got["completion_tokens"], want.n_generated_tokens.unwrap());
    assert!(got["pieces"].as_u64().unwrap() > 1, "{got}");
    // the closed stream was cancelled mid-decode (8000 tokens asked for) and counted as gone
    eventually("the closed stream is counted", || metric(&server, "occ_requests_total{code=\"499\"}") == 1.0);
    let steps = metric(&server, "occ_decode_steps_total");
    assert!(steps < 4000.0, "{steps} decode steps: the closed stream was not cancelled");
    server.shutdown();
    server.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
