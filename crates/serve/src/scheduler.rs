//! The model's side of the server: one worker thread owns the reader; requests wait in a bounded
//! queue and are taken in batches.
//!
//! # How requests share the model
//! Handlers never touch the model: each admitted request becomes a [`Job`] in the queue and its
//! handler awaits the answer. Whenever the model is free the worker takes the oldest waiting job and
//! every other waiting job with the same prompt and sampling settings, up to [`Reader::max_batch`]
//! pages, and reads them in one call: occ-model's continuous batcher then decodes every page of the
//! batch in its own slot and refills slots as sequences finish. Requests arriving during a batch
//! wait for the next one (the batcher takes its prompts when it starts). When the model falls idle
//! with fewer pages waiting than a batch holds, the worker waits up to a short batch window for more:
//! clients that send their next page as soon as an answer arrives then share one batch instead of the
//! first of them taking the model alone.
//!
//! A job whose client went away (disconnect, timeout) is marked cancelled by its handler and dropped
//! from the queue without reaching the model; a batch already decoding runs to its end.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;
use occ_core::{Mode, OcrOptions, Prompt};
use occ_model::generate::Sampling;
use occ_model::pipeline::DeepseekOcr;
use tokio::sync::oneshot;

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

/// A model the server can run: one call reads a batch of pages with one prompt and one set of
/// sampling settings.
pub trait Reader: Send + 'static {
    /// Pages per call at most.
    fn max_batch(&self) -> usize;
    /// The only mode the model reads, if it has one (a mini reader's canvas).
    fn native_mode(&self) -> Option<Mode>;
    /// Reads every page; one reading per page, in order.
    fn read(&mut self, pages: &[(&RgbImage, Mode)], prompt: &Prompt, params: &Params) -> Result<Vec<Reading>, String>;
}

impl Reader for DeepseekOcr {
    fn max_batch(&self) -> usize {
        self.max_batch.max(1)
    }

    fn native_mode(&self) -> Option<Mode> {
        DeepseekOcr::native_mode(self)
    }

    fn read(&mut self, pages: &[(&RgbImage, Mode)], prompt: &Prompt, params: &Params) -> Result<Vec<Reading>, String> {
        // the same settings as the engine trait's call with these options (so an answer equals
        // `OcrEngine::ocr` on the same page), with the request's top_p
        let options = OcrOptions {
            max_new_tokens: params.max_tokens,
            temperature: params.temperature,
            seed: params.seed,
            ignore_eos: params.ignore_eos,
        };
        let mut cfg = self.generation_for(&options);
        if let Sampling::TopP { top_p, .. } = &mut cfg.sampling {
            *top_p = params.top_p;
        }
        let out = DeepseekOcr::ocr(self, pages, prompt, &cfg).map_err(|e| e.to_string())?;
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
}

/// The answer to a job: one reading per page, or what failed.
pub type JobResult = Result<Vec<Reading>, String>;

/// One admitted request.
#[derive(Debug)]
pub struct Job {
    pub pages: Vec<RgbImage>,
    pub mode: Mode,
    pub prompt: Prompt,
    pub params: Params,
    /// Set by the handler when nobody waits for the answer any more.
    pub cancelled: Arc<AtomicBool>,
    pub reply: oneshot::Sender<JobResult>,
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

/// The queue and the worker thread that owns the reader.
pub struct Scheduler {
    shared: Arc<Shared>,
    max_queue: usize,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("max_queue", &self.max_queue).finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Starts the worker; at most `max_queue` requests wait at once, and an idle model waits up to
    /// `batch_window` for a batch to fill.
    pub fn start(
        reader: Box<dyn Reader>,
        max_queue: usize,
        batch_window: Duration,
        metrics: Arc<Metrics>,
    ) -> Scheduler {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new(), metrics });
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("occ-serve-model".into())
                .spawn(move || work(reader, &shared, batch_window))
                .expect("invariant: the OS can start one thread")
        };
        Scheduler { shared, max_queue, worker: Some(worker) }
    }

    /// Queues a job, or refuses it when `max_queue` requests already wait (cancelled ones are
    /// dropped first).
    pub fn submit(&self, job: Job) -> Result<(), QueueFull> {
        let mut st = self.shared.lock();
        st.pending.retain(|j| !j.cancelled.load(Ordering::SeqCst));
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
        self.shared.lock().pending.iter().filter(|j| !j.cancelled.load(Ordering::SeqCst)).count()
    }

    /// Lets the worker finish what is queued, then stop; returns when it has.
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

/// Waits for work; `None` once closed and empty.
fn next_batch(shared: &Shared, max_pages: usize, window: Duration) -> Option<Vec<Job>> {
    let mut st = shared.lock();
    loop {
        st.pending.retain(|j| !j.cancelled.load(Ordering::SeqCst));
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
    st.pending.retain(|j| !j.cancelled.load(Ordering::SeqCst));
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

fn work(mut reader: Box<dyn Reader>, shared: &Shared, window: Duration) {
    let max_pages = reader.max_batch().max(1);
    while let Some(batch) = next_batch(shared, max_pages, window) {
        let pages: Vec<(&RgbImage, Mode)> =
            batch.iter().flat_map(|j| j.pages.iter().map(move |p| (p, j.mode))).collect();
        shared.metrics.set_active(pages.len());
        let t = Instant::now();
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| reader.read(&pages, &batch[0].prompt, &batch[0].params)))
                .unwrap_or_else(|_| Err("the model panicked while reading this batch".into()));
        let elapsed = t.elapsed();
        shared.metrics.set_active(0);
        match result {
            Ok(readings) if readings.len() == pages.len() => {
                let tokens: usize = readings.iter().map(|r| r.token_ids.len()).sum();
                shared.metrics.record_batch(tokens, elapsed);
                let mut readings = readings.into_iter();
                for job in batch {
                    let mine: Vec<Reading> = readings.by_ref().take(job.pages.len()).collect();
                    // the handler may have gone; nothing to tell then
                    let _ = job.reply.send(Ok(mine));
                }
            }
            Ok(readings) => {
                let msg = format!("the model gave {} readings for {} pages", readings.len(), pages.len());
                for job in batch {
                    let _ = job.reply.send(Err(msg.clone()));
                }
            }
            Err(msg) => {
                for job in batch {
                    let _ = job.reply.send(Err(msg.clone()));
                }
            }
        }
    }
}
