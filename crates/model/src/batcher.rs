//! Continuous batching: a queue of prompts decoded through a fixed number of slots, a finished
//! sequence's slot refilled at once with the next prompt (the GPU throughput path).
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
//! Outputs equal [`generate`]'s for every prompt (tests).

use std::time::{Duration, Instant};

use candle_core::{DType, Result, Tensor};

use crate::decoder::{DecoderModel, KvCache, SlotCache};
use crate::generate::{
    argmax, generate, padded_batch, BatchOutput, Generated, GenerationConfig, PromptInput, Sampling,
};
use crate::ngram::no_repeat_ngram_banned;
use crate::ops::{self, StepGraph, NO_BAN};

/// Position of an idle slot: beyond any capacity, so its cache writes are dropped.
const PARKED: u32 = u32::MAX / 2;

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
}

impl Default for BatcherConfig {
    fn default() -> Self {
        BatcherConfig { slots: 32, prefill_batch: 8, cuda_graph: true, initial_new_tokens: 1024 }
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
}

struct Slot {
    row: usize,
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
    let mut out: Vec<Generated> = vec![Generated { tokens: Vec::new(), stopped_at_eos: false }; n];
    if n == 0 || cfg.max_new_tokens == 0 {
        return Ok(QueueOutput {
            rows: out,
            prefill: Duration::ZERO,
            decode: Duration::ZERO,
            decode_steps: 0,
            graph: false,
        });
    }
    let slots = bc.slots.clamp(1, n);
    let longest = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    let max_capacity = longest + cfg.max_new_tokens;
    let mut capacity = longest + cfg.max_new_tokens.min(bc.initial_new_tokens.max(1));
    let device = model.device().clone();
    let mut cache = model.new_slot_cache(slots, capacity)?;
    let ids_buf = Tensor::zeros(slots, DType::U32, &device)?;
    let pos_buf = Tensor::zeros(slots, DType::U32, &device)?;
    let ban_buf = Tensor::full(NO_BAN, (slots, MAX_BAN), &device)?;

    let mut state: Vec<Option<Slot>> = (0..slots).map(|_| None).collect();
    let mut host_ids = vec![0u32; slots];
    let mut host_pos = vec![PARKED; slots];
    let mut host_ban = vec![NO_BAN; slots * MAX_BAN];
    let mut next_prompt = 0usize;
    let (mut prefill, mut decode) = (Duration::ZERO, Duration::ZERO);
    let mut steps = 0usize;
    let mut graph: Option<StepGraph> = None;
    // float32 keeps host routing in the MoE (a read-back per layer), which a graph cannot capture:
    // decode eagerly without a doomed capture attempt (and its warning)
    let mut graph_failed = !bc.cuda_graph || model.dtype() == candle_core::DType::F32;

    let step = |cache: &SlotCache| -> Result<()> {
        let logits = model.forward_slots(&ids_buf, &pos_buf, cache)?;
        ops::apply_ban(&logits, &ban_buf)?;
        let next = ops::argmax_rows(&logits)?;
        ids_buf.slice_set(&next, 0, 0)?;
        ops::advance(&pos_buf)
    };

    loop {
        // refill free slots
        let t = Instant::now();
        let mut changed = false;
        while next_prompt < n && state.iter().any(Option::is_none) {
            let free: Vec<usize> = (0..slots).filter(|&s| state[s].is_none()).collect();
            let take = free.len().min(bc.prefill_batch.max(1)).min(n - next_prompt);
            let rows: Vec<usize> = (next_prompt..next_prompt + take).collect();
            next_prompt += take;
            let batch: Vec<PromptInput> = rows.iter().map(|&r| prompts[r].clone()).collect();
            let (kv, first) = prefill_batch(model, &batch)?;
            let mut free = free.into_iter();
            for (i, &row) in rows.iter().enumerate() {
                let mut scores = first[i].clone();
                apply_blockers(&mut scores, cfg, &prompts[row].ids, &[]);
                let token = argmax(&scores);
                out[row].tokens.push(token);
                if finished(&mut out[row], token, cfg) {
                    continue;
                }
                let Some(slot) = free.next() else {
                    candle_core::bail!("continuous batching: no free slot for prompt {row}")
                };
                let len = cache.insert_from(&kv, i, slot)?;
                host_ids[slot] = token;
                host_pos[slot] = len as u32;
                set_ban(&mut host_ban[slot * MAX_BAN..(slot + 1) * MAX_BAN], cfg, &prompts[row].ids, &out[row].tokens)?;
                state[slot] = Some(Slot { row });
                changed = true;
            }
        }
        if changed {
            ops::write_u32(&ids_buf, &host_ids)?;
            ops::write_u32(&pos_buf, &host_pos)?;
            ops::write_u32(&ban_buf, &host_ban)?;
        }
        prefill += t.elapsed();
        if state.iter().all(Option::is_none) {
            break;
        }

        // room for the column every active slot writes next
        let needed = (0..slots).filter(|&s| state[s].is_some()).map(|s| host_pos[s] as usize + 1).max().unwrap_or(0);
        if needed > capacity {
            capacity = (capacity * 2).max(needed).min(max_capacity);
            graph = None; // it holds the old cache's addresses
            cache = cache.grown(capacity)?;
        }

        // one decode step for every slot
        let t = Instant::now();
        match &graph {
            Some(g) => g.launch()?,
            None => {
                if graph_failed {
                    step(&cache)?;
                } else {
                    // the first step runs eagerly (it loads kernels and fills candle's parameter
                    // cache), then the same step is captured for the following ones
                    graph = ops::capture_after_warmup(&device, &|| step(&cache))?;
                    graph_failed = graph.is_none();
                }
            }
        }
        let next = ids_buf.to_vec1::<u32>()?;
        decode += t.elapsed();
        steps += 1;

        let mut ban_changed = false;
        let mut freed = false;
        for s in 0..slots {
            host_pos[s] = host_pos[s].saturating_add(1);
            host_ids[s] = next[s];
            let Some(slot) = &state[s] else { continue };
            let row = slot.row;
            let token = next[s];
            out[row].tokens.push(token);
            let row_ban = &mut host_ban[s * MAX_BAN..(s + 1) * MAX_BAN];
            if finished(&mut out[row], token, cfg) {
                state[s] = None;
                freed = true;
                host_pos[s] = PARKED; // idle: writes dropped, nothing read
                if row_ban[0] != NO_BAN {
                    row_ban.fill(NO_BAN);
                    ban_changed = true;
                }
                continue;
            }
            let before = row_ban[0] != NO_BAN;
            let now = set_ban(row_ban, cfg, &prompts[row].ids, &out[row].tokens)?;
            ban_changed |= before || now;
        }
        if ban_changed {
            ops::write_u32(&ban_buf, &host_ban)?;
        }
        if freed {
            // park the freed slots (a refill overwrites them again)
            ops::write_u32(&pos_buf, &host_pos)?;
        }
    }
    Ok(QueueOutput { rows: out, prefill, decode, decode_steps: steps, graph: graph.is_some() })
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
    Ok(QueueOutput { rows, prefill, decode, decode_steps: steps, graph: false })
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
            let bc = BatcherConfig { slots: 2, prefill_batch: 2, cuda_graph: false, initial_new_tokens: 3 };
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
}
