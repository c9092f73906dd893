//! The flags of the `openai` engine and building it: pages read through any server that speaks
//! OpenAI's chat completions (`compress-bench serve`, vLLM, SGLang, a hosted API). The engine itself is
//! `occ_serve::client::OpenAiEngine`, beside the server it is tested against; here are only the flags
//! and the environment variable that holds the key (docs/SERVING.md).

use std::time::Duration;

use anyhow::{bail, Context};
use occ_serve::{OpenAiConfig, OpenAiEngine};

/// Flags of the `openai` engine (`ocr`, `sweep`, `decay`).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "OpenAI-compatible endpoint (the openai engine of ocr, sweep and decay)")]
pub struct OpenAiArgs {
    /// Base URL of the API up to and including /v1, e.g. http://127.0.0.1:8000/v1 (requests go to
    /// URL/chat/completions).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// The model name sent with every request.
    #[arg(long = "model", value_name = "NAME")]
    pub model_name: Option<String>,
    /// Environment variable holding the API key (sent as a bearer token); none: no key.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Text sent after the page image; {prompt} stands for the task prompt without <image>
    /// (Free OCR: "Free OCR. ").
    #[arg(long, default_value = "{prompt}", value_name = "TEXT")]
    pub prompt_template: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Retries of a page after a 429, a 5xx, a timeout or a connection error (jittered exponential
    /// backoff from 0.5 s, at least the server's Retry-After).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub retries: u32,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 600.0, value_name = "SECONDS")]
    pub request_timeout: f64,
    /// Send each page's mode as the request's `mode` field (understood by `compress-bench serve`;
    /// other servers resize pages their own way and may refuse unknown fields).
    #[arg(long)]
    pub send_mode: bool,
}

impl OpenAiArgs {
    /// The engine the flags describe.
    pub fn build(&self) -> anyhow::Result<OpenAiEngine> {
        let (Some(endpoint), Some(model)) = (&self.endpoint, &self.model_name) else {
            bail!("the openai engine needs --endpoint URL and --model NAME (e.g. --endpoint http://127.0.0.1:8000/v1 --model deepseek-ocr)");
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            bail!("--endpoint {endpoint:?}: expected an http:// or https:// URL");
        }
        if self.request_timeout.is_nan() || self.request_timeout <= 0.0 {
            bail!("--request-timeout must be positive, not {}", self.request_timeout);
        }
        let api_key = match &self.api_key_env {
            Some(var) => {
                Some(std::env::var(var).with_context(|| format!("--api-key-env {var}: the variable is not set"))?)
            }
            None => None,
        };
        let mut cfg = OpenAiConfig::new(endpoint.clone(), model.clone());
        cfg.api_key = api_key;
        cfg.prompt_template = self.prompt_template.clone();
        cfg.concurrency = self.concurrency as usize;
        cfg.max_retries = self.retries;
        cfg.timeout = Duration::from_secs_f64(self.request_timeout);
        cfg.send_mode = self.send_mode;
        Ok(OpenAiEngine::new(cfg)?)
    }
}
