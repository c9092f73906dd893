//! The `openai` engine against this server and against scripted failures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use occ_core::{EngineError, Mode, OcrEngine, OcrOptions, OcrPage, Prompt};
use occ_serve::{OpenAiConfig, OpenAiEngine};

use crate::common::*;

fn pages(n: u32) -> Vec<OcrPage> {
    (0..n).map(|i| OcrPage { id: format!("p{i}"), image: page(i), mode: Mode::Tiny }).collect()
}

fn fast_retries(endpoint: String) -> OpenAiConfig {
    let mut cfg = OpenAiConfig::new(endpoint, "tiny");
    cfg.backoff = Duration::from_millis(10);
    cfg.max_backoff = Duration::from_millis(50);
    cfg.max_retries = 3;
    cfg.timeout = Duration::from_secs(60);
    cfg
}

#[test]
fn the_openai_engine_against_our_server_returns_the_in_process_engines_tokens() {
    let pages = pages(6);
    let opts = OcrOptions { max_new_tokens: 7, ..OcrOptions::default() };
    let want = OcrEngine::ocr(&mut tiny_engine(), &pages, &Prompt::FreeOcr, &opts).unwrap();
    let server = occ_serve::Server::start(config(), Box::new(tiny_engine())).unwrap();
    let mut cfg = fast_retries(format!("http://{}/v1", server.addr()));
    cfg.concurrency = 4;
    cfg.send_mode = true;
    let mut engine = OpenAiEngine::new(cfg).unwrap();
    let got = engine.ocr(&pages, &Prompt::FreeOcr, &opts).unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.id, w.id);
        assert_eq!(g.token_ids, w.token_ids, "page {}", g.id);
        assert_eq!(g.text, w.text);
        // the server's usage
        assert_eq!(g.n_prompt_tokens, w.n_prompt_tokens);
        assert_eq!(g.n_generated_tokens, w.n_generated_tokens);
        assert_eq!(g.hit_max_tokens, w.hit_max_tokens);
    }
    assert_eq!(engine.retries(), 0);
    let info = engine.info();
    assert_eq!(info.name, "openai");
    assert!(info.weights.unwrap().contains(&server.addr().to_string()));
    server.shutdown();
    server.wait().unwrap();
}

/// A server that answers each request with the next scripted status (200s with a fixed completion)
/// and counts the requests.
fn scripted(statuses: Vec<u16>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for (conn, status) in listener.incoming().zip(statuses) {
            let mut conn = conn.unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            seen.fetch_add(1, Ordering::SeqCst);
            let body = if status == 200 {
                r#"{"id":"x","object":"chat.completion","created":0,"model":"tiny","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#.to_string()
            } else {
                format!(r#"{{"error":{{"message":"scripted {status}","type":"x","param":null,"code":null}}}}"#)
            };
            write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nRetry-After: 0\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
    });
    (format!("http://{addr}/v1"), count)
}

#[test]
fn rate_limits_and_server_errors_are_retried_and_the_usage_recorded() {
    let (endpoint, count) = scripted(vec![429, 500, 503, 200]);
    let mut engine = OpenAiEngine::new(fast_retries(endpoint)).unwrap();
    let out = engine.ocr(&pages(1), &Prompt::FreeOcr, &OcrOptions::default()).unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 4);
    assert_eq!(engine.retries(), 3);
    assert_eq!(out[0].text, "hello");
    assert_eq!((out[0].n_prompt_tokens, out[0].n_generated_tokens), (Some(9), Some(2)));
    assert_eq!(out[0].token_ids, None, "other servers send no token ids");
    assert!(!out[0].hit_max_tokens);
}

#[test]
fn a_client_error_is_not_retried_and_retries_end() {
    let (endpoint, count) = scripted(vec![400, 200]);
    let mut engine = OpenAiEngine::new(fast_retries(endpoint)).unwrap();
    let err = engine.ocr(&pages(1), &Prompt::FreeOcr, &OcrOptions::default()).unwrap_err();
    assert!(
        matches!(&err, EngineError::Backend { message, .. } if message.contains("HTTP 400: scripted 400")),
        "{err}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);

    let (endpoint, count) = scripted(vec![503; 10]);
    let mut engine = OpenAiEngine::new(fast_retries(endpoint)).unwrap();
    let err = engine.ocr(&pages(1), &Prompt::FreeOcr, &OcrOptions::default()).unwrap_err();
    assert!(err.to_string().contains("after 3 retries"), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 4);

    // nobody listening: connection errors are retried, then reported
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut engine = OpenAiEngine::new(fast_retries(format!("http://127.0.0.1:{port}/v1"))).unwrap();
    let err = engine.ocr(&pages(1), &Prompt::FreeOcr, &OcrOptions::default()).unwrap_err();
    assert!(err.to_string().contains("after 3 retries"), "{err}");
    assert_eq!(engine.retries(), 3);
}

/// A mini reader (the kind `compress-bench train` exports) on synthetic weights: 128-px pages.
fn synthetic_mini() -> occ_model::pipeline::DeepseekOcr {
    use occ_model::mini::{MiniConfig, OutputVocab};
    use occ_model::pipeline::{DeepseekOcr, WeightsIdentity};
    use occ_model::prompt::build_prompt;
    let cfg: MiniConfig = serde_json::from_value(serde_json::json!({
        "canvas": 128, "vocab_size": 320,
        "sam": {"width": 16, "depth": 2, "heads": 2, "mlp_dim": 32, "window_size": 4,
                "global_attn_indexes": [1], "out_chans": 16, "downsample_channels": [16, 32]},
        "clip": {"layers": 1, "heads": 2, "ffn_dim": 32},
        "decoder": {"hidden_size": 32, "layers": 2, "heads": 2, "intermediate_size": 64,
                    "moe_intermediate_size": 16, "experts": 4, "experts_per_token": 2, "shared_experts": 1,
                    "first_dense_layers": 1, "max_positions": 256}
    }))
    .unwrap();
    cfg.validate().unwrap();
    let tok = occ_core::TextTokenizer::deepseek_ocr().unwrap();
    let slots = cfg.mode().unwrap().vision_tokens(128, 128).unwrap().slots as usize;
    let prompt = build_prompt(&tok, &Prompt::FreeOcr, &[slots]).unwrap().ids;
    let vocab = OutputVocab::build(&tok, ["Call me Ishmael. Some years ago."], &prompt, cfg.vocab_size).unwrap();
    let vb = occ_model::synth::synth_var_builder(5, candle_core::DType::F32, &candle_core::Device::Cpu);
    let id = WeightsIdentity { id: "synthetic:mini".into(), synthetic: true };
    DeepseekOcr::mini(&cfg, vb, tok, vocab, id).unwrap()
}

#[test]
fn a_mini_reader_served_reads_what_it_reads_in_process_and_refuses_other_modes() {
    let native = synthetic_mini().native_mode().unwrap();
    let pages: Vec<OcrPage> = (0..3).map(|i| OcrPage { id: format!("p{i}"), image: page(i), mode: native }).collect();
    let opts = OcrOptions { max_new_tokens: 9, ..OcrOptions::default() };
    let want = OcrEngine::ocr(&mut synthetic_mini(), &pages, &Prompt::FreeOcr, &opts).unwrap();
    let mut cfg = config();
    cfg.model_name = "mini".into();
    let server = occ_serve::Server::start(cfg, Box::new(synthetic_mini())).unwrap();
    let endpoint = format!("http://{}/v1", server.addr());
    // without --send-mode the server reads in the reader's own mode
    let mut c = fast_retries(endpoint.clone());
    c.model = "mini".into();
    let got = OpenAiEngine::new(c.clone()).unwrap().ocr(&pages, &Prompt::FreeOcr, &opts).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((&g.token_ids, &g.text), (&w.token_ids, &w.text), "page {}", g.id);
        assert!(g.token_ids.as_ref().is_some_and(|t| !t.is_empty()));
    }
    // another mode is refused with a message naming the reader's
    c.send_mode = true;
    let tiny: Vec<OcrPage> = pages.iter().map(|p| OcrPage { mode: Mode::Tiny, ..p.clone() }).collect();
    let err = OpenAiEngine::new(c).unwrap().ocr(&tiny[..1], &Prompt::FreeOcr, &opts).unwrap_err();
    assert!(err.to_string().contains("HTTP 400") && err.to_string().contains(&native.to_string()), "{err}");
    server.shutdown();
    server.wait().unwrap();
}
