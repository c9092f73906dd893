//! Load test: the same pages read in-process (one batched engine call) and through the server by
//! concurrent clients; prints pages/s, generated tokens/s and request latency (docs/PERFORMANCE.md).
//! `--paths live,per-request` runs the server once per way of feeding the model: `live` (requests
//! admitted into the running continuous batcher, the default) and `per-request` (the older batches
//! of waiting requests); each path gets a fresh engine and server. `--stream` streams the answers
//! and prints the time to the first piece of text; `--vary-tokens` gives page i a budget of
//! `max_tokens · (i mod 4 + 1) / 4`.
//!
//! ```sh
//! # the server's own overhead on the CPU: tiny synthetic weights, both server paths
//! cargo run --release -p occ-serve --example load -- --pages 64 --clients 32 --max-tokens 32 \
//!     --paths live,per-request
//! # the GPU measurement: Small pages, exactly 512 tokens each (EOS ignored), real weights
//! cargo run --release -p occ-serve --features cuda --example load -- --weights /models/DeepSeek-OCR \
//!     --device cuda --dtype bf16 --mode small --pages 256 --clients 64 --batch 64 --max-tokens 512 --ignore-eos
//! ```
//! Pages are seeded noise at the mode's default canvas (what a page shows does not change the work
//! when EOS is ignored). Both paths use the same engine settings; the run fails if the server
//! generated a different number of tokens than the in-process call.

use std::io::{BufRead, BufReader, Cursor};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use candle_core::{DType, Device};
use image::RgbImage;
use occ_core::{Mode, OcrEngine, OcrOptions, OcrPage, Prompt};
use occ_model::load::WeightsDir;
use occ_model::pipeline::{DeepseekOcr, SyntheticSize};
use occ_serve::{ServeConfig, Server};

struct Opts {
    pages: usize,
    clients: usize,
    max_tokens: usize,
    batch: usize,
    mode: Mode,
    weights: Option<PathBuf>,
    synthetic: SyntheticSize,
    cuda: bool,
    dtype: DType,
    ignore_eos: bool,
    /// Page i asks for `max_tokens · (i mod 4 + 1) / 4` tokens (answers of different lengths).
    vary_tokens: bool,
    /// Stream the answers (SSE) and measure the time to the first piece of text too.
    stream: bool,
    /// Server paths to measure: `true` live, `false` per request.
    paths: Vec<bool>,
}

fn parse() -> Opts {
    let mut o = Opts {
        pages: 64,
        clients: 16,
        max_tokens: 32,
        batch: 32,
        mode: Mode::Tiny,
        weights: None,
        synthetic: SyntheticSize::Tiny,
        cuda: false,
        dtype: DType::F32,
        ignore_eos: false,
        vary_tokens: false,
        stream: false,
        paths: vec![true],
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--ignore-eos" {
            o.ignore_eos = true;
            continue;
        }
        if flag == "--vary-tokens" {
            o.vary_tokens = true;
            continue;
        }
        if flag == "--stream" {
            o.stream = true;
            continue;
        }
        let value = args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let num = || value.parse::<usize>().unwrap_or_else(|_| panic!("{flag} needs a number, not {value}"));
        match flag.as_str() {
            "--pages" => o.pages = num(),
            "--clients" => o.clients = num(),
            "--max-tokens" => o.max_tokens = num(),
            "--batch" => o.batch = num(),
            "--mode" => o.mode = value.parse().expect("--mode: tiny, small, base, large or gundam"),
            "--weights" => o.weights = Some(PathBuf::from(&value)),
            "--synthetic" => {
                o.synthetic = match value.as_str() {
                    "tiny" => SyntheticSize::Tiny,
                    "reduced" => SyntheticSize::Reduced,
                    "full" => SyntheticSize::Full,
                    _ => panic!("--synthetic: tiny, reduced or full"),
                }
            }
            "--device" => o.cuda = value == "cuda",
            "--dtype" => {
                o.dtype = match value.as_str() {
                    "f32" => DType::F32,
                    "bf16" => DType::BF16,
                    "f16" => DType::F16,
                    _ => panic!("--dtype: f32, bf16 or f16"),
                }
            }
            "--paths" => {
                o.paths = value
                    .split(',')
                    .map(|p| match p {
                        "live" => true,
                        "per-request" => false,
                        _ => panic!("--paths: live and/or per-request, comma-separated"),
                    })
                    .collect()
            }
            other => panic!(
                "unknown flag {other}; flags: --pages --clients --max-tokens --batch --mode --weights --synthetic \
                 --device --dtype --ignore-eos --vary-tokens --stream --paths"
            ),
        }
    }
    o
}

fn engine(o: &Opts) -> DeepseekOcr {
    let device = if o.cuda { occ_model::ops::cuda_device(0).expect("CUDA device 0") } else { Device::Cpu };
    let mut e = match &o.weights {
        Some(dir) => {
            let wd = WeightsDir::open(dir).expect("opening the weights folder");
            DeepseekOcr::from_weights_dir(&wd, o.dtype, &device).expect("loading the weights")
        }
        None => DeepseekOcr::synthetic(o.synthetic, 1, o.dtype, &device).expect("synthetic engine"),
    };
    e.max_batch = o.batch;
    e
}

fn page(seed: u32, mode: Mode) -> RgbImage {
    let (w, h) = mode.default_canvas();
    RgbImage::from_fn(w - 8 * (seed % 5), h - 4 * (seed % 7), |x, y| {
        image::Rgb([((x * 7 + seed * 31) % 251) as u8, ((y * 3 + seed * 17) % 241) as u8, (seed * 53 % 256) as u8])
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() {
    let o = parse();
    let images: Vec<RgbImage> = (0..o.pages as u32).map(|i| page(i, o.mode)).collect();
    let budget = |i: usize| if o.vary_tokens { (o.max_tokens * (i % 4 + 1) / 4).max(1) } else { o.max_tokens };

    // in-process: every page in one engine call, batches of --batch
    let pages: Vec<OcrPage> = images
        .iter()
        .enumerate()
        .map(|(i, img)| OcrPage { id: i.to_string(), image: img.clone(), mode: o.mode })
        .collect();
    let mut e = engine(&o);
    let options = |max_new_tokens| OcrOptions { max_new_tokens, ignore_eos: o.ignore_eos, ..OcrOptions::default() };
    OcrEngine::ocr(&mut e, &pages[..1], &Prompt::FreeOcr, &options(budget(0))).expect("warm-up");
    // one call per budget (one call in all unless --vary-tokens)
    let mut budgets: Vec<usize> = (0..o.pages).map(budget).collect();
    budgets.sort_unstable();
    budgets.dedup();
    let t = Instant::now();
    let mut tokens = 0usize;
    for &b in &budgets {
        let mine: Vec<OcrPage> =
            pages.iter().enumerate().filter(|(i, _)| budget(*i) == b).map(|(_, p)| p.clone()).collect();
        let out = OcrEngine::ocr(&mut e, &mine, &Prompt::FreeOcr, &options(b)).expect("in-process reading");
        tokens += out.iter().map(|r| r.n_generated_tokens.unwrap_or(0)).sum::<usize>();
    }
    let in_process = t.elapsed().as_secs_f64();

    let bodies: Vec<String> = images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            let mut png = Vec::new();
            img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
            let data = base64::engine::general_purpose::STANDARD.encode(&png);
            serde_json::json!({"model": "model", "max_tokens": budget(i), "ignore_eos": o.ignore_eos, "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{data}")}},
                {"type": "text", "text": "Free OCR. "}]}]})
            .to_string()
        })
        .collect();
    // the in-process engine moves into the first server: one model in memory at a time
    let mut engine_for_server = Some(e);
    let mut rows = Vec::new();
    for &live in &o.paths {
        let e = engine_for_server.take().unwrap_or_else(|| engine(&o));
        let (served, served_tokens, lat, first) = serve(&o, e, live, &bodies);
        assert_eq!(served_tokens, tokens, "the server generated what the engine generated");
        rows.push((live, served, served_tokens, lat, first));
    }
    let weights = match &o.weights {
        Some(w) => w.display().to_string(),
        None => format!("{:?} synthetic weights", o.synthetic),
    };
    println!(
        "{} pages ({} mode, {weights}, {}, {:?}), {} tokens at most per page{}, {} generated in all, batch {}",
        o.pages,
        o.mode,
        if o.cuda { "cuda" } else { "cpu" },
        o.dtype,
        o.max_tokens,
        match (o.vary_tokens, o.ignore_eos) {
            (true, true) => " (page i: ×(i mod 4 + 1)/4; EOS ignored)",
            (true, false) => " (page i: ×(i mod 4 + 1)/4)",
            (false, true) => " (EOS ignored)",
            (false, false) => "",
        },
        tokens,
        o.batch
    );
    println!("| path | pages/s | tokens/s | p50 latency ms | p99 latency ms |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| in-process (one `OcrEngine::ocr` call per budget) | {:.1} | {:.0} | | |",
        o.pages as f64 / in_process,
        tokens as f64 / in_process
    );
    for (live, served, served_tokens, lat, first) in rows {
        if !first.is_empty() {
            println!(
                "server ({}): first piece of text after p50 {:.0} ms, p99 {:.0} ms (streamed)",
                if live { "live" } else { "per request" },
                percentile(&first, 0.5),
                percentile(&first, 0.99)
            );
        }
        println!(
            "| server ({}), {} concurrent clients | {:.1} | {:.0} | {:.0} | {:.0} |",
            if live { "live" } else { "per request" },
            o.clients,
            o.pages as f64 / served,
            served_tokens as f64 / served,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        println!(
            "server ({}) throughput / in-process: {:.1} %",
            if live { "live" } else { "per request" },
            100.0 * in_process / served
        );
    }
}

/// Serves `e` (live or per request) to `--clients` threads, each sending its next page as soon as
/// the last is answered; returns the seconds, the generated tokens and each request's latency.
fn serve(o: &Opts, e: DeepseekOcr, live: bool, bodies: &[String]) -> (f64, usize, Vec<Duration>, Vec<Duration>) {
    let mut cfg = ServeConfig::new("127.0.0.1:0".parse().unwrap(), "model");
    cfg.default_mode = o.mode;
    cfg.limits.max_queue = o.pages.max(1);
    cfg.live = live;
    let server = Server::start(cfg, Box::new(e)).expect("server");
    let url = format!("http://{}/v1/chat/completions", server.addr());
    let client = reqwest::blocking::Client::new();
    // the generated tokens and, streaming, when the first piece of text came
    let send = |body: &String, t: Instant| -> (usize, Option<Duration>) {
        let body = if o.stream {
            let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
            v["stream"] = serde_json::json!(true);
            v["stream_options"] = serde_json::json!({"include_usage": true});
            v.to_string()
        } else {
            body.clone()
        };
        let r = client.post(&url).header("content-type", "application/json").body(body).send().unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        if !o.stream {
            let v: serde_json::Value = serde_json::from_str(&r.text().unwrap()).unwrap();
            return (v["usage"]["completion_tokens"].as_u64().unwrap() as usize, None);
        }
        let (mut first, mut tokens) = (None, 0);
        for line in BufReader::new(r).lines() {
            let line = line.unwrap();
            let Some(data) = line.strip_prefix("data: ") else { continue };
            if data == "[DONE]" {
                break;
            }
            let v: serde_json::Value = serde_json::from_str(data).unwrap();
            let piece = v["choices"][0]["delta"]["content"].as_str().is_some_and(|c| !c.is_empty());
            if piece && first.is_none() {
                first = Some(t.elapsed());
            }
            if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                tokens = n as usize;
            }
        }
        (tokens, Some(first.unwrap_or_else(|| t.elapsed())))
    };
    send(&bodies[0], Instant::now());
    let next = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::new());
    let firsts = Mutex::new(Vec::new());
    let served_tokens = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..o.clients {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                let (tokens, first) = send(body, t);
                served_tokens.fetch_add(tokens, Ordering::SeqCst);
                latencies.lock().unwrap().push(t.elapsed());
                firsts.lock().unwrap().extend(first);
            });
        }
    });
    let served = t.elapsed().as_secs_f64();
    let mut lat = latencies.into_inner().unwrap();
    lat.sort();
    let mut first = firsts.into_inner().unwrap();
    first.sort();
    let metrics = client.get(format!("http://{}/metrics", server.addr())).send().unwrap().text().unwrap();
    let value = |name: &str| {
        metrics.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok())).unwrap_or(0.0)
    };
    println!(
        "server ({}): {} decode steps, {} admissions or batches (warm-up request included)",
        if live { "live" } else { "per request" },
        value("occ_decode_steps_total "),
        value("occ_batches_total ")
    );
    server.shutdown();
    server.wait().unwrap();
    (served, served_tokens.into_inner(), lat, first)
}
