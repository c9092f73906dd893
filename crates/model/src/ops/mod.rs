//! Fused ops of the fast GPU paths, as candle custom ops with a CPU and a CUDA implementation each.
//! The CPU code is the specification (tested against plain candle ops in CI); the CUDA kernels
//! (`kernels.cu`, compiled to PTX by `build.rs` with the `cuda` feature) compute the same in float32
//! and round where the CPU code rounds.
//!
//! One op (or one small family) per file; everything public is re-exported here:
//! - [`rms_norm`] (`rms_norm.rs`): RMSNorm with the reference's roundings (normalise, round, then
//!   weight), one pass.
//! - [`swiglu`] (`swiglu.rs`): `silu(gate) ⊙ up` of a fused gate/up projection, one pass.
//! - [`rope_q`], [`kv_rope_write`] (`rope.rs`): the decode step's fused `q|k|v` projection split,
//!   rotate-half RoPE at each slot's position, keys/values written into the slot cache.
//! - [`kv_insert`], [`decode_attention`] (`slot_cache.rs`): a prefilled prompt's keys/values copied
//!   into columns `0..len` of one slot; one query per slot and head against the slot's first
//!   `pos + 1` columns.
//! - [`moe_route`], [`moe_gate_up`], [`moe_down`] (`moe.rs`): a small batch's MoE without sorting:
//!   router (softmax, top-k, weights) in one pass, then one GEMV per (token, expert) pair fused with
//!   SwiGLU, then the down GEMV weighted and summed per token.
//! - [`apply_ban`], [`argmax_rows`], [`advance`], [`write_u32`] (`step.rs`): banned token ids set to
//!   −∞ (repetition blockers on the device), the first maximum of each float32 row (the greedy
//!   choice), `pos += 1` for every slot, host values into a persistent device buffer (inputs of a
//!   captured CUDA graph).
//! - [`vit_attention`] (`vit_attention.rs`): the vision encoder's attention straight from the q|k|v
//!   projection, whole grid or SAM's windows, SAM's decomposed relative positions computed on the
//!   fly (tensor cores on CUDA, bf16/f16, head_dim 64); nothing n × n is stored.
//! - [`bias_act`] (`bias_act.rs`, activations [`Act`] in `act.rs`): a linear layer's bias,
//!   activation and residual add in one pass.
//! - [`StepGraph`], [`capture_after_warmup`], [`cuda_device`], [`cuda_profiler`],
//!   [`device_memory_used`], [`device_memory_free`], [`stream_capturing`] (`device.rs`): CUDA graphs
//!   of a decode step and the device.
//! - [`grouped_moe_gemm`], [`plan_moe_chunks`], [`run_moe_chunks`] (`grouped_moe.rs`): candle's
//!   grouped MoE GEMM called only within its limits, checked in Rust first (its `is_prefill`
//!   variant runs thrust, which throws a C++ exception inside a CUDA graph capture or without free
//!   memory), and the chunks the MoE's device path runs it in.
//!
//! Support files: `elem.rs` (the three float dtypes and CPU storage access), `diff.rs`
//! (differentiable forms), `cuda/` (the kernel launchers: `decode.rs`, `vision.rs`, `device.rs`;
//! they depend on candle only, the op files depend on them, never the reverse), `tests.rs` (the
//! decode ops against plain candle ops).
//!
//! Training: none of the fused ops has a backward. Called on tensors that autograd tracks,
//! [`swiglu`], [`rms_norm`] and [`bias_act`] compute the same function from differentiable candle
//! primitives (`diff.rs`), and [`vit_attention_supported`] answers false; [`softmax_last_dim`],
//! [`layer_norm`] and [`rope`] wrap candle-nn's fused ops the same way.
//!
//! # Invariants
//! - Slot caches are `(2, slots, kv_heads, capacity, head_dim)` (keys, then values), contiguous.
//! - Positions are `u32` per slot: the column the next token is written to; a slot attends to
//!   columns `0..=pos`. Writes at a position ≥ the capacity are dropped (idle slots keep
//!   advancing); the decoder never lets an active slot get there.
//! - Nothing here synchronises with the host: every op is safe inside CUDA graph capture
//!   ([`grouped_moe_gemm`] by refusing, and [`plan_moe_chunks`] by never planning, the thrust
//!   variant there).

// Kernel launches and device allocations are `unsafe` in cudarc. SAFETY (for the whole module):
// every launch passes buffers whose sizes are checked against the shapes here, outputs are fully
// written by their kernel before use, and all work runs on the device's single stream.
#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
mod cuda;

mod act;
mod bias_act;
mod device;
mod diff;
mod elem;
mod grouped_moe;
mod moe;
mod rms_norm;
mod rope;
mod slot_cache;
mod step;
mod swiglu;
mod vit_attention;

pub use act::Act;
pub use bias_act::bias_act;
pub use device::{
    capture_after_warmup, cuda_device, cuda_profiler, device_memory_free, device_memory_used, stream_capturing,
    StepGraph,
};
pub use diff::{layer_norm, rope, softmax_last_dim, tracks_grad};
pub use grouped_moe::{
    check_grouped_call, grouped_moe_gemm, moe_chunk_tokens, plan_moe_chunks, run_moe_chunks, MoeChunk, MoeChunkLimits,
    MoeKernel, StreamState, ARG_SORT_MAX_COLS, LIGHT_SCAN_MAX_EXPERTS, THRUST_MIN_FREE_BYTES, THRUST_SCAN_MIN_TOKENS,
};
pub use moe::{moe_down, moe_gate_up, moe_route, RouteSpec};
pub use rms_norm::rms_norm;
pub use rope::{kv_rope_write, rope_q};
pub use slot_cache::{decode_attention, kv_insert};
pub use step::{advance, apply_ban, argmax_rows, write_u32, NO_BAN};
pub use swiglu::swiglu;
pub use vit_attention::{vit_attention, vit_attention_supported, VitGrid};

#[cfg(test)]
mod tests;
