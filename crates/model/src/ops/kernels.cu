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

// This lane's share of a · b over n elements (lanes stride the vector; the caller reduces the warp).
// 16-byte vector loads when both rows are 16-byte aligned and n allows it.
template <typename T>
__device__ __forceinline__ float dot_lane(const T *a, const T *b, const uint32_t n, const int lane) {
    float acc = 0.0f;
    constexpr uint32_t per = 16 / sizeof(T);
    if (n % per == 0 && ((reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b)) & 15) == 0) {
        const uint4 *a4 = reinterpret_cast<const uint4 *>(a);
        const uint4 *b4 = reinterpret_cast<const uint4 *>(b);
#pragma unroll 4
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
// Split-key ("flash-decoding") attention: block (slot·head, split) handles keys [split·32, split·32 + 32)
// of columns 0..=pos and writes its unnormalised partial (m, l, o[d]) to scratch; decode_attention_combine
// merges the splits. Everything in float32; d <= 256, 4 warps per block.
constexpr uint32_t ATT_CHUNK = 32;

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
#pragma unroll 2
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
    // maximum and sum of the chunk's (≤ 32) scores in every warp; warp 0 keeps the exponentials
    const float sv = (uint32_t)lane < j1 - j0 ? sc[lane] : -INFINITY;
    const float m = warp_max(sv);
    const float ev = (uint32_t)lane < j1 - j0 ? expf(sv - m) : 0.0f;
    const float l = warp_sum(ev);
    __syncthreads();
    if (warp == 0 && (uint32_t)lane < j1 - j0) sc[lane] = ev;
    __syncthreads();
    // values: warp w takes keys j0 + w, j0 + w + 4, ...; lanes over channels
    float acc[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[i] = 0.0f;
#pragma unroll 2
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
#pragma unroll 5
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

// ---- vision encoder: attention over a grid with SAM's decomposed relative positions (mma.sync) ----
// qkv (B, gh·gw, 3·H·64) is the q|k|v projection (bias included). Attention runs per unit: the whole grid
// (uh = gh, uw = gw), or windows of uh × uw over the grid padded bottom/right (SAM's windowed blocks): a padded
// token's q|k|v is `bias` (3·H·64; the projection of a zero row) and is NOT masked. rel (optional): rh (uh, uh, 64)
// then rw (uw, uw, 64); rel_h[i, y'] = round(q_i · rh[y_i, y']), rel_w[i, x'] = round(q_i · rw[x_i, x']) (unscaled
// q, float32 sums), bias[i, j] = round(rel_h[i, y_j] + rel_w[i, x_j]). Scores q·k·scale + bias and the online
// softmax in float32, probabilities rounded to T before the value product, output rounded once and written to
// out (B, gh·gw, H·64) for the unit's real tokens. Block: 4 warps × 16 queries of one (image·unit, head); key
// tiles of 64, double-buffered in shared memory by cp.async (row stride 72 elements: conflict-free fragment
// loads). Dynamic shared memory: vit_smem_bytes() in ops/cuda.rs.
template <typename T> struct MmaOp;
template <> struct MmaOp<__nv_bfloat16> {
    static __device__ __forceinline__ void run(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    }
};
template <> struct MmaOp<__half> {
    static __device__ __forceinline__ void run(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                     "{%0,%1,%2,%3};\n"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
        __half2 v = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t *>(&v);
    }
};

struct VitGeometry {
    uint32_t gh, gw;     // token grid of the tensor
    uint32_t uh, uw;     // unit (window or grid) sides
    uint32_t ux;         // units across
    uint32_t units;      // units per image
    uint32_t heads;
    uint32_t has_rel;
    float scale;
};

// 16 bytes global → shared without registers; src_bytes 0 fills zeros.
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    const int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// Row stride (elements) of the rel_h / rel_w tables in shared memory: the smallest S >= side with S = 8 (mod 64),
// so that the 8 query rows of a fragment start 4 banks apart (conflict-free lookups). ops/vision.rs mirrors it.
__host__ __device__ __forceinline__ uint32_t vit_rel_stride(uint32_t side) {
    return side <= 8 ? 8 : 8 + 64 * ((side - 8 + 63) / 64);
}

template <typename T>
__device__ void vit_attention(const T *qkv, const T *bias, const T *rel, T *out, const VitGeometry g) {
    constexpr int D = 64, BQ = 64, BK = 64, LD = 72, TILE = BK * LD;
    extern __shared__ __align__(16) unsigned char vit_smem[];
    T *ks = reinterpret_cast<T *>(vit_smem);             // [2][BK][LD]; ks[0] holds q during the prologue
    T *vs = ks + 2 * TILE;                               // [2][BK][LD]
    const uint32_t sh = vit_rel_stride(g.uh), sw = vit_rel_stride(g.uw);
    T *relh = vs + 2 * TILE;                             // [BQ][sh] when has_rel
    T *relw = relh + (g.has_rel ? BQ * sh : 0);          // [BQ][sw] when has_rel
    uint32_t *kyx = reinterpret_cast<uint32_t *>(relw + (g.has_rel ? BQ * sw : 0)); // [2][BK] when has_rel
    const uint32_t n = g.uh * g.uw;
    const uint32_t unit = blockIdx.y % g.units, b = blockIdx.y / g.units, h = blockIdx.z;
    const uint32_t oy = (unit / g.ux) * g.uh, ox = (unit % g.ux) * g.uw;
    const uint32_t q0 = blockIdx.x * BQ;
    const size_t row_len = (size_t)3 * g.heads * 64;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, gq = lane / 4, tq = lane % 4;
    // source of 16-byte chunk c of part p for unit token t (padding: the bias), or nullptr past the unit
    auto src = [&](uint32_t t, uint32_t p, uint32_t c, uint32_t *yx) -> const T * {
        if (t >= n) return nullptr;
        const uint32_t ty = t / g.uw, tx = t % g.uw, gy = oy + ty, gx = ox + tx;
        *yx = (ty << 16) | tx;
        const size_t off = ((size_t)p * g.heads + h) * 64 + c * 8;
        if (gy >= g.gh || gx >= g.gw) return bias + off;
        return qkv + ((size_t)b * g.gh * g.gw + (size_t)gy * g.gw + gx) * row_len + off;
    };
    // key/value tile starting at k0 into buffer buf (asynchronous; one commit group)
    auto issue = [&](uint32_t k0, int buf) {
        for (int i = tid; i < BK * 8; i += 128) {
            const int r = i / 8, c = i % 8;
            uint32_t yx = 0;
            const T *k = src(k0 + r, 1, c, &yx);
            const T *v = src(k0 + r, 2, c, &yx);
            cp_async16(ks + buf * TILE + r * LD + c * 8, k != nullptr ? k : bias, k != nullptr);
            cp_async16(vs + buf * TILE + r * LD + c * 8, v != nullptr ? v : bias, v != nullptr);
            if (c == 0 && g.has_rel) kyx[buf * BK + r] = yx;
        }
        cp_async_commit();
    };

    // q tile into ks[0], the first key tile into buffer 1 meanwhile
    for (int i = tid; i < BQ * 8; i += 128) {
        const int r = i / 8, c = i % 8;
        uint32_t yx = 0;
        const T *q = src(q0 + r, 0, c, &yx);
        cp_async16(ks + r * LD + c * 8, q != nullptr ? q : bias, q != nullptr);
    }
    cp_async_commit();
    issue(0, 1);
    cp_async_wait<1>();
    __syncthreads();
    // relative-position parts of the block's queries
    if (g.has_rel) {
        const T *rh = rel, *rw = rel + (size_t)g.uh * g.uh * D;
        const uint32_t span = g.uh + g.uw;
        for (uint32_t p = tid; p < BQ * span; p += 128) {
            const uint32_t r = p / span, k = p % span, t = q0 + r;
            float acc = 0.0f;
            if (t < n) {
                const uint32_t ty = t / g.uw, tx = t % g.uw;
                const T *tab = k < g.uh ? rh + ((size_t)ty * g.uh + k) * D : rw + ((size_t)tx * g.uw + (k - g.uh)) * D;
                const T *qr = ks + r * LD;
#pragma unroll
                for (int c = 0; c < D; c += 8) {
                    const uint4 av = *reinterpret_cast<const uint4 *>(qr + c);
                    const uint4 bv = *reinterpret_cast<const uint4 *>(tab + c);
                    const T *as = reinterpret_cast<const T *>(&av);
                    const T *bs = reinterpret_cast<const T *>(&bv);
#pragma unroll
                    for (int e = 0; e < 8; ++e) acc += to_f(as[e]) * to_f(bs[e]);
                }
            }
            if (k < g.uh) relh[r * sh + k] = from_f<T>(acc);
            else relw[r * sw + (k - g.uh)] = from_f<T>(acc);
        }
    }
    // q fragments (rows warp·16 + gq, + 8; k-steps of 16)
    uint32_t qa[4][4];
    {
        const T *base = ks + (warp * 16) * LD;
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
            qa[kk][0] = *reinterpret_cast<const uint32_t *>(base + gq * LD + kk * 16 + 2 * tq);
            qa[kk][1] = *reinterpret_cast<const uint32_t *>(base + (gq + 8) * LD + kk * 16 + 2 * tq);
            qa[kk][2] = *reinterpret_cast<const uint32_t *>(base + gq * LD + kk * 16 + 8 + 2 * tq);
            qa[kk][3] = *reinterpret_cast<const uint32_t *>(base + (gq + 8) * LD + kk * 16 + 8 + 2 * tq);
        }
    }
    __syncthreads();
    const int row0 = warp * 16 + gq, row1 = row0 + 8;  // block-local query rows of this thread
    const T *rh0 = relh + row0 * sh, *rh1 = relh + row1 * sh, *rw0 = relw + row0 * sw, *rw1 = relw + row1 * sw;
    float o[8][4];
#pragma unroll
    for (int i = 0; i < 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

    int tile = 0;
    for (uint32_t k0 = 0; k0 < n; k0 += BK, ++tile) {
        const int buf = (tile + 1) & 1;  // tile 0 is in buffer 1
        if (k0 + BK < n) {
            issue(k0 + BK, buf ^ 1);
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const T *kt = ks + buf * TILE;
        const uint32_t vsa = (uint32_t)__cvta_generic_to_shared(vs + buf * TILE);
        const uint32_t *kc = kyx + buf * BK;
        float s[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
            const T *kr = kt + (nt * 8 + gq) * LD + 2 * tq;
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                const uint32_t b0 = *reinterpret_cast<const uint32_t *>(kr + kk * 16);
                const uint32_t b1 = *reinterpret_cast<const uint32_t *>(kr + kk * 16 + 8);
                MmaOp<T>::run(s[nt], qa[kk], b0, b1);
            }
        }
        // scale, bias, mask; running maxima of rows row0 (elements 0, 1) and row1 (2, 3)
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int c = nt * 8 + 2 * tq + e;
                if (k0 + c < n) {
                    float b0 = 0.0f, b1 = 0.0f;
                    if (g.has_rel) {
                        const uint32_t yx = kc[c], y = yx >> 16, x = yx & 0xffff;
                        b0 = to_f(from_f<T>(to_f(rh0[y]) + to_f(rw0[x])));
                        b1 = to_f(from_f<T>(to_f(rh1[y]) + to_f(rw1[x])));
                    }
                    s[nt][e] = fmaf(s[nt][e], g.scale, b0);
                    s[nt][2 + e] = fmaf(s[nt][2 + e], g.scale, b1);
                } else {
                    s[nt][e] = -INFINITY;
                    s[nt][2 + e] = -INFINITY;
                }
                mx0 = fmaxf(mx0, s[nt][e]);
                mx1 = fmaxf(mx1, s[nt][2 + e]);
            }
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffff, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffff, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffff, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffff, mx1, 2));
        // every row sees key 0 in the first tile, so the maxima are finite from then on
        const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
        const float a0 = __expf(m0 - n0), a1 = __expf(m1 - n1);  // exp(-inf) = 0 on the first tile
        m0 = n0;
        m1 = n1;
        l0 *= a0;
        l1 *= a1;
#pragma unroll
        for (int dt = 0; dt < 8; ++dt) {
            o[dt][0] *= a0;
            o[dt][1] *= a0;
            o[dt][2] *= a1;
            o[dt][3] *= a1;
        }
        uint32_t pa[4][4];
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
            const float p0 = __expf(s[nt][0] - n0), p1 = __expf(s[nt][1] - n0);
            const float p2 = __expf(s[nt][2] - n1), p3 = __expf(s[nt][3] - n1);
            l0 += p0 + p1;
            l1 += p2 + p3;
            // C fragment of n-tile nt = half of the A fragment of k-step nt / 2
            pa[nt / 2][(nt % 2) * 2 + 0] = MmaOp<T>::pack(p0, p1);
            pa[nt / 2][(nt % 2) * 2 + 1] = MmaOp<T>::pack(p2, p3);
        }
#pragma unroll
        for (int kk = 0; kk < 4; ++kk) {
#pragma unroll
            for (int dp = 0; dp < 4; ++dp) {
                // x4.trans: (keys kk·16 + 0..7 | 8..15) × (d dp·16 + 0..7 | 8..15)
                const int mi = lane / 8, r = lane % 8;
                const uint32_t addr =
                    vsa + (uint32_t)(((kk * 16 + r + (mi & 1) * 8) * LD + dp * 16 + (mi >> 1) * 8) * sizeof(T));
                uint32_t v0, v1, v2, v3;
                asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                             : "=r"(v0), "=r"(v1), "=r"(v2), "=r"(v3)
                             : "r"(addr));
                MmaOp<T>::run(o[dp * 2], pa[kk], v0, v1);
                MmaOp<T>::run(o[dp * 2 + 1], pa[kk], v2, v3);
            }
        }
        __syncthreads();
    }
    l0 += __shfl_xor_sync(0xffffffff, l0, 1);
    l0 += __shfl_xor_sync(0xffffffff, l0, 2);
    l1 += __shfl_xor_sync(0xffffffff, l1, 1);
    l1 += __shfl_xor_sync(0xffffffff, l1, 2);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        const uint32_t t = q0 + (half ? row1 : row0);
        if (t >= n) continue;
        const uint32_t gy = oy + t / g.uw, gx = ox + t % g.uw;
        if (gy >= g.gh || gx >= g.gw) continue;
        const float inv = 1.0f / (half ? l1 : l0);
        T *dst = out + (((size_t)b * g.gh + gy) * g.gw + gx) * g.heads * 64 + (size_t)h * 64;
#pragma unroll
        for (int dt = 0; dt < 8; ++dt) {
            const int d = dt * 8 + 2 * tq;
            *reinterpret_cast<uint32_t *>(dst + d) = MmaOp<T>::pack(o[dt][half * 2] * inv, o[dt][half * 2 + 1] * inv);
        }
    }
}

extern "C" __global__ void __launch_bounds__(128, 4)
    occ_vit_attention_bf16(const __nv_bfloat16 *qkv, const __nv_bfloat16 *bias, const __nv_bfloat16 *rel,
                           __nv_bfloat16 *out, const VitGeometry g) {
    vit_attention<__nv_bfloat16>(qkv, bias, rel, out, g);
}
extern "C" __global__ void __launch_bounds__(128, 4)
    occ_vit_attention_f16(const __half *qkv, const __half *bias, const __half *rel, __half *out, const VitGeometry g) {
    vit_attention<__half>(qkv, bias, rel, out, g);
}

// ---- vision encoder: a linear layer's epilogue ----
// y = round(res + round(act(round(x + b[col])))) over rows of n columns (res == nullptr: no residual, the
// outer rounding is then a no-op). act 0: none; 1: exact GELU (erf), one rounding; 2: quick GELU
// round(x · round(sigmoid(round(1.702 x)))) (the reference's three ops). 16-byte vectors when n allows.
template <typename T> __device__ __forceinline__ float epi_act(float v, uint32_t act) {
    if (act == 1) return (erff(v * 0.70710678118654752440f) + 1.0f) * 0.5f * v;
    if (act == 2) {
        const float s = to_f(from_f<T>(1.702f * v));
        const float sg = to_f(from_f<T>(1.0f / (expf(-s) + 1.0f)));
        return v * sg;
    }
    return v;
}

template <typename T> __device__ __forceinline__ T epi_one(T x, T b, const T *res, size_t i, uint32_t act) {
    float v = to_f(from_f<T>(to_f(x) + to_f(b)));
    v = to_f(from_f<T>(epi_act<T>(v, act)));
    if (res != nullptr) v += to_f(res[i]);
    return from_f<T>(v);
}

template <typename T>
__device__ void bias_act(const T *x, const T *b, const T *res, T *y, const size_t total, const uint32_t n,
                         const uint32_t act, const uint32_t aligned) {
    constexpr uint32_t V = 16 / sizeof(T);
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    if (aligned && n % V == 0) {
        for (size_t c = (size_t)blockIdx.x * blockDim.x + threadIdx.x; c < total / V; c += stride) {
            const size_t i = c * V;
            const uint4 xv = reinterpret_cast<const uint4 *>(x)[c];
            const uint4 bv = *reinterpret_cast<const uint4 *>(b + i % n);
            const T *xs = reinterpret_cast<const T *>(&xv);
            const T *bs = reinterpret_cast<const T *>(&bv);
            uint4 ov;
            T *os = reinterpret_cast<T *>(&ov);
#pragma unroll
            for (uint32_t e = 0; e < V; ++e) os[e] = epi_one<T>(xs[e], bs[e], res, i + e, act);
            reinterpret_cast<uint4 *>(y)[c] = ov;
        }
    } else {
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride)
            y[i] = epi_one<T>(x[i], b[i % n], res, i, act);
    }
}

#define OCC_BIAS_ACT(T, SUF)                                                                                   \
    extern "C" __global__ void occ_bias_act_##SUF(const T *x, const T *b, const T *res, T *y, const size_t total, \
                                                  const uint32_t n, const uint32_t act,                        \
                                                  const uint32_t aligned) {                                    \
        bias_act<T>(x, b, res, y, total, n, act, aligned);                                                     \
    }
OCC_BIAS_ACT(float, f32)
OCC_BIAS_ACT(__nv_bfloat16, bf16)
OCC_BIAS_ACT(__half, f16)
