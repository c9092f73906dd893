//! The `openai` engine: reads pages through any server that speaks OpenAI's chat completions
//! (`compress-bench serve`, vLLM, SGLang, llama.cpp, a hosted API), as an [`OcrEngine`].
//!
//! Each page is sent as a PNG data URL followed by the prompt text ([`OpenAiConfig::prompt_template`]
//! with `{prompt}` replaced by the task prompt without its `<image>` marker), with `max_tokens`,
//! `temperature` and `seed` from the options. Up to [`OpenAiConfig::concurrency`] requests are in
//! flight at once. A 429, a 5xx, a timeout or a failed connection is retried after a jittered
//! exponential backoff (at least the server's `Retry-After`); other errors fail the batch at once.
//! The server's usage becomes the output's prompt and generated token counts, and a server that
//! returns token ids (this toolkit's) gives them too.

use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use occ_core::rng::SplitMix64;
use occ_core::{EngineError, EngineInfo, OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt, Timings};

use crate::api::{ChatRequest, ChatResponse, Content, ErrorBody, ImageUrl, Message, Part};

/// The engine name in reports and manifests.
pub const ENGINE_NAME: &str = "openai";

/// Where and how pages are sent.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiConfig {
    /// Base URL of the API, up to and including `/v1` (`http://127.0.0.1:8000/v1`);
    /// requests go to `{endpoint}/chat/completions`.
    pub endpoint: String,
    /// The `model` of every request.
    pub model: String,
    /// Bearer token, if the server wants one.
    pub api_key: Option<String>,
    /// Text sent after the image; `{prompt}` stands for the task prompt without `<image>`.
    pub prompt_template: String,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Retries of one page after the first attempt.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one (with ±50 % jitter), at most
    /// [`OpenAiConfig::max_backoff`].
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Limit of one request, connection to last byte.
    pub timeout: Duration,
    /// Send the page's resolution mode as the request's `mode` (understood by `compress-bench
    /// serve`; other servers resize pages their own way and may refuse unknown fields).
    pub send_mode: bool,
    /// Seed of the backoff jitter.
    pub seed: u64,
}

impl OpenAiConfig {
    /// Defaults for `model` at `endpoint`.
    pub fn new(endpoint: impl Into<String>, model: impl Into<String>) -> OpenAiConfig {
        OpenAiConfig {
            endpoint: endpoint.into(),
            model: model.into(),
            api_key: None,
            prompt_template: "{prompt}".into(),
            concurrency: 8,
            max_retries: 4,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(600),
            send_mode: false,
            seed: 0,
        }
    }

    /// The text of a request for the task prompt `prompt`.
    pub fn prompt_text(&self, prompt: &Prompt) -> String {
        let task = prompt.text();
        let task = task.strip_prefix("<image>\n").unwrap_or(task).replace("<image>", "");
        self.prompt_template.replace("{prompt}", &task)
    }
}

/// An OpenAI-compatible server as an engine.
#[derive(Debug)]
pub struct OpenAiEngine {
    cfg: OpenAiConfig,
    http: reqwest::blocking::Client,
    jitter: Mutex<SplitMix64>,
    /// Retries made so far (all pages).
    retries: AtomicUsize,
}

/// Why one attempt failed.
enum Failure {
    /// Worth another try after at least this long.
    Retry(String, Option<Duration>),
    /// Not worth another try.
    Fatal(String),
}

impl OpenAiEngine {
    pub fn new(cfg: OpenAiConfig) -> Result<OpenAiEngine, EngineError> {
        let http = reqwest::blocking::Client::builder().timeout(cfg.timeout).build().map_err(|e| {
            EngineError::Unavailable {
                engine: ENGINE_NAME.into(),
                reason: format!("the HTTP client cannot start: {e}"),
                how: "check the TLS setup of this machine".into(),
            }
        })?;
        let jitter = Mutex::new(SplitMix64::new(cfg.seed));
        Ok(OpenAiEngine { cfg, http, jitter, retries: AtomicUsize::new(0) })
    }

    /// Retries made so far.
    pub fn retries(&self) -> usize {
        self.retries.load(Ordering::Relaxed)
    }

    fn url(&self) -> String {
        format!("{}/chat/completions", self.cfg.endpoint.trim_end_matches('/'))
    }

    fn request(
        &self,
        page: &OcrPage,
        prompt: &Prompt,
        options: &OcrOptions,
    ) -> Result<(ChatRequest, Duration), String> {
        let t = Instant::now();
        let mut png = Vec::new();
        page.image.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).map_err(|e| format!("PNG: {e}"))?;
        let url = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(&png));
        let req = ChatRequest {
            model: self.cfg.model.clone(),
            messages: vec![Message {
                role: "user".into(),
                content: Content::Parts(vec![
                    Part::ImageUrl { image_url: ImageUrl { url, detail: None } },
                    Part::Text { text: self.cfg.prompt_text(prompt) },
                ]),
            }],
            max_tokens: Some(options.max_new_tokens as u64),
            temperature: Some(options.temperature),
            seed: (options.temperature > 0.0).then_some(options.seed),
            mode: self.cfg.send_mode.then(|| page.mode.name()),
            ignore_eos: options.ignore_eos,
            ..ChatRequest::default()
        };
        Ok((req, t.elapsed()))
    }

    fn attempt(&self, body: &[u8]) -> Result<ChatResponse, Failure> {
        let mut req = self.http.post(self.url()).header("content-type", "application/json").body(body.to_vec());
        if let Some(key) = &self.cfg.api_key {
            req = req.bearer_auth(key);
        }
        let resp = match req.send() {
            Ok(r) => r,
            // connection refused or reset, DNS, timeouts: transient as far as a sweep can tell
            Err(e) => return Err(Failure::Retry(format!("request failed: {e}"), None)),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64);
        let text = resp.text().map_err(|e| Failure::Retry(format!("reading the answer: {e}"), None))?;
        if status.is_success() {
            return serde_json::from_str::<ChatResponse>(&text)
                .map_err(|e| Failure::Fatal(format!("the answer is not a chat completion ({e}): {}", clip(&text))));
        }
        let message = serde_json::from_str::<ErrorBody>(&text).map(|b| b.error.message).unwrap_or_else(|_| clip(&text));
        let msg = format!("HTTP {}: {message}", status.as_u16());
        if status.as_u16() == 429 || status.is_server_error() {
            Err(Failure::Retry(msg, retry_after))
        } else {
            Err(Failure::Fatal(msg))
        }
    }

    /// The wait before retry number `n` (from 0).
    fn backoff(&self, n: u32, at_least: Option<Duration>) -> Duration {
        let base = self.cfg.backoff.saturating_mul(1u32 << n.min(16)).min(self.cfg.max_backoff);
        let u = self.jitter.lock().unwrap_or_else(|p| p.into_inner()).unit_nonzero();
        let jittered = base.mul_f64(0.5 + u);
        jittered.max(at_least.unwrap_or(Duration::ZERO))
    }

    fn read_page(&self, page: &OcrPage, prompt: &Prompt, options: &OcrOptions) -> Result<OcrOutput, EngineError> {
        let backend = |message: String| EngineError::Backend {
            engine: ENGINE_NAME.into(),
            message: format!("page {}: {message}", page.id),
        };
        let (req, preprocess) = self.request(page, prompt, options).map_err(backend)?;
        let body = serde_json::to_vec(&req).map_err(|e| backend(e.to_string()))?;
        let t = Instant::now();
        let mut n = 0;
        let resp = loop {
            match self.attempt(&body) {
                Ok(r) => break r,
                Err(Failure::Fatal(msg)) => return Err(backend(msg)),
                Err(Failure::Retry(msg, at_least)) => {
                    if n >= self.cfg.max_retries {
                        return Err(backend(format!("{msg} (after {} retries)", self.cfg.max_retries)));
                    }
                    tracing::warn!("page {}: {msg}; retrying", page.id);
                    std::thread::sleep(self.backoff(n, at_least));
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            }
        };
        let decode = t.elapsed();
        let Some(choice) = resp.choices.first() else {
            return Err(backend("the answer has no choices".into()));
        };
        let usage = resp.usage;
        let token_ids = resp.token_ids.and_then(|mut t| (t.len() == 1).then(|| t.remove(0)));
        Ok(OcrOutput {
            id: page.id.clone(),
            text: choice.message.content.clone().unwrap_or_default(),
            n_generated_tokens: usage.map(|u| u.completion_tokens as usize).or(token_ids.as_ref().map(Vec::len)),
            n_prompt_tokens: usage.map(|u| u.prompt_tokens as usize),
            token_ids,
            hit_max_tokens: choice.finish_reason.as_deref() == Some("length"),
            // the round trip (queue, vision, prefill and decode on the server) counts as decoding
            timings: Timings { preprocess, decode, ..Timings::default() },
        })
    }
}

fn clip(text: &str) -> String {
    let t: String = text.chars().take(300).collect();
    if t.len() < text.len() {
        format!("{t}…")
    } else {
        t
    }
}

impl OcrEngine for OpenAiEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            name: ENGINE_NAME.into(),
            version: self.cfg.model.clone(),
            weights: Some(format!("{} at {}", self.cfg.model, self.cfg.endpoint)),
            synthetic_weights: false,
            device: self.cfg.endpoint.clone(),
            dtype: "n/a".into(),
        }
    }

    fn preferred_batch(&self) -> usize {
        self.cfg.concurrency.max(1)
    }

    fn ocr(&mut self, pages: &[OcrPage], prompt: &Prompt, options: &OcrOptions) -> Result<Vec<OcrOutput>, EngineError> {
        let next = AtomicUsize::new(0);
        let results: Vec<Mutex<Option<Result<OcrOutput, EngineError>>>> =
            pages.iter().map(|_| Mutex::new(None)).collect();
        let this = &*self;
        std::thread::scope(|s| {
            for _ in 0..this.cfg.concurrency.clamp(1, pages.len().max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(page) = pages.get(i) else { break };
                    let r = this.read_page(page, prompt, options);
                    let failed = r.is_err();
                    *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                    if failed {
                        // the batch fails: take no more pages
                        next.store(pages.len(), Ordering::SeqCst);
                    }
                });
            }
        });
        let mut out = Vec::with_capacity(pages.len());
        for (page, slot) in pages.iter().zip(results) {
            match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
                Some(r) => out.push(r?),
                None => {
                    return Err(EngineError::Backend {
                        engine: ENGINE_NAME.into(),
                        message: format!("page {}: not sent (an earlier page of the batch failed)", page.id),
                    })
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_text_is_the_task_without_its_image_marker() {
        let mut cfg = OpenAiConfig::new("http://x/v1", "m");
        assert_eq!(cfg.prompt_text(&Prompt::FreeOcr), "Free OCR. ");
        cfg.prompt_template = "Read the page. {prompt}".into();
        assert_eq!(
            cfg.prompt_text(&Prompt::Markdown),
            "Read the page. <|grounding|>Convert the document to markdown. "
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_respects_retry_after() {
        let mut cfg = OpenAiConfig::new("http://x/v1", "m");
        cfg.backoff = Duration::from_millis(100);
        cfg.max_backoff = Duration::from_millis(1000);
        let e = OpenAiEngine::new(cfg).unwrap();
        for n in 0..8 {
            let base = (100u64 << n).min(1000) as f64;
            let d = e.backoff(n, None).as_secs_f64() * 1000.0;
            assert!(d >= base * 0.5 && d <= base * 1.5, "retry {n}: {d} ms around {base}");
        }
        assert!(e.backoff(0, Some(Duration::from_secs(5))) >= Duration::from_secs(5));
    }
}
