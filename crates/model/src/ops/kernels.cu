// CUDA kernels of occ-model's fused decode ops (crates/model/src/ops/). Written for this project.
//
// Every kernel exists for float, __nv_bfloat16 and __half (suffixes _f32, _bf16, _f16) and computes
// in float32, rounding once where the PyTorch reference rounds. Shapes and semantics are documented
// beside the Rust CustomOps that launch them; the CPU implementations there are the specification.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half(x); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

// SwiGLU of a fused gate/up projection: x (rows, 2n) = [gate | up] → y (rows, n),
// y = round(round(silu(gate)) * up) as the reference (silu in the compute dtype, then the product).
template <typename T>
__device__ void swiglu(const T *x, T *y, const uint32_t rows, const uint32_t n) {
    const size_t total = (size_t)rows * n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / n, c = i % n;
        const float g = to_f(x[r * 2 * n + c]);
        const float u = to_f(x[r * 2 * n + n + c]);
        const float s = to_f(from_f<T>(g / (1.0f + expf(-g))));
        y[i] = from_f<T>(s * u);
    }
}

// Writes one new key/value column per slot into the slot cache at that slot's position.
// cache: (2, slots, heads, cap, d) [keys then values]; kv: (2, slots, heads, d); pos: (slots,) u32.
template <typename T>
__device__ void kv_write(T *cache, const T *kv, const uint32_t *pos, const uint32_t slots, const uint32_t heads,
                         const uint32_t cap, const uint32_t d) {
    const size_t total = (size_t)2 * slots * heads * d;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t c = i % d;
        const size_t h = (i / d) % heads;
        const size_t s = (i / ((size_t)d * heads)) % slots;
        const size_t which = i / ((size_t)d * heads * slots);
        const uint32_t p = pos[s];
        if (p >= cap) continue; // idle slots run past the capacity: their writes are dropped
        cache[(((which * slots + s) * heads + h) * cap + p) * d + c] = kv[i];
    }
}

// Copies a prefilled prompt's keys/values src (2, heads, len, d) into columns 0..len of one slot.
template <typename T>
__device__ void kv_insert(T *cache, const T *src, const uint32_t slot, const uint32_t slots, const uint32_t heads,
                          const uint32_t cap, const uint32_t len, const uint32_t d) {
    const size_t total = (size_t)2 * heads * len * d;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t c = i % d;
        const size_t j = (i / d) % len;
        const size_t h = (i / ((size_t)d * len)) % heads;
        const size_t which = i / ((size_t)d * len * heads);
        cache[(((which * slots + slot) * heads + h) * cap + j) * d + c] = src[i];
    }
}

// One query per (slot, head) against the cached columns 0..=pos[slot].
// q: (slots, heads, d); cache: (2, slots, kv_heads, cap, d); out: (slots, heads, d).
// Scores, softmax and the value product in float32; one block per (slot, head); dynamic shared
// memory: cap floats.
template <typename T>
__device__ void decode_attention(const T *q, const T *cache, T *out, const uint32_t *pos, const uint32_t slots,
                                 const uint32_t heads, const uint32_t kv_heads, const uint32_t cap, const uint32_t d,
                                 const float scale) {
    extern __shared__ float smem[];
    float *scores = smem;
    __shared__ float red[32];
    const uint32_t s = blockIdx.x / heads, h = blockIdx.x % heads;
    if (s >= slots) return;
    const uint32_t kvh = h / (heads / kv_heads);
    uint32_t len = pos[s] + 1;
    if (len > cap) len = cap;
    const T *qv = q + ((size_t)s * heads + h) * d;
    const T *keys = cache + (((size_t)0 * slots + s) * kv_heads + kvh) * cap * d;
    const T *vals = cache + (((size_t)1 * slots + s) * kv_heads + kvh) * cap * d;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
    // q in registers: each lane holds d / 32 values (d ≤ 256)
    float qr[8];
    const int per = (d + 31) / 32;
    for (int i = 0; i < per; ++i) {
        const int c = lane + 32 * i;
        qr[i] = c < (int)d ? to_f(qv[c]) : 0.0f;
    }
    float local_max = -INFINITY;
    for (uint32_t j = warp; j < len; j += nwarps) {
        const T *kr = keys + (size_t)j * d;
        float acc = 0.0f;
        for (int i = 0; i < per; ++i) {
            const int c = lane + 32 * i;
            if (c < (int)d) acc += qr[i] * to_f(kr[c]);
        }
        acc = warp_sum(acc) * scale;
        if (lane == 0) scores[j] = acc;
        local_max = fmaxf(local_max, acc);
    }
    // block max
    local_max = warp_max(local_max);
    if (lane == 0) red[warp] = local_max;
    __syncthreads();
    float m = -INFINITY;
    for (int w = 0; w < nwarps; ++w) m = fmaxf(m, red[w]);
    __syncthreads();
    float local_sum = 0.0f;
    for (uint32_t j = threadIdx.x; j < len; j += blockDim.x) {
        const float e = expf(scores[j] - m);
        scores[j] = e;
        local_sum += e;
    }
    local_sum = warp_sum(local_sum);
    if (lane == 0) red[warp] = local_sum;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < nwarps; ++w) total += red[w];
    const float inv = len > 0 ? 1.0f / total : 0.0f;
    for (uint32_t c = threadIdx.x; c < d; c += blockDim.x) {
        float acc = 0.0f;
        for (uint32_t j = 0; j < len; ++j) acc += scores[j] * to_f(vals[(size_t)j * d + c]);
        out[((size_t)s * heads + h) * d + c] = from_f<T>(acc * inv);
    }
}

// Sets logits[row, ban[row, i]] = -inf for every ban entry that is a valid id (entries ≥ vocab,
// e.g. 0xffffffff, are padding). logits: (rows, vocab) f32; ban: (rows, max_ban) u32.
extern "C" __global__ void occ_apply_ban(float *logits, const uint32_t *ban, const uint32_t rows,
                                         const uint32_t vocab, const uint32_t max_ban) {
    const size_t total = (size_t)rows * max_ban;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const uint32_t id = ban[i];
        if (id < vocab) logits[(i / max_ban) * vocab + id] = -INFINITY;
    }
}

// Advances every slot's position by one (after a decode step).
extern "C" __global__ void occ_advance(uint32_t *pos, const uint32_t slots) {
    const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < slots) pos[i] += 1;
}

#define OCC_INSTANTIATE(T, SUF)                                                                               \
    extern "C" __global__ void occ_swiglu_##SUF(const T *x, T *y, const uint32_t rows, const uint32_t n) {   \
        swiglu<T>(x, y, rows, n);                                                                             \
    }                                                                                                         \
    extern "C" __global__ void occ_kv_write_##SUF(T *cache, const T *kv, const uint32_t *pos,                 \
                                                  const uint32_t slots, const uint32_t heads,                 \
                                                  const uint32_t cap, const uint32_t d) {                     \
        kv_write<T>(cache, kv, pos, slots, heads, cap, d);                                                    \
    }                                                                                                         \
    extern "C" __global__ void occ_kv_insert_##SUF(T *cache, const T *src, const uint32_t slot,                \
                                                   const uint32_t slots, const uint32_t heads,                \
                                                   const uint32_t cap, const uint32_t len, const uint32_t d) { \
        kv_insert<T>(cache, src, slot, slots, heads, cap, len, d);                                            \
    }                                                                                                         \
    extern "C" __global__ void occ_decode_attention_##SUF(                                                    \
        const T *q, const T *cache, T *out, const uint32_t *pos, const uint32_t slots, const uint32_t heads,  \
        const uint32_t kv_heads, const uint32_t cap, const uint32_t d, const float scale) {                   \
        decode_attention<T>(q, cache, out, pos, slots, heads, kv_heads, cap, d, scale);                      \
    }

OCC_INSTANTIATE(float, f32)
OCC_INSTANTIATE(__nv_bfloat16, bf16)
OCC_INSTANTIATE(__half, f16)
