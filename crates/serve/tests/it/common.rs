//! Helpers shared by the tests: servers on free ports, requests, pages, a gated fake reader.

use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use base64::Engine as _;
use candle_core::{DType, Device};
use image::RgbImage;
use occ_core::{Mode, Prompt};
use occ_model::pipeline::{DeepseekOcr, SyntheticSize};
use occ_serve::{
    Admission, Events, LiveError, LivePlan, LiveSession, PageEvent, Params, Reader, Reading, ServeConfig, Server,
    SlotFit,
};
use serde_json::{json, Value};

/// The tiny synthetic engine every test builds the same way.
pub fn tiny_engine() -> DeepseekOcr {
    DeepseekOcr::synthetic(SyntheticSize::Tiny, 1, DType::F32, &Device::Cpu).expect("tiny synthetic engine")
}

/// A server config on a free local port serving `tiny` in Tiny mode.
pub fn config() -> ServeConfig {
    let mut cfg = ServeConfig::new("127.0.0.1:0".parse().unwrap(), "tiny");
    cfg.default_mode = Mode::Tiny;
    cfg
}

/// A page whose pixels depend on `seed`.
pub fn page(seed: u32) -> RgbImage {
    RgbImage::from_fn(96 + 8 * (seed % 5), 64 + 4 * (seed % 7), |x, y| {
        image::Rgb([((x * 7 + seed * 31) % 251) as u8, ((y * 3 + seed * 17) % 241) as u8, (seed * 53 % 256) as u8])
    })
}

pub fn png(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

pub fn data_url(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A chat request reading `url` with the Free-OCR prompt.
pub fn request(model: &str, url: &str, max_tokens: u64) -> Value {
    json!({
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": "Free OCR. "}
        ]}]
    })
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap()
}

/// Posts JSON; returns the status, the Retry-After header and the body as JSON.
pub fn post(server: &Server, body: &Value) -> (u16, Option<String>, Value) {
    let resp = client()
        .post(format!("http://{}/v1/chat/completions", server.addr()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().unwrap();
    (status, retry, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")))
}

pub fn get(server: &Server, path: &str) -> (u16, String) {
    let resp = client().get(format!("http://{}{path}", server.addr())).send().unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

/// The value of a metric line `name value` (no labels or with them written out in `name`).
pub fn metric(server: &Server, name: &str) -> f64 {
    let (_, text) = get(server, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

/// Polls `cond` for up to 20 s.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting until {what}");
}

/// A reader that answers `page WxH` for each page, but only once its gate is open; it counts the
/// pages it was handed and the calls (per request) or decode steps (live) that started. Live, each
/// page gets one token per decode step, `min(max_tokens, 3)` in all.
#[derive(Clone, Default)]
pub struct Gated {
    open: Arc<(Mutex<bool>, Condvar)>,
    pub pages_read: Arc<AtomicUsize>,
    pub calls: Arc<AtomicUsize>,
}

impl Gated {
    pub fn open(&self) {
        *self.open.0.lock().unwrap() = true;
        self.open.1.notify_all();
    }

    /// Calls or decode steps that have started (and may be waiting at the gate).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn wait_at_gate(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.0.lock().unwrap();
        while !*open {
            open = self.open.1.wait(open).unwrap();
        }
    }
}

fn reading(img: &RgbImage, max_tokens: usize) -> Reading {
    Reading {
        text: format!("page {}x{}", img.width(), img.height()),
        token_ids: vec![1; max_tokens.min(3)],
        prompt_tokens: 10,
        vision_tokens: 4,
        stopped_at_eos: true,
    }
}

impl Reader for Gated {
    fn max_batch(&self) -> usize {
        8
    }

    fn native_mode(&self) -> Option<Mode> {
        None
    }

    fn read(&self, pages: &[(&RgbImage, Mode)], _: &Prompt, params: &Params) -> Result<Vec<Reading>, String> {
        self.wait_at_gate();
        self.pages_read.fetch_add(pages.len(), Ordering::SeqCst);
        Ok(pages.iter().map(|(img, _)| reading(img, params.max_tokens)).collect())
    }

    fn live(&self, _plan: &LivePlan) -> Option<Result<Box<dyn LiveSession + '_>, LiveError>> {
        Some(Ok(Box::new(GatedSession { gated: self, pages: Vec::new() })))
    }
}

struct GatedPage {
    reading: Reading,
    sent: usize,
    page: usize,
    events: Events,
    cancelled: Arc<AtomicBool>,
}

/// [`Gated`]'s live path: 8 slots; each step waits at the gate.
struct GatedSession<'a> {
    gated: &'a Gated,
    pages: Vec<GatedPage>,
}

impl LiveSession for GatedSession<'_> {
    fn accepts(&self, _: &Params) -> bool {
        true
    }

    fn free_slots(&self) -> usize {
        8usize.saturating_sub(self.pages.len())
    }

    fn active(&self) -> usize {
        self.pages.len()
    }

    fn is_idle(&self) -> bool {
        self.pages.is_empty()
    }

    fn admit(&mut self, requests: &[Admission<'_>]) -> Vec<Result<(), String>> {
        for r in requests {
            self.gated.pages_read.fetch_add(r.pages.len(), Ordering::SeqCst);
            for (page, (img, _)) in r.pages.iter().enumerate() {
                let reading = reading(img, r.params.max_tokens);
                let (events, cancelled) = (r.events.clone(), r.cancelled.clone());
                self.pages.push(GatedPage { reading, sent: 0, page, events, cancelled });
            }
        }
        requests.iter().map(|_| Ok(())).collect()
    }

    fn step(&mut self) -> Result<Option<usize>, String> {
        self.pages.retain(|p| !p.cancelled.load(Ordering::SeqCst));
        if self.pages.is_empty() {
            return Ok(None);
        }
        self.gated.wait_at_gate();
        let n = self.pages.len();
        self.pages.retain_mut(|p| {
            let id = p.reading.token_ids[p.sent];
            p.sent += 1;
            if p.events.send((p.page, PageEvent::Token(id))).is_err() {
                return false;
            }
            if p.sent < p.reading.token_ids.len() {
                return true;
            }
            let _ = p.events.send((p.page, PageEvent::Done(p.reading.clone())));
            false
        });
        Ok(Some(n))
    }

    fn fail_all(&mut self, message: &str) {
        for p in self.pages.drain(..) {
            let _ = p.events.send((p.page, PageEvent::Failed(message.into())));
        }
    }

    fn slots(&self) -> SlotFit {
        SlotFit::unlimited(8)
    }
}
