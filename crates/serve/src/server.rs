//! The HTTP side: routes, handlers, server-sent events, and starting and draining the server.

use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use occ_core::Mode;
use occ_model::batcher::SlotFit;
use occ_model::reader::ReadableModes;
use tokio::sync::{mpsc, Notify};

use crate::api::{
    AssistantMessage, ChatChunk, ChatRequest, ChatResponse, Choice, ChunkChoice, Delta, ModelCard, ModelList, Usage,
};
use crate::error::ApiError;
use crate::input::{self, Limits, Sources};
use crate::metrics::Metrics;
use crate::scheduler::{Detokenizer, Job, PageEvent, Reader, Reading, Scheduler, WorkerConfig};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on (port 0: any free port; [`Server::addr`] tells which).
    pub addr: SocketAddr,
    /// The model name clients send (`model`), and the one `/v1/models` lists.
    pub model_name: String,
    /// Mode of a request that names none.
    pub default_mode: Mode,
    pub limits: Limits,
    /// Longest wait for a request's answer (queue and reading); 504 after it.
    pub request_timeout: Duration,
    /// Folder under which local paths may be read (`--allow-local-files`).
    pub allow_local_files: Option<PathBuf>,
    /// The seconds a 503 asks a client to wait (`Retry-After`).
    pub retry_after_secs: u64,
    /// Drain and stop on SIGTERM or SIGINT (the CLI); tests stop through [`Server::shutdown`].
    pub handle_signals: bool,
    /// How often a streamed answer that is still waiting sends a comment line; a write to a client
    /// that went away fails, and its request leaves the queue.
    pub sse_keep_alive: Duration,
    /// The per-request path only (`live = false`): how long an idle model waits for a batch to fill
    /// before reading what is queued. The live path has no window (a request is admitted before the
    /// next decode step).
    pub batch_window: Duration,
    /// Feed requests live into the running continuous batcher (token-by-token streaming,
    /// cancellation mid-decode); `false`: the older per-request batches, kept to measure the live
    /// path against (library only: `compress-bench serve` always serves live).
    pub live: bool,
    /// Free device memory (bytes) the live batcher's decoder slots are sized against instead of the
    /// device's own figure (`--free-memory-gb`; CUDA reads the driver's free memory, the CPU has no
    /// limit without it). The slots asked for (the reader's `max_batch`) are lowered to what fits
    /// pages of `default_mode` answering `limits.max_tokens` tokens ([`Server::slots`]).
    pub free_memory: Option<u64>,
}

impl ServeConfig {
    /// Defaults for `model_name` on `addr`.
    pub fn new(addr: SocketAddr, model_name: impl Into<String>) -> ServeConfig {
        ServeConfig {
            addr,
            model_name: model_name.into(),
            default_mode: Mode::Base,
            limits: Limits::default(),
            request_timeout: Duration::from_secs(600),
            allow_local_files: None,
            retry_after_secs: 1,
            handle_signals: false,
            sse_keep_alive: Duration::from_secs(2),
            batch_window: Duration::from_millis(10),
            live: true,
            free_memory: None,
        }
    }
}

struct AppState {
    cfg: ServeConfig,
    sources: Sources,
    /// The modes the reader reads (others are refused before the queue).
    modes: ReadableModes,
    scheduler: Scheduler,
    /// The text of generated ids, for streaming token by token (`None`: the text of a page comes
    /// when it is read).
    detokenizer: Option<Detokenizer>,
    metrics: Arc<Metrics>,
    draining: AtomicBool,
    created: u64,
    next_id: AtomicU64,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Arc<Notify>,
    thread: std::thread::JoinHandle<io::Result<()>>,
    slots: Option<SlotFit>,
}

impl Server {
    /// Binds `cfg.addr` and serves `reader` on a thread of its own.
    pub fn start(cfg: ServeConfig, reader: Box<dyn Reader>) -> io::Result<Server> {
        let listener = TcpListener::bind(cfg.addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(Notify::new());
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("occ-serve-http").build()?;
        let (started, slots) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("occ-serve".into())
                .spawn(move || runtime.block_on(serve(cfg, reader, listener, stop, started)))?
        };
        // the model's worker has sized its slots, or could not start: the server stopped
        match slots.recv() {
            Ok(Ok(slots)) => Ok(Server { addr, stop, thread, slots }),
            Ok(Err(msg)) => {
                let _ = thread.join();
                Err(io::Error::other(msg))
            }
            // the server failed before its worker started: `wait` tells why
            Err(_) => Ok(Server { addr, stop, thread, slots: None }),
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The live batcher's decoder slots at the start: asked for (the reader's `max_batch`), used
    /// (lowered to what fits the free device memory) and the plan behind them; `None` when the
    /// server reads per request.
    pub fn slots(&self) -> Option<SlotFit> {
        self.slots
    }

    /// Starts draining: new requests get 503, requests in flight are answered, then the server stops
    /// ([`Server::wait`] returns).
    pub fn shutdown(&self) {
        self.stop.notify_one();
    }

    /// Waits until the server has stopped.
    pub fn wait(self) -> io::Result<()> {
        self.thread.join().map_err(|_| io::Error::other("the server thread panicked"))?
    }
}

async fn serve(
    cfg: ServeConfig,
    reader: Box<dyn Reader>,
    listener: TcpListener,
    stop: Arc<Notify>,
    started: std::sync::mpsc::Sender<Result<Option<SlotFit>, String>>,
) -> io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let metrics = Arc::new(Metrics::default());
    let modes = reader.modes();
    let detokenizer = reader.detokenizer();
    let wc = WorkerConfig {
        live: cfg.live,
        batch_window: cfg.batch_window,
        max_new_tokens: cfg.limits.max_tokens,
        plan_mode: modes.default_mode(cfg.default_mode),
        free_memory: cfg.free_memory,
    };
    let scheduler = match Scheduler::start(reader, cfg.limits.max_queue, wc, metrics.clone()) {
        Ok(s) => s,
        Err(msg) => {
            let _ = started.send(Err(msg.clone()));
            return Err(io::Error::other(msg));
        }
    };
    let _ = started.send(Ok(scheduler.slots()));
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let state = Arc::new(AppState {
        sources: Sources { local_dir: cfg.allow_local_files.clone() },
        modes,
        scheduler,
        detokenizer,
        metrics,
        draining: AtomicBool::new(false),
        created,
        next_id: AtomicU64::new(0),
        cfg,
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.cfg.limits.max_body_bytes))
        .with_state(state.clone());
    let signals = state.cfg.handle_signals;
    let drain_state = state.clone();
    let shutdown = async move {
        wait_for_stop(stop, signals).await;
        drain_state.draining.store(true, Ordering::SeqCst);
        tracing::info!("draining: answering the requests in flight, refusing new ones");
    };
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    // every connection is closed: the queue is empty or holds jobs nobody waits for
    let state = Arc::try_unwrap(state).ok();
    if let Some(mut st) = state {
        tokio::task::spawn_blocking(move || st.scheduler.close()).await.map_err(io::Error::other)?;
    }
    served
}

async fn wait_for_stop(stop: Arc<Notify>, signals: bool) {
    if !signals {
        return stop.notified().await;
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return stop.notified().await;
        };
        tokio::select! {
            _ = stop.notified() => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = stop.notified() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "not_found",
        "no such route; the routes are POST /v1/chat/completions, GET /v1/models, /health and /metrics",
    )
}

async fn models(State(st): State<Arc<AppState>>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: vec![ModelCard {
            id: st.cfg.model_name.clone(),
            object: "model".into(),
            created: st.created,
            owned_by: "compress-bench".into(),
        }],
    })
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    let draining = st.draining.load(Ordering::SeqCst);
    let body = serde_json::json!({
        "status": if draining { "draining" } else { "ok" },
        "model": st.cfg.model_name,
        "queue_depth": st.scheduler.queue_depth(),
        "active_slots": st.metrics.active(),
    });
    let mut body = body;
    if let Some(fit) = st.metrics.slots() {
        body["slots"] = fit.used.into();
        body["requested_slots"] = fit.requested.into();
        body["fits_slots"] = fit.limit.into();
        body["gb_per_slot"] = fit.limit.map(|_| fit.bytes_per_slot as f64 / 1e9).into();
        body["free_gpu_gb"] = fit.free_bytes.map(|b| b as f64 / 1e9).into();
    }
    let status = if draining { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (status, Json(body)).into_response()
}

async fn metrics_text(State(st): State<Arc<AppState>>) -> Response {
    st.metrics.set_queue_depth(st.scheduler.queue_depth());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render()).into_response()
}

/// Marks a job cancelled when dropped before [`CancelOnDrop::disarm`]: a handler or stream dropped
/// because its client went away takes its job out of the queue, or its pages out of their decoder
/// slots before the next decode step.
struct CancelOnDrop {
    flag: Arc<AtomicBool>,
    armed: bool,
    /// Records the request as 499 in the metrics when it was not answered.
    metrics: Arc<Metrics>,
    started: Instant,
}

impl CancelOnDrop {
    /// The request was answered.
    fn disarm(&mut self) {
        self.armed = false;
    }

    /// The request gave up (a timeout, a failure): its job leaves the queue or its slots, and the
    /// caller records the status.
    fn cancel(&mut self) {
        self.flag.store(true, Ordering::SeqCst);
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            self.flag.store(true, Ordering::SeqCst);
            self.metrics.record_request(499, self.started.elapsed());
        }
    }
}

async fn chat(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Response {
    let started = Instant::now();
    match chat_inner(&st, &headers, body, started).await {
        Ok(resp) => resp,
        Err(e) => {
            st.metrics.record_request(e.status.as_u16(), started.elapsed());
            e.into_response()
        }
    }
}

async fn chat_inner(
    st: &Arc<AppState>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    started: Instant,
) -> Result<Response, ApiError> {
    if st.draining.load(Ordering::SeqCst) {
        return Err(ApiError::unavailable("shutting_down", "the server is shutting down", st.cfg.retry_after_secs));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.trim_start().to_ascii_lowercase().starts_with("application/json") {
        return Err(ApiError::unsupported_media(format!(
            "the body must be JSON with Content-Type: application/json, not {:?}",
            content_type
        )));
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(
                "request_too_large",
                format!("the request body is over the limit of {} bytes", st.cfg.limits.max_body_bytes),
            )
        } else {
            ApiError::invalid("invalid_body", format!("the request body cannot be read: {e}"))
        }
    })?;
    let req: ChatRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid("invalid_json", format!("the body is not a valid chat request: {e}")))?;
    if req.model != st.cfg.model_name {
        return Err(ApiError {
            param: Some("model".into()),
            ..ApiError::not_found(
                "model_not_found",
                format!("the model {:?} does not exist here; this server serves {:?}", req.model, st.cfg.model_name),
            )
        });
    }
    let params = input::params(&req, &st.cfg.limits)?;
    let mode = input::mode(&req, st.cfg.default_mode, st.modes)?;
    let (prompt, pages) = {
        let (req, limits, sources) = (req.clone(), st.cfg.limits.clone(), st.sources.clone());
        tokio::task::spawn_blocking(move || input::pages_and_prompt(&req, &limits, &sources))
            .await
            .map_err(|e| ApiError::internal(format!("reading the images failed: {e}")))??
    };
    let n_pages = pages.len();
    let (events, answer) = mpsc::unbounded_channel();
    let flag = Arc::new(AtomicBool::new(false));
    let job = Job { pages, mode, prompt, params, cancelled: flag.clone(), events };
    st.scheduler.submit(job).map_err(|full| {
        ApiError::unavailable("queue_full", format!("{full}; try again shortly"), st.cfg.retry_after_secs)
    })?;
    let guard = CancelOnDrop { flag, armed: true, metrics: st.metrics.clone(), started };
    let id = format!("chatcmpl-{}-{}", st.created, st.next_id.fetch_add(1, Ordering::Relaxed));
    let created = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let meta = Meta { id, created, model: st.cfg.model_name.clone(), n_pages };
    if req.stream {
        let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
        let s = event_stream(st.clone(), meta, answer, guard, include_usage);
        let keep_alive = KeepAlive::new().interval(st.cfg.sse_keep_alive);
        return Ok(Sse::new(s).keep_alive(keep_alive).into_response());
    }
    let mut guard = guard;
    let mut answer = answer;
    let readings = wait(&mut answer, n_pages, st.cfg.request_timeout).await.inspect_err(|_| guard.cancel())?;
    guard.disarm();
    st.metrics.record_request(200, started.elapsed());
    Ok(Json(meta.response(readings)).into_response())
}

/// Awaits the readings of a job's `n` pages for at most `timeout`.
async fn wait(
    answer: &mut mpsc::UnboundedReceiver<(usize, PageEvent)>,
    n: usize,
    timeout: Duration,
) -> Result<Vec<Reading>, ApiError> {
    let mut answers = Answers::new(n);
    let all = async {
        while !answers.complete() {
            match answer.recv().await {
                None => return Err(ApiError::internal("the model stopped before answering")),
                Some((page, event)) => answers.apply(page, event)?,
            }
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, all).await {
        Err(_) => Err(ApiError::timeout(format!("no answer within {} s", timeout.as_secs_f64()))),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(answers.readings()),
    }
}

/// The events of a job's pages gathered: tokens so far and readings.
struct Answers {
    tokens: Vec<Vec<u32>>,
    readings: Vec<Option<Reading>>,
    left: usize,
}

impl Answers {
    fn new(n: usize) -> Answers {
        Answers { tokens: vec![Vec::new(); n], readings: vec![None; n], left: n }
    }

    fn complete(&self) -> bool {
        self.left == 0
    }

    fn apply(&mut self, page: usize, event: PageEvent) -> Result<(), ApiError> {
        let n = self.readings.len();
        let bad = || ApiError::internal(format!("the model reported page {page} of a request with {n} pages"));
        match event {
            PageEvent::Token(id) => self.tokens.get_mut(page).ok_or_else(bad)?.push(id),
            PageEvent::Done(r) => {
                let slot = self.readings.get_mut(page).ok_or_else(bad)?;
                if slot.is_none() {
                    self.left -= 1;
                }
                *slot = Some(r);
            }
            PageEvent::Failed(msg) => return Err(ApiError::internal(format!("the model failed: {msg}"))),
        }
        Ok(())
    }

    /// Every page's reading (call once complete).
    fn readings(&mut self) -> Vec<Reading> {
        self.readings.iter_mut().filter_map(Option::take).collect()
    }
}

/// What every answer to a request repeats.
struct Meta {
    id: String,
    created: u64,
    model: String,
    n_pages: usize,
}

/// Pages of a PDF are joined with a blank line in the answer.
const PAGE_SEPARATOR: &str = "\n\n";

fn usage(readings: &[Reading]) -> Usage {
    let prompt: usize = readings.iter().map(|r| r.prompt_tokens).sum();
    let completion: usize = readings.iter().map(|r| r.token_ids.len()).sum();
    let vision: usize = readings.iter().map(|r| r.vision_tokens).sum();
    Usage {
        prompt_tokens: prompt as u64,
        completion_tokens: completion as u64,
        total_tokens: (prompt + completion) as u64,
        vision_tokens: Some(vision as u64),
    }
}

fn finish_reason(readings: &[Reading]) -> &'static str {
    if readings.iter().all(|r| r.stopped_at_eos) {
        "stop"
    } else {
        "length"
    }
}

fn text(readings: &[Reading]) -> String {
    readings.iter().map(|r| r.text.as_str()).collect::<Vec<_>>().join(PAGE_SEPARATOR)
}

impl Meta {
    fn response(&self, readings: Vec<Reading>) -> ChatResponse {
        debug_assert_eq!(readings.len(), self.n_pages);
        ChatResponse {
            id: self.id.clone(),
            object: "chat.completion".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![Choice {
                index: 0,
                message: AssistantMessage { role: "assistant".into(), content: Some(text(&readings)) },
                finish_reason: Some(finish_reason(&readings).into()),
            }],
            usage: Some(usage(&readings)),
            token_ids: Some(readings.into_iter().map(|r| r.token_ids).collect()),
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<&str>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice { index: 0, delta, finish_reason: finish.map(str::to_string) }],
            usage: None,
        }
    }
}

fn json_event<T: serde::Serialize>(v: &T) -> Event {
    Event::default().data(serde_json::to_string(v).expect("invariant: the wire types serialise"))
}

/// A streamed answer in progress.
struct Streaming {
    st: Arc<AppState>,
    meta: Meta,
    answer: mpsc::UnboundedReceiver<(usize, PageEvent)>,
    guard: CancelOnDrop,
    include_usage: bool,
    deadline: tokio::time::Instant,
    answers: Answers,
    /// The page whose text is being sent, and the part of its text sent so far.
    page: usize,
    sent: String,
    finished: bool,
}

impl Streaming {
    /// The next events: text sent so far grown, or the end (finish reason, usage, `[DONE]`), or an
    /// error; `None` after the end.
    async fn next_events(&mut self) -> Option<Vec<Event>> {
        if self.finished {
            return None;
        }
        loop {
            let got = tokio::time::timeout_at(self.deadline, self.answer.recv()).await;
            let mut result = match got {
                Err(_) => {
                    Err(ApiError::timeout(format!("no answer within {} s", self.st.cfg.request_timeout.as_secs_f64())))
                }
                Ok(None) => Err(ApiError::internal("the model stopped before answering")),
                Ok(Some((page, event))) => self.answers.apply(page, event),
            };
            // everything already there goes out in one chunk
            while result.is_ok() {
                match self.answer.try_recv() {
                    Ok((page, event)) => result = self.answers.apply(page, event),
                    Err(_) => break,
                }
            }
            if let Err(e) = result {
                self.finished = true;
                self.guard.cancel();
                self.st.metrics.record_request(e.status.as_u16(), self.guard.started.elapsed());
                return Some(vec![json_event(&e.body())]);
            }
            let mut events = Vec::new();
            let delta = self.flush();
            if !delta.is_empty() {
                events.push(json_event(&self.meta.chunk(Delta { role: None, content: Some(delta) }, None)));
            }
            if self.answers.complete() {
                let readings = self.answers.readings();
                events.push(json_event(&self.meta.chunk(Delta::default(), Some(finish_reason(&readings)))));
                if self.include_usage {
                    let mut c = self.meta.chunk(Delta::default(), None);
                    c.choices.clear();
                    c.usage = Some(usage(&readings));
                    events.push(json_event(&c));
                }
                events.push(Event::default().data("[DONE]"));
                self.st.metrics.record_request(200, self.guard.started.elapsed());
                self.guard.disarm();
                self.finished = true;
            }
            if !events.is_empty() {
                return Some(events);
            }
        }
    }

    /// The text not yet sent: finished pages in order (joined as the plain answer joins them), then
    /// the growth of the current page's text while it decodes (held back while it does not extend
    /// what was sent, or ends in an incomplete character).
    fn flush(&mut self) -> String {
        let mut out = String::new();
        let n = self.answers.readings.len();
        while self.page < n {
            let done = self.answers.readings[self.page].as_ref().map(|r| r.text.clone());
            let text = match (done, &self.st.detokenizer) {
                (Some(t), _) => Some(t),
                (None, Some(detok)) => {
                    let t = detok(&self.answers.tokens[self.page]);
                    // an incomplete character may still change
                    (!t.ends_with('\u{FFFD}')).then_some(t)
                }
                (None, None) => None,
            };
            let is_done = self.answers.readings[self.page].is_some();
            if let Some(text) = text {
                if let Some(grown) = text.strip_prefix(self.sent.as_str()) {
                    out.push_str(grown);
                    self.sent = text;
                } else if is_done {
                    tracing::warn!("page {}: the streamed text is not a prefix of the answer", self.page);
                }
            }
            if !is_done {
                break;
            }
            self.page += 1;
            self.sent.clear();
            if self.page < n {
                out.push_str(PAGE_SEPARATOR);
            }
        }
        out
    }
}

/// The events of a streamed answer: the role at once, then the text as it grows (token by token
/// with a live reader, a page at a time otherwise), the finish reason, the usage if asked for, and
/// `[DONE]`. Dropping the stream (the client went away) cancels the job: it leaves the queue, or
/// its pages leave their slots before the next decode step.
fn event_stream(
    st: Arc<AppState>,
    meta: Meta,
    answer: mpsc::UnboundedReceiver<(usize, PageEvent)>,
    guard: CancelOnDrop,
    include_usage: bool,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let first = json_event(&meta.chunk(Delta { role: Some("assistant".into()), content: Some(String::new()) }, None));
    let deadline = tokio::time::Instant::now() + st.cfg.request_timeout;
    let answers = Answers::new(meta.n_pages);
    let state = Streaming {
        st,
        meta,
        answer,
        guard,
        include_usage,
        deadline,
        answers,
        page: 0,
        sent: String::new(),
        finished: false,
    };
    let rest = stream::unfold(state, |mut s| async move { s.next_events().await.map(|ev| (ev, s)) })
        .flat_map(|events| stream::iter(events.into_iter().map(Ok)));
    stream::once(async move { Ok(first) }).chain(rest)
}
