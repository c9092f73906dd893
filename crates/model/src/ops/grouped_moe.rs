//! The guarded call of candle's grouped MoE GEMM (`candle_nn::moe::moe_gemm`) and the plan of the
//! chunks the MoE's device path runs it in (docs/PERFORMANCE.md, "Batch 256 aborted the process").
//!
//! `moe_gemm` calls `moe_gemm_wmma`, host C++ that candle-kernels compiles with nvcc into the static
//! `libmoe.a` linked into our binary. With `is_prefill` it computes the expert offsets with
//! `thrust::inclusive_scan` (`moe_utils.cuh`), which allocates its temporary storage with `cudaMalloc`
//! and synchronises the stream, and throws a C++ exception (`thrust::system::detail::bad_alloc`,
//! `thrust::system::system_error`) when either fails. Both fail while the stream is captured into a
//! CUDA graph (they are not allowed during capture), and `cudaMalloc` fails when the driver has no
//! free memory. The exception crosses `extern "C"` into Rust, which cannot catch it: the process
//! aborts (`fatal runtime error: Rust cannot catch foreign exceptions`). Without `is_prefill` the
//! offsets come from two plain kernels (`calculate_expert_offsets_light`): nothing allocated, nothing
//! synchronised, safe in a graph, but the scan is one block of `experts` threads.
//!
//! So: [`plan_moe_chunks`] splits the tokens into chunks that `arg_sort` can sort and picks for
//! each the sort-free GEMV ops or the grouped GEMM, taking the thrust variant only where it cannot
//! throw (not capturing, enough free memory); [`grouped_moe_gemm`] checks the same limits in Rust
//! right before the foreign call ([`check_grouped_call`]) and returns a candle error instead of
//! letting the native code throw; [`run_moe_chunks`] runs one routine per chunk and concatenates.
//! The plan and the runner know no device: they are tested with CPU tensors.

use candle_core::{Device, Result, Tensor};

/// Most columns candle's CUDA `arg_sort` sorts in one row: one block keeps `next_pow2(cols)` u32
/// indices in shared memory, which must fit the default 48 KiB (12,288 entries; a power of two:
/// 8,192). The MoE sorts a chunk's `tokens × top_k` expert ids in one row.
pub const ARG_SORT_MAX_COLS: usize = 8192;

/// Most routed experts the thrust-free expert-offset scan handles (one block, a thread per expert).
pub const LIGHT_SCAN_MAX_EXPERTS: usize = 1024;

/// Tokens from which a grouped chunk takes candle's `is_prefill` variant (thrust's scan and the
/// 16×16 WMMA tiles) when that cannot throw.
pub const THRUST_SCAN_MIN_TOKENS: usize = 256;

/// Free device memory (driver view) below which the thrust variant is not called: its `cudaMalloc`
/// needs a free page outside candle's pool and throws `bad_alloc` without one.
pub const THRUST_MIN_FREE_BYTES: u64 = 64 << 20;

/// How one chunk of tokens runs through the routed experts on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoeKernel {
    /// The sort-free fused GEMV ops ([`crate::ops::moe_route`] and the two after it).
    SmallBatch,
    /// Routing with `arg_sort`, then candle's grouped WMMA GEMM; `thrust`: its `is_prefill`
    /// variant.
    Grouped { thrust: bool },
}

/// Tokens `start..start + len` of a call, run with `kernel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoeChunk {
    pub start: usize,
    pub len: usize,
    pub kernel: MoeKernel,
}

/// The model's side of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoeChunkLimits {
    /// Experts per token.
    pub top_k: usize,
    /// Routed experts.
    pub experts: usize,
    /// Most tokens per chunk the caller wants (lowered to what `arg_sort` sorts).
    pub max_tokens: usize,
    /// (token, expert) pairs up to which a chunk takes [`MoeKernel::SmallBatch`].
    pub small_batch_pairs: usize,
}

/// The device's side of a plan: what decides whether native code may throw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamState {
    /// The stream is being captured into a CUDA graph.
    pub capturing: bool,
    /// Device memory the driver reports free; `None` when unknown (CPU, or during capture).
    pub free_bytes: Option<u64>,
}

impl StreamState {
    /// The state of `device`'s stream now (on the CPU: not capturing, free memory unknown). Free
    /// memory is asked for only when the thrust variant is `wanted` and the stream is not captured
    /// (no other driver query inside a capture).
    pub fn of(device: &Device, wanted: bool) -> Result<StreamState> {
        let capturing = super::stream_capturing(device)?;
        let free_bytes = if wanted && !capturing { super::device_memory_free(device) } else { None };
        Ok(StreamState { capturing, free_bytes })
    }

    /// Whether candle's thrust variant can run without throwing.
    pub fn thrust_safe(&self) -> bool {
        !self.capturing && self.free_bytes.is_some_and(|f| f >= THRUST_MIN_FREE_BYTES)
    }
}

/// Tokens per chunk for `top_k` experts per token: at most `max_tokens`, and `tokens × top_k`
/// sortable in one `arg_sort` row.
pub fn moe_chunk_tokens(limits: &MoeChunkLimits) -> Result<usize> {
    if limits.top_k == 0 || limits.top_k > limits.experts {
        candle_core::bail!("moe: top_k {} with {} routed experts", limits.top_k, limits.experts)
    }
    let by_sort = ARG_SORT_MAX_COLS / limits.top_k;
    if by_sort == 0 {
        candle_core::bail!(
            "moe: top_k {} exceeds the {ARG_SORT_MAX_COLS} ids candle's CUDA arg_sort sorts in one row",
            limits.top_k
        )
    }
    Ok(limits.max_tokens.clamp(1, by_sort))
}

/// Splits `tokens` into chunks below every kernel limit and picks each chunk's kernel: the sort-free
/// ops up to `small_batch_pairs` pairs, else the grouped GEMM, in its thrust variant only from
/// [`THRUST_SCAN_MIN_TOKENS`] tokens and only where [`StreamState::thrust_safe`]. Errors (before any
/// kernel runs) when a grouped chunk would need the thrust-free scan with more than
/// [`LIGHT_SCAN_MAX_EXPERTS`] experts.
pub fn plan_moe_chunks(tokens: usize, limits: &MoeChunkLimits, state: &StreamState) -> Result<Vec<MoeChunk>> {
    let per = moe_chunk_tokens(limits)?;
    let mut plan = Vec::with_capacity(tokens.div_ceil(per));
    for start in (0..tokens).step_by(per) {
        let len = per.min(tokens - start);
        let kernel = if len * limits.top_k <= limits.small_batch_pairs {
            MoeKernel::SmallBatch
        } else {
            MoeKernel::Grouped { thrust: len >= THRUST_SCAN_MIN_TOKENS && state.thrust_safe() }
        };
        if let MoeKernel::Grouped { thrust } = kernel {
            check_grouped_call(len, limits.top_k, limits.experts, thrust, state)?;
        }
        plan.push(MoeChunk { start, len, kernel });
    }
    Ok(plan)
}

/// The limits of one `moe_gemm` call over `rows` input rows, checked in Rust before the foreign
/// call: the thrust variant neither during capture nor without free memory (it would throw), the
/// thrust-free scan only up to [`LIGHT_SCAN_MAX_EXPERTS`] experts (beyond, its launch fails
/// unchecked), the sorted pairs within one `arg_sort` row and the kernel's int32 sizes.
pub fn check_grouped_call(rows: usize, top_k: usize, experts: usize, thrust: bool, state: &StreamState) -> Result<()> {
    let pairs = rows * top_k;
    if pairs > ARG_SORT_MAX_COLS {
        candle_core::bail!(
            "moe_gemm: {rows} tokens × top_k {top_k} = {pairs} sorted pairs exceed one arg_sort row \
             ({ARG_SORT_MAX_COLS}); split the tokens (plan_moe_chunks)"
        )
    }
    if thrust && state.capturing {
        candle_core::bail!(
            "moe_gemm: the is_prefill variant (thrust::inclusive_scan: cudaMalloc and a stream \
             synchronisation, a C++ exception when they fail) was called while the stream is captured \
             into a CUDA graph; {rows} tokens must take the thrust-free variant"
        )
    }
    if thrust && state.free_bytes.is_none_or(|f| f < THRUST_MIN_FREE_BYTES) {
        candle_core::bail!(
            "moe_gemm: out of memory for thrust's temporary storage: {} bytes of device memory free, \
             {THRUST_MIN_FREE_BYTES} needed before calling the is_prefill variant",
            state.free_bytes.map_or_else(|| "unknown".to_string(), |f| f.to_string())
        )
    }
    if !thrust && experts > LIGHT_SCAN_MAX_EXPERTS {
        candle_core::bail!(
            "moe_gemm: {experts} routed experts exceed the {LIGHT_SCAN_MAX_EXPERTS} of the thrust-free \
             expert-offset scan (one block); this model needs the is_prefill variant outside CUDA graphs"
        )
    }
    if experts > i32::MAX as usize {
        candle_core::bail!("moe_gemm: {experts} experts exceed the kernel's int32 sizes")
    }
    Ok(())
}

/// `candle_nn::moe::moe_gemm` after [`check_grouped_call`] on the input's stream as it is now:
/// `input` `(rows, k_dim)` (rows = tokens, or token pairs when `topk_weights` is given), `weights`
/// `(experts, n, k_dim)`, `sorted_pairs` and `expert_ids` the pair order and experts from the sort
/// → `(pairs, n)`.
pub fn grouped_moe_gemm(
    input: &Tensor,
    weights: &Tensor,
    topk_weights: &Option<Tensor>,
    sorted_pairs: &Tensor,
    expert_ids: &Tensor,
    top_k: usize,
    thrust: bool,
) -> Result<Tensor> {
    let rows = input.dim(0)?;
    let tokens = if topk_weights.is_some() { rows.div_ceil(top_k.max(1)) } else { rows };
    let state = StreamState::of(input.device(), thrust)?;
    check_grouped_call(tokens, top_k, weights.dim(0)?, thrust, &state)?;
    candle_nn::moe::moe_gemm(input, weights, topk_weights, sorted_pairs, expert_ids, top_k, thrust)
}

/// Runs `routine` on every chunk of `flat` `(tokens, …)` planned by [`plan_moe_chunks`], each chunk in
/// a buffer of its own starting at offset 0 (candle's `moe_gemm` reads its input from the start of
/// the storage and ignores the layout's offset: a chunk at row 256 read rows 0.. on the H100 until
/// this was added), and concatenates the outputs along the first dimension.
pub fn run_moe_chunks(
    flat: &Tensor,
    plan: &[MoeChunk],
    mut routine: impl FnMut(&Tensor, MoeKernel) -> Result<Tensor>,
) -> Result<Tensor> {
    let tokens = flat.dim(0)?;
    let mut at = 0;
    for c in plan {
        if c.start != at || c.len == 0 {
            candle_core::bail!("moe: chunk {c:?} of a plan over {tokens} tokens does not start at {at}")
        }
        at += c.len;
    }
    if at != tokens {
        candle_core::bail!("moe: a plan of {} chunks covers {at} of {tokens} tokens", plan.len())
    }
    let mut parts = Vec::with_capacity(plan.len());
    for c in plan {
        parts.push(routine(&own_buffer(&flat.narrow(0, c.start, c.len)?)?, c.kernel)?);
    }
    match parts.len() {
        0 => candle_core::bail!("moe: nothing to run (0 tokens)"),
        1 => Ok(parts.remove(0)),
        _ => Tensor::cat(&parts, 0),
    }
}

/// `t` in a buffer of its own starting at offset 0.
fn own_buffer(t: &Tensor) -> Result<Tensor> {
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        Ok(t.clone())
    } else {
        t.force_contiguous() // a fresh buffer (`copy` would keep the offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::moe::{Moe, DEVICE_CHUNK, SMALL_BATCH_PAIRS};
    use crate::decoder::DecoderConfig;
    use candle_core::DType;

    /// DeepSeek-OCR's decoder (docs/MODEL.md §7): 64 routed experts, top-6.
    fn real() -> MoeChunkLimits {
        let cfg = DecoderConfig::deepseek_ocr();
        MoeChunkLimits {
            top_k: cfg.num_experts_per_tok,
            experts: cfg.n_routed_experts.unwrap(),
            max_tokens: DEVICE_CHUNK,
            small_batch_pairs: SMALL_BATCH_PAIRS,
        }
    }

    const CAPTURING: StreamState = StreamState { capturing: true, free_bytes: None };
    const EAGER: StreamState = StreamState { capturing: false, free_bytes: Some(70 << 30) };

    fn kernels(tokens: usize, limits: &MoeChunkLimits, state: &StreamState) -> Vec<(usize, MoeKernel)> {
        plan_moe_chunks(tokens, limits, state).unwrap().iter().map(|c| (c.len, c.kernel)).collect()
    }

    #[test]
    fn a_captured_decode_step_never_takes_the_thrust_variant() {
        // the decode step of `--batch B` routes B tokens; 200 took the thrust-free variant before,
        // 256 took thrust's (tokens >= 256) inside the graph capture and aborted the process
        let limits = real();
        for slots in [9, 160, 200, 255, 256, 512, 1024, 1025, 4096] {
            let plan = plan_moe_chunks(slots, &limits, &CAPTURING).unwrap();
            assert_eq!(plan[0].kernel, MoeKernel::Grouped { thrust: false }, "{slots} slots");
            assert!(plan.iter().all(|c| c.kernel != MoeKernel::Grouped { thrust: true }), "{slots} slots: {plan:?}");
        }
        // eager (prefill, or a decode step outside a graph) keeps the thrust variant from 256 tokens
        assert_eq!(kernels(200, &limits, &EAGER), [(200, MoeKernel::Grouped { thrust: false })]);
        assert_eq!(kernels(256, &limits, &EAGER), [(256, MoeKernel::Grouped { thrust: true })]);
        assert_eq!(kernels(8, &limits, &EAGER), [(8, MoeKernel::SmallBatch)]);
        assert_eq!(kernels(9, &limits, &CAPTURING), [(9, MoeKernel::Grouped { thrust: false })]);
    }

    #[test]
    fn thrust_is_not_called_without_free_memory() {
        let limits = real();
        for free in [None, Some(0), Some(THRUST_MIN_FREE_BYTES - 1)] {
            let state = StreamState { capturing: false, free_bytes: free };
            assert_eq!(kernels(928, &limits, &state), [(928, MoeKernel::Grouped { thrust: false })], "{free:?}");
        }
        let state = StreamState { capturing: false, free_bytes: Some(THRUST_MIN_FREE_BYTES) };
        assert_eq!(kernels(928, &limits, &state), [(928, MoeKernel::Grouped { thrust: true })]);
    }

    #[test]
    fn chunks_tile_the_tokens_within_the_sort_limit() {
        let limits = real();
        let plan = plan_moe_chunks(3000, &limits, &EAGER).unwrap();
        let lens: Vec<usize> = plan.iter().map(|c| c.len).collect();
        assert_eq!(lens, [1024, 1024, 952]);
        assert_eq!(plan.iter().map(|c| c.start).collect::<Vec<_>>(), [0, 1024, 2048]);
        // a wider top_k lowers the chunk so that tokens × top_k stays sortable in one row
        let wide = MoeChunkLimits { top_k: 12, experts: 160, ..limits };
        assert_eq!(moe_chunk_tokens(&wide).unwrap(), ARG_SORT_MAX_COLS / 12);
        for c in plan_moe_chunks(5000, &wide, &CAPTURING).unwrap() {
            assert!(c.len * 12 <= ARG_SORT_MAX_COLS, "{c:?}");
        }
        // the tail of a split can be small enough for the sort-free ops
        assert_eq!(kernels(1026, &limits, &EAGER)[1], (2, MoeKernel::SmallBatch));
        assert!(plan_moe_chunks(0, &limits, &EAGER).unwrap().is_empty());
        assert!(moe_chunk_tokens(&MoeChunkLimits { top_k: 0, ..limits }).is_err());
        let huge = MoeChunkLimits { top_k: ARG_SORT_MAX_COLS + 1, experts: 2 * ARG_SORT_MAX_COLS, ..limits };
        assert!(moe_chunk_tokens(&huge).unwrap_err().to_string().contains("arg_sort"));
    }

    #[test]
    fn grouped_calls_are_refused_before_native_code_could_throw() {
        let e = check_grouped_call(256, 6, 64, true, &CAPTURING).unwrap_err().to_string();
        assert!(e.contains("captured into a CUDA graph"), "{e}");
        let low = StreamState { capturing: false, free_bytes: Some(1 << 20) };
        let e = check_grouped_call(928, 6, 64, true, &low).unwrap_err().to_string();
        assert!(e.contains("out of memory"), "the bench's OOM retry must recognise it: {e}");
        let e = check_grouped_call(2000, 6, 64, false, &EAGER).unwrap_err().to_string();
        assert!(e.contains("arg_sort"), "{e}");
        let e = check_grouped_call(300, 6, 2048, false, &CAPTURING).unwrap_err().to_string();
        assert!(e.contains("2048 routed experts"), "{e}");
        assert!(plan_moe_chunks(300, &MoeChunkLimits { experts: 2048, ..real() }, &CAPTURING).is_err());
        check_grouped_call(256, 6, 64, false, &CAPTURING).unwrap();
        check_grouped_call(256, 6, 64, true, &EAGER).unwrap();
        check_grouped_call(300, 6, 2048, true, &EAGER).unwrap();
    }

    #[test]
    fn stream_state_of_the_cpu() {
        let state = StreamState::of(&Device::Cpu, true).unwrap();
        assert_eq!(state, StreamState { capturing: false, free_bytes: None });
        assert!(!state.thrust_safe());
    }

    #[test]
    fn chunked_moe_equals_one_call() -> Result<()> {
        let cfg = DecoderConfig::tiny();
        let limits = MoeChunkLimits {
            top_k: cfg.num_experts_per_tok,
            experts: cfg.n_routed_experts.unwrap(),
            max_tokens: 64,
            small_batch_pairs: SMALL_BATCH_PAIRS,
        };
        for dtype in [DType::F32, DType::BF16] {
            let vb = crate::synth::synth_var_builder(5, dtype, &Device::Cpu);
            let moe = Moe::new(&cfg, vb.pp("model.layers.1.mlp"))?;
            let x = crate::synth::synth_tensor("t.x", &(1, 300, cfg.hidden_size).into(), 9, DType::F32, &Device::Cpu)?;
            let x = (x * 20.0)?.to_dtype(dtype)?;
            let whole = moe.forward_host_routed(&x)?.squeeze(0)?.to_dtype(DType::F32)?;
            let flat = x.squeeze(0)?;
            let plan = plan_moe_chunks(300, &limits, &CAPTURING)?;
            assert_eq!(plan.iter().map(|c| c.len).collect::<Vec<_>>(), [64, 64, 64, 64, 44]);
            let mut seen = Vec::new();
            let chunked = run_moe_chunks(&flat, &plan, |chunk, kernel| {
                assert_eq!(chunk.layout().start_offset(), 0, "each chunk in its own buffer");
                assert!(chunk.is_contiguous());
                seen.push((chunk.dim(0)?, kernel));
                moe.forward_host_routed(&chunk.unsqueeze(0)?)?.squeeze(0)
            })?;
            assert_eq!(seen, plan.iter().map(|c| (c.len, c.kernel)).collect::<Vec<_>>());
            let chunked = chunked.to_dtype(DType::F32)?;
            assert_eq!(chunked.dims(), whole.dims());
            let diff = (&chunked - &whole)?.abs()?.max_all()?.to_scalar::<f32>()?;
            let max = whole.abs()?.max_all()?.to_scalar::<f32>()?;
            let tol = if dtype == DType::F32 { 1e-5 } else { 1.0 / 128.0 };
            assert!(diff <= tol * max, "{dtype:?}: {diff} against max {max}");
        }
        // a plan that does not tile the tokens is refused
        let flat = Tensor::zeros((10, 4), DType::F32, &Device::Cpu)?;
        let gap = [
            MoeChunk { start: 0, len: 4, kernel: MoeKernel::SmallBatch },
            MoeChunk { start: 5, len: 6, kernel: MoeKernel::SmallBatch },
        ];
        assert!(run_moe_chunks(&flat, &gap, |c, _| Ok(c.clone())).is_err());
        Ok(())
    }
}
