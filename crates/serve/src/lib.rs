//! The toolkit over HTTP, both ways, in OpenAI's chat-completions format (docs/SERVING.md):
//! [`server`] serves a reader of occ-model to any OpenAI client, and [`client`] is the engine that
//! reads pages through any such server (ours, vLLM, SGLang, a hosted API) for `ocr`, `sweep` and
//! `decay`. Both speak the one wire format of [`api`], so the client is tested against the server.
//! [`pdf`] turns PDF pages into images for the server and for `ocr --pdf`.
//!
//! Module map:
//! - [`api`]: request, response, stream-chunk and error types of the wire format;
//! - [`client`]: the `openai` engine ([`client::OpenAiEngine`], an `occ_core::OcrEngine`);
//! - [`input`]: a request's prompt, pages and settings, with the limits checked;
//! - [`scheduler`]: the bounded queue and the worker thread that owns the model ([`Reader`]), feeding
//!   the running continuous batcher live (`live`: an occ-model reader's live session) or per request;
//! - [`server`]: routes, handlers, server-sent events, draining; [`metrics`]: Prometheus text;
//! - [`error`]: errors with their status in OpenAI's error shape;
//! - [`pdf`]: rasterising PDF pages (hayro, pure Rust).
//!
//! # Invariants
//! - The model is owned by one worker thread; no handler holds a lock while a page is read.
//! - Every refusal is an [`error::ApiError`] with a status and a message naming the fault.
//! - No environment variable is read and nothing is printed (the CLI does that).

pub mod api;
pub mod client;
pub mod error;
pub mod input;
mod live;
pub mod metrics;
pub mod pdf;
pub mod scheduler;
pub mod server;

pub use client::{OpenAiConfig, OpenAiEngine};
pub use input::Limits;
pub use occ_model::batcher::SlotFit;
pub use scheduler::{
    Admission, Detokenizer, Events, LiveError, LivePlan, LiveSession, PageEvent, Params, Reader, Reading,
};
pub use server::{ServeConfig, Server};
