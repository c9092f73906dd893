//! The weights one decode step reads, from the decoder's config and its routing (issue 16: "report
//! achieved GB/s"): divided by a measured step time it gives the decode's achieved weight
//! bandwidth (`bench --json`'s `decode_weight_gb_s`, docs/cli-json.md).
//!
//! # What is counted
//! Every weight tensor a step of `slots` sequences (one new token each) must read at least once,
//! in the bytes it is stored in ([`DecodeWeights::new`]):
//! - **embeddings**: one row of `embed_tokens` per slot (`slots · hidden`);
//! - **attention**, every layer: q·k·v and o projections, input and post-attention RMSNorm weights;
//! - **dense MLP**, each dense layer (`first_k_dense_replace`): gate, up and down projections;
//! - **router**, each MoE layer: the gate (`experts × hidden`, stored in float32);
//! - **shared experts**, each MoE layer: gate, up and down of the fused shared MLP;
//! - **routed experts**, each MoE layer: gate, up and down of `min(experts, slots · top_k)` experts.
//!   Exact at one slot (its top-k); with more slots it is the most distinct experts the step can
//!   need (every expert once `slots · top_k ≥ experts`), so the figure is an upper bound there;
//! - **head**: the final RMSNorm weight and the whole `lm_head` (`vocab × hidden`).
//!
//! Not counted: the key/value cache (it grows with the position, not a weight), activations, and
//! weights read more than once (a kernel that re-reads a tile, an expert read once per routed
//! pair). A step that reads the weights exactly once at the device's memory bandwidth would take
//! `total / bandwidth`; DeepSeek-OCR in bf16 reads 1.15 GB per step at batch 1 (the unit tests).

use candle_core::DType;

use crate::decoder::DecoderConfig;

/// Bytes of weights one decode step reads, by part (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeWeights {
    pub embeddings: u64,
    pub attention: u64,
    pub dense_mlp: u64,
    pub router: u64,
    pub shared_experts: u64,
    pub routed_experts: u64,
    pub head: u64,
}

impl DecodeWeights {
    /// The weights a decode step of `slots` sequences reads with `cfg` stored in `dtype` (the
    /// router's gate in float32, as the decoder loads it).
    pub fn new(cfg: &DecoderConfig, dtype: DType, slots: usize) -> DecodeWeights {
        let b = dtype.size_in_bytes() as u64;
        let slots = slots.max(1) as u64;
        let hidden = cfg.hidden_size as u64;
        let (heads, kv, d) = (cfg.num_attention_heads as u64, cfg.num_key_value_heads as u64, cfg.head_dim() as u64);
        let layers = cfg.num_hidden_layers;
        let moe_layers = (0..layers).filter(|&i| cfg.is_moe_layer(i)).count() as u64;
        let dense_layers = layers as u64 - moe_layers;
        // q, k, v (fused at load), o; two RMSNorm weights
        let attention_layer = hidden * (heads + 2 * kv) * d * b + heads * d * hidden * b + 2 * hidden * b;
        let mlp = |width: u64| 3 * hidden * width * b; // gate, up, down
        let (router, shared, routed) = match cfg.n_routed_experts {
            Some(experts) => {
                let experts = experts as u64;
                let chosen = experts.min(slots * cfg.num_experts_per_tok as u64);
                let width = cfg.moe_intermediate_size as u64;
                let shared_width = cfg.n_shared_experts.unwrap_or(0) as u64 * width;
                (experts * hidden * 4, mlp(shared_width), chosen * mlp(width))
            }
            None => (0, 0, 0),
        };
        DecodeWeights {
            embeddings: slots.min(cfg.vocab_size as u64) * hidden * b,
            attention: layers as u64 * attention_layer,
            dense_mlp: dense_layers * mlp(cfg.intermediate_size as u64),
            router: moe_layers * router,
            shared_experts: moe_layers * shared,
            routed_experts: moe_layers * routed,
            head: cfg.vocab_size as u64 * hidden * b + hidden * b,
        }
    }

    /// All of it: the bytes of weights one step reads.
    pub fn total(&self) -> u64 {
        self.embeddings
            + self.attention
            + self.dense_mlp
            + self.router
            + self.shared_experts
            + self.routed_experts
            + self.head
    }

    /// The achieved weight bandwidth of a step that took `step_seconds`, in GB/s (10⁹ bytes);
    /// `None` for a step time that is not positive.
    pub fn gb_per_s(&self, step_seconds: f64) -> Option<f64> {
        (step_seconds > 0.0 && step_seconds.is_finite()).then(|| self.total() as f64 / step_seconds / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DeepSeek-OCR in bf16 at one slot, by hand (hidden 1280, 12 layers of 10 heads × 128, layer 0
    /// dense of width 6,848, 11 MoE layers of 64 experts top-6 of width 896 and 2 shared, vocabulary
    /// 129,280).
    #[test]
    fn deepseek_ocr_in_bf16_at_batch_one() {
        let w = DecodeWeights::new(&DecoderConfig::deepseek_ocr(), DType::BF16, 1);
        assert_eq!(w.embeddings, 1280 * 2);
        // q·k·v 1280 × 3,840, o 1,280 × 1,280, two norms: 13,112,320 B per layer
        assert_eq!(w.attention, 12 * (1280 * 3840 * 2 + 1280 * 1280 * 2 + 2 * 1280 * 2));
        assert_eq!(w.attention, 157_347_840);
        assert_eq!(w.dense_mlp, 3 * 1280 * 6848 * 2);
        assert_eq!(w.router, 11 * 64 * 1280 * 4);
        assert_eq!(w.shared_experts, 11 * 3 * 1280 * 1792 * 2);
        assert_eq!(w.routed_experts, 11 * 6 * 3 * 1280 * 896 * 2);
        assert_eq!(w.head, 129_280 * 1280 * 2 + 1280 * 2);
        assert_eq!(w.total(), 1_150_059_520);
        // 1.15 GB in 1.3 ms (issue 16's batch-1 step): 884.7 GB/s
        let gbs = w.gb_per_s(1.3e-3).unwrap();
        assert!((gbs - 1_150_059_520.0 / 1.3e-3 / 1e9).abs() < 1e-9, "{gbs}");
        assert!((gbs - 884.7).abs() < 0.1, "{gbs}");
        assert_eq!(w.gb_per_s(0.0), None);
    }

    /// More slots read more embedding rows and more distinct experts, up to every expert.
    #[test]
    fn routed_experts_grow_with_the_slots_up_to_all_of_them() {
        let cfg = DecoderConfig::deepseek_ocr();
        let one = DecodeWeights::new(&cfg, DType::BF16, 1);
        let expert = 3 * 1280 * 896 * 2;
        let two = DecodeWeights::new(&cfg, DType::BF16, 2);
        assert_eq!(two.routed_experts, 11 * 12 * expert);
        assert_eq!(two.embeddings, 2 * one.embeddings);
        assert_eq!(two.total() - one.total(), 11 * 6 * expert + 1280 * 2);
        // 11 slots × top-6 = 66 ≥ 64: every expert, and no more at 64 slots
        let all = DecodeWeights::new(&cfg, DType::BF16, 11);
        assert_eq!(all.routed_experts, 11 * 64 * expert);
        assert_eq!(DecodeWeights::new(&cfg, DType::BF16, 64).routed_experts, all.routed_experts);
        // the rest does not depend on the slots
        assert_eq!(
            (all.attention, all.dense_mlp, all.router, all.shared_experts, all.head),
            (one.attention, one.dense_mlp, one.router, one.shared_experts, one.head)
        );
    }

    /// A small config by hand in float32: every part, the router in float32 too.
    #[test]
    fn a_small_config_in_f32_by_hand() {
        let cfg = DecoderConfig {
            vocab_size: 100,
            hidden_size: 8,
            intermediate_size: 12,
            moe_intermediate_size: 4,
            num_hidden_layers: 3,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            n_routed_experts: Some(5),
            num_experts_per_tok: 2,
            n_shared_experts: Some(1),
            first_k_dense_replace: 1,
            ..DecoderConfig::deepseek_ocr()
        };
        let w = DecodeWeights::new(&cfg, DType::F32, 1);
        // head_dim 4: q·k·v 8 × (2 + 2) · 4 = 128 values, o 8 · 8 = 64, norms 16 → 208 × 4 B per layer
        assert_eq!(w.attention, 3 * 208 * 4);
        assert_eq!(w.dense_mlp, 3 * 8 * 12 * 4);
        assert_eq!(w.router, 2 * 5 * 8 * 4);
        assert_eq!(w.shared_experts, 2 * 3 * 8 * 4 * 4);
        assert_eq!(w.routed_experts, 2 * 2 * 3 * 8 * 4 * 4);
        assert_eq!(w.embeddings, 8 * 4);
        assert_eq!(w.head, 100 * 8 * 4 + 8 * 4);
        assert_eq!(w.total(), 2496 + 1152 + 320 + 768 + 1536 + 32 + 3232);
        // bf16 halves everything but the router
        let h = DecodeWeights::new(&cfg, DType::BF16, 1);
        assert_eq!(h.total(), (w.total() - w.router) / 2 + w.router);
        // 3 slots × top-2 = 6 ≥ 5 experts: all five
        assert_eq!(DecodeWeights::new(&cfg, DType::F32, 3).routed_experts, 2 * 5 * 3 * 8 * 4 * 4);
    }
}
