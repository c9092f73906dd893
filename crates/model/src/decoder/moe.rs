//! Mixture of experts (`model.layers.N.mlp` for N ≥ `first_k_dense_replace`, spec §5.3).
//!
//! Router: `softmax(x_f32 · W_f32ᵀ)` in float32, the top-k experts by score (greedy, or limited to
//! the best groups), weights = raw probabilities (renormalised only when `norm_topk_prob`) ×
//! `routed_scaling_factor`. Each routed expert runs on the tokens routed to it (gathered with
//! `index_select`); its outputs are upcast to float32, weighted and summed back per token
//! (`index_add`), cast to the compute dtype, and the always-on shared experts are added.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::config::{DecoderConfig, TopkMethod};
use super::mlp::Mlp;

/// Top-k routing of one token: `(expert, weight)` pairs.
pub type Route = Vec<(usize, f32)>;

/// The routing rule, separated from the tensors so it can be tested exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Router {
    pub top_k: usize,
    pub method: TopkMethod,
    pub norm_topk_prob: bool,
    pub routed_scaling_factor: f64,
}

impl Router {
    pub fn new(cfg: &DecoderConfig) -> Router {
        Router {
            top_k: cfg.num_experts_per_tok,
            method: cfg.topk_method,
            norm_topk_prob: cfg.norm_topk_prob,
            routed_scaling_factor: cfg.routed_scaling_factor,
        }
    }

    /// Routes one token from its softmax `scores` (one per expert).
    pub fn route(&self, scores: &[f32]) -> Route {
        let n = scores.len();
        let eligible: Vec<bool> = match self.method {
            TopkMethod::Greedy => vec![true; n],
            TopkMethod::GroupLimited { n_group, topk_group } => {
                let per = n / n_group.max(1);
                let group_max: Vec<f32> = (0..n_group)
                    .map(|g| scores[g * per..(g + 1) * per].iter().copied().fold(f32::NEG_INFINITY, f32::max))
                    .collect();
                let best = top_indices(&group_max, topk_group);
                (0..n).map(|e| best.contains(&(e / per.max(1)))).collect()
            }
        };
        // The reference zeroes the scores of ineligible experts (masked_fill 0.0) before its top-k.
        let masked: Vec<f32> = scores.iter().zip(&eligible).map(|(&s, &ok)| if ok { s } else { 0.0 }).collect();
        let idx = top_indices(&masked, self.top_k);
        let mut weights: Vec<f32> = idx.iter().map(|&e| masked[e]).collect();
        let scale = self.routed_scaling_factor as f32;
        if self.top_k > 1 && self.norm_topk_prob {
            let denom = weights.iter().sum::<f32>() + 1e-20;
            weights.iter_mut().for_each(|w| *w = *w / denom * scale);
        } else {
            weights.iter_mut().for_each(|w| *w *= scale);
        }
        idx.into_iter().zip(weights).collect()
    }
}

/// Indices of the `k` largest values, largest first; ties go to the lower index.
fn top_indices(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Routed experts, their float32 router and the shared experts.
#[derive(Debug, Clone)]
pub struct Moe {
    experts: Vec<Mlp>,
    /// Router weight `(n_experts, hidden)`, held in float32 (the reference upcasts it per call).
    gate: Tensor,
    shared_experts: Option<Mlp>,
    router: Router,
}

impl Moe {
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder<'_>) -> Result<Moe> {
        let n = cfg.n_routed_experts.unwrap_or(0);
        let experts = (0..n)
            .map(|i| Mlp::new(cfg.hidden_size, cfg.moe_intermediate_size, vb.pp("experts").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let gate = vb.pp("gate").get_with_hints_dtype((n, cfg.hidden_size), "weight", Init::Const(0.0), DType::F32)?;
        let shared_experts = match cfg.n_shared_experts {
            Some(s) => Some(Mlp::new(cfg.hidden_size, cfg.moe_intermediate_size * s, vb.pp("shared_experts"))?),
            None => None,
        };
        Ok(Moe { experts, gate, shared_experts, router: Router::new(cfg) })
    }

    /// Routes every token: `(expert, weight)` pairs per token, in token order.
    ///
    /// # Shapes
    /// `xs`: `(tokens, hidden)`.
    pub fn routes(&self, xs: &Tensor) -> Result<Vec<Route>> {
        let logits = xs.to_dtype(DType::F32)?.matmul(&self.gate.t()?)?; // (n, E) f32
        let scores = candle_nn::ops::softmax_last_dim(&logits)?.to_vec2::<f32>()?;
        Ok(scores.iter().map(|s| self.router.route(s)).collect())
    }
}

impl Module for Moe {
    /// # Shapes
    /// `(batch, seq, hidden)` → `(batch, seq, hidden)`.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, s, hidden) = xs.dims3()?;
        let flat = xs.reshape((b * s, hidden))?;
        let routes = self.routes(&flat)?;
        // tokens and weights per expert
        let mut per_expert: Vec<(Vec<u32>, Vec<f32>)> = vec![(Vec::new(), Vec::new()); self.experts.len()];
        for (t, route) in routes.iter().enumerate() {
            for &(e, w) in route {
                let slot = per_expert.get_mut(e).ok_or_else(|| {
                    candle_core::Error::Msg(format!("moe: router picked expert {e} of {}", self.experts.len()))
                })?;
                slot.0.push(t as u32);
                slot.1.push(w);
            }
        }
        let device = xs.device();
        let mut acc = Tensor::zeros((b * s, hidden), DType::F32, device)?;
        for (expert, (tokens, weights)) in self.experts.iter().zip(per_expert) {
            if tokens.is_empty() {
                continue;
            }
            let m = tokens.len();
            let idx = Tensor::from_vec(tokens, m, device)?;
            let w = Tensor::from_vec(weights, (m, 1), device)?;
            let out = expert.forward(&flat.index_select(&idx, 0)?)?; // (m, hidden)
            let out = out.to_dtype(DType::F32)?.broadcast_mul(&w)?;
            acc = acc.index_add(&idx, &out, 0)?;
        }
        let mut ys = acc.to_dtype(xs.dtype())?;
        if let Some(shared) = &self.shared_experts {
            ys = (ys + shared.forward(&flat)?)?;
        }
        ys.reshape((b, s, hidden))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(method: TopkMethod, norm: bool, scale: f64, k: usize) -> Router {
        Router { top_k: k, method, norm_topk_prob: norm, routed_scaling_factor: scale }
    }

    #[test]
    fn greedy_top_k_keeps_raw_probabilities() {
        let scores = [0.05, 0.30, 0.10, 0.25, 0.20, 0.10];
        let r = router(TopkMethod::Greedy, false, 1.0, 3).route(&scores);
        assert_eq!(r, vec![(1, 0.30), (3, 0.25), (4, 0.20)]);
        let sum: f32 = r.iter().map(|x| x.1).sum();
        assert!(sum < 1.0, "no renormalisation");
    }

    #[test]
    fn renormalisation_and_scaling_factor() {
        let scores = [0.05, 0.30, 0.10, 0.25, 0.20, 0.10];
        let r = router(TopkMethod::Greedy, true, 2.0, 2).route(&scores);
        assert_eq!(r[0].0, 1);
        assert!((r[0].1 - 2.0 * 0.30 / 0.55).abs() < 1e-6);
        assert!((r[1].1 - 2.0 * 0.25 / 0.55).abs() < 1e-6);
        let r = router(TopkMethod::Greedy, false, 2.5, 1).route(&scores);
        assert_eq!(r, vec![(1, 0.75)]);
    }

    #[test]
    fn group_limited_top_k_only_picks_from_the_best_groups() {
        // groups of 2: {0,1} max .30, {2,3} max .26, {4,5} max .27 → best 2 groups: {0,1}, {4,5}
        let scores = [0.30, 0.01, 0.26, 0.25, 0.27, 0.0];
        let r = router(TopkMethod::GroupLimited { n_group: 3, topk_group: 2 }, false, 1.0, 3).route(&scores);
        let experts: Vec<usize> = r.iter().map(|x| x.0).collect();
        assert_eq!(experts, [0, 4, 1]);
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        assert_eq!(top_indices(&[0.5, 0.7, 0.7, 0.1], 2), [1, 2]);
    }
}
