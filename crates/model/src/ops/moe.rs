//! [`moe_route`], [`moe_gate_up`], [`moe_down`]: a small batch's MoE without sorting: the router
//! (softmax, top-k, weights) in one pass, then one GEMV per (token, expert) pair fused with SwiGLU,
//! then the down GEMV weighted and summed per token.

use candle_core::{CpuStorage, Layout, Result, Shape, Tensor, WithDType};

#[cfg(feature = "cuda")]
use super::cuda;
use super::elem::{contiguous, float_pair, with_float, Elem};
use super::swiglu::swiglu_one;

/// Routing parameters of [`moe_route`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RouteSpec {
    pub top_k: usize,
    pub norm_topk_prob: bool,
    pub scale: f32,
}

struct MoeRoute(RouteSpec);

/// Checked sizes of a [`moe_route`] call: `(tokens, hidden, experts)`.
fn route_dims(xl: &Layout, gl: &Layout, k: usize) -> Result<(usize, usize, usize)> {
    let (tokens, hidden) = xl.shape().dims2()?;
    let (experts, gh) = gl.shape().dims2()?;
    if gh != hidden || k == 0 || k > experts {
        candle_core::bail!("moe_route: tokens {:?}, router {:?}, top-k {k}", xl.dims(), gl.dims())
    }
    Ok((tokens, hidden, experts))
}

/// Checked sizes of a [`moe_gate_up`] call: `(hidden, pairs, 2n)`.
fn gate_up_dims(xl: &Layout, wl: &Layout, rl: &Layout, k: usize) -> Result<(usize, usize, usize)> {
    let (tokens, hidden) = xl.shape().dims2()?;
    let (_, n2, wh) = wl.shape().dims3()?;
    let (pairs, _) = rl.shape().dims2()?;
    if wh != hidden || pairs != tokens * k {
        candle_core::bail!("moe_gate_up: input {:?}, experts {:?}, route {:?}", xl.dims(), wl.dims(), rl.dims())
    }
    Ok((hidden, pairs, n2))
}

/// Checked sizes of a [`moe_down`] call: `(tokens, n, hidden)`.
fn down_dims(al: &Layout, wl: &Layout, rl: &Layout, k: usize) -> Result<(usize, usize, usize)> {
    let (pairs, n) = al.shape().dims2()?;
    let (_, hidden, wn) = wl.shape().dims3()?;
    if wn != n || k == 0 || pairs % k != 0 || rl.dims() != [pairs, 2] {
        candle_core::bail!("moe_down: activations {:?}, experts {:?}, route {:?}", al.dims(), wl.dims(), rl.dims())
    }
    Ok((pairs / k, n, hidden))
}

impl candle_core::CustomOp2 for MoeRoute {
    fn name(&self) -> &'static str {
        "occ-moe-route"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout, g: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let (tokens, hidden, experts) = route_dims(xl, gl, self.0.top_k)?;
        let k = self.0.top_k;
        let CpuStorage::F32(gate) = g else { candle_core::bail!("moe_route: the router weight must be f32") };
        let gate = contiguous(gate, gl, "moe_route router")?;
        let out = with_float!(x, "moe_route", |v: T| {
            let xs = contiguous(v, xl, "moe_route input")?;
            let mut route = Vec::with_capacity(tokens * k * 2);
            for t in 0..tokens {
                let row = &xs[t * hidden..(t + 1) * hidden];
                let logits: Vec<f32> = (0..experts)
                    .map(|e| row.iter().zip(&gate[e * hidden..(e + 1) * hidden]).map(|(a, b)| a.to_f32() * b).sum())
                    .collect();
                let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut probs: Vec<f32> = logits.iter().map(|l| (l - m).exp()).collect();
                let total: f32 = probs.iter().sum();
                probs.iter_mut().for_each(|p| *p /= total);
                let mut picked = Vec::with_capacity(k);
                for _ in 0..k {
                    let (best, bv) =
                        probs
                            .iter()
                            .enumerate()
                            .fold((0, f32::NEG_INFINITY), |acc, (e, &p)| if p > acc.1 { (e, p) } else { acc });
                    picked.push((best, bv));
                    probs[best] = f32::NEG_INFINITY;
                }
                let sum: f32 = picked.iter().map(|p| p.1).sum();
                for (e, w) in picked {
                    let w = if self.0.norm_topk_prob && k > 1 { w / (sum + 1e-20) } else { w };
                    route.push(e as f32);
                    route.push(w * self.0.scale);
                }
            }
            CpuStorage::F32(route)
        });
        Ok((out, Shape::from((tokens * k, 2))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        g: &candle_core::CudaStorage,
        gl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (tokens, hidden, experts) = route_dims(xl, gl, self.0.top_k)?;
        let k = self.0.top_k;
        Ok((
            cuda::moe_route(x, xl, g, gl, (tokens, hidden, experts), (k, self.0.norm_topk_prob, self.0.scale))?,
            Shape::from((tokens * k, 2)),
        ))
    }
}

/// Routes every token: `(tokens · k, 2)` float32 rows `[expert, weight]`, the greedy top-k of the
/// float32 softmax of `x · gateᵀ` (ties to the lower index), weights renormalised when asked and
/// scaled.
///
/// # Shapes
/// `xs`: `(tokens, hidden)`; `gate`: `(experts, hidden)` f32.
pub fn moe_route(xs: &Tensor, gate: &Tensor, spec: RouteSpec) -> Result<Tensor> {
    xs.contiguous()?.apply_op2_no_bwd(gate, &MoeRoute(spec))
}

struct MoeGateUp {
    top_k: usize,
}

impl candle_core::CustomOp3 for MoeGateUp {
    fn name(&self) -> &'static str {
        "occ-moe-gate-up"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
        r: &CpuStorage,
        rl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (hidden, pairs, n2) = gate_up_dims(xl, wl, rl, self.top_k)?;
        let (k, n) = (self.top_k, n2 / 2);
        let CpuStorage::F32(route) = r else { candle_core::bail!("moe_gate_up: the route must be f32") };
        let route = contiguous(route, rl, "moe route")?;
        let out = float_pair!(x, w, "moe_gate_up", |xv, wv: T| {
            let xv = contiguous(xv, xl, "moe_gate_up input")?;
            let wv = contiguous(wv, wl, "moe_gate_up experts")?;
            let mut act: Vec<T> = Vec::with_capacity(pairs * n);
            for p in 0..pairs {
                let e = route[p * 2] as usize;
                let xr = &xv[(p / k) * hidden..(p / k + 1) * hidden];
                for c in 0..n {
                    let dot = |row: usize| -> f32 {
                        let wr = &wv[(e * n2 + row) * hidden..(e * n2 + row + 1) * hidden];
                        wr.iter().zip(xr).map(|(a, b)| a.to_f32() * b.to_f32()).sum()
                    };
                    act.push(swiglu_one(dot(c), dot(n + c)));
                }
            }
            WithDType::to_cpu_storage_owned(act)
        });
        Ok((out, Shape::from((pairs, n))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        w: &candle_core::CudaStorage,
        wl: &Layout,
        r: &candle_core::CudaStorage,
        rl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (hidden, pairs, n2) = gate_up_dims(xl, wl, rl, self.top_k)?;
        let out = cuda::moe_gate_up(x, xl, w, wl, r, rl, [pairs, self.top_k, n2 / 2, hidden], pairs * n2 / 2)?;
        Ok((out, Shape::from((pairs, n2 / 2))))
    }
}

/// Gate/up projection of every routed (token, expert) pair fused with SwiGLU.
///
/// # Shapes
/// `xs`: `(tokens, hidden)`; `gate_up`: `(experts, 2n, hidden)` (gate rows, then up rows); `route`:
/// `(tokens · k, 2)` from [`moe_route`] → `(tokens · k, n)`.
pub fn moe_gate_up(xs: &Tensor, gate_up: &Tensor, route: &Tensor, top_k: usize) -> Result<Tensor> {
    xs.contiguous()?.apply_op3_no_bwd(gate_up, route, &MoeGateUp { top_k })
}

struct MoeDown {
    top_k: usize,
}

impl candle_core::CustomOp3 for MoeDown {
    fn name(&self) -> &'static str {
        "occ-moe-down"
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        al: &Layout,
        w: &CpuStorage,
        wl: &Layout,
        r: &CpuStorage,
        rl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (tokens, n, hidden) = down_dims(al, wl, rl, self.top_k)?;
        let k = self.top_k;
        let CpuStorage::F32(route) = r else { candle_core::bail!("moe_down: the route must be f32") };
        let route = contiguous(route, rl, "moe route")?;
        let out = float_pair!(a, w, "moe_down", |av, wv: T| {
            let av = contiguous(av, al, "moe_down activations")?;
            let wv = contiguous(wv, wl, "moe_down experts")?;
            let mut out = Vec::with_capacity(tokens * hidden);
            for t in 0..tokens {
                for c in 0..hidden {
                    let mut total = 0f32;
                    for j in 0..k {
                        let p = t * k + j;
                        let e = route[p * 2] as usize;
                        let dr = &wv[(e * hidden + c) * n..(e * hidden + c + 1) * n];
                        let acc: f32 =
                            dr.iter().zip(&av[p * n..(p + 1) * n]).map(|(x, y)| x.to_f32() * y.to_f32()).sum();
                        total += <T>::from_f32(acc * route[p * 2 + 1]).to_f32();
                    }
                    out.push(<T>::from_f32(total));
                }
            }
            WithDType::to_cpu_storage_owned(out)
        });
        Ok((out, Shape::from((tokens, hidden))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        a: &candle_core::CudaStorage,
        al: &Layout,
        w: &candle_core::CudaStorage,
        wl: &Layout,
        r: &candle_core::CudaStorage,
        rl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (tokens, n, hidden) = down_dims(al, wl, rl, self.top_k)?;
        let k = self.top_k;
        let out = cuda::moe_down(a, al, w, wl, r, rl, (tokens, k, n, hidden))?;
        Ok((out, Shape::from((tokens, hidden))))
    }
}

/// Down projection of every routed pair, each output rounded after its routing weight, summed per
/// token in float32 and rounded.
///
/// # Shapes
/// `act`: `(tokens · k, n)`; `down`: `(experts, hidden, n)`; `route`: `(tokens · k, 2)` →
/// `(tokens, hidden)`.
pub fn moe_down(act: &Tensor, down: &Tensor, route: &Tensor, top_k: usize) -> Result<Tensor> {
    act.contiguous()?.apply_op3_no_bwd(down, route, &MoeDown { top_k })
}
