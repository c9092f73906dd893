//! Load test: the same pages read in-process (one batched engine call) and through the server by
//! concurrent clients; prints pages/s, generated tokens/s and request latency (docs/PERFORMANCE.md).
//!
//! ```sh
//! cargo run --release -p occ-serve --example load -- --pages 64 --clients 16 --max-tokens 32
//! ```
//! The model is the tiny synthetic DeepSeek-OCR on the CPU (a measure of the server's own overhead:
//! HTTP, JSON, base64 and PNG, queueing and batching).

use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use candle_core::{DType, Device};
use image::RgbImage;
use occ_core::{Mode, OcrEngine, OcrOptions, OcrPage, Prompt};
use occ_model::pipeline::{DeepseekOcr, SyntheticSize};
use occ_serve::{ServeConfig, Server};

struct Opts {
    pages: usize,
    clients: usize,
    max_tokens: usize,
    batch: usize,
}

fn parse() -> Opts {
    let mut o = Opts { pages: 64, clients: 16, max_tokens: 32, batch: 32 };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let v = || pair.get(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{} needs a number", pair[0]));
        match pair[0].as_str() {
            "--pages" => o.pages = v(),
            "--clients" => o.clients = v(),
            "--max-tokens" => o.max_tokens = v(),
            "--batch" => o.batch = v(),
            other => panic!("unknown flag {other}; flags: --pages --clients --max-tokens --batch"),
        }
    }
    o
}

fn engine(batch: usize) -> DeepseekOcr {
    let mut e = DeepseekOcr::synthetic(SyntheticSize::Tiny, 1, DType::F32, &Device::Cpu).expect("tiny engine");
    e.max_batch = batch;
    e
}

fn page(seed: u32) -> RgbImage {
    RgbImage::from_fn(320 + 8 * (seed % 5), 320 + 4 * (seed % 7), |x, y| {
        image::Rgb([((x * 7 + seed * 31) % 251) as u8, ((y * 3 + seed * 17) % 241) as u8, (seed * 53 % 256) as u8])
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    let o = parse();
    let images: Vec<RgbImage> = (0..o.pages as u32).map(page).collect();
    let options = OcrOptions { max_new_tokens: o.max_tokens, ..OcrOptions::default() };

    // in-process: every page in one engine call, batches of --batch
    let pages: Vec<OcrPage> = images
        .iter()
        .enumerate()
        .map(|(i, img)| OcrPage { id: i.to_string(), image: img.clone(), mode: Mode::Tiny })
        .collect();
    let mut e = engine(o.batch);
    OcrEngine::ocr(&mut e, &pages[..1], &Prompt::FreeOcr, &options).expect("warm-up");
    let t = Instant::now();
    let out = OcrEngine::ocr(&mut e, &pages, &Prompt::FreeOcr, &options).expect("in-process reading");
    let in_process = t.elapsed().as_secs_f64();
    let tokens: usize = out.iter().map(|r| r.n_generated_tokens.unwrap_or(0)).sum();

    // server: --clients threads, each sending its next page as soon as the last is answered
    let mut cfg = ServeConfig::new("127.0.0.1:0".parse().unwrap(), "tiny");
    cfg.default_mode = Mode::Tiny;
    let server = Server::start(cfg, Box::new(engine(o.batch))).expect("server");
    let url = format!("http://{}/v1/chat/completions", server.addr());
    let bodies: Vec<String> = images
        .iter()
        .map(|img| {
            let mut png = Vec::new();
            img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
            let data = base64::engine::general_purpose::STANDARD.encode(&png);
            serde_json::json!({"model": "tiny", "max_tokens": o.max_tokens, "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{data}")}},
                {"type": "text", "text": "Free OCR. "}]}]})
            .to_string()
        })
        .collect();
    let client = reqwest::blocking::Client::new();
    let send = |body: &String| {
        let r = client.post(&url).header("content-type", "application/json").body(body.clone()).send().unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        let v: serde_json::Value = serde_json::from_str(&r.text().unwrap()).unwrap();
        v["usage"]["completion_tokens"].as_u64().unwrap() as usize
    };
    send(&bodies[0]);
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::new());
    let served_tokens = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..o.clients {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                served_tokens.fetch_add(send(body), Ordering::SeqCst);
                latencies.lock().unwrap().push(t.elapsed());
            });
        }
    });
    let served = t.elapsed().as_secs_f64();
    let mut lat = latencies.into_inner().unwrap();
    lat.sort();
    server.shutdown();
    server.wait().unwrap();
    let served_tokens = served_tokens.into_inner();
    assert_eq!(served_tokens, tokens, "the server generated what the engine generated");
    println!(
        "{} pages (tiny mode, tiny synthetic weights, CPU), {} tokens at most per page, {} generated in all, batch {}",
        o.pages, o.max_tokens, tokens, o.batch
    );
    println!("| path | pages/s | tokens/s | p50 latency ms | p99 latency ms |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| in-process (one `OcrEngine::ocr` call) | {:.1} | {:.0} | | |",
        o.pages as f64 / in_process,
        tokens as f64 / in_process
    );
    println!(
        "| server, {} concurrent clients | {:.1} | {:.0} | {:.0} | {:.0} |",
        o.clients,
        o.pages as f64 / served,
        served_tokens as f64 / served,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    println!("server throughput / in-process: {:.1} %", 100.0 * in_process / served);
}
