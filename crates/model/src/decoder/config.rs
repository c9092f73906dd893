//! Typed decoder configuration ([`DecoderConfig`]) parsed from `config.json` (docs/MODEL.md §7.1).
//!
//! The reference (HF remote code) builds the decoder from the **top-level** keys of `config.json`
//! (`DeepseekOCRConfig` is a `DeepseekV2Config`); `language_config` repeats them for vLLM. Both are
//! deserialised into [`HfDecoderKeys`] with the rest of [`HfConfig`]; we take the top-level key
//! first, then `language_config`'s, then the `DeepseekV2Config` default for the keys the
//! checkpoint leaves out (`routed_scaling_factor`, `norm_topk_prob`, `rms_norm_eps`, …). Structural
//! sizes have no default: a missing one is an error naming the field. Every value the port does not
//! implement (MLA attention, `noaux_tc` routing, sigmoid scoring, RoPE scaling, …) is rejected by name.

use crate::config::{ConfigError, HfConfig, HfDecoderKeys};

/// How the router picks experts (`topk_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopkMethod {
    /// The `k` largest softmax scores (`"greedy"`, DeepSeek-OCR).
    Greedy,
    /// `"group_limited_greedy"`: experts are split into `n_group` groups; only experts of the
    /// `topk_group` groups with the largest per-group maximum score are eligible.
    GroupLimited { n_group: usize, topk_group: usize },
}

/// The DeepSeek-V2 decoder as DeepSeek-OCR configures it (plain multi-head attention).
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    /// Width of the dense SwiGLU layers (`first_k_dense_replace` first layers).
    pub intermediate_size: usize,
    /// Width of each routed expert.
    pub moe_intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Routed experts per MoE layer (`None`: every layer is dense).
    pub n_routed_experts: Option<usize>,
    pub num_experts_per_tok: usize,
    /// Shared experts, fused into one MLP of width `moe_intermediate_size · n_shared_experts`.
    pub n_shared_experts: Option<usize>,
    pub first_k_dense_replace: usize,
    pub moe_layer_freq: usize,
    pub routed_scaling_factor: f64,
    pub topk_method: TopkMethod,
    /// Renormalise the top-k weights to sum 1 (`False` in DeepSeek-OCR).
    pub norm_topk_prob: bool,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub bos_token_id: u32,
    pub eos_token_id: u32,
}

impl DecoderConfig {
    /// DeepSeek3B-MoE-A570M as in deepseek-ai/DeepSeek-OCR `config.json` (docs/MODEL.md §7.1).
    pub fn deepseek_ocr() -> DecoderConfig {
        DecoderConfig {
            vocab_size: 129_280,
            hidden_size: 1280,
            intermediate_size: 6848,
            moe_intermediate_size: 896,
            num_hidden_layers: 12,
            num_attention_heads: 10,
            num_key_value_heads: 10,
            n_routed_experts: Some(64),
            num_experts_per_tok: 6,
            n_shared_experts: Some(2),
            first_k_dense_replace: 1,
            moe_layer_freq: 1,
            routed_scaling_factor: 1.0,
            topk_method: TopkMethod::Greedy,
            norm_topk_prob: false,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            max_position_embeddings: 8192,
            bos_token_id: 0,
            eos_token_id: 1,
        }
    }

    /// The reduced decoder of the CI parity goldens (`tests/reference/gen_decoder_goldens.py`):
    /// the real hidden size (the reference hard-codes the projector's 1280 outputs), vocabulary,
    /// heads and routing rule, with 3 layers (1 dense + 2 MoE), 16 routed experts and narrow MLPs.
    pub fn reduced() -> DecoderConfig {
        DecoderConfig {
            num_hidden_layers: 3,
            n_routed_experts: Some(16),
            moe_intermediate_size: 256,
            intermediate_size: 1024,
            ..DecoderConfig::deepseek_ocr()
        }
    }

    /// A toy decoder for unit tests and `--synthetic-weights --tiny` (2 layers, hidden 64 = the tiny
    /// projector's width, 4 heads, 8 experts top-2). The vocabulary stays real so that prompts of
    /// the real tokenizer can be embedded.
    pub fn tiny() -> DecoderConfig {
        DecoderConfig {
            hidden_size: 64,
            intermediate_size: 96,
            moe_intermediate_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 4,
            n_routed_experts: Some(8),
            num_experts_per_tok: 2,
            n_shared_experts: Some(1),
            max_position_embeddings: 1024,
            ..DecoderConfig::deepseek_ocr()
        }
    }

    /// Per-head width (`hidden_size / num_attention_heads`, as transformers' `LlamaAttention`).
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Whether layer `idx` is a MoE layer (reference rule: `n_routed_experts` set, `idx ≥
    /// first_k_dense_replace` and `idx % moe_layer_freq == 0`).
    pub fn is_moe_layer(&self, idx: usize) -> bool {
        self.n_routed_experts.is_some() && idx >= self.first_k_dense_replace && idx % self.moe_layer_freq.max(1) == 0
    }

    /// Checks the invariants the modules rely on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, value: usize, expected: &str| {
            Err(ConfigError::Unsupported { field: field.into(), value: value.to_string(), expected: expected.into() })
        };
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("moe_layer_freq", self.moe_layer_freq),
        ] {
            if value == 0 {
                return bad(field, value, "a positive integer");
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return bad("hidden_size", self.hidden_size, "a multiple of num_attention_heads");
        }
        if self.head_dim() % 2 != 0 {
            return bad("hidden_size", self.hidden_size, "an even head_dim (rotary embedding)");
        }
        if self.num_attention_heads % self.num_key_value_heads != 0 {
            return bad("num_key_value_heads", self.num_key_value_heads, "a divisor of num_attention_heads");
        }
        if let Some(e) = self.n_routed_experts {
            if self.num_experts_per_tok == 0 || self.num_experts_per_tok > e {
                return bad("num_experts_per_tok", self.num_experts_per_tok, "1..=n_routed_experts");
            }
            if let TopkMethod::GroupLimited { n_group, topk_group } = self.topk_method {
                if n_group == 0 || e % n_group != 0 {
                    return bad("n_group", n_group, "a positive divisor of n_routed_experts");
                }
                if topk_group == 0 || topk_group > n_group {
                    return bad("topk_group", topk_group, "1..=n_group");
                }
                if self.num_experts_per_tok > topk_group * (e / n_group) {
                    return bad("num_experts_per_tok", self.num_experts_per_tok, "at most the eligible experts");
                }
            }
        }
        Ok(())
    }

    /// The decoder of a `config.json`'s keys (see the module docs for the precedence).
    pub fn from_keys(
        top: &HfDecoderKeys,
        language_config: Option<&HfDecoderKeys>,
    ) -> Result<DecoderConfig, ConfigError> {
        Keys { top, lang: language_config }.parse()
    }
}

impl TryFrom<&HfConfig> for DecoderConfig {
    type Error = ConfigError;

    fn try_from(hf: &HfConfig) -> Result<DecoderConfig, ConfigError> {
        DecoderConfig::from_keys(&hf.decoder, hf.language_config.as_ref())
    }
}

/// The keys with the reference's precedence: top level, then `language_config`.
struct Keys<'a> {
    top: &'a HfDecoderKeys,
    lang: Option<&'a HfDecoderKeys>,
}

fn unsupported(field: &str, value: impl std::fmt::Display, expected: &str) -> ConfigError {
    ConfigError::Unsupported { field: field.into(), value: value.to_string(), expected: expected.into() }
}

/// A key of [`HfDecoderKeys`] by its `config.json` name.
type Field<T> = fn(&HfDecoderKeys) -> &Option<T>;

impl Keys<'_> {
    /// The value of a key, `None` when absent or `null` at both levels.
    fn get<T: Clone>(&self, key: Field<T>) -> Option<T> {
        key(self.top).clone().or_else(|| self.lang.and_then(|l| key(l).clone()))
    }

    /// A structural size: no default, a missing one is an error naming the field.
    fn req(&self, field: &str, key: Field<usize>) -> Result<usize, ConfigError> {
        self.get(key).ok_or_else(|| ConfigError::Unsupported {
            field: field.into(),
            value: "missing".into(),
            expected: "a non-negative integer (the decoder needs it; no default is assumed)".into(),
        })
    }

    /// Rejects a key whose value differs from the one the port implements.
    fn expect<T: Clone + PartialEq + std::fmt::Debug>(
        &self,
        field: &str,
        key: Field<T>,
        ok: T,
        expected: &str,
    ) -> Result<(), ConfigError> {
        match self.get(key) {
            Some(v) if v != ok => Err(unsupported(field, format!("{v:?}"), expected)),
            _ => Ok(()),
        }
    }

    fn parse(&self) -> Result<DecoderConfig, ConfigError> {
        // DeepseekV2Config defaults `use_mla` to true; DeepSeek-OCR sets it false. MLA is not ported.
        if self.get(|k| &k.use_mla).unwrap_or(true) {
            return Err(ConfigError::Unsupported {
                field: "use_mla".into(),
                value: self
                    .get(|k| &k.use_mla)
                    .map_or("missing (DeepseekV2Config default true)".into(), |v| v.to_string()),
                expected: "false: only plain multi-head attention is implemented (multi-head latent attention \
                           is not ported)"
                    .into(),
            });
        }
        let text = |s: &str| s.to_string();
        self.expect(
            "scoring_func",
            |k| &k.scoring_func,
            text("softmax"),
            "\"softmax\" (sigmoid scoring is not ported)",
        )?;
        self.expect("hidden_act", |k| &k.hidden_act, text("silu"), "\"silu\"")?;
        self.expect("attention_bias", |k| &k.attention_bias, false, "false (projection biases are not ported)")?;
        self.expect("pretraining_tp", |k| &k.pretraining_tp, 1, "1")?;
        self.expect(
            "tie_word_embeddings",
            |k| &k.tie_word_embeddings,
            false,
            "false (lm_head and embed_tokens are separate)",
        )?;
        self.expect("lm_head", |k| &k.lm_head, true, "true")?;
        self.expect("rm_head", |k| &k.rm_head, false, "false")?;
        self.expect("ep_size", |k| &k.ep_size, 1, "1 (expert parallelism is not ported)")?;
        if let Some(v) = self.get(|k| &k.rope_scaling) {
            return Err(unsupported("rope_scaling", v, "null (plain RoPE; linear/dynamic/yarn scaling is not ported)"));
        }
        let n_group = self.get(|k| &k.n_group);
        let topk_group = self.get(|k| &k.topk_group);
        // DeepseekV2Config's default is the misspelt "gready", which the reference gate rejects.
        let topk_method = match self.get(|k| &k.topk_method).as_deref().unwrap_or("gready") {
            "greedy" => TopkMethod::Greedy,
            "group_limited_greedy" => {
                TopkMethod::GroupLimited { n_group: n_group.unwrap_or(0), topk_group: topk_group.unwrap_or(0) }
            }
            other => {
                return Err(ConfigError::Unsupported {
                    field: "topk_method".into(),
                    value: format!("{other:?}"),
                    expected: "\"greedy\" or \"group_limited_greedy\" (noaux_tc needs e_score_correction_bias \
                               and is not ported)"
                        .into(),
                })
            }
        };
        let n_routed_experts = self.get(|k| &k.n_routed_experts);
        let num_attention_heads = self.req("num_attention_heads", |k| &k.num_attention_heads)?;
        let cfg = DecoderConfig {
            vocab_size: self.req("vocab_size", |k| &k.vocab_size)?,
            hidden_size: self.req("hidden_size", |k| &k.hidden_size)?,
            intermediate_size: self.req("intermediate_size", |k| &k.intermediate_size)?,
            moe_intermediate_size: match n_routed_experts {
                Some(_) => self.req("moe_intermediate_size", |k| &k.moe_intermediate_size)?,
                None => self.get(|k| &k.moe_intermediate_size).unwrap_or(1407),
            },
            num_hidden_layers: self.req("num_hidden_layers", |k| &k.num_hidden_layers)?,
            num_attention_heads,
            num_key_value_heads: self.get(|k| &k.num_key_value_heads).unwrap_or(num_attention_heads),
            n_routed_experts,
            num_experts_per_tok: match n_routed_experts {
                Some(_) => self.req("num_experts_per_tok", |k| &k.num_experts_per_tok)?,
                None => 0,
            },
            n_shared_experts: self.get(|k| &k.n_shared_experts).filter(|&n| n > 0),
            first_k_dense_replace: self.get(|k| &k.first_k_dense_replace).unwrap_or(0),
            moe_layer_freq: self.get(|k| &k.moe_layer_freq).unwrap_or(1),
            routed_scaling_factor: self.get(|k| &k.routed_scaling_factor).unwrap_or(1.0),
            topk_method,
            norm_topk_prob: self.get(|k| &k.norm_topk_prob).unwrap_or(false),
            rms_norm_eps: self.get(|k| &k.rms_norm_eps).unwrap_or(1e-6),
            rope_theta: self.get(|k| &k.rope_theta).unwrap_or(10_000.0),
            max_position_embeddings: self.get(|k| &k.max_position_embeddings).unwrap_or(2048),
            bos_token_id: self.get(|k| &k.bos_token_id).unwrap_or(100_000),
            eos_token_id: self.get(|k| &k.eos_token_id).unwrap_or(100_001),
        };
        if let Some(hd) = self.get(|k| &k.head_dim) {
            if hd != cfg.head_dim() {
                return Err(ConfigError::Unsupported {
                    field: "head_dim".into(),
                    value: hd.to_string(),
                    expected: format!("hidden_size / num_attention_heads = {}", cfg.head_dim()),
                });
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const REAL: &str = include_str!("../../../core/assets/deepseek-ocr/config.json");

    fn parse(text: &str) -> Result<DecoderConfig, ConfigError> {
        DecoderConfig::try_from(&HfConfig::from_json(text)?)
    }

    #[test]
    fn real_config_json_gives_the_preset() {
        assert_eq!(parse(REAL).unwrap(), DecoderConfig::deepseek_ocr());
        let hf = HfConfig::from_json(REAL).unwrap();
        assert_eq!(DecoderConfig::try_from(&hf).unwrap(), DecoderConfig::deepseek_ocr());
        assert_eq!(DecoderConfig::deepseek_ocr().head_dim(), 128);
    }

    #[test]
    fn moe_layers_follow_the_reference_rule() {
        let c = DecoderConfig::deepseek_ocr();
        let moe: Vec<bool> = (0..12).map(|i| c.is_moe_layer(i)).collect();
        assert_eq!(moe, [false, true, true, true, true, true, true, true, true, true, true, true]);
        let c = DecoderConfig { moe_layer_freq: 2, ..c };
        assert!(!c.is_moe_layer(1) && c.is_moe_layer(2) && !c.is_moe_layer(3));
    }

    fn with(key: &str, value: Value) -> String {
        let mut doc: Value = serde_json::from_str(REAL).unwrap();
        doc[key] = value.clone();
        doc["language_config"][key] = value;
        doc.to_string()
    }

    #[test]
    fn unsupported_values_are_rejected_by_name() {
        let cases: [(&str, Value, &str); 7] = [
            ("use_mla", Value::Bool(true), "use_mla"),
            ("topk_method", "noaux_tc".into(), "topk_method"),
            ("scoring_func", "sigmoid".into(), "scoring_func"),
            ("rope_scaling", serde_json::json!({"type": "yarn", "factor": 4.0}), "rope_scaling"),
            ("attention_bias", Value::Bool(true), "attention_bias"),
            ("num_key_value_heads", 3.into(), "num_key_value_heads"),
            ("hidden_act", "gelu".into(), "hidden_act"),
        ];
        for (key, value, field) in cases {
            let err = parse(&with(key, value)).unwrap_err();
            match err {
                ConfigError::Unsupported { field: f, .. } => assert_eq!(f, field, "{key}"),
                other => panic!("{key}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn switchable_values_are_followed() {
        let c = parse(&with("norm_topk_prob", Value::Bool(true))).unwrap();
        assert!(c.norm_topk_prob);
        let c = parse(&with("routed_scaling_factor", 2.5.into())).unwrap();
        assert_eq!(c.routed_scaling_factor, 2.5);
        let mut doc: Value = serde_json::from_str(&with("topk_method", "group_limited_greedy".into())).unwrap();
        doc["n_group"] = 8.into();
        doc["topk_group"] = 3.into();
        let c = parse(&doc.to_string()).unwrap();
        assert_eq!(c.topk_method, TopkMethod::GroupLimited { n_group: 8, topk_group: 3 });
    }

    #[test]
    fn values_of_the_wrong_type_are_errors() {
        for (key, value) in
            [("hidden_size", Value::from("big")), ("norm_topk_prob", 1.into()), ("rope_theta", "x".into())]
        {
            assert!(matches!(parse(&with(key, value)), Err(ConfigError::Parse(_))), "{key}");
        }
        // null is absent: the default applies
        assert_eq!(parse(&with("rms_norm_eps", Value::Null)).unwrap().rms_norm_eps, 1e-6);
    }

    #[test]
    fn language_config_is_the_fallback_and_missing_sizes_are_errors() {
        let mut doc: Value = serde_json::from_str(REAL).unwrap();
        let obj = doc.as_object_mut().unwrap();
        obj.remove("hidden_size");
        assert_eq!(parse(&doc.to_string()).unwrap().hidden_size, 1280);
        doc["language_config"].as_object_mut().unwrap().remove("hidden_size");
        let err = parse(&doc.to_string()).unwrap_err().to_string();
        assert!(err.contains("hidden_size") && err.contains("missing"), "{err}");
    }
}
