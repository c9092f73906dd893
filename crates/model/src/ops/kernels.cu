// CUDA kernels of occ-model's fused decode ops (crates/model/src/ops/). Written for this project.
//
// Every kernel exists for float, __nv_bfloat16 and __half (suffixes _f32, _bf16, _f16) and computes
// in float32, rounding once where the PyTorch reference rounds. Shapes and semantics are documented
// beside the Rust CustomOps that launch them; the CPU implementations there are the specification.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <mma.h>

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

// This lane's share of a · b over n elements (lanes stride the vector; the caller reduces the warp).
// 16-byte vector loads when both rows are 16-byte aligned and n allows it.
template <typename T>
__device__ __forceinline__ float dot_lane(const T *a, const T *b, const uint32_t n, const int lane) {
    float acc = 0.0f;
    constexpr uint32_t per = 16 / sizeof(T);
    if (n % per == 0 && ((reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b)) & 15) == 0) {
        const uint4 *a4 = reinterpret_cast<const uint4 *>(a);
        const uint4 *b4 = reinterpret_cast<const uint4 *>(b);
        for (uint32_t i = lane; i < n / per; i += 32) {
            const uint4 va = a4[i], vb = b4[i];
            const T *ea = reinterpret_cast<const T *>(&va);
            const T *eb = reinterpret_cast<const T *>(&vb);
#pragma unroll
            for (uint32_t j = 0; j < per; ++j) acc += to_f(ea[j]) * to_f(eb[j]);
        }
    } else {
        for (uint32_t i = lane; i < n; i += 32) acc += to_f(a[i]) * to_f(b[i]);
    }
    return acc;
}

// round(round(silu(round(g))) * round(u)) in T: the reference's silu on the rounded gate, then the product.
template <typename T>
__device__ __forceinline__ T swiglu_round(const float g, const float u) {
    const float gt = to_f(from_f<T>(g));
    const float s = to_f(from_f<T>(gt / (1.0f + expf(-gt))));
    return from_f<T>(s * to_f(from_f<T>(u)));
}

// SwiGLU of a fused gate/up projection: x (rows, 2n) = [gate | up] → y (rows, n),
// y = round(round(silu(gate)) * up) as the reference (silu in the compute dtype, then the product).
template <typename T>
__device__ void swiglu(const T *x, T *y, const uint32_t rows, const uint32_t n) {
    const size_t total = (size_t)rows * n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / n, c = i % n;
        y[i] = swiglu_round<T>(to_f(x[r * 2 * n + c]), to_f(x[r * 2 * n + n + c]));
    }
}

// RMSNorm with the reference's roundings: y = round(w * round(x * (1 / sqrt(mean(x^2) + eps)))).
// One block per row.
template <typename T>
__device__ void rms_norm(const T *x, const T *w, T *y, const uint32_t rows, const uint32_t n, const float eps) {
    __shared__ float red[32];
    const uint32_t row = blockIdx.x;
    if (row >= rows) return;
    const T *xr = x + (size_t)row * n;
    float acc = 0.0f;
    for (uint32_t c = threadIdx.x; c < n; c += blockDim.x) {
        const float v = to_f(xr[c]);
        acc += v * v;
    }
    acc = warp_sum(acc);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
    if (lane == 0) red[warp] = acc;
    __syncthreads();
    float total = 0.0f;
    for (int i = 0; i < nwarps; ++i) total += red[i];
    const float inv = 1.0f / sqrtf(total / (float)n + eps);
    for (uint32_t c = threadIdx.x; c < n; c += blockDim.x) {
        const float normed = to_f(from_f<T>(to_f(xr[c]) * inv));
        y[(size_t)row * n + c] = from_f<T>(to_f(w[c]) * normed);
    }
}

// Decode-step attention input: splits a fused projection qkv (slots, (heads + 2 kv_heads) * d) into
// q (written to q_out (slots, heads, d)), k and v (written into the slot cache at pos[slot]), applying
// rotate-half RoPE to q and k with angles pos * inv_freq[i] in float32 and the reference's roundings:
// cos/sin rounded to T, each product rounded, the sum rounded.
template <typename T>
__device__ void qkv_rope_write(const T *qkv, const uint32_t *pos, const float *inv_freq, T *q_out, T *cache,
                               const uint32_t slots, const uint32_t heads, const uint32_t kv_heads,
                               const uint32_t cap, const uint32_t d, const uint32_t part) {
    // part 0: the query heads (into q_out); part 1: the key and value heads (into the cache)
    const uint32_t half = d / 2;
    const uint32_t all_heads = heads + 2 * kv_heads;
    const uint32_t nh = part == 0 ? heads : 2 * kv_heads;
    const uint32_t first = part == 0 ? 0 : heads;
    const size_t total = (size_t)slots * nh * half;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
        const uint32_t i = t % half;
        const uint32_t hh = first + (t / half) % nh;
        const uint32_t s = t / ((size_t)half * nh);
        const T *src = qkv + ((size_t)s * all_heads + hh) * d;
        const uint32_t p = pos[s];
        T o1 = src[i], o2 = src[i + half];
        if (hh < heads + kv_heads) {
            const float angle = (float)p * inv_freq[i];
            const float c = to_f(from_f<T>(cosf(angle)));
            const float sn = to_f(from_f<T>(sinf(angle)));
            const float x1 = to_f(src[i]), x2 = to_f(src[i + half]);
            o1 = from_f<T>(to_f(from_f<T>(x1 * c)) + to_f(from_f<T>(-x2 * sn)));
            o2 = from_f<T>(to_f(from_f<T>(x2 * c)) + to_f(from_f<T>(x1 * sn)));
        }
        if (hh < heads) {
            T *dst = q_out + ((size_t)s * heads + hh) * d;
            dst[i] = o1;
            dst[i + half] = o2;
        } else {
            if (p >= cap) continue; // idle slot
            const uint32_t which = hh < heads + kv_heads ? 0 : 1;
            const uint32_t kvh = hh - heads - which * kv_heads;
            T *dst = cache + ((((size_t)which * slots + s) * kv_heads + kvh) * cap + p) * d;
            dst[i] = o1;
            dst[i + half] = o2;
        }
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
// Split-key ("flash-decoding") attention: block (slot·head, split) handles keys [split·64, split·64 + 64)
// of columns 0..=pos and writes its unnormalised partial (m, l, o[d]) to scratch; decode_attention_combine
// merges the splits. Everything in float32; d <= 256, 4 warps per block.
constexpr uint32_t ATT_CHUNK = 64;

template <typename T>
__device__ void decode_attention_split(const T *q, const T *cache, float *scratch, const uint32_t *pos,
                                       const uint32_t slots, const uint32_t heads, const uint32_t kv_heads,
                                       const uint32_t cap, const uint32_t d, const float scale, const uint32_t nsplit) {
    __shared__ float qs[256];
    __shared__ float sc[ATT_CHUNK];
    __shared__ float red[4];
    __shared__ float part[4][256];
    const uint32_t sh = blockIdx.x, split = blockIdx.y;
    const uint32_t s = sh / heads, h = sh % heads;
    if (s >= slots) return;
    const uint32_t kvh = h / (heads / kv_heads);
    uint32_t len = pos[s] + 1;
    if (len > cap) len = cap;
    const uint32_t j0 = split * ATT_CHUNK;
    float *dst = scratch + ((size_t)sh * nsplit + split) * (d + 2);
    if (j0 >= len) {
        if (threadIdx.x == 0) { dst[0] = -INFINITY; dst[1] = 0.0f; }
        for (uint32_t c = threadIdx.x; c < d; c += blockDim.x) dst[2 + c] = 0.0f;
        return;
    }
    const uint32_t j1 = min(len, j0 + ATT_CHUNK);
    const T *qv = q + ((size_t)s * heads + h) * d;
    const T *keys = cache + (((size_t)0 * slots + s) * kv_heads + kvh) * cap * d;
    const T *vals = cache + (((size_t)1 * slots + s) * kv_heads + kvh) * cap * d;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    for (uint32_t c = threadIdx.x; c < d; c += blockDim.x) qs[c] = to_f(qv[c]);
    __syncthreads();
    // scores: a warp per key, lanes over channels (vector loads when possible)
    for (uint32_t j = j0 + warp; j < j1; j += 4) {
        const T *kr = keys + (size_t)j * d;
        float acc = 0.0f;
        constexpr uint32_t per_vec = 16 / sizeof(T);
        if (d % per_vec == 0 && (reinterpret_cast<uintptr_t>(kr) & 15) == 0) {
            const uint4 *k4 = reinterpret_cast<const uint4 *>(kr);
            for (uint32_t v = lane; v < d / per_vec; v += 32) {
                const uint4 kv = k4[v];
                const T *e = reinterpret_cast<const T *>(&kv);
#pragma unroll
                for (uint32_t i = 0; i < per_vec; ++i) acc += qs[v * per_vec + i] * to_f(e[i]);
            }
        } else {
            for (uint32_t c = lane; c < d; c += 32) acc += qs[c] * to_f(kr[c]);
        }
        acc = warp_sum(acc) * scale;
        if (lane == 0) sc[j - j0] = acc;
    }
    __syncthreads();
    float m = -INFINITY;
    for (uint32_t j = 0; j < j1 - j0; ++j) m = fmaxf(m, sc[j]);
    __syncthreads();
    for (uint32_t j = threadIdx.x; j < j1 - j0; j += blockDim.x) sc[j] = expf(sc[j] - m);
    __syncthreads();
    float l = 0.0f;
    for (uint32_t j = 0; j < j1 - j0; ++j) l += sc[j];
    // values: warp w takes keys j0 + w, j0 + w + 4, ...; lanes over channels
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] = 0.0f;
    for (uint32_t j = j0 + warp; j < j1; j += 4) {
        const float p = sc[j - j0];
        const T *vr = vals + (size_t)j * d;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const uint32_t c = lane + 32 * i;
            if (c < d) acc[i] += p * to_f(vr[c]);
        }
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
        const uint32_t c = lane + 32 * i;
        if (c < d) part[warp][c] = acc[i];
    }
    __syncthreads();
    if (threadIdx.x == 0) { dst[0] = m; dst[1] = l; }
    for (uint32_t c = threadIdx.x; c < d; c += blockDim.x) dst[2 + c] = part[0][c] + part[1][c] + part[2][c] + part[3][c];
    (void)red;
}

template <typename T>
__device__ void decode_attention_combine(const float *scratch, T *out, const uint32_t rows, const uint32_t d,
                                         const uint32_t nsplit) {
    const uint32_t sh = blockIdx.x;
    if (sh >= rows) return;
    const float *src = scratch + (size_t)sh * nsplit * (d + 2);
    float m = -INFINITY;
    for (uint32_t i = 0; i < nsplit; ++i) m = fmaxf(m, src[i * (d + 2)]);
    float l = 0.0f;
    for (uint32_t i = 0; i < nsplit; ++i) {
        const float mi = src[i * (d + 2)];
        if (mi != -INFINITY) l += src[i * (d + 2) + 1] * expf(mi - m);
    }
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (uint32_t c = threadIdx.x; c < d; c += blockDim.x) {
        float o = 0.0f;
        for (uint32_t i = 0; i < nsplit; ++i) {
            const float mi = src[i * (d + 2)];
            if (mi != -INFINITY) o += src[i * (d + 2) + 2 + c] * expf(mi - m);
        }
        out[(size_t)sh * d + c] = from_f<T>(o * inv);
    }
}

// ---- small-batch MoE (decode): routing and expert GEMVs without sorting ----

// Router of one token per block: logits[e] = x · gate[e] in float32 (gate float32 (experts, hidden)),
// softmax, greedy top-k (ties to the lower index), weights = probability (renormalised when norm) ×
// scale. route: (tokens · k, 2) float32 rows [expert id, weight]. Dynamic shared memory: experts floats.
template <typename T>
__device__ void moe_route(const T *x, const float *gate, float *route, const uint32_t tokens, const uint32_t hidden,
                          const uint32_t experts, const uint32_t k, const uint32_t norm, const float scale) {
    extern __shared__ float probs[];
    const uint32_t t = blockIdx.x;
    if (t >= tokens) return;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
    const T *xr = x + (size_t)t * hidden;
    for (uint32_t e = warp; e < experts; e += nwarps) {
        const float *g = gate + (size_t)e * hidden;
        float acc = 0.0f;
        if (hidden % 4 == 0 && (reinterpret_cast<uintptr_t>(g) & 15) == 0) {
            const float4 *g4 = reinterpret_cast<const float4 *>(g);
            for (uint32_t c = lane; c < hidden / 4; c += 32) {
                const float4 gv = g4[c];
                acc += to_f(xr[4 * c]) * gv.x + to_f(xr[4 * c + 1]) * gv.y + to_f(xr[4 * c + 2]) * gv.z +
                       to_f(xr[4 * c + 3]) * gv.w;
            }
        } else {
            for (uint32_t c = lane; c < hidden; c += 32) acc += to_f(xr[c]) * g[c];
        }
        acc = warp_sum(acc);
        if (lane == 0) probs[e] = acc;
    }
    __syncthreads();
    // softmax and greedy top-k in warp 0: each lane holds experts lane, lane + 32, ... (≤ 8 each)
    if (warp == 0) {
        float v[8];
        float m = -INFINITY;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const uint32_t e = lane + 32 * i;
            v[i] = e < experts ? probs[e] : -INFINITY;
            m = fmaxf(m, v[i]);
        }
        m = warp_max(m);
        float total = 0.0f;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const uint32_t e = lane + 32 * i;
            v[i] = e < experts ? expf(v[i] - m) : 0.0f;
            total += v[i];
        }
        total = warp_sum(total);
#pragma unroll
        for (int i = 0; i < 8; ++i) v[i] = (lane + 32 * i) < experts ? v[i] / total : -INFINITY;
        float picked = 0.0f;
        for (uint32_t j = 0; j < k; ++j) {
            // this lane's best (lowest index on ties), then the warp's
            float bv = -INFINITY;
            uint32_t be = 0xffffffffu;
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                const uint32_t e = lane + 32 * i;
                if (e < experts && (v[i] > bv || (v[i] == bv && e < be))) { bv = v[i]; be = e; }
            }
            for (int o = 16; o > 0; o >>= 1) {
                const float ov = __shfl_xor_sync(0xffffffff, bv, o);
                const uint32_t oe = __shfl_xor_sync(0xffffffff, be, o);
                if (ov > bv || (ov == bv && oe < be)) { bv = ov; be = oe; }
            }
            if (lane == 0) {
                route[((size_t)t * k + j) * 2] = (float)be;
                route[((size_t)t * k + j) * 2 + 1] = bv;
            }
            picked += bv;
#pragma unroll
            for (int i = 0; i < 8; ++i)
                if (lane + 32 * i == be) v[i] = -INFINITY;
        }
        if (lane == 0) {
            for (uint32_t j = 0; j < k; ++j) {
                float w = route[((size_t)t * k + j) * 2 + 1];
                if (norm && k > 1) w = w / (picked + 1e-20f);
                route[((size_t)t * k + j) * 2 + 1] = w * scale;
            }
        }
    }
}

// Gate/up GEMV of every (token, expert) pair fused with SwiGLU: w_gu (experts, 2n, hidden) holds the
// gate rows then the up rows; act[p, c] = round(round(silu(round(g))) * round(u)), where
// g = w_gu[e_p, c] · x[p / k], u = w_gu[e_p, n + c] · x[p / k]. One warp per output (p, c).
template <typename T>
__device__ void moe_gate_up(const T *x, const T *w, const float *route, T *act, const uint32_t pairs,
                            const uint32_t k, const uint32_t n, const uint32_t hidden) {
    const int lane = threadIdx.x % 32;
    const size_t gw = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    const size_t nwarps = (gridDim.x * (size_t)blockDim.x) / 32;
    for (size_t o = gw; o < (size_t)pairs * n; o += nwarps) {
        const uint32_t p = o / n, c = o % n;
        const uint32_t e = (uint32_t)route[(size_t)p * 2];
        const T *xr = x + (size_t)(p / k) * hidden;
        const T *gr = w + ((size_t)e * 2 * n + c) * hidden;
        const T *ur = w + ((size_t)e * 2 * n + n + c) * hidden;
        const float g = warp_sum(dot_lane(gr, xr, hidden, lane));
        const float u = warp_sum(dot_lane(ur, xr, hidden, lane));
        if (lane == 0) act[o] = swiglu_round<T>(g, u);
    }
}

// Down GEMV of every pair: pair_out[p, c] = round(w_p * (down[e_p, c] · act[p])) (one warp per output),
// then moe_combine: out[t, c] = round(sum_j pair_out[t k + j, c]) in float32 (the grouped path's roundings).
template <typename T>
__device__ void moe_down(const T *act, const T *w, const float *route, T *pair_out, const uint32_t pairs,
                         const uint32_t n, const uint32_t hidden) {
    const int lane = threadIdx.x % 32;
    const size_t gw = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    const size_t nwarps = (gridDim.x * (size_t)blockDim.x) / 32;
    for (size_t o = gw; o < (size_t)pairs * hidden; o += nwarps) {
        const uint32_t p = o / hidden, c = o % hidden;
        const uint32_t e = (uint32_t)route[(size_t)p * 2];
        const float acc = warp_sum(dot_lane(w + ((size_t)e * hidden + c) * n, act + (size_t)p * n, n, lane));
        if (lane == 0) pair_out[o] = from_f<T>(acc * route[(size_t)p * 2 + 1]);
    }
}

template <typename T>
__device__ void moe_combine(const T *pair_out, T *out, const uint32_t tokens, const uint32_t k, const uint32_t hidden) {
    for (size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x; o < (size_t)tokens * hidden;
         o += (size_t)gridDim.x * blockDim.x) {
        const size_t t = o / hidden, c = o % hidden;
        float total = 0.0f;
        for (uint32_t j = 0; j < k; ++j) total += to_f(pair_out[(t * k + j) * hidden + c]);
        out[o] = from_f<T>(total);
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

// Index of the first maximum of every row of a float32 (rows, n) matrix (NaN never wins). One block
// of 1024 threads per row.
extern "C" __global__ void occ_argmax_f32(const float *x, uint32_t *out, const uint32_t rows, const uint32_t n) {
    __shared__ float bv[32];
    __shared__ uint32_t bi[32];
    const uint32_t r = blockIdx.x;
    if (r >= rows) return;
    const float *xr = x + (size_t)r * n;
    float best = -INFINITY;
    uint32_t idx = 0xffffffffu;
    // thread t scans elements t, t + blockDim, ... in order, so its first maximum is its lowest index
    for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = __ldg(xr + i);
        if (v > best || (idx == 0xffffffffu && !(v != v))) { best = v; idx = i; }
    }
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffff, best, o);
        const uint32_t oi = __shfl_xor_sync(0xffffffff, idx, o);
        if (oi != 0xffffffffu && (idx == 0xffffffffu || ov > best || (ov == best && oi < idx))) { best = ov; idx = oi; }
    }
    if (lane == 0) { bv[warp] = best; bi[warp] = idx; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x / 32); ++w) {
            if (bi[w] != 0xffffffffu && (idx == 0xffffffffu || bv[w] > best || (bv[w] == best && bi[w] < idx))) {
                best = bv[w]; idx = bi[w];
            }
        }
        out[r] = idx == 0xffffffffu ? 0 : idx;
    }
}

// Advances every slot's position by one (after a decode step).
extern "C" __global__ void occ_advance(uint32_t *pos, const uint32_t slots) {
    const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < slots) pos[i] += 1;
}

// ---- fused attention of the vision encoder (tensor cores; bf16 / f16; head_dim 64) ----
// softmax(q k^T * scale + bias) v over qkv (3, BH, N, 64); bias[q, j] = round(relhw[q, j / kw] + relhw[q, kh + j % kw])
// from relhw (BH, N, kh + kw) (SAM's decomposed relative positions; relhw == nullptr: no bias). Scores and the
// online softmax in float32, probabilities rounded to T before the value product (as the reference's cast),
// output accumulated in float32 and rounded once. Block: 2 warps, 32 queries; key tiles of 64.
template <typename T>
__device__ void flash_attention(const T *qkv, const T *relhw, T *out, const uint32_t bhs, const uint32_t n,
                                const uint32_t kh, const uint32_t kw, const float scale) {
    using namespace nvcuda;
    constexpr int D = 64, BQ = 32, BK = 64;
    __shared__ __align__(32) T q_sh[BQ * D];
    __shared__ __align__(32) T k_sh[BK * D];
    __shared__ __align__(32) T v_sh[BK * D];
    __shared__ __align__(32) float s_sh[BQ * BK];
    __shared__ __align__(32) T p_sh[BQ * BK];
    __shared__ __align__(32) float o_sh[BQ * D];
    __shared__ float m_sh[BQ], l_sh[BQ];
    const uint32_t bh = blockIdx.y, q0 = blockIdx.x * BQ;
    if (bh >= bhs) return;
    const T *Q = qkv + ((size_t)0 * bhs + bh) * n * D;
    const T *K = qkv + ((size_t)1 * bhs + bh) * n * D;
    const T *V = qkv + ((size_t)2 * bhs + bh) * n * D;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const T zero = from_f<T>(0.0f);
    for (int i = tid; i < BQ * D; i += 64) {
        const int r = i / D;
        q_sh[i] = (q0 + r < n) ? Q[(size_t)(q0 + r) * D + i % D] : zero;
        o_sh[i] = 0.0f;
    }
    if (tid < BQ) { m_sh[tid] = -INFINITY; l_sh[tid] = 0.0f; }
    __syncthreads();
    for (uint32_t k0 = 0; k0 < n; k0 += BK) {
        // 16-byte vector loads: a row of 64 is 8 vectors; rows past n are zero
        for (int i = tid; i < BK * D / 8; i += 64) {
            const uint32_t j = k0 + (i * 8) / D;
            const uint4 z = make_uint4(0, 0, 0, 0);
            reinterpret_cast<uint4 *>(k_sh)[i] = j < n ? reinterpret_cast<const uint4 *>(K + (size_t)j * D)[i % (D / 8)] : z;
            reinterpret_cast<uint4 *>(v_sh)[i] = j < n ? reinterpret_cast<const uint4 *>(V + (size_t)j * D)[i % (D / 8)] : z;
        }
        __syncthreads();
        for (int nt = 0; nt < BK / 16; ++nt) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kt = 0; kt < D / 16; ++kt) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b;
                wmma::load_matrix_sync(a, q_sh + warp * 16 * D + kt * 16, D);
                wmma::load_matrix_sync(b, k_sh + nt * 16 * D + kt * 16, D);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(s_sh + warp * 16 * BK + nt * 16, acc, BK, wmma::mem_row_major);
        }
        __syncwarp();
        // online softmax, one row at a time: lanes over the 64 columns (2 each), no bank conflicts
        for (int rr = 0; rr < 16; ++rr) {
            const int row = warp * 16 + rr;
            const bool ok = q0 + row < n;
            const T *rbr = (relhw != nullptr && ok) ? relhw + ((size_t)bh * n + q0 + row) * (kh + kw) : nullptr;
            float sv[2];
            float mx = -INFINITY;
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int c = lane + 32 * e;
                const uint32_t j = k0 + c;
                float v = -INFINITY;
                if (ok && j < n) {
                    v = s_sh[row * BK + c] * scale;
                    if (rbr != nullptr) v += to_f(from_f<T>(to_f(rbr[j / kw]) + to_f(rbr[kh + j % kw])));
                }
                sv[e] = v;
                mx = fmaxf(mx, v);
            }
            mx = warp_max(mx);
            const float m_old = m_sh[row];
            const float m_new = fmaxf(m_old, mx);
            float sum = 0.0f;
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int c = lane + 32 * e;
                const float pv = m_new == -INFINITY ? 0.0f : expf(sv[e] - m_new);
                p_sh[row * BK + c] = from_f<T>(pv);
                sum += pv;
            }
            sum = warp_sum(sum);
            const float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
#pragma unroll
            for (int e = 0; e < 2; ++e) o_sh[row * D + lane + 32 * e] *= alpha;
            if (lane == 0) { l_sh[row] = l_sh[row] * alpha + sum; m_sh[row] = m_new; }
        }
        __syncwarp();
        for (int nt = 0; nt < D / 16; ++nt) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, o_sh + warp * 16 * D + nt * 16, D, wmma::mem_row_major);
            for (int kt = 0; kt < BK / 16; ++kt) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> b;
                wmma::load_matrix_sync(a, p_sh + warp * 16 * BK + kt * 16, BK);
                wmma::load_matrix_sync(b, v_sh + kt * 16 * D + nt * 16, D);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(o_sh + warp * 16 * D + nt * 16, acc, D, wmma::mem_row_major);
        }
        __syncthreads();
    }
    for (int i = tid; i < BQ * D; i += 64) {
        const int rr = i / D;
        if (q0 + rr < n) {
            const float l = l_sh[rr];
            out[((size_t)bh * n + q0 + rr) * D + i % D] = from_f<T>(l > 0.0f ? o_sh[i] / l : 0.0f);
        }
    }
}

extern "C" __global__ void occ_flash_attention_bf16(const __nv_bfloat16 *qkv, const __nv_bfloat16 *relhw,
                                                    __nv_bfloat16 *out, const uint32_t bhs, const uint32_t n,
                                                    const uint32_t kh, const uint32_t kw, const float scale) {
    flash_attention<__nv_bfloat16>(qkv, relhw, out, bhs, n, kh, kw, scale);
}
extern "C" __global__ void occ_flash_attention_f16(const __half *qkv, const __half *relhw, __half *out,
                                                   const uint32_t bhs, const uint32_t n, const uint32_t kh,
                                                   const uint32_t kw, const float scale) {
    flash_attention<__half>(qkv, relhw, out, bhs, n, kh, kw, scale);
}

#define OCC_INSTANTIATE(T, SUF)                                                                               \
    extern "C" __global__ void occ_swiglu_##SUF(const T *x, T *y, const uint32_t rows, const uint32_t n) {   \
        swiglu<T>(x, y, rows, n);                                                                             \
    }                                                                                                         \
    extern "C" __global__ void occ_rms_norm_##SUF(const T *x, const T *w, T *y, const uint32_t rows,         \
                                                  const uint32_t n, const float eps) {                        \
        rms_norm<T>(x, w, y, rows, n, eps);                                                                   \
    }                                                                                                         \
    extern "C" __global__ void occ_qkv_rope_write_##SUF(                                                      \
        const T *qkv, const uint32_t *pos, const float *inv_freq, T *q_out, T *cache, const uint32_t slots,    \
        const uint32_t heads, const uint32_t kv_heads, const uint32_t cap, const uint32_t d,                  \
        const uint32_t part) {                                                                                \
        qkv_rope_write<T>(qkv, pos, inv_freq, q_out, cache, slots, heads, kv_heads, cap, d, part);            \
    }                                                                                                         \
    extern "C" __global__ void occ_moe_route_##SUF(const T *x, const float *gate, float *route,                \
                                                   const uint32_t tokens, const uint32_t hidden,              \
                                                   const uint32_t experts, const uint32_t k,                  \
                                                   const uint32_t norm, const float scale) {                  \
        moe_route<T>(x, gate, route, tokens, hidden, experts, k, norm, scale);                                \
    }                                                                                                         \
    extern "C" __global__ void occ_moe_gate_up_##SUF(const T *x, const T *w, const float *route, T *act,       \
                                                     const uint32_t pairs, const uint32_t k, const uint32_t n, \
                                                     const uint32_t hidden) {                                 \
        moe_gate_up<T>(x, w, route, act, pairs, k, n, hidden);                                                \
    }                                                                                                         \
    extern "C" __global__ void occ_moe_down_##SUF(const T *act, const T *w, const float *route, T *pair_out,   \
                                                  const uint32_t pairs, const uint32_t n,                     \
                                                  const uint32_t hidden) {                                    \
        moe_down<T>(act, w, route, pair_out, pairs, n, hidden);                                               \
    }                                                                                                         \
    extern "C" __global__ void occ_moe_combine_##SUF(const T *pair_out, T *out, const uint32_t tokens,         \
                                                     const uint32_t k, const uint32_t hidden) {               \
        moe_combine<T>(pair_out, out, tokens, k, hidden);                                                     \
    }                                                                                                         \
    extern "C" __global__ void occ_kv_insert_##SUF(T *cache, const T *src, const uint32_t slot,                \
                                                   const uint32_t slots, const uint32_t heads,                \
                                                   const uint32_t cap, const uint32_t len, const uint32_t d) { \
        kv_insert<T>(cache, src, slot, slots, heads, cap, len, d);                                            \
    }                                                                                                         \
    extern "C" __global__ void occ_decode_attention_split_##SUF(                                              \
        const T *q, const T *cache, float *scratch, const uint32_t *pos, const uint32_t slots,                \
        const uint32_t heads, const uint32_t kv_heads, const uint32_t cap, const uint32_t d, const float scale, \
        const uint32_t nsplit) {                                                                              \
        decode_attention_split<T>(q, cache, scratch, pos, slots, heads, kv_heads, cap, d, scale, nsplit);     \
    }                                                                                                         \
    extern "C" __global__ void occ_decode_attention_combine_##SUF(const float *scratch, T *out,               \
                                                                  const uint32_t rows, const uint32_t d,      \
                                                                  const uint32_t nsplit) {                    \
        decode_attention_combine<T>(scratch, out, rows, d, nsplit);                                           \
    }

OCC_INSTANTIATE(float, f32)
OCC_INSTANTIATE(__nv_bfloat16, bf16)
OCC_INSTANTIATE(__half, f16)
