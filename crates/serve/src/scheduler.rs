//! The model's side of the server: one worker thread owns the reader; requests wait in a bounded
//! queue until the model takes them.
//!
//! # How requests share the model
//! Handlers never touch the model: each admitted request becomes a [`Job`] in the queue, and its
//! handler receives the job's [`PageEvent`]s over a channel. The worker runs one of two loops:
//!
//! - **Live** (the default, for a reader with [`Reader::live`]): one continuous batcher runs for
//!   the server's lifetime. Between two decode steps the worker takes waiting jobs in arrival order
//!   while their pages fit the free slots (an idle batcher takes the next job whatever its size),
//!   runs their pages through preprocessing and the vision encoder, and admits them; each decode
//!   step then reports one token per active page, at once, to its handler (token-by-token
//!   streaming). A job whose client went away is cancelled: its pages leave their slots before the
//!   next decode step. Requests with sampling settings (temperature > 0) are read alone through
//!   [`Reader::read`] between two steps (the batcher decodes greedily).
//! - **Per request** (`ServeConfig::live = false`, or a reader without a live path): the worker
//!   takes the oldest waiting job and every other waiting job with the same prompt and settings,
//!   up to [`Reader::max_batch`] pages, and reads them in one call; requests arriving meanwhile wait
//!   for the next call. An idle model waits up to a short batch window for a batch to fill. A job
//!   whose client went away leaves the queue; one already being read is read to its end.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;
use occ_core::{Mode, OcrOptions, Prompt};
use occ_model::batcher::SlotFit;
use occ_model::generate::Sampling;
use occ_model::pipeline::DeepseekOcr;
use occ_model::pipeline_v2::DeepseekOcr2;
use occ_model::reader::{read_pages, PageReader, ReadableModes};
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Sampling settings of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub max_tokens: usize,
    /// 0: greedy.
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
    /// Generate exactly `max_tokens` (benchmarks).
    pub ignore_eos: bool,
}

/// What the model read from one page.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub text: String,
    /// Generated ids, the stopping EOS included when there was one.
    pub token_ids: Vec<u32>,
    /// Decoder prompt length, image slots included.
    pub prompt_tokens: usize,
    /// Image slots of the prompt.
    pub vision_tokens: usize,
    pub stopped_at_eos: bool,
}

/// What the worker reports about one page of a job, in order: tokens as they are chosen (live
/// path only), then `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq)]
pub enum PageEvent {
    /// A generated id (in the tokenizer's ids; the stopping EOS included).
    Token(u32),
    Done(Reading),
    Failed(String),
}

/// Where a job's events go: `(page index, event)`.
pub type Events = mpsc::UnboundedSender<(usize, PageEvent)>;

/// A model the server can run. [`Reader::read`] reads a batch of pages with one prompt and one set
/// of settings in one call; [`Reader::live`], where a reader has it, decodes pages admitted while
/// others decode.
pub trait Reader: Send + 'static {
    /// Pages per call at most (per request), decoder slots (live).
    fn max_batch(&self) -> usize;
    /// The only mode the model reads, if it has one (a mini reader's canvas).
    fn native_mode(&self) -> Option<Mode>;
    /// The modes the model reads; a request in another mode is refused (400 `invalid_mode`, naming
    /// it) before it reaches the queue. Default: the native mode only, else every mode.
    fn modes(&self) -> ReadableModes {
        self.native_mode().map_or(ReadableModes::Any, ReadableModes::Only)
    }
    /// Reads every page; one reading per page, in order.
    fn read(&self, pages: &[(&RgbImage, Mode)], prompt: &Prompt, params: &Params) -> Result<Vec<Reading>, String>;
    /// A live decoding session sized by `plan` (its slots lowered to what fits the free device
    /// memory); `None` when the reader has no live path.
    fn live(&self, _plan: &LivePlan) -> Option<Result<Box<dyn LiveSession + '_>, LiveError>> {
        None
    }
    /// The text of generated ids, as [`Reading::text`] gives it for the whole answer (streaming
    /// sends the growth of this text); `None`: the text comes with the reading only.
    fn detokenizer(&self) -> Option<Detokenizer> {
        None
    }
}

/// How the live batcher is sized: the decoder slots asked for, lowered by
/// [`occ_model::batcher::fit_slots`] to what fits the free device memory for sequences of the
/// planned shape (docs/SERVING.md, "Decoder slots and device memory").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LivePlan {
    /// Decoder slots asked for ([`Reader::max_batch`]: `compress-bench serve --max-batch`).
    pub slots: usize,
    /// Tokens every slot is planned to generate: the most a request may ask for
    /// ([`crate::Limits::max_tokens`]), so a full batch of the longest answers fits.
    pub max_new_tokens: usize,
    /// The mode whose page (at its default canvas, Free-OCR prompt) gives the planned prompt length:
    /// the server's default mode. A longer prompt still runs (the slot cache grows).
    pub mode: Mode,
    /// Free device memory (bytes) to size against instead of the device's own figure
    /// (`--free-memory-gb`; CUDA reads the driver's figure, the CPU has no limit without it).
    pub free_memory: Option<u64>,
}

/// Why a live session did not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveError {
    /// Not even one decoder slot fits the free device memory: the server does not start.
    #[error("{0}")]
    OutOfMemory(String),
    /// Anything else: the server reads per request instead.
    #[error("{0}")]
    Unavailable(String),
}

/// Generated ids → the answer's text.
pub type Detokenizer = Arc<dyn Fn(&[u32]) -> String + Send + Sync>;

/// One request handed to [`LiveSession::admit`].
pub struct Admission<'a> {
    pub pages: &'a [(&'a RgbImage, Mode)],
    pub prompt: &'a Prompt,
    pub params: &'a Params,
    pub events: Events,
    pub cancelled: Arc<AtomicBool>,
}

/// The state of live decoding, owned by the worker thread.
pub trait LiveSession {
    /// Whether a request with these settings decodes live (else it is read through
    /// [`Reader::read`]).
    fn accepts(&self, params: &Params) -> bool;
    /// Slots neither decoding nor promised to an admitted page.
    fn free_slots(&self) -> usize;
    /// Pages decoding now.
    fn active(&self) -> usize;
    /// Nothing decoding and nothing admitted.
    fn is_idle(&self) -> bool;
    /// Prepares the pages of the requests taken together (preprocessing, one vision-encoder call)
    /// and admits them; each page reports to its request's `events` under its index. One result
    /// per request, in order (a request that fails fails alone where it can). A cancelled request's
    /// pages leave at the next step.
    fn admit(&mut self, requests: &[Admission<'_>]) -> Vec<Result<(), String>>;
    /// Admits what waits into free slots and runs one decode step; returns the tokens it generated,
    /// or `None` when there was nothing to decode.
    fn step(&mut self) -> Result<Option<usize>, String>;
    /// The session failed: every page it holds gets [`PageEvent::Failed`].
    fn fail_all(&mut self, message: &str);
    /// Its decoder slots: asked for, used, and the memory plan behind them.
    fn slots(&self) -> SlotFit;
}

pub(crate) fn options(params: &Params) -> OcrOptions {
    OcrOptions {
        max_new_tokens: params.max_tokens,
        temperature: params.temperature,
        seed: params.seed,
        ignore_eos: params.ignore_eos,
    }
}

/// [`Reader::read`] of an occ-model reader: the same settings as the engine trait's call with these
/// options (so an answer equals `OcrEngine::ocr` on the same page), with the request's `top_p`.
fn read_model<R: PageReader>(
    reader: &R,
    pages: &[(&RgbImage, Mode)],
    prompt: &Prompt,
    params: &Params,
) -> Result<Vec<Reading>, String> {
    let mut cfg = reader.generation_for(&options(params));
    if let Sampling::TopP { top_p, .. } = &mut cfg.sampling {
        *top_p = params.top_p;
    }
    let out = read_pages(reader, pages, prompt, &cfg).map_err(|e| e.to_string())?;
    Ok(out
        .into_iter()
        .map(|p| Reading {
            text: p.text,
            token_ids: p.token_ids,
            prompt_tokens: p.n_prompt_tokens,
            vision_tokens: p.vision_tokens.slots as usize,
            stopped_at_eos: p.stopped_at_eos,
        })
        .collect())
}

/// [`Reader::live`] of an occ-model reader.
fn live_model<'r, R: PageReader>(
    reader: &'r R,
    plan: &LivePlan,
) -> Option<Result<Box<dyn LiveSession + 'r>, LiveError>> {
    Some(crate::live::EngineSession::new(reader, plan).map(|s| Box::new(s) as Box<dyn LiveSession + 'r>))
}

/// DeepSeek-OCR and the mini readers.
impl Reader for DeepseekOcr {
    fn max_batch(&self) -> usize {
        self.max_batch.max(1)
    }

    fn native_mode(&self) -> Option<Mode> {
        DeepseekOcr::native_mode(self)
    }

    fn modes(&self) -> ReadableModes {
        PageReader::modes(self)
    }

    fn read(&self, pages: &[(&RgbImage, Mode)], prompt: &Prompt, params: &Params) -> Result<Vec<Reading>, String> {
        read_model(self, pages, prompt, params)
    }

    fn live(&self, plan: &LivePlan) -> Option<Result<Box<dyn LiveSession + '_>, LiveError>> {
        live_model(self, plan)
    }

    fn detokenizer(&self) -> Option<Detokenizer> {
        Some(crate::live::detokenizer(self))
    }
}

/// DeepSeek-OCR-2: the same batcher and decode step as DeepSeek-OCR; pages in `v2` and `v2-single`.
impl Reader for DeepseekOcr2 {
    fn max_batch(&self) -> usize {
        self.max_batch.max(1)
    }

    fn native_mode(&self) -> Option<Mode> {
        None
    }

    fn modes(&self) -> ReadableModes {
        PageReader::modes(self)
    }

    fn read(&self, pages: &[(&RgbImage, Mode)], prompt: &Prompt, params: &Params) -> Result<Vec<Reading>, String> {
        read_model(self, pages, prompt, params)
    }

    fn live(&self, plan: &LivePlan) -> Option<Result<Box<dyn LiveSession + '_>, LiveError>> {
        live_model(self, plan)
    }

    fn detokenizer(&self) -> Option<Detokenizer> {
        Some(crate::live::detokenizer(self))
    }
}

/// One admitted request.
#[derive(Debug)]
pub struct Job {
    pub pages: Vec<RgbImage>,
    pub mode: Mode,
    pub prompt: Prompt,
    pub params: Params,
    /// Set by the handler when nobody waits for the answer any more.
    pub cancelled: Arc<AtomicBool>,
    pub events: Events,
}

impl Job {
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst) || self.events.is_closed()
    }

    fn fail(&self, message: &str) {
        for page in 0..self.pages.len() {
            // the handler may have gone; nothing to tell then
            let _ = self.events.send((page, PageEvent::Failed(message.to_string())));
        }
    }

    fn answer(&self, result: Result<Vec<Reading>, String>) {
        match result {
            Ok(readings) if readings.len() == self.pages.len() => {
                for (page, r) in readings.into_iter().enumerate() {
                    let _ = self.events.send((page, PageEvent::Done(r)));
                }
            }
            Ok(readings) => {
                self.fail(&format!("the model gave {} readings for {} pages", readings.len(), self.pages.len()))
            }
            Err(msg) => self.fail(&msg),
        }
    }

    fn pages(&self) -> Vec<(&RgbImage, Mode)> {
        self.pages.iter().map(|p| (p, self.mode)).collect()
    }
}

/// The queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the queue is full ({0} requests waiting)")]
pub struct QueueFull(pub usize);

#[derive(Default)]
struct State {
    pending: VecDeque<Job>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // a panic while holding the lock cannot leave the queue half-changed (every change is one
        // VecDeque call), so a poisoned lock is still usable
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How the worker feeds the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerConfig {
    /// Feed the running batcher live (when the reader has a live path).
    pub live: bool,
    /// Per request: how long an idle model waits for a batch to fill.
    pub batch_window: Duration,
    /// Live: the tokens, prompt mode and free memory the decoder slots are planned for
    /// ([`LivePlan`]; its slots are [`Reader::max_batch`]).
    pub max_new_tokens: usize,
    pub plan_mode: Mode,
    pub free_memory: Option<u64>,
}

impl WorkerConfig {
    /// The live batcher's plan for `reader`.
    fn plan(&self, reader: &dyn Reader) -> LivePlan {
        LivePlan {
            slots: reader.max_batch().max(1),
            max_new_tokens: self.max_new_tokens.max(1),
            mode: self.plan_mode,
            free_memory: self.free_memory,
        }
    }
}

/// The queue and the worker thread that owns the reader.
pub struct Scheduler {
    shared: Arc<Shared>,
    max_queue: usize,
    worker: Option<JoinHandle<()>>,
    /// The live batcher's decoder slots when it started (`None`: read per request).
    slots: Option<SlotFit>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("max_queue", &self.max_queue).finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Starts the worker; at most `max_queue` requests wait at once. Returns once the worker has
    /// started its live session (its decoder slots sized, [`Scheduler::slots`]) or chosen the
    /// per-request path; an error, the worker stopped, when not even one decoder slot fits the
    /// free device memory ([`LiveError::OutOfMemory`]).
    pub fn start(
        reader: Box<dyn Reader>,
        max_queue: usize,
        wc: WorkerConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Scheduler, String> {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new(), metrics });
        let (started, slots) = std::sync::mpsc::channel();
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("occ-serve-model".into())
                .spawn(move || work(reader, &shared, wc, started))
                .expect("invariant: the OS can start one thread")
        };
        match slots.recv() {
            Ok(Ok(slots)) => Ok(Scheduler { shared, max_queue, worker: Some(worker), slots }),
            Ok(Err(msg)) => {
                let _ = worker.join();
                Err(msg)
            }
            // a worker that died before reporting reads nothing: no slots to report
            Err(_) => Ok(Scheduler { shared, max_queue, worker: Some(worker), slots: None }),
        }
    }

    /// The live batcher's decoder slots when it started: asked for (`--max-batch`), used (fewer
    /// when more do not fit the free device memory) and the plan behind them; `None` when the
    /// worker reads per request.
    pub fn slots(&self) -> Option<SlotFit> {
        self.slots
    }

    /// Queues a job, or refuses it when `max_queue` requests already wait (cancelled ones are
    /// dropped first).
    pub fn submit(&self, job: Job) -> Result<(), QueueFull> {
        let mut st = self.shared.lock();
        st.pending.retain(|j| !j.is_cancelled());
        if st.closed || st.pending.len() >= self.max_queue {
            let n = st.pending.len();
            self.shared.metrics.set_queue_depth(n);
            return Err(QueueFull(n));
        }
        st.pending.push_back(job);
        self.shared.metrics.set_queue_depth(st.pending.len());
        drop(st);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Requests waiting now (cancelled ones not counted).
    pub fn queue_depth(&self) -> usize {
        self.shared.lock().pending.iter().filter(|j| !j.is_cancelled()).count()
    }

    /// Lets the worker finish what is queued and decoding, then stop; returns when it has.
    pub fn close(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
        if let Some(w) = self.worker.take() {
            // a panic in the worker was already answered to its jobs
            let _ = w.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.close();
    }
}

/// Per request: waits for work; `None` once closed and empty.
fn next_batch(shared: &Shared, max_pages: usize, window: Duration) -> Option<Vec<Job>> {
    let mut st = shared.lock();
    loop {
        st.pending.retain(|j| !j.is_cancelled());
        if !st.pending.is_empty() {
            break;
        }
        shared.metrics.set_queue_depth(0);
        if st.closed {
            return None;
        }
        st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
    }
    // the batch window: more pages may be on their way
    let deadline = Instant::now() + window;
    while !st.closed && st.pending.iter().map(|j| j.pages.len()).sum::<usize>() < max_pages {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        st = shared.wake.wait_timeout(st, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
    }
    st.pending.retain(|j| !j.is_cancelled());
    if st.pending.is_empty() {
        drop(st);
        return next_batch(shared, max_pages, window);
    }
    let first = st.pending.pop_front().expect("invariant: the queue is not empty");
    let mut pages = first.pages.len();
    let mut batch = vec![first];
    let mut i = 0;
    while i < st.pending.len() {
        let j = &st.pending[i];
        if j.prompt == batch[0].prompt && j.params == batch[0].params && pages + j.pages.len() <= max_pages {
            pages += j.pages.len();
            batch.push(st.pending.remove(i).expect("invariant: index in range"));
        } else {
            i += 1;
        }
    }
    shared.metrics.set_queue_depth(st.pending.len());
    Some(batch)
}

/// Tells the server how the session's slots were sized and logs it (a warning when lowered).
fn report_slots(shared: &Shared, fit: SlotFit) {
    shared.metrics.set_slots(Some(fit));
    if fit.lowered() {
        tracing::warn!(
            "live batcher: {} decoder slots asked for (--max-batch) do not fit {:.2} GB of free device memory \
             ({:.3} GB per slot); serving with {}",
            fit.requested,
            fit.free_bytes.unwrap_or(0) as f64 / 1e9,
            fit.bytes_per_slot as f64 / 1e9,
            fit.used
        );
    } else {
        tracing::info!(
            "live batcher: {} decoder slots ({} fit)",
            fit.used,
            fit.limit.map_or("no limit".into(), |n| n.to_string())
        );
    }
}

/// What the worker tells [`Scheduler::start`]: the live batcher's slots (`None`: per request), or
/// why it stopped before serving.
type Started = std::sync::mpsc::Sender<Result<Option<SlotFit>, String>>;

fn work(reader: Box<dyn Reader>, shared: &Shared, wc: WorkerConfig, started: Started) {
    if wc.live {
        let plan = wc.plan(&*reader);
        match reader.live(&plan) {
            Some(Ok(session)) => {
                let fit = session.slots();
                report_slots(shared, fit);
                let _ = started.send(Ok(Some(fit)));
                return work_live(&*reader, session, shared, plan);
            }
            Some(Err(LiveError::OutOfMemory(msg))) => {
                tracing::error!("live decoding cannot start: {msg}");
                let _ = started.send(Err(msg));
                return;
            }
            Some(Err(LiveError::Unavailable(msg))) => {
                tracing::warn!("live decoding is unavailable ({msg}); reading per request")
            }
            None => {}
        }
    }
    let _ = started.send(Ok(None));
    work_per_request(&*reader, shared, wc.batch_window)
}

/// Runs `f`, turning a panic into an error naming `what`.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(format!("the model panicked while {what}")))
}

fn work_per_request(reader: &dyn Reader, shared: &Shared, window: Duration) {
    let max_pages = reader.max_batch().max(1);
    while let Some(batch) = next_batch(shared, max_pages, window) {
        let pages: Vec<(&RgbImage, Mode)> =
            batch.iter().flat_map(|j| j.pages.iter().map(move |p| (p, j.mode))).collect();
        shared.metrics.set_active(pages.len());
        let t = Instant::now();
        let result = guarded("reading this batch", || reader.read(&pages, &batch[0].prompt, &batch[0].params));
        let elapsed = t.elapsed();
        shared.metrics.set_active(0);
        match result {
            Ok(readings) if readings.len() == pages.len() => {
                let tokens: usize = readings.iter().map(|r| r.token_ids.len()).sum();
                shared.metrics.record_batch(tokens, elapsed);
                let mut readings = readings.into_iter();
                for job in batch {
                    let mine: Vec<Reading> = readings.by_ref().take(job.pages.len()).collect();
                    job.answer(Ok(mine));
                }
            }
            Ok(readings) => {
                let msg = format!("the model gave {} readings for {} pages", readings.len(), pages.len());
                for job in batch {
                    job.fail(&msg);
                }
            }
            Err(msg) => {
                for job in batch {
                    job.fail(&msg);
                }
            }
        }
    }
}

/// Live: takes the jobs that fit the free slots (blocking while the session is idle); `None` once
/// closed, empty and idle.
fn take_jobs(shared: &Shared, session: &dyn LiveSession) -> Option<Vec<Job>> {
    let mut st = shared.lock();
    let idle = session.is_idle();
    loop {
        st.pending.retain(|j| !j.is_cancelled());
        if !idle || !st.pending.is_empty() {
            break;
        }
        shared.metrics.set_queue_depth(0);
        if st.closed {
            return None;
        }
        st = shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
    }
    let mut free = session.free_slots();
    let mut taken = Vec::new();
    while let Some(job) = st.pending.front() {
        let n = job.pages.len();
        // in arrival order; a job larger than the free slots waits, unless the batcher is idle
        if n > free && !(idle && taken.is_empty()) {
            break;
        }
        free = free.saturating_sub(n);
        taken.push(st.pending.pop_front().expect("invariant: a front job"));
    }
    shared.metrics.set_queue_depth(st.pending.len());
    Some(taken)
}

fn work_live<'r>(reader: &'r dyn Reader, first: Box<dyn LiveSession + 'r>, shared: &Shared, plan: LivePlan) {
    let mut session = first;
    let (mut window_tokens, mut window_start) = (0usize, Instant::now());
    while let Some(jobs) = take_jobs(shared, &*session) {
        if session.is_idle() {
            // the tokens-per-second window starts with the work (not while the model waited)
            window_start = Instant::now();
        }
        if !jobs.is_empty() {
            shared.metrics.record_admission();
        }
        let mut live = Vec::new();
        for job in jobs {
            if job.is_cancelled() {
                continue;
            }
            if session.accepts(&job.params) {
                live.push(job);
                continue;
            }
            // sampled: read alone, between two decode steps
            let pages = job.pages();
            shared.metrics.set_active(session.active() + pages.len());
            let t = Instant::now();
            let result = guarded("reading a sampled request", || reader.read(&pages, &job.prompt, &job.params));
            if let Ok(r) = &result {
                shared.metrics.record_batch(r.iter().map(|r| r.token_ids.len()).sum(), t.elapsed());
            }
            job.answer(result);
        }
        if !live.is_empty() {
            let pages: Vec<Vec<(&RgbImage, Mode)>> = live.iter().map(Job::pages).collect();
            let requests: Vec<Admission<'_>> = live
                .iter()
                .zip(&pages)
                .map(|(job, pages)| Admission {
                    pages,
                    prompt: &job.prompt,
                    params: &job.params,
                    events: job.events.clone(),
                    cancelled: job.cancelled.clone(),
                })
                .collect();
            let results = guarded("preparing requests", || Ok(session.admit(&requests)))
                .unwrap_or_else(|msg| vec![Err(msg); live.len()]);
            for (job, result) in live.iter().zip(results) {
                if let Err(msg) = result {
                    job.fail(&msg);
                }
            }
        }
        let stepped = guarded("decoding", || session.step());
        shared.metrics.set_active(session.active());
        match stepped {
            Ok(Some(tokens)) => {
                shared.metrics.record_step();
                window_tokens += tokens;
            }
            Ok(None) => {}
            Err(msg) => {
                tracing::error!("live decoding failed: {msg}");
                session.fail_all(&msg);
                shared.metrics.set_active(0);
                drop(session);
                session = match reader.live(&plan) {
                    Some(Ok(s)) => {
                        report_slots(shared, s.slots());
                        s
                    }
                    other => {
                        let why = match other {
                            Some(Err(e)) => e.to_string(),
                            _ => "the reader has no live path".into(),
                        };
                        tracing::error!("live decoding cannot restart ({why}); reading per request");
                        shared.metrics.set_slots(None);
                        return work_per_request(reader, shared, Duration::ZERO);
                    }
                };
            }
        }
        let elapsed = window_start.elapsed();
        if elapsed >= Duration::from_secs(1) || (session.is_idle() && window_tokens > 0) {
            shared.metrics.record_tokens(window_tokens, elapsed);
            (window_tokens, window_start) = (0, Instant::now());
        }
    }
}
