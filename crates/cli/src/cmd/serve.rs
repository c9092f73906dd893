//! `compress-bench serve`: an OpenAI-compatible HTTP server for a model reader (docs/SERVING.md).
//!
//! The model (DeepSeek-OCR, a mini reader or DeepSeek-OCR-2) is loaded as `ocr` loads it (the model
//! flags of [`ModelArgs`]) and handed to `occ_serve`; this module maps flags to its config, prints the
//! address and waits until SIGTERM or SIGINT has drained the requests in flight. The server always
//! feeds requests live into the continuous batcher: the per-request path (`ServeConfig::live = false`)
//! and its batch window stay library-only, for measurement (docs/SERVING.md).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use occ_core::Mode;
use occ_serve::{Limits, Reader, ServeConfig, Server};

use crate::engine::{self, EngineKind, ModelArgs};
use crate::messages::ServeStart;
use crate::output::Output;

/// Serve a model over HTTP in OpenAI's chat-completions format.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model to serve.
    #[arg(long, default_value = "deepseek-ocr", value_parser = engine::engine_parser(engine::MODELS))]
    pub engine: EngineKind,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", help_heading = "Server")]
    pub host: IpAddr,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8000, help_heading = "Server")]
    pub port: u16,
    /// The model name clients send [default: the engine name].
    #[arg(long, help_heading = "Server")]
    pub model_name: Option<String>,
    /// Mode of a request that names none [default: base; v2 for deepseek-ocr-2] (a mini reader reads
    /// its own mode only; deepseek-ocr-2 reads v2 and v2-single).
    #[arg(long, help_heading = "Server")]
    pub mode: Option<Mode>,
    /// Pages read together in one batch at most (each page one decoder slot); lowered to the slots
    /// that fit the free device memory for answers of --max-tokens tokens (with a warning).
    #[arg(long, default_value_t = 32, help_heading = "Server")]
    pub max_batch: usize,
    /// Size the decoder slots against this much free device memory (GB, 10⁹ bytes) instead of the
    /// device's own figure (CUDA; on the CPU nothing is lowered without it).
    #[arg(long, value_name = "GB", help_heading = "Server")]
    pub free_memory_gb: Option<f64>,
    /// Local images and PDFs under DIR may be named by path in image_url parts.
    #[arg(long, value_name = "DIR", help_heading = "Server")]
    pub allow_local_files: Option<PathBuf>,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 32, help_heading = "Limits")]
    pub max_body_mib: usize,
    /// Largest image or rendered PDF page, in pixels.
    #[arg(long, default_value_t = 40_000_000, help_heading = "Limits")]
    pub max_image_pixels: u64,
    /// Largest max_tokens a request may ask for.
    #[arg(long, default_value_t = 8192, help_heading = "Limits")]
    pub max_tokens: usize,
    /// max_tokens of a request that names none.
    #[arg(long, default_value_t = 4096, help_heading = "Limits")]
    pub default_max_tokens: usize,
    /// Requests waiting for the model at most; more get 503 with Retry-After.
    #[arg(long, default_value_t = 256, help_heading = "Limits")]
    pub max_queue: usize,
    /// Pages of one PDF, and of one request (its images and PDF pages together), at most.
    #[arg(long, default_value_t = 32, help_heading = "Limits")]
    pub max_pdf_pages: usize,
    /// Resolution PDF pages are rendered at.
    #[arg(long, default_value_t = 144.0, help_heading = "Limits")]
    pub pdf_dpi: f32,
    /// Seconds a request may wait for its answer (queue and reading); 504 after.
    #[arg(long, default_value_t = 600.0, help_heading = "Limits")]
    pub timeout: f64,
}

pub fn run(args: Args, out: &Output) -> anyhow::Result<()> {
    anyhow::ensure!(args.max_batch >= 1, "--max-batch must be at least 1");
    anyhow::ensure!(args.timeout > 0.0, "--timeout must be positive");
    if let Some(gb) = args.free_memory_gb {
        anyhow::ensure!(gb.is_finite() && gb >= 0.0, "--free-memory-gb must be a number of GB, at least 0 (got {gb})");
    }
    if let Some(why) = args.mode.and_then(|m| args.engine.refuses_mode(m)) {
        anyhow::bail!("--mode: {why}");
    }
    let (reader, info, native): (Box<dyn Reader>, _, _) = if args.engine == EngineKind::DeepseekOcr2 {
        let mut model = engine::load_model_v2(&args.model, out)?;
        model.max_batch = args.max_batch;
        let info = occ_core::OcrEngine::info(&model);
        (Box::new(model), info, None)
    } else {
        let mut model = engine::load_model(args.engine, &args.model, out)?;
        model.max_batch = args.max_batch;
        let (info, native) = (occ_core::OcrEngine::info(&model), model.native_mode());
        (Box::new(model), info, native)
    };
    let name = args.model_name.clone().unwrap_or_else(|| args.engine.name().to_string());
    let mut cfg = ServeConfig::new(SocketAddr::new(args.host, args.port), name.clone());
    let default_mode = if args.engine == EngineKind::DeepseekOcr2 { Mode::V2 } else { Mode::Base };
    cfg.default_mode = native.or(args.mode).unwrap_or(default_mode);
    cfg.limits = Limits {
        max_body_bytes: args.max_body_mib << 20,
        max_image_pixels: args.max_image_pixels,
        max_tokens: args.max_tokens,
        default_max_tokens: args.default_max_tokens.min(args.max_tokens),
        max_queue: args.max_queue,
        max_pdf_pages: args.max_pdf_pages,
        pdf_dpi: args.pdf_dpi,
    };
    cfg.request_timeout = Duration::from_secs_f64(args.timeout);
    cfg.allow_local_files = match &args.allow_local_files {
        Some(dir) => {
            Some(dir.canonicalize().with_context(|| format!("--allow-local-files {}: no such folder", dir.display()))?)
        }
        None => None,
    };
    cfg.handle_signals = true;
    cfg.free_memory = args.free_memory_gb.map(|gb| (gb * 1e9) as u64);
    let server = Server::start(cfg, reader).with_context(|| format!("listening on {}:{}", args.host, args.port))?;
    let url = format!("http://{}", server.addr());
    let slots = server.slots();
    let slot_note = match slots {
        Some(fit) => {
            let plan = match (fit.limit, fit.free_bytes) {
                (Some(n), Some(free)) => format!(
                    "; {n} fit {:.2} GB free at {:.3} GB per slot for {} new tokens",
                    free as f64 / 1e9,
                    fit.bytes_per_slot as f64 / 1e9,
                    args.max_tokens
                ),
                _ => String::new(),
            };
            format!(", {} decoder slots of {} asked for{plan}", fit.used, fit.requested)
        }
        None => String::new(),
    };
    out.result(&format!("listening on {url} (model {name:?}: {info}{slot_note})"));
    // a lowered slot count was warned about (tracing) by the server as it sized them
    out.send(&ServeStart {
        url,
        model: &name,
        engine: info.to_string(),
        slots: slots.map(|f| f.used),
        requested_slots: slots.map(|f| f.requested),
        fits_slots: slots.and_then(|f| f.limit),
        gb_per_slot: slots.and_then(|f| f.limit.map(|_| f.bytes_per_slot as f64 / 1e9)),
        free_gpu_gb: slots.and_then(|f| f.free_bytes.map(|b| b as f64 / 1e9)),
    })?;
    out.info("SIGTERM or Ctrl-C drains the requests in flight and stops");
    server.wait().context("serving")?;
    out.info("stopped");
    Ok(())
}
