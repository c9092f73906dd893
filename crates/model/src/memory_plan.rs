//! Device memory of the continuous batcher: the bytes one decoder slot needs and the largest slot
//! count that fits a free-memory figure (issue 16: "slots and KV memory sized from free GPU memory";
//! docs/PERFORMANCE.md, "How many slots fit").
//!
//! # What a slot costs
//! [`SlotMemory::new`] counts what [`crate::batcher`] allocates for sequences of one shape (prompt
//! length, token budget), in the model's dtype:
//! - **key/value cache** ([`crate::decoder::SlotCache`]): every layer holds keys and values of
//!   `kv_heads × head_dim` per column, so a column of one slot is `layers · 2 · kv_heads · head_dim ·
//!   dtype` bytes (61,440 for DeepSeek-OCR in bf16). The cache starts at [`initial_capacity`]
//!   columns and doubles ([`grown_capacity`]) up to `prompt + max_new_tokens`; a growth copies
//!   into a new cache before the old one is freed, so at that moment a slot holds the old and the
//!   new columns together ([`SlotMemory::peak_columns`]).
//! - **slot state**: the id, position and banned-id buffers (`4 + 4 + 4 · MAX_BAN` bytes).
//! - **decode step** (per slot, live with the final cache, and held by the CUDA graph that captures
//!   it): what one layer allocates for a token (norms, q·k·v, attention output and the split-key
//!   attention's float32 scratch at the final capacity, the MoE's router, sort, grouped-GEMM and
//!   shared-expert buffers, or the dense MLP's when that is larger), the residual stream, and the
//!   logits (`vocab` in the dtype and in float32). Summed, not overlapped: an upper bound.
//! - **prefill** (per prompt of a prefill batch, at most `prefill_batch` at a time): its left-padded
//!   key/value cache (at least 64 columns), the layer buffers of every prompt token, the attention
//!   scores (`heads × prompt²` in the dtype and twice in float32, then the probabilities) and mask,
//!   and the last position's logits.
//! - **prompt embeddings** (per page held in the queue until its prefill): `prompt × hidden` in the
//!   dtype. They are allocated before the batcher starts, so [`crate::batcher::generate_queue`],
//!   which reads the free memory after them, does not count them; a caller planning before the
//!   pages are encoded (`bench`) does.
//!
//! # The margin
//! Of a free-memory figure only [`usable_bytes`] are planned: 10 % and [`RESERVE_BYTES`] more are
//! kept back for what the count leaves out (the allocator's pool and fragmentation, cuBLAS
//! workspaces, the grouped MoE GEMM's thrust scratch, the host-side vision encoder of the next pages).
//! The out-of-memory retry of `bench` stays the backstop when the figure is still too high.

use candle_core::DType;

use crate::batcher::{BatcherConfig, MAX_BAN};
use crate::decoder::DecoderConfig;

/// Bytes of a free-memory figure always kept back (beyond the 10 % of [`usable_bytes`]).
pub const RESERVE_BYTES: u64 = 512 << 20;

/// Keys/values columns the decoder's left-padded prefill cache allocates at least (`KvCache::append`).
const PREFILL_MIN_COLUMNS: usize = 64;

/// Keys per split of the CUDA decode attention (`ATT_CHUNK` in `kernels.cu`): its float32 scratch
/// holds `d + 2` values per slot, head and split.
const ATTENTION_CHUNK: usize = 32;

/// Of `free` bytes, what a plan may use: `free − free / 10 − RESERVE_BYTES` (0 when less is free).
pub fn usable_bytes(free: u64) -> u64 {
    free.saturating_sub(free / 10).saturating_sub(RESERVE_BYTES)
}

/// Columns the batcher allocates per slot at the start of a queue whose longest prompt is
/// `longest` tokens: the prompt and `max_new_tokens`, at most `initial_new_tokens` of them
/// ([`BatcherConfig::initial_new_tokens`]).
pub fn initial_capacity(longest: usize, max_new_tokens: usize, initial_new_tokens: usize) -> usize {
    longest + max_new_tokens.min(initial_new_tokens.max(1))
}

/// Columns a slot cache of `capacity` columns grows to when a sequence needs `needed`: twice as
/// many, at least `needed`, at most `max_capacity` (the longest prompt + budget admitted) unless
/// `needed` is more.
pub fn grown_capacity(capacity: usize, needed: usize, max_capacity: usize) -> usize {
    (capacity * 2).max(needed).min(max_capacity.max(needed))
}

/// The shape of the sequences a plan is for: every page has `prompt_len` prompt tokens (vision
/// tokens + text) and generates up to `max_new_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequences {
    pub prompt_len: usize,
    pub max_new_tokens: usize,
}

/// What one decoder slot costs on the device, and the slot counts that fit (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMemory {
    pub seq: Sequences,
    /// One key/value column of one slot: every layer, keys and values.
    pub column_bytes: u64,
    /// The cache's capacity at the start and after each growth, in columns.
    pub capacities: Vec<usize>,
    /// Most columns a slot holds at once (old and new cache during a growth).
    pub peak_columns: usize,
    /// Per slot: id, position and banned-id buffers.
    pub state_bytes: u64,
    /// Per slot: the decode step's buffers (see the module docs), at the final capacity.
    pub step_bytes: u64,
    /// Per prompt being prefilled.
    pub prefill_bytes: u64,
    /// Prompts prefilled together.
    pub prefill_batch: usize,
    /// Per page waiting in the queue: its prompt embeddings.
    pub prompt_bytes: u64,
}

impl SlotMemory {
    /// The memory of slots decoding `seq` with `cfg` in `dtype` through a batcher configured as
    /// `bc` (its `initial_new_tokens` and `prefill_batch`; its slot count is not used).
    pub fn new(cfg: &DecoderConfig, dtype: DType, seq: Sequences, bc: &BatcherConfig) -> SlotMemory {
        let b = dtype.size_in_bytes() as u64;
        let (hidden, vocab) = (cfg.hidden_size as u64, cfg.vocab_size as u64);
        let (heads, kv, d) = (cfg.num_attention_heads as u64, cfg.num_key_value_heads as u64, cfg.head_dim() as u64);
        let layers = cfg.num_hidden_layers as u64;
        let column_bytes = layers * 2 * kv * d * b;

        // the capacity schedule of one queue of such sequences (Batcher::new, Batcher::step)
        let max_capacity = seq.prompt_len + seq.max_new_tokens;
        // the last decode step writes the column of the budget's last input token
        let last_needed = (seq.prompt_len + seq.max_new_tokens).saturating_sub(1).max(1);
        let mut capacities = vec![initial_capacity(seq.prompt_len, seq.max_new_tokens, bc.initial_new_tokens).max(1)];
        let mut peak_columns = capacities[0];
        while let Some(&cap) = capacities.last() {
            if last_needed <= cap {
                break;
            }
            let next = grown_capacity(cap, cap + 1, max_capacity);
            peak_columns = peak_columns.max(cap + next);
            capacities.push(next);
        }
        let final_columns = *capacities.last().unwrap_or(&0) as u64;

        let layer = token_layer_bytes(cfg, b);
        let splits = final_columns.div_ceil(ATTENTION_CHUNK as u64).max(1);
        let attention_scratch = heads * splits * (d + 2) * 4;
        let residual = 3 * hidden * b;
        let logits = vocab * (b + 4) + hidden * b; // lm_head in the dtype, float32 copy, final norm
        let step_bytes = layer + attention_scratch + residual + logits;

        let p = seq.prompt_len as u64;
        let prefill_columns = seq.prompt_len.max(PREFILL_MIN_COLUMNS) as u64;
        let prefill_cache = layers * 2 * kv * prefill_columns * d * b;
        let slot_copy = 2 * kv * p * d * b; // insert_from's stacked keys/values of one layer
        let rotary = 2 * p * (d / 2) * b;
        let scores = heads * p * p * (b + 4 + 4 + b) + p * p * 4; // scores, masked, softmax, probabilities; mask
        let prefill_bytes = prefill_cache + slot_copy + rotary + p * (layer + residual) + scores + logits;

        SlotMemory {
            seq,
            column_bytes,
            capacities,
            peak_columns,
            state_bytes: 4 + 4 + 4 * MAX_BAN as u64,
            step_bytes,
            prefill_bytes,
            prefill_batch: bc.prefill_batch.max(1),
            prompt_bytes: p * hidden * b,
        }
    }

    /// Columns per slot once the cache has stopped growing.
    pub fn final_columns(&self) -> usize {
        self.capacities.last().copied().unwrap_or(0)
    }

    /// Bytes of `slots` slots with `pages` prompt embeddings held beside them: the larger of the
    /// cache during its last growth and the decoding state (final cache, step buffers, a prefill
    /// batch), plus the slot state and the pages.
    pub fn bytes_for(&self, slots: usize, pages: usize) -> u64 {
        let n = slots as u64;
        let growing = n * self.peak_columns as u64 * self.column_bytes;
        let prefilling = self.prefill_batch.min(slots) as u64 * self.prefill_bytes;
        let decoding = n * (self.final_columns() as u64 * self.column_bytes + self.step_bytes) + prefilling;
        growing.max(decoding) + n * self.state_bytes + pages as u64 * self.prompt_bytes
    }

    /// Bytes per slot at a large slot count (the prefill batch's share left out), with
    /// `pages_per_slot` prompt embeddings each.
    pub fn bytes_per_slot(&self, pages_per_slot: usize) -> u64 {
        let growing = self.peak_columns as u64 * self.column_bytes;
        let decoding = self.final_columns() as u64 * self.column_bytes + self.step_bytes;
        growing.max(decoding) + self.state_bytes + pages_per_slot as u64 * self.prompt_bytes
    }

    /// The largest slot count whose [`SlotMemory::bytes_for`] (with `pages_per_slot` pages per slot)
    /// fits the [`usable_bytes`] of `free`; 0 when not even one does.
    pub fn max_slots(&self, free: u64, pages_per_slot: usize) -> usize {
        let usable = usable_bytes(free);
        let fits = |n: usize| self.bytes_for(n, n * pages_per_slot) <= usable;
        if !fits(1) {
            return 0;
        }
        // bytes_for grows with n: the per-slot bound gives the bracket, bisection the exact count
        let mut hi = (usable / self.bytes_per_slot(pages_per_slot).max(1)) as usize + 1;
        let mut lo = 1;
        while fits(hi) {
            lo = hi;
            hi *= 2;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// Bytes one decoder layer allocates for one token (upper bound: its attention and its larger
/// feed-forward half summed, as if nothing were freed in between).
fn token_layer_bytes(cfg: &DecoderConfig, b: u64) -> u64 {
    let hidden = cfg.hidden_size as u64;
    let (heads, kv, d) = (cfg.num_attention_heads as u64, cfg.num_key_value_heads as u64, cfg.head_dim() as u64);
    // input norm, q·k·v, rotated q, attention output, o_proj
    let attention = hidden * b + (heads + 2 * kv) * d * b + heads * d * b + heads * d * b + hidden * b;
    let inter = cfg.intermediate_size as u64;
    // post-attention norm, gate·up, SwiGLU, down
    let dense = hidden * b + 2 * inter * b + inter * b + hidden * b;
    let moe = match cfg.n_routed_experts {
        Some(experts) => {
            let (e, k, w) = (experts as u64, cfg.num_experts_per_tok as u64, cfg.moe_intermediate_size as u64);
            let shared = cfg.n_shared_experts.unwrap_or(0) as u64 * w;
            let router = hidden * 4 + e * 4 + e * 4 + e * 4 + k * 4 + k * 4 + 2 * k * 4; // x f32, logits, probs, arg_sort, top-k ids/weights, sorted pairs
            let experts = k * 2 * w * b + k * w * b + k * hidden * b + k * hidden * 4 + hidden * 4 + hidden * b;
            let shared = 2 * shared * b + shared * b + hidden * b;
            hidden * b + router + experts + shared + hidden * b // norm, …, routed + shared sum
        }
        None => 0,
    };
    attention + dense.max(moe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use occ_core::{Mode, Prompt, TextTokenizer};

    /// The prompt length of a page of `mode` with the free-OCR prompt (BOS, vision slots, text).
    fn prompt_len(mode: Mode) -> usize {
        let tok = TextTokenizer::deepseek_ocr().unwrap();
        let (w, h) = mode.default_canvas();
        let slots = mode.vision_tokens(w, h).unwrap().slots as usize;
        crate::prompt::build_prompt(&tok, &Prompt::FreeOcr, &[slots]).unwrap().ids.len()
    }

    fn plan(mode: Mode, new_tokens: usize) -> SlotMemory {
        let seq = Sequences { prompt_len: prompt_len(mode), max_new_tokens: new_tokens };
        SlotMemory::new(&DecoderConfig::deepseek_ocr(), DType::BF16, seq, &BatcherConfig::default())
    }

    const GB80: u64 = 80_000_000_000;

    #[test]
    fn prompt_lengths_of_small_and_base() {
        // Small: 10×10 vision tokens + 10 newlines + 1 separator; Base: 16×16 + 16 + 1; both with
        // BOS, "<image>" spliced, "\nFree OCR." (5 text tokens with BOS)
        assert_eq!(prompt_len(Mode::Small), 116);
        assert_eq!(prompt_len(Mode::Base), 278);
    }

    #[test]
    fn column_and_layer_bytes_of_deepseek_ocr_in_bf16() {
        let p = plan(Mode::Small, 512);
        assert_eq!(p.column_bytes, 12 * 2 * 10 * 128 * 2); // 61,440
        assert_eq!(p.state_bytes, 8 + 4 * 256);
        // attention: 2,560 + 7,680 + 2,560 + 2,560 + 2,560 = 17,920; MoE (larger than the dense
        // layer's 2,560 + 27,392 + 13,696 + 2,560 = 46,208): norm 2,560, router 5,120 + 768 + 96 = 5,984,
        // experts 21,504 + 10,752 + 15,360 + 30,720 + 5,120 + 2,560 = 86,016, shared 7,168 + 3,584 +
        // 2,560 = 13,312, sum 2,560 → 110,432
        assert_eq!(token_layer_bytes(&DecoderConfig::deepseek_ocr(), 2), 17_920 + 110_432);
    }

    #[test]
    fn small_at_512_tokens_never_grows() {
        let p = plan(Mode::Small, 512);
        assert_eq!(p.capacities, [116 + 512]);
        assert_eq!(p.peak_columns, 628);
        // step: layer 128,352 + attention scratch 10 heads × 20 splits × 130 × 4 = 104,000 + residual
        // 7,680 + logits 129,280 × 6 + 2,560 = 778,240 → 1,018,272
        assert_eq!(p.step_bytes, 1_018_272);
        // per slot: 628 × 61,440 = 38,584,320 + step + state 1,032
        assert_eq!(p.bytes_per_slot(0), 38_584_320 + 1_018_272 + 1_032);
        assert_eq!(p.prompt_bytes, 116 * 1280 * 2);
    }

    #[test]
    fn base_at_2048_tokens_grows_once_and_holds_both_caches_then() {
        let p = plan(Mode::Base, 2048);
        // 278 + 1,024 columns, then min(2 × 1,302, 278 + 2,048) = 2,326
        assert_eq!(p.capacities, [1302, 2326]);
        assert_eq!(p.peak_columns, 1302 + 2326);
        // growing: 3,628 × 61,440 = 222,904,320 beats decoding: 2,326 × 61,440 = 142,909,440 + step
        assert_eq!(p.bytes_per_slot(0), 222_904_320 + 1_032);
        let small = plan(Mode::Small, 2048);
        assert_eq!(small.capacities, [1140, 2164]);
        assert_eq!(small.bytes_per_slot(0), (1140 + 2164) * 61_440 + 1_032);
    }

    #[test]
    fn prefill_bytes_of_a_small_prompt() {
        let p = plan(Mode::Small, 512);
        // cache 12 × 2 × 10 × 116 × 128 × 2 = 7,127,040; slot copy 593,920; rotary 29,696;
        // 116 × (128,352 + 7,680) = 15,779,712; scores 10 × 116² × 12 + 116² × 4 = 1,668,544;
        // logits 778,240
        assert_eq!(p.prefill_bytes, 7_127_040 + 593_920 + 29_696 + 15_779_712 + 1_668_544 + 778_240);
        assert_eq!(p.prefill_batch, 8);
    }

    #[test]
    fn largest_batches_on_80_gb_free() {
        // usable: 80e9 − 8e9 − 536,870,912 = 71,463,129,088 bytes
        assert_eq!(usable_bytes(GB80), 71_463_129_088);
        let cases = [(Mode::Small, 512), (Mode::Small, 2048), (Mode::Base, 512), (Mode::Base, 2048)];
        for (mode, tokens) in cases {
            let p = plan(mode, tokens);
            let n = p.max_slots(GB80, 0);
            assert!(p.bytes_for(n, 0) <= usable_bytes(GB80), "{mode} {tokens}");
            assert!(p.bytes_for(n + 1, 0) > usable_bytes(GB80), "{mode} {tokens}");
        }
        // Small 512: (71,463,129,088 − 8 prefills × 25,977,152) / 39,603,624 per slot
        let small = plan(Mode::Small, 512);
        assert_eq!(small.prefill_bytes, 25_977_152);
        assert_eq!(small.max_slots(GB80, 0), 1799);
        // Base 2048: the growth's 3,628 columns bound it: 71,463,129,088 / 222,905,352
        assert_eq!(plan(Mode::Base, 2048).max_slots(GB80, 0), 320);
    }

    #[test]
    fn the_inverse_and_small_figures() {
        let p = plan(Mode::Small, 512);
        assert_eq!(p.max_slots(0, 0), 0);
        assert_eq!(p.max_slots(RESERVE_BYTES, 0), 0);
        let one = p.bytes_for(1, 1);
        assert_eq!(one, 38_584_320 + 1_018_272 + p.prefill_bytes + 1_032 + p.prompt_bytes);
        // just enough usable memory for one slot with its page, then for three
        let free_for = |bytes: u64| (bytes + RESERVE_BYTES) * 10 / 9 + 10;
        assert_eq!(p.max_slots(free_for(one), 1), 1);
        assert_eq!(p.max_slots(free_for(p.bytes_for(3, 3)), 1), 3);
        assert_eq!(p.max_slots(free_for(p.bytes_for(3, 3)) - 1000, 1), 2);
    }
}
