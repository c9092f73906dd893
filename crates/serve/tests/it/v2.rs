//! The server of DeepSeek-OCR-2 (`deepseek-ocr-2`): requests in v2 modes read live through the same
//! batcher as DeepSeek-OCR's, with the in-process engine's token ids; v1 modes refused by name.

use candle_core::{DType, Device};
use image::RgbImage;
use occ_core::{Mode, OcrEngine, OcrOptions, OcrPage, Prompt};
use occ_model::generate::{GenerationConfig, Sampling};
use occ_model::pipeline_v2::{DeepseekOcr2, Ocr2SyntheticSize};
use occ_model::synth::Recipe;
use serde_json::{json, Value};

use crate::common::*;

const MAX_TOKENS: u64 = 6;
const MODEL: &str = "deepseek-ocr-2";

/// The reduced synthetic DeepSeek-OCR-2 (the CPU goldens' tower and the tiny decoder).
fn engine() -> DeepseekOcr2 {
    let mut e = DeepseekOcr2::synthetic(Ocr2SyntheticSize::Reduced, Recipe::V1, 0, DType::F32, &Device::Cpu)
        .expect("reduced synthetic DeepSeek-OCR-2");
    e.max_batch = 4;
    e
}

fn server() -> occ_serve::Server {
    let mut cfg = occ_serve::ServeConfig::new("127.0.0.1:0".parse().unwrap(), MODEL);
    // the CLI's default for a v1 server; a request that names no mode is read in v2
    cfg.default_mode = Mode::Base;
    occ_serve::Server::start(cfg, Box::new(engine())).unwrap()
}

/// The token ids the in-process engine reads from `img` alone in `mode` (Free OCR).
fn in_process(img: &RgbImage, mode: Mode, max_tokens: u64) -> Vec<u32> {
    let page = OcrPage { id: "p".into(), image: img.clone(), mode };
    let opts = OcrOptions { max_new_tokens: max_tokens as usize, ..OcrOptions::default() };
    let out = OcrEngine::ocr(&mut engine(), &[page], &Prompt::FreeOcr, &opts).unwrap();
    out[0].token_ids.clone().unwrap()
}

fn with_mode(mut body: Value, mode: Option<&str>) -> Value {
    if let Some(m) = mode {
        body["mode"] = json!(m);
    }
    body
}

fn ids(v: &Value) -> Vec<Vec<u32>> {
    serde_json::from_value(v["token_ids"].clone()).unwrap()
}

/// A page wider than 768 px: two local tiles and the global view in v2.
fn wide_page() -> RgbImage {
    RgbImage::from_fn(800, 400, |x, y| image::Rgb([(x % 251) as u8, (y * 3 % 241) as u8, ((x + y) % 256) as u8]))
}

#[test]
fn v2_completions_equal_the_in_process_engines_tokens_and_v1_modes_are_refused() {
    let server = server();
    let (small, wide) = (page(3), wide_page());
    // requests at once, so pages of several requests and both modes share the vision tower and
    // the decode steps: (image, mode named in the request, mode read, vision slots)
    let cases = [
        (small.clone(), Some("v2"), Mode::V2, 257),
        (small.clone(), Some("v2-single"), Mode::V2Single, 145),
        (wide.clone(), Some("v2"), Mode::V2, 545),
        (page(5), None, Mode::V2, 257),
    ];
    let answers: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(img, name, _, _)| {
                let server = &server;
                s.spawn(move || {
                    let body = with_mode(request(MODEL, &data_url("image/png", &png(img)), MAX_TOKENS), *name);
                    let (status, _, body) = post(server, &body);
                    assert_eq!(status, 200, "{body}");
                    body
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((img, name, mode, slots), body) in cases.iter().zip(&answers) {
        assert_eq!(ids(body), vec![in_process(img, *mode, MAX_TOKENS)], "mode {name:?}");
        assert_eq!(body["usage"]["vision_tokens"], *slots, "mode {name:?}");
        assert_eq!(body["model"], MODEL);
    }
    // a v1 mode: 400 in OpenAI's error shape, naming the mode and the modes that are read
    let body = with_mode(request(MODEL, &data_url("image/png", &png(&small)), MAX_TOKENS), Some("base"));
    let (status, _, err) = post(&server, &body);
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "invalid_mode");
    assert_eq!(err["error"]["param"], "mode");
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("base") && message.contains("v2 and v2-single"), "{message}");
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn a_sampled_v2_request_honours_its_top_p() {
    let server = server();
    let img = page(7);
    let sampled = |top_p: f64| {
        let mut body = with_mode(request(MODEL, &data_url("image/png", &png(&img)), MAX_TOKENS), Some("v2-single"));
        body["temperature"] = json!(1.5);
        body["top_p"] = json!(top_p);
        body["seed"] = json!(11);
        let (status, _, body) = post(&server, &body);
        assert_eq!(status, 200, "{body}");
        ids(&body).remove(0)
    };
    // the in-process read with the same settings, top_p included
    let e = engine();
    let read = |top_p: f64| {
        let cfg = GenerationConfig {
            max_new_tokens: MAX_TOKENS as usize,
            sampling: Sampling::TopP { temperature: 1.5, top_p, seed: 11 },
            ..e.generation.clone()
        };
        e.ocr(&[(&img, Mode::V2Single)], &Prompt::FreeOcr, &cfg).unwrap().remove(0).token_ids
    };
    let whole = sampled(1.0);
    assert_eq!(whole, read(1.0));
    assert_eq!(sampled(0.5), read(0.5));
    // a nucleus of one token is greedy decoding: the request's top_p reached the sampler (the whole
    // distribution at this temperature reads otherwise)
    let greedy = in_process(&img, Mode::V2Single, MAX_TOKENS);
    assert_ne!(whole, greedy, "sampling the whole distribution gave the greedy tokens");
    assert_eq!(sampled(1e-9), greedy);
    server.shutdown();
    server.wait().unwrap();
}
