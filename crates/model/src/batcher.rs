//! Continuous batching: a queue of prompts decoded through a fixed number of slots, a finished
//! sequence's slot refilled at once with the next prompt (the GPU throughput path).
//!
//! Two ways in, one batcher ([`Batcher`]): [`generate_queue`] decodes a batch of prompts and returns
//! their rows; the live path admits prompts while others decode ([`Batcher::admit`] between calls of
//! [`Batcher::step`], or [`LiveQueue::submit`] from any thread into [`Batcher::run`]), reports each
//! token to its sequence's [`Sink`] as it is chosen, and frees a cancelled sequence's slot ([`Cancel`],
//! or a sink that returns `false`) before the next decode step.
//!
//! # Design
//! - The decoder state is a [`SlotCache`] plus three persistent device buffers: the ids fed to the
//!   next step `(slots,)`, the positions `(slots,)` and the banned ids `(slots, MAX_BAN)`.
//! - One decode step = [`DecoderModel::forward_slots`] → [`ops::apply_ban`] → device argmax → ids
//!   written into the id buffer → [`ops::advance`]. It never reads from the host, so on CUDA it is
//!   captured once in a CUDA graph and replayed for every token; the only per-step host traffic is
//!   the read-back of the chosen ids (and an upload of banned ids when a blocker fires).
//! - Prompts are prefilled in small batches with the left-padded path
//!   ([`DecoderModel::forward_hidden`]), their first token is chosen on the host from the prefill
//!   logits (same rule as [`generate`]), and their keys/values are copied
//!   into a free slot ([`SlotCache::insert_from`](crate::decoder::SlotCache::insert_from)).
//! - Greedy only: the repetition blockers become banned-id rows on the device. Sampling falls back to
//!   [`generate`] in chunks of `slots` prompts.
//!
//! - Live admission keeps the slot count, so the captured step graph survives it (see [`Batcher`]);
//!   each sequence has its own settings (budget, EOS rule, blockers).
//!
//! Outputs equal [`generate`]'s for every prompt, batch or live, whatever step a prompt was admitted
//! at (tests).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use candle_core::{DType, Result, Tensor};

use crate::decoder::{DecoderModel, KvCache, SlotCache};
use crate::generate::{
    argmax, generate, padded_batch, BatchOutput, Generated, GenerationConfig, PromptInput, Sampling,
};
use crate::memory_plan::{self, grown_capacity, initial_capacity, Sequences, SlotMemory};
use crate::ngram::no_repeat_ngram_banned;
use crate::ops::{self, StepGraph, NO_BAN};

/// Position an idle slot is parked at. The decode step runs over every slot, and a slot attends to
/// its columns `0..=pos`: parked at 0 an idle slot reads one column of its own cache (not the whole
/// capacity, which it would read parked beyond it) and writes garbage into its own columns only,
/// which a refill overwrites (the prompt's columns) or a decode step writes before reading (the
/// columns after). Its position advances with every step; [`REPARK`] steps later it is parked again.
const PARKED: u32 = 0;

/// Steps after which an idle slot's advancing position is set back to [`PARKED`].
const REPARK: u32 = 16;

/// Banned ids per slot and step that the device buffer holds.
pub const MAX_BAN: usize = 256;

/// How the queue is run.
#[derive(Debug, Clone, PartialEq)]
pub struct BatcherConfig {
    /// Sequences decoded together.
    pub slots: usize,
    /// Prompts prefilled together when slots free up.
    pub prefill_batch: usize,
    /// Capture the decode step in a CUDA graph (CUDA only; ignored elsewhere).
    pub cuda_graph: bool,
    /// Columns for generated tokens preallocated per slot at the start (beyond the longest prompt);
    /// the cache doubles when a sequence reaches the end, up to `max_new_tokens`. Keeps memory
    /// proportional to what is generated when `max_new_tokens` is large (8,192 by default).
    pub initial_new_tokens: usize,
    /// Free device memory (bytes) that [`generate_queue`] sizes its slots against
    /// ([`fit_slots`]); `None`: what the device reports (CUDA: the driver's free memory; CPU: no
    /// limit). Set it to leave room for other work, or in tests.
    pub free_memory: Option<u64>,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig { slots: 32, prefill_batch: 8, cuda_graph: true, initial_new_tokens: 1024, free_memory: None }
    }
}

/// What a queue run produced: rows in input order and where the time went.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueOutput {
    pub rows: Vec<Generated>,
    /// All prefills (prompt forward, first token, copy into the slots).
    pub prefill: Duration,
    /// All decode steps.
    pub decode: Duration,
    pub decode_steps: usize,
    /// Whether the decode steps ran as CUDA-graph replays.
    pub graph: bool,
    /// Kernel nodes of the captured decode step (the kernels one replay launches); `None` when the
    /// step was not captured (CPU, eager decoding) or the driver could not list them.
    pub graph_kernels: Option<usize>,
    /// The slots asked for and the slots run with (fewer when they did not fit the free memory).
    pub fit: SlotFit,
}

/// The slot count of a queue: the slots asked for, lowered to what fits the free device memory
/// ([`fit_slots`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotFit {
    /// Slots asked for (`BatcherConfig::slots`, at most one per prompt).
    pub requested: usize,
    /// Slots run with.
    pub used: usize,
    /// The largest slot count that fits ([`SlotMemory::max_slots`]); `None`: no memory limit
    /// (CPU without [`BatcherConfig::free_memory`], or a sampled queue).
    pub limit: Option<usize>,
    /// The free-memory figure the limit comes from.
    pub free_bytes: Option<u64>,
    /// Bytes per slot of the plan (0 without a limit).
    pub bytes_per_slot: u64,
}

impl SlotFit {
    /// Slots run as asked, no limit known.
    pub fn unlimited(slots: usize) -> SlotFit {
        SlotFit { requested: slots, used: slots, limit: None, free_bytes: None, bytes_per_slot: 0 }
    }

    /// Whether fewer slots than asked run because more do not fit.
    pub fn lowered(&self) -> bool {
        self.used < self.requested
    }
}

/// The slots a queue of `seq`-shaped sequences runs with when `requested` are asked for: at most
/// the largest count whose memory ([`SlotMemory`]) fits the free memory (`bc.free_memory`, else the
/// device's figure: CUDA only; on the CPU nothing is lowered). Lowering is logged as a warning. An
/// "out of memory" error when not even one slot fits.
pub fn fit_slots(model: &DecoderModel, bc: &BatcherConfig, seq: Sequences, requested: usize) -> Result<SlotFit> {
    let requested = requested.max(1);
    let Some(free) = bc.free_memory.or_else(|| ops::device_memory_free(model.device())) else {
        return Ok(SlotFit::unlimited(requested));
    };
    let plan = SlotMemory::new(model.config(), model.dtype(), seq, bc);
    let limit = plan.max_slots(free, 0);
    let bytes_per_slot = plan.bytes_per_slot(0);
    if limit == 0 {
        candle_core::bail!(
            "continuous batching: out of memory: one decoder slot ({} prompt + {} new tokens) needs {} bytes \
             with a prefill batch, {} of {free} free bytes are usable",
            seq.prompt_len,
            seq.max_new_tokens,
            plan.bytes_for(1, 0),
            memory_plan::usable_bytes(free)
        )
    }
    let used = requested.min(limit);
    if used < requested {
        tracing::warn!(
            "continuous batching: {requested} slots do not fit {:.2} GB of free device memory \
             ({:.1} MB per slot for {} prompt + {} new tokens); running {used} slots",
            free as f64 / 1e9,
            bytes_per_slot as f64 / 1e6,
            seq.prompt_len,
            seq.max_new_tokens
        );
    }
    Ok(SlotFit { requested, used, limit: Some(limit), free_bytes: Some(free), bytes_per_slot })
}

/// What a sequence of the live path reports, in order: each token as it is chosen, then once
/// [`SeqEvent::Done`] (or [`SeqEvent::Failed`] when the batcher failed). A cancelled sequence
/// reports nothing more.
#[derive(Debug, Clone, PartialEq)]
pub enum SeqEvent {
    /// A generated id (the stopping EOS included).
    Token(u32),
    /// The sequence ended (EOS or its token budget): everything it generated.
    Done(Generated),
    /// The batcher failed; the sequence will not continue.
    Failed(String),
}

/// Receives a sequence's events on the thread that runs the batcher; returning `false` cancels the
/// sequence (its receiver is gone): its slot is freed before the next decode step.
pub type Sink = Box<dyn FnMut(SeqEvent) -> bool + Send>;

/// Cancels a sequence from any thread: a waiting sequence is dropped before its prefill, a decoding
/// one has its slot freed before the next decode step.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl From<Arc<AtomicBool>> for Cancel {
    /// A cancel handle over a flag the caller sets.
    fn from(flag: Arc<AtomicBool>) -> Cancel {
        Cancel(flag)
    }
}

/// One prompt handed to a running batcher.
pub struct Submission {
    pub prompt: PromptInput,
    /// Greedy settings of this sequence (its own budget, EOS rule and blockers).
    pub cfg: GenerationConfig,
    pub sink: Sink,
    pub cancel: Cancel,
}

impl std::fmt::Debug for Submission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission").field("prompt_len", &self.prompt.ids.len()).field("cfg", &self.cfg).finish()
    }
}

/// A sequence the batcher holds (waiting for a slot, or decoding in one).
struct Seq {
    prompt_ids: Vec<u32>,
    /// Dropped after the prefill.
    embeds: Option<Tensor>,
    cfg: GenerationConfig,
    out: Generated,
    sink: Sink,
    cancel: Cancel,
}

impl Seq {
    fn emit(&mut self, event: SeqEvent) -> bool {
        (self.sink)(event)
    }
}

/// The continuous batcher: a fixed number of slots over one [`SlotCache`], a queue of sequences
/// waiting for a slot, and one decode step at a time ([`Batcher::step`]).
///
/// The batch API ([`generate_queue`]) admits every prompt and steps until all are done; the live
/// path admits prompts between steps ([`Batcher::admit`], or from other threads through a
/// [`LiveQueue`] and [`Batcher::run`]) and reports each token as it is chosen. Both run the same
/// refill and step code, so a prompt's tokens do not depend on the path or on the step it was
/// admitted at (tests).
///
/// # Admission and the CUDA graph
/// The slot count is fixed when the batcher is made: every decode step runs over all slots (idle
/// ones are parked at the first columns of their own cache, see `PARKED`), so admitting or
/// finishing a sequence changes only the contents of the id, position and ban buffers, never a
/// shape or an address, and the captured graph keeps replaying. The graph is captured again only
/// when the cache grows: when a sequence reaches the last column, or when an admitted prompt is
/// longer than the cache.
pub struct Batcher<'m> {
    model: &'m DecoderModel,
    bc: BatcherConfig,
    slots: usize,
    capacity: usize,
    /// Columns any sequence admitted so far can need (prompt + budget); the cache grows up to it.
    max_capacity: usize,
    cache: SlotCache,
    ids_buf: Tensor,
    pos_buf: Tensor,
    ban_buf: Tensor,
    state: Vec<Option<Seq>>,
    host_ids: Vec<u32>,
    host_pos: Vec<u32>,
    host_ban: Vec<u32>,
    pending: VecDeque<Seq>,
    graph: Option<StepGraph>,
    graph_failed: bool,
    prefill: Duration,
    decode: Duration,
    steps: usize,
}

impl std::fmt::Debug for Batcher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("slots", &self.slots)
            .field("capacity", &self.capacity)
            .field("active", &self.active())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl<'m> Batcher<'m> {
    /// A batcher of `slots` sequences with room for `capacity` columns each at first (the cache
    /// grows as needed).
    pub fn new(model: &'m DecoderModel, bc: &BatcherConfig, slots: usize, capacity: usize) -> Result<Batcher<'m>> {
        let slots = slots.max(1);
        let capacity = capacity.max(1);
        let device = model.device().clone();
        Ok(Batcher {
            model,
            bc: bc.clone(),
            slots,
            capacity,
            max_capacity: capacity,
            cache: model.new_slot_cache(slots, capacity)?,
            ids_buf: Tensor::zeros(slots, DType::U32, &device)?,
            pos_buf: Tensor::zeros(slots, DType::U32, &device)?,
            ban_buf: Tensor::full(NO_BAN, (slots, MAX_BAN), &device)?,
            state: (0..slots).map(|_| None).collect(),
            host_ids: vec![0u32; slots],
            host_pos: vec![PARKED; slots],
            host_ban: vec![NO_BAN; slots * MAX_BAN],
            pending: VecDeque::new(),
            graph: None,
            // float32 keeps host routing in the MoE (a read-back per layer), which a graph cannot
            // capture: decode eagerly without a doomed capture attempt (and its warning)
            graph_failed: !bc.cuda_graph || model.dtype() == DType::F32,
            prefill: Duration::ZERO,
            decode: Duration::ZERO,
            steps: 0,
        })
    }

    /// Decoder slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Sequences decoding in a slot now.
    pub fn active(&self) -> usize {
        self.state.iter().filter(|s| s.is_some()).count()
    }

    /// Sequences admitted and waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// Slots that neither hold a sequence nor are promised to a waiting one.
    pub fn free_slots(&self) -> usize {
        (self.slots - self.active()).saturating_sub(self.pending.len())
    }

    /// Nothing to decode and nothing waiting.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.state.iter().all(Option::is_none)
    }

    /// Whether the decode steps so far ran as CUDA-graph replays (the last capture holds).
    pub fn graph(&self) -> bool {
        self.graph.is_some()
    }

    /// Kernel nodes of the last captured decode step ([`ops::StepGraph::kernels`]); `None` without
    /// a captured step.
    pub fn graph_kernels(&self) -> Option<usize> {
        self.graph.as_ref().and_then(|g| g.kernels())
    }

    /// Prefill time, decode time and decode steps so far.
    pub fn times(&self) -> (Duration, Duration, usize) {
        (self.prefill, self.decode, self.steps)
    }

    /// Queues a prompt; it is prefilled into a slot at the next [`Batcher::step`] with a slot free.
    /// Greedy settings only (sampling runs through [`generate`]); a malformed prompt or a zero budget
    /// is refused here, naming it.
    pub fn admit(&mut self, prompt: PromptInput, cfg: GenerationConfig, sink: Sink, cancel: Cancel) -> Result<()> {
        self.check(&prompt, &cfg)?;
        self.max_capacity = self.max_capacity.max(prompt.ids.len() + cfg.max_new_tokens);
        self.pending.push_back(Seq {
            prompt_ids: prompt.ids,
            embeds: Some(prompt.embeds),
            cfg,
            out: Generated { tokens: Vec::new(), stopped_at_eos: false },
            sink,
            cancel,
        });
        Ok(())
    }

    /// Whether [`Batcher::admit`] takes this prompt with these settings.
    fn check(&self, prompt: &PromptInput, cfg: &GenerationConfig) -> Result<()> {
        if cfg.sampling != Sampling::Greedy {
            candle_core::bail!("continuous batching decodes greedily; sampled prompts go through generate")
        }
        if cfg.max_new_tokens == 0 {
            candle_core::bail!("continuous batching: a prompt with max_new_tokens = 0")
        }
        let (len, hidden) = prompt.embeds.dims2()?;
        if hidden != self.model.config().hidden_size || len == 0 || len != prompt.ids.len() {
            candle_core::bail!(
                "continuous batching: embeddings {:?} and {} ids do not form a (seq, {}) prompt",
                prompt.embeds.dims(),
                prompt.ids.len(),
                self.model.config().hidden_size
            )
        }
        Ok(())
    }

    /// Frees the slots of cancelled sequences and drops cancelled waiting ones.
    fn sweep_cancelled(&mut self) -> Result<()> {
        self.pending.retain(|s| !s.cancel.is_cancelled());
        let mut freed = false;
        for s in 0..self.slots {
            if self.state[s].as_ref().is_some_and(|q| q.cancel.is_cancelled()) {
                self.park(s);
                freed = true;
            }
        }
        if freed {
            ops::write_u32(&self.pos_buf, &self.host_pos)?;
            ops::write_u32(&self.ban_buf, &self.host_ban)?;
        }
        Ok(())
    }

    /// Empties slot `s` (host side): idle, parked, nothing banned.
    fn park(&mut self, s: usize) {
        self.state[s] = None;
        self.host_pos[s] = PARKED;
        self.host_ban[s * MAX_BAN..(s + 1) * MAX_BAN].fill(NO_BAN);
    }

    /// Prefills waiting prompts into the free slots (in batches of `prefill_batch`).
    fn refill(&mut self) -> Result<()> {
        let mut changed = false;
        while !self.pending.is_empty() && self.state.iter().any(Option::is_none) {
            let free: Vec<usize> = (0..self.slots).filter(|&s| self.state[s].is_none()).collect();
            let take = free.len().min(self.bc.prefill_batch.max(1)).min(self.pending.len());
            let mut seqs: Vec<Seq> = self.pending.drain(..take).collect();
            let batch = seqs
                .iter_mut()
                .map(|s| {
                    let embeds = s.embeds.take().ok_or_else(|| {
                        candle_core::Error::Msg("continuous batching: a prompt was prefilled twice".into())
                    })?;
                    Ok(PromptInput { embeds, ids: s.prompt_ids.clone() })
                })
                .collect::<Result<Vec<_>>>()?;
            let longest = batch.iter().map(|p| p.ids.len()).max().unwrap_or(0);
            if longest + 1 > self.capacity {
                // a prompt longer than the cache: grow before copying it in
                self.grow((self.capacity * 2).max(longest + 1))?;
            }
            let (kv, first) = prefill_batch(self.model, &batch)?;
            drop(batch);
            let mut free = free.into_iter();
            for (i, mut seq) in seqs.into_iter().enumerate() {
                let mut scores = first[i].clone();
                apply_blockers(&mut scores, &seq.cfg, &seq.prompt_ids, &[]);
                let token = argmax(&scores);
                seq.out.tokens.push(token);
                let done = finished(&mut seq.out, token, &seq.cfg);
                if !seq.emit(SeqEvent::Token(token)) {
                    continue; // cancelled by its receiver
                }
                if done {
                    let out = seq.out.clone();
                    seq.emit(SeqEvent::Done(out));
                    continue;
                }
                let Some(slot) = free.next() else {
                    candle_core::bail!("continuous batching: no free slot for a prompt")
                };
                let len = self.cache.insert_from(&kv, i, slot)?;
                self.host_ids[slot] = token;
                self.host_pos[slot] = len as u32;
                set_ban(
                    &mut self.host_ban[slot * MAX_BAN..(slot + 1) * MAX_BAN],
                    &seq.cfg,
                    &seq.prompt_ids,
                    &seq.out.tokens,
                )?;
                self.state[slot] = Some(seq);
                changed = true;
            }
        }
        if changed {
            ops::write_u32(&self.ids_buf, &self.host_ids)?;
            ops::write_u32(&self.pos_buf, &self.host_pos)?;
            ops::write_u32(&self.ban_buf, &self.host_ban)?;
        }
        Ok(())
    }

    /// Reallocates the cache with `capacity` columns (the captured graph holds the old addresses).
    fn grow(&mut self, capacity: usize) -> Result<()> {
        self.graph = None;
        self.cache = self.cache.grown(capacity)?;
        self.capacity = capacity;
        Ok(())
    }

    /// Runs the decode step once, through the captured graph when there is one.
    fn decode_once(&mut self) -> Result<Vec<u32>> {
        let (model, cache) = (self.model, &self.cache);
        let (ids_buf, pos_buf, ban_buf) = (&self.ids_buf, &self.pos_buf, &self.ban_buf);
        let step = || -> Result<()> {
            let logits = model.forward_slots(ids_buf, pos_buf, cache)?;
            ops::apply_ban(&logits, ban_buf)?;
            let next = ops::argmax_rows(&logits)?;
            ids_buf.slice_set(&next, 0, 0)?;
            ops::advance(pos_buf)
        };
        match &self.graph {
            Some(g) => g.launch()?,
            None => {
                if self.graph_failed {
                    step()?;
                } else {
                    // the first step runs eagerly (it loads kernels and fills candle's parameter
                    // cache), then the same step is captured for the following ones
                    self.graph = ops::capture_after_warmup(model.device(), &step)?;
                    self.graph_failed = self.graph.is_none();
                }
            }
        }
        self.ids_buf.to_vec1::<u32>()
    }

    /// One round: cancelled sequences leave, waiting prompts are prefilled into free slots, then one
    /// decode step runs for every slot and each active sequence gets its token (finished ones free
    /// their slot). Returns `false`, having decoded nothing, when nothing is left to decode.
    pub fn step(&mut self) -> Result<bool> {
        self.sweep_cancelled()?;
        let t = Instant::now();
        self.refill()?;
        self.prefill += t.elapsed();
        if self.state.iter().all(Option::is_none) {
            return Ok(false);
        }

        // room for the column every active slot writes next
        let needed = (0..self.slots)
            .filter(|&s| self.state[s].is_some())
            .map(|s| self.host_pos[s] as usize + 1)
            .max()
            .unwrap_or(0);
        if needed > self.capacity {
            self.grow(grown_capacity(self.capacity, needed, self.max_capacity))?;
        }

        let t = Instant::now();
        let next = self.decode_once()?;
        self.decode += t.elapsed();
        self.steps += 1;

        let mut ban_changed = false;
        let mut freed = false;
        for (s, &token) in next.iter().enumerate().take(self.slots) {
            self.host_pos[s] = self.host_pos[s].saturating_add(1);
            self.host_ids[s] = token;
            let Some(seq) = &mut self.state[s] else { continue };
            seq.out.tokens.push(token);
            let done = finished(&mut seq.out, token, &seq.cfg);
            let keep = seq.emit(SeqEvent::Token(token));
            if done && keep {
                let out = seq.out.clone();
                seq.emit(SeqEvent::Done(out));
            }
            if done || !keep {
                let row_ban = &self.host_ban[s * MAX_BAN..(s + 1) * MAX_BAN];
                ban_changed |= row_ban[0] != NO_BAN;
                self.park(s); // idle: parked, its rows' results unused
                freed = true;
                continue;
            }
            let row_ban = &mut self.host_ban[s * MAX_BAN..(s + 1) * MAX_BAN];
            let before = row_ban[0] != NO_BAN;
            let now = set_ban(row_ban, &seq.cfg, &seq.prompt_ids, &seq.out.tokens)?;
            ban_changed |= before || now;
        }
        for s in 0..self.slots {
            if self.state[s].is_none() && self.host_pos[s] >= REPARK {
                self.host_pos[s] = PARKED; // back to one column read per step
                freed = true;
            }
        }
        if ban_changed {
            ops::write_u32(&self.ban_buf, &self.host_ban)?;
        }
        if freed {
            // park the freed slots (a refill overwrites them again)
            ops::write_u32(&self.pos_buf, &self.host_pos)?;
        }
        Ok(true)
    }

    /// Tells every sequence (decoding or waiting) that the batcher failed with `message`, and drops
    /// them all. The batcher may be in any state after an error: make a new one before going on.
    pub fn fail_all(&mut self, message: &str) {
        for s in 0..self.slots {
            if let Some(mut seq) = self.state[s].take() {
                seq.emit(SeqEvent::Failed(message.to_string()));
            }
            self.host_pos[s] = PARKED;
        }
        for mut seq in self.pending.drain(..) {
            seq.emit(SeqEvent::Failed(message.to_string()));
        }
    }

    /// The live loop: waits while idle, admits what `queue` holds between decode steps (as many as
    /// there are free slots; the rest waits in the queue), and returns once the queue is closed and
    /// every sequence is done. On an error every sequence held gets [`SeqEvent::Failed`] and the
    /// error is returned.
    pub fn run(&mut self, queue: &LiveQueue) -> Result<()> {
        loop {
            let taken = queue.take(self.free_slots(), self.is_idle());
            let Some(taken) = taken else { return Ok(()) };
            for sub in taken {
                let Submission { prompt, cfg, mut sink, cancel } = sub;
                match self.check(&prompt, &cfg) {
                    Ok(()) => self.admit(prompt, cfg, sink, cancel)?,
                    // a refused prompt fails alone
                    Err(e) => {
                        sink(SeqEvent::Failed(e.to_string()));
                    }
                }
            }
            if let Err(e) = self.step() {
                self.fail_all(&e.to_string());
                return Err(e);
            }
        }
    }
}

/// A submission queue feeding a running [`Batcher::run`] from other threads.
#[derive(Clone, Default)]
pub struct LiveQueue {
    inner: Arc<(Mutex<LiveState>, Condvar)>,
}

#[derive(Default)]
struct LiveState {
    items: VecDeque<Submission>,
    closed: bool,
}

impl std::fmt::Debug for LiveQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveQueue").field("waiting", &self.len()).finish()
    }
}

impl LiveQueue {
    pub fn new() -> LiveQueue {
        LiveQueue::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        // every change is one VecDeque call or one flag: a poisoned lock is still consistent
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a prompt for the running batcher; hands it back once the queue is closed.
    pub fn submit(&self, sub: Submission) -> std::result::Result<(), Box<Submission>> {
        let mut st = self.lock();
        if st.closed {
            return Err(Box::new(sub));
        }
        st.items.push_back(sub);
        drop(st);
        self.inner.1.notify_all();
        Ok(())
    }

    /// No more submissions: [`Batcher::run`] finishes what it holds and returns.
    pub fn close(&self) {
        self.lock().closed = true;
        self.inner.1.notify_all();
    }

    /// Submissions waiting (not yet taken by the batcher).
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `n` waiting submissions (cancelled ones dropped); blocks while `block` and nothing
    /// waits. `None`: closed, nothing waiting and nothing to wait for.
    fn take(&self, n: usize, block: bool) -> Option<Vec<Submission>> {
        let mut st = self.lock();
        loop {
            st.items.retain(|s| !s.cancel.is_cancelled());
            if !block || !st.items.is_empty() {
                break;
            }
            if st.closed {
                return None;
            }
            st = self.inner.1.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let n = n.min(st.items.len());
        Some(st.items.drain(..n).collect())
    }
}

/// Decodes every prompt through the slots; outputs are in input order.
pub fn generate_queue(
    model: &DecoderModel,
    prompts: &[PromptInput],
    cfg: &GenerationConfig,
    bc: &BatcherConfig,
) -> Result<QueueOutput> {
    if cfg.sampling != Sampling::Greedy {
        return fallback(model, prompts, cfg, bc);
    }
    let n = prompts.len();
    if n == 0 || cfg.max_new_tokens == 0 {
        let rows = vec![Generated { tokens: Vec::new(), stopped_at_eos: false }; n];
        return Ok(QueueOutput {
            rows,
            prefill: Duration::ZERO,
            decode: Duration::ZERO,
            decode_steps: 0,
            graph: false,
            graph_kernels: None,
            fit: SlotFit::unlimited(bc.slots.clamp(1, n.max(1))),
        });
    }
    let longest = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    let capacity = initial_capacity(longest, cfg.max_new_tokens, bc.initial_new_tokens);
    let seq = Sequences { prompt_len: longest, max_new_tokens: cfg.max_new_tokens };
    let fit = fit_slots(model, bc, seq, bc.slots.clamp(1, n))?;
    let mut batcher = Batcher::new(model, bc, fit.used, capacity)?;
    let done: Arc<Mutex<Vec<Option<Generated>>>> = Arc::new(Mutex::new(vec![None; n]));
    for (row, p) in prompts.iter().enumerate() {
        let done = done.clone();
        let sink: Sink = Box::new(move |event| {
            if let SeqEvent::Done(g) = event {
                if let Some(slot) = done.lock().unwrap_or_else(|p| p.into_inner()).get_mut(row) {
                    *slot = Some(g);
                }
            }
            true
        });
        batcher.admit(p.clone(), cfg.clone(), sink, Cancel::new())?;
    }
    while batcher.step()? {}
    let (prefill, decode, decode_steps) = batcher.times();
    let graph = batcher.graph();
    let graph_kernels = batcher.graph_kernels();
    drop(batcher);
    let rows = std::mem::take(&mut *done.lock().unwrap_or_else(|p| p.into_inner()))
        .into_iter()
        .enumerate()
        .map(|(row, g)| {
            g.ok_or_else(|| candle_core::Error::Msg(format!("continuous batching: prompt {row} never finished")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(QueueOutput { rows, prefill, decode, decode_steps, graph, graph_kernels, fit })
}

/// Prefills a batch of prompts (left-padded) and returns the cache and each row's last logits.
fn prefill_batch(model: &DecoderModel, prompts: &[PromptInput]) -> Result<(KvCache, Vec<Vec<f32>>)> {
    let (embeds, left_pad) = padded_batch(model, prompts)?;
    let max_len = embeds.dim(1)?;
    let mut cache = model.new_cache(left_pad);
    let h = model.forward_hidden(&embeds, 0, &mut cache)?;
    let logits = model.logits(&h.narrow(1, max_len - 1, 1)?)?.squeeze(1)?.to_vec2::<f32>()?;
    Ok((cache, logits))
}

/// Bans of both blockers for the next token of a row whose generated tokens are `generated`.
fn banned(cfg: &GenerationConfig, prompt: &[u32], generated: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    if let Some(blocker) = &cfg.ngram {
        out.extend(blocker.banned(generated));
    }
    if let Some(n) = cfg.no_repeat_ngram_size {
        let mut all = prompt.to_vec();
        all.extend_from_slice(generated);
        out.extend(no_repeat_ngram_banned(n, &all));
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn apply_blockers(scores: &mut [f32], cfg: &GenerationConfig, prompt: &[u32], generated: &[u32]) {
    for id in banned(cfg, prompt, generated) {
        if let Some(s) = scores.get_mut(id as usize) {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// Writes a row's banned ids (padded with [`NO_BAN`]); returns whether any id is banned.
fn set_ban(row: &mut [u32], cfg: &GenerationConfig, prompt: &[u32], generated: &[u32]) -> Result<bool> {
    let ids = banned(cfg, prompt, generated);
    if ids.len() > row.len() {
        candle_core::bail!(
            "continuous batching: {} banned ids in one step exceed the device buffer of {}",
            ids.len(),
            row.len()
        )
    }
    row.fill(NO_BAN);
    row[..ids.len()].copy_from_slice(&ids);
    Ok(!ids.is_empty())
}

/// Records the stop state of a row after `token`; true when it is done.
fn finished(g: &mut Generated, token: u32, cfg: &GenerationConfig) -> bool {
    if token == cfg.eos_token_id && !cfg.ignore_eos {
        g.stopped_at_eos = true;
        return true;
    }
    g.tokens.len() >= cfg.max_new_tokens
}

fn fallback(
    model: &DecoderModel,
    prompts: &[PromptInput],
    cfg: &GenerationConfig,
    bc: &BatcherConfig,
) -> Result<QueueOutput> {
    let mut rows = Vec::with_capacity(prompts.len());
    let (mut prefill, mut decode, mut steps) = (Duration::ZERO, Duration::ZERO, 0);
    for chunk in prompts.chunks(bc.slots.max(1)) {
        let BatchOutput { rows: r, prefill: p, decode: d, decode_steps: s } = generate(model, chunk, cfg)?;
        rows.extend(r);
        prefill += p;
        decode += d;
        steps += s;
    }
    let fit = SlotFit::unlimited(bc.slots.clamp(1, prompts.len().max(1)));
    Ok(QueueOutput { rows, prefill, decode, decode_steps: steps, graph: false, graph_kernels: None, fit })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::DecoderConfig;
    use crate::ngram::NgramBlocker;
    use candle_core::Device;

    fn model() -> DecoderModel {
        DecoderModel::new(&DecoderConfig::tiny(), crate::synth::synth_var_builder(3, DType::F32, &Device::Cpu)).unwrap()
    }

    fn prompt(m: &DecoderModel, len: usize, seed: u64) -> PromptInput {
        let vocab = m.config().vocab_size as u64;
        let ids: Vec<u32> = (0..len as u64).map(|i| (crate::synth::splitmix64_at(seed, i) % vocab) as u32).collect();
        let embeds = m
            .embed(&Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap())
            .unwrap()
            .squeeze(0)
            .unwrap();
        PromptInput { embeds, ids }
    }

    #[test]
    fn queue_through_two_slots_equals_generate_alone() -> Result<()> {
        let m = model();
        let prompts: Vec<PromptInput> =
            [5, 9, 3, 12, 7].iter().enumerate().map(|(i, &l)| prompt(&m, l, i as u64 + 10)).collect();
        let mut cfgs = vec![GenerationConfig::plain_greedy(12)];
        // a budget that differs per row through EOS: make token 1 likely by using a real EOS id
        cfgs.push(GenerationConfig {
            ngram: Some(NgramBlocker { ngram_size: 2, window_size: 8, whitelist: vec![] }),
            ..GenerationConfig::plain_greedy(12)
        });
        cfgs.push(GenerationConfig { no_repeat_ngram_size: Some(2), ..GenerationConfig::plain_greedy(12) });
        for cfg in &cfgs {
            // initial room for 3 generated tokens: the cache grows twice on the way to 12
            let bc = BatcherConfig {
                slots: 2,
                prefill_batch: 2,
                cuda_graph: false,
                initial_new_tokens: 3,
                free_memory: None,
            };
            let q = generate_queue(&m, &prompts, cfg, &bc)?;
            assert_eq!(q.rows.len(), 5);
            for (i, p) in prompts.iter().enumerate() {
                let alone = generate(&m, std::slice::from_ref(p), cfg)?;
                assert_eq!(q.rows[i], alone.rows[0], "prompt {i}, {cfg:?}");
            }
            assert!(q.decode_steps > 12, "slots were refilled: {} steps", q.decode_steps);
        }
        Ok(())
    }

    /// A free-memory figure whose plan fits exactly `slots` slots of `seq`.
    fn free_for(m: &DecoderModel, bc: &BatcherConfig, seq: Sequences, slots: usize) -> u64 {
        let plan = SlotMemory::new(m.config(), m.dtype(), seq, bc);
        let free = (plan.bytes_for(slots, 0) + memory_plan::RESERVE_BYTES) * 10 / 9 + 10;
        assert_eq!(plan.max_slots(free, 0), slots);
        free
    }

    #[test]
    fn more_slots_than_fit_run_lowered_with_the_same_tokens() -> Result<()> {
        let m = model();
        let prompts: Vec<PromptInput> =
            [5, 9, 3, 12, 7].iter().enumerate().map(|(i, &l)| prompt(&m, l, i as u64 + 20)).collect();
        let cfg = GenerationConfig::plain_greedy(10);
        let unlimited =
            BatcherConfig { slots: 4, prefill_batch: 2, cuda_graph: false, initial_new_tokens: 4, free_memory: None };
        let seq = Sequences { prompt_len: 12, max_new_tokens: 10 };
        let free = free_for(&m, &unlimited, seq, 2);
        let bc = BatcherConfig { free_memory: Some(free), ..unlimited.clone() };
        let lowered = generate_queue(&m, &prompts, &cfg, &bc)?;
        assert_eq!(lowered.fit.requested, 4);
        assert_eq!(lowered.fit.used, 2);
        assert_eq!(lowered.fit.limit, Some(2));
        assert_eq!(lowered.fit.free_bytes, Some(free));
        assert!(lowered.fit.lowered());
        // the same queue asked for 2 slots: same tokens, same steps
        let two = generate_queue(&m, &prompts, &cfg, &BatcherConfig { slots: 2, ..unlimited.clone() })?;
        assert_eq!(lowered.rows, two.rows);
        assert_eq!(lowered.decode_steps, two.decode_steps);
        assert_eq!(two.fit, SlotFit::unlimited(2));
        // 4 slots really run when nothing limits them (CPU: no device figure)
        let four = generate_queue(&m, &prompts, &cfg, &unlimited)?;
        assert_eq!(four.fit, SlotFit::unlimited(4));
        assert!(four.decode_steps < two.decode_steps);
        assert_eq!(four.rows, two.rows);
        // asked for no more than fit: nothing lowered
        let fits = generate_queue(&m, &prompts, &cfg, &BatcherConfig { slots: 2, ..bc.clone() })?;
        assert_eq!((fits.fit.requested, fits.fit.used, fits.fit.lowered()), (2, 2, false));
        Ok(())
    }

    #[test]
    fn not_one_slot_fitting_is_an_out_of_memory_error() {
        let m = model();
        let prompts = vec![prompt(&m, 6, 1)];
        let bc = BatcherConfig { free_memory: Some(memory_plan::RESERVE_BYTES), ..BatcherConfig::default() };
        let err = generate_queue(&m, &prompts, &GenerationConfig::plain_greedy(4), &bc).unwrap_err().to_string();
        assert!(err.contains("out of memory") && err.contains("6 prompt + 4 new tokens"), "{err}");
    }

    type Log = Arc<Mutex<Vec<SeqEvent>>>;

    /// A sink that records every event.
    fn recorder() -> (Sink, Log) {
        let log: Log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        (
            Box::new(move |e| {
                l.lock().unwrap().push(e);
                true
            }),
            log,
        )
    }

    /// The streamed tokens and the final row of a finished sequence; they must agree.
    fn streamed(log: &Log) -> Generated {
        let events = log.lock().unwrap().clone();
        let tokens: Vec<u32> =
            events.iter().filter_map(|e| if let SeqEvent::Token(t) = e { Some(*t) } else { None }).collect();
        let Some(SeqEvent::Done(g)) = events.last() else { panic!("not done: {events:?}") };
        assert_eq!(events.iter().filter(|e| matches!(e, SeqEvent::Done(_))).count(), 1);
        assert_eq!(&tokens, &g.tokens, "streamed tokens are the final row");
        g.clone()
    }

    #[test]
    fn live_admission_at_different_steps_gives_the_batch_paths_tokens() -> Result<()> {
        let m = model();
        let prompts: Vec<PromptInput> =
            [5, 9, 3, 12, 7, 4].iter().enumerate().map(|(i, &l)| prompt(&m, l, i as u64 + 10)).collect();
        // per-sequence settings: budgets, blockers and ignore_eos differ between sequences
        let cfgs: Vec<GenerationConfig> = (0..prompts.len())
            .map(|i| match i % 3 {
                0 => GenerationConfig::plain_greedy(12),
                1 => GenerationConfig {
                    ngram: Some(NgramBlocker { ngram_size: 2, window_size: 8, whitelist: vec![] }),
                    ..GenerationConfig::plain_greedy(9)
                },
                _ => GenerationConfig {
                    no_repeat_ngram_size: Some(2),
                    ignore_eos: true,
                    ..GenerationConfig::plain_greedy(14)
                },
            })
            .collect();
        // the batch path, each prompt with its settings
        let want: Vec<Generated> = prompts
            .iter()
            .zip(&cfgs)
            .map(|(p, c)| {
                let bc = BatcherConfig {
                    slots: 2,
                    prefill_batch: 2,
                    cuda_graph: false,
                    initial_new_tokens: 3,
                    free_memory: None,
                };
                Ok(generate_queue(&m, std::slice::from_ref(p), c, &bc)?.rows.remove(0))
            })
            .collect::<Result<_>>()?;
        // the live path: 3 slots, a cache for 2 generated tokens (it grows), prompts admitted at
        // steps 0, 0, 1, 4, 4 and 7 while others decode
        let bc =
            BatcherConfig { slots: 3, prefill_batch: 2, cuda_graph: false, initial_new_tokens: 2, free_memory: None };
        let mut b = Batcher::new(&m, &bc, 3, 6)?;
        let admit_at = [0usize, 0, 1, 4, 4, 7];
        let mut logs = Vec::new();
        let mut step = 0usize;
        let mut next = 0usize;
        loop {
            while next < prompts.len() && admit_at[next] <= step {
                let (sink, log) = recorder();
                b.admit(prompts[next].clone(), cfgs[next].clone(), sink, Cancel::new())?;
                logs.push(log);
                next += 1;
            }
            let ran = b.step()?;
            step += 1;
            if !ran && next == prompts.len() {
                break;
            }
            assert!(b.active() <= 3);
        }
        assert!(b.is_idle());
        for (i, log) in logs.iter().enumerate() {
            assert_eq!(streamed(log), want[i], "prompt {i} admitted at step {}", admit_at[i]);
        }
        Ok(())
    }

    #[test]
    fn a_cancelled_sequence_frees_its_slot_at_the_next_step() -> Result<()> {
        let m = model();
        let prompts: Vec<PromptInput> = (0..3).map(|i| prompt(&m, 6 + i, 40 + i as u64)).collect();
        let cfg = GenerationConfig { ignore_eos: true, ..GenerationConfig::plain_greedy(10) };
        let bc =
            BatcherConfig { slots: 2, prefill_batch: 2, cuda_graph: false, initial_new_tokens: 16, free_memory: None };
        let want: Vec<Generated> = generate_queue(&m, &prompts, &cfg, &bc)?.rows;
        let mut b = Batcher::new(&m, &bc, 2, 32)?;
        let cancel = Cancel::new();
        let (sink0, log0) = recorder();
        b.admit(prompts[0].clone(), cfg.clone(), sink0, cancel.clone())?;
        // the second sequence's receiver goes away after its third token
        let (seen, count) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (s, c) = (seen.clone(), count.clone());
        let sink1: Sink = Box::new(move |e| {
            let mut s = s.lock().unwrap();
            s.push(e);
            let keep = s.len() < 3;
            c.store(!keep, Ordering::SeqCst);
            keep
        });
        b.admit(prompts[1].clone(), cfg.clone(), sink1, Cancel::new())?;
        let (sink2, log2) = recorder();
        b.admit(prompts[2].clone(), cfg.clone(), sink2, Cancel::new())?;
        assert!(b.step()?);
        assert_eq!((b.active(), b.waiting()), (2, 1), "two slots, the third prompt waits");
        assert!(b.step()?);
        // the receiver of the second refused its third token: its slot was freed in that step
        assert!(count.load(Ordering::SeqCst));
        assert_eq!(b.active(), 1);
        cancel.cancel();
        // the next step frees the cancelled slot and admits the waiting prompt into a free slot
        assert!(b.step()?);
        assert_eq!((b.active(), b.waiting()), (1, 0));
        while b.step()? {}
        assert_eq!(seen.lock().unwrap().len(), 3, "nothing after the refused token");
        let events0 = log0.lock().unwrap().clone();
        assert!(!events0.iter().any(|e| matches!(e, SeqEvent::Done(_))), "the cancelled one never finishes");
        assert!(events0.len() < 10);
        // what the cancelled sequences got before leaving is their batch tokens' beginning
        let t0: Vec<u32> =
            events0.iter().filter_map(|e| if let SeqEvent::Token(t) = e { Some(*t) } else { None }).collect();
        assert_eq!(t0, want[0].tokens[..t0.len()]);
        // the waiting prompt, decoded beside them and after them, has its batch tokens
        assert_eq!(streamed(&log2), want[2]);
        Ok(())
    }

    #[test]
    fn the_live_queue_feeds_a_running_batcher_from_other_threads() -> Result<()> {
        let m = model();
        let prompts: Vec<PromptInput> = (0..5).map(|i| prompt(&m, 3 + 2 * i, 70 + i as u64)).collect();
        let cfg = GenerationConfig::plain_greedy(11);
        let bc =
            BatcherConfig { slots: 2, prefill_batch: 2, cuda_graph: false, initial_new_tokens: 4, free_memory: None };
        let want = generate_queue(&m, &prompts, &cfg, &bc)?.rows;
        let queue = LiveQueue::new();
        let mut logs = Vec::new();
        // a prompt cancelled while it waits in the queue never reaches the batcher
        let cancelled = Cancel::new();
        let (sink, dropped) = recorder();
        queue
            .submit(Submission { prompt: prompts[0].clone(), cfg: cfg.clone(), sink, cancel: cancelled.clone() })
            .unwrap();
        cancelled.cancel();
        std::thread::scope(|s| {
            let runner = s.spawn(|| {
                let mut b = Batcher::new(&m, &bc, 2, 8)?;
                b.run(&queue)
            });
            for p in &prompts {
                let (sink, log) = recorder();
                queue.submit(Submission { prompt: p.clone(), cfg: cfg.clone(), sink, cancel: Cancel::new() }).unwrap();
                logs.push(log);
                std::thread::sleep(Duration::from_millis(3));
            }
            // a sampled prompt is refused alone
            let (sink, refused) = recorder();
            let sampled =
                GenerationConfig { sampling: Sampling::TopP { temperature: 1.0, top_p: 0.9, seed: 1 }, ..cfg.clone() };
            queue.submit(Submission { prompt: prompts[1].clone(), cfg: sampled, sink, cancel: Cancel::new() }).unwrap();
            queue.close();
            runner.join().unwrap()?;
            assert!(matches!(refused.lock().unwrap().as_slice(), [SeqEvent::Failed(m)] if m.contains("greedily")));
            Ok::<(), candle_core::Error>(())
        })?;
        assert!(dropped.lock().unwrap().is_empty());
        for (i, log) in logs.iter().enumerate() {
            assert_eq!(streamed(log), want[i], "prompt {i}");
        }
        assert!(queue
            .submit(Submission { prompt: prompts[0].clone(), cfg, sink: Box::new(|_| true), cancel: Cancel::new() })
            .is_err());
        Ok(())
    }
    /// Live admission on the GPU: the decode step's CUDA graph keeps replaying while prompts are
    /// admitted, sequences finish and one is cancelled, and the cache grows (recaptures); every
    /// sequence's tokens equal the same schedule decoded eagerly.
    #[test]
    #[ignore = "needs a CUDA build (--features cuda) and a GPU"]
    fn live_admission_with_graph_replays_equals_eager_on_gpu() -> Result<()> {
        let gpu = ops::cuda_device(0)?;
        let m = DecoderModel::new(
            &crate::decoder::DecoderConfig::deepseek_ocr(),
            crate::synth::synth_var_builder(0, DType::BF16, &gpu),
        )?;
        let prompts: Vec<PromptInput> = [40usize, 70, 55, 33, 61]
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let ids: Vec<u32> =
                    (0..len as u64).map(|j| (crate::synth::splitmix64_at(80 + i as u64, j) % 100_000) as u32).collect();
                let t = Tensor::new(ids.as_slice(), &gpu)?.unsqueeze(0)?;
                Ok(PromptInput { embeds: m.embed(&t)?.squeeze(0)?, ids })
            })
            .collect::<Result<_>>()?;
        let budgets = [48usize, 20, 36, 30, 24];
        let admit_at = [0usize, 0, 3, 9, 9];
        let run = |graph: bool| -> Result<(Vec<Vec<SeqEvent>>, bool)> {
            let bc = BatcherConfig {
                slots: 3,
                prefill_batch: 2,
                cuda_graph: graph,
                initial_new_tokens: 8,
                free_memory: None,
            };
            let mut b = Batcher::new(&m, &bc, 3, 48)?;
            let (mut logs, mut next, mut step) = (Vec::new(), 0usize, 0usize);
            let cancel = Cancel::new();
            let mut captured = false;
            loop {
                while next < prompts.len() && admit_at[next] <= step {
                    let (sink, log) = recorder();
                    let cfg = GenerationConfig { ignore_eos: true, ..GenerationConfig::plain_greedy(budgets[next]) };
                    let c = if next == 1 { cancel.clone() } else { Cancel::new() };
                    b.admit(prompts[next].clone(), cfg, sink, c)?;
                    logs.push(log);
                    next += 1;
                }
                if step == 12 {
                    cancel.cancel(); // the second sequence leaves mid-decode
                }
                let ran = b.step()?;
                captured |= b.graph();
                step += 1;
                if !ran && next == prompts.len() {
                    break;
                }
            }
            Ok((logs.iter().map(|l| l.lock().unwrap().clone()).collect(), captured))
        };
        let ((eager, _), (graph, captured)) = (run(false)?, run(true)?);
        assert!(captured, "the decode step was captured");
        assert_eq!(eager, graph, "graph replays across admissions differ from eager decoding");
        for (i, events) in eager.iter().enumerate() {
            let tokens = events.iter().filter(|e| matches!(e, SeqEvent::Token(_))).count();
            if i == 1 {
                assert!(tokens < budgets[1], "the cancelled sequence stopped early: {tokens}");
            } else {
                assert_eq!(tokens, budgets[i], "sequence {i}");
            }
        }
        Ok(())
    }
}
