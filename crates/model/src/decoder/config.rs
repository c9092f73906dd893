//! Typed decoder configuration ([`DecoderConfig`]) parsed from `config.json` (docs/MODEL.md §7.1).
//!
//! The reference (HF remote code) builds the decoder from the **top-level** keys of `config.json`
//! (`DeepseekOCRConfig` is a `DeepseekV2Config`); `language_config` repeats them for vLLM. We read the
//! top-level key first, then `language_config`, then the `DeepseekV2Config` default for the keys the
//! checkpoint leaves out (`routed_scaling_factor`, `norm_topk_prob`, `rms_norm_eps`, …). Structural
//! sizes have no default: a missing one is an error naming the field. Every value the port does not
//! implement (MLA attention, `noaux_tc` routing, sigmoid scoring, RoPE scaling, …) is rejected by name.

use serde_json::Value;

use crate::config::{ConfigError, HfConfig};

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

    /// Parses the decoder keys of a `config.json` document (see the module docs for precedence).
    pub fn from_json_value(doc: &Value) -> Result<DecoderConfig, ConfigError> {
        let lang = doc.get("language_config").filter(|v| v.is_object());
        Keys { doc, lang }.parse()
    }
}

impl TryFrom<&HfConfig> for DecoderConfig {
    type Error = ConfigError;

    fn try_from(hf: &HfConfig) -> Result<DecoderConfig, ConfigError> {
        let top: serde_json::Map<String, Value> = hf.text.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut doc = Value::Object(top);
        if let Value::Object(map) = &mut doc {
            map.insert("language_config".into(), hf.language_config.clone());
        }
        DecoderConfig::from_json_value(&doc)
    }
}

/// Key lookup with the reference's precedence: top level, then `language_config`.
struct Keys<'a> {
    doc: &'a Value,
    lang: Option<&'a Value>,
}

fn unsupported(field: &str, value: &Value, expected: &str) -> ConfigError {
    ConfigError::Unsupported { field: field.into(), value: value.to_string(), expected: expected.into() }
}

impl Keys<'_> {
    /// The value of `field`, `None` when absent or JSON `null` at both levels.
    fn get(&self, field: &str) -> Option<&Value> {
        let top = self.doc.get(field).filter(|v| !v.is_null());
        top.or_else(|| self.lang.and_then(|l| l.get(field)).filter(|v| !v.is_null()))
    }

    fn usize_opt(&self, field: &str) -> Result<Option<usize>, ConfigError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => {
                v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| unsupported(field, v, "a non-negative integer"))
            }
        }
    }

    fn usize_req(&self, field: &str) -> Result<usize, ConfigError> {
        self.usize_opt(field)?.ok_or_else(|| ConfigError::Unsupported {
            field: field.into(),
            value: "missing".into(),
            expected: "a non-negative integer (the decoder needs it; no default is assumed)".into(),
        })
    }

    fn usize_or(&self, field: &str, default: usize) -> Result<usize, ConfigError> {
        Ok(self.usize_opt(field)?.unwrap_or(default))
    }

    fn f64_or(&self, field: &str, default: f64) -> Result<f64, ConfigError> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| unsupported(field, v, "a number")),
        }
    }

    fn bool_or(&self, field: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| unsupported(field, v, "true or false")),
        }
    }

    fn str_or<'s>(&'s self, field: &str, default: &'s str) -> Result<&'s str, ConfigError> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v.as_str().ok_or_else(|| unsupported(field, v, "a string")),
        }
    }

    /// Rejects a key whose value differs from the one the port implements.
    fn expect(&self, field: &str, ok: impl Fn(&Value) -> bool, expected: &str) -> Result<(), ConfigError> {
        match self.get(field) {
            Some(v) if !ok(v) => Err(unsupported(field, v, expected)),
            _ => Ok(()),
        }
    }

    fn parse(&self) -> Result<DecoderConfig, ConfigError> {
        // DeepseekV2Config defaults `use_mla` to true; DeepSeek-OCR sets it false. MLA is not ported.
        if self.bool_or("use_mla", true)? {
            return Err(ConfigError::Unsupported {
                field: "use_mla".into(),
                value: self.get("use_mla").map_or("missing (DeepseekV2Config default true)".into(), Value::to_string),
                expected: "false: only plain multi-head attention is implemented (multi-head latent attention \
                           is not ported)"
                    .into(),
            });
        }
        self.expect("scoring_func", |v| v.as_str() == Some("softmax"), "\"softmax\" (sigmoid scoring is not ported)")?;
        self.expect("hidden_act", |v| v.as_str() == Some("silu"), "\"silu\"")?;
        self.expect("attention_bias", |v| v.as_bool() == Some(false), "false (projection biases are not ported)")?;
        self.expect("pretraining_tp", |v| v.as_u64() == Some(1), "1")?;
        self.expect(
            "tie_word_embeddings",
            |v| v.as_bool() == Some(false),
            "false (lm_head and embed_tokens are separate)",
        )?;
        self.expect("lm_head", |v| v.as_bool() == Some(true), "true")?;
        self.expect("rm_head", |v| v.as_bool() == Some(false), "false")?;
        self.expect("ep_size", |v| v.as_u64() == Some(1), "1 (expert parallelism is not ported)")?;
        if let Some(v) = self.get("rope_scaling") {
            return Err(unsupported("rope_scaling", v, "null (plain RoPE; linear/dynamic/yarn scaling is not ported)"));
        }
        let n_group = self.usize_opt("n_group")?;
        let topk_group = self.usize_opt("topk_group")?;
        // DeepseekV2Config's default is the misspelt "gready", which the reference gate rejects.
        let topk_method = match self.str_or("topk_method", "gready")? {
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
        let n_routed_experts = self.usize_opt("n_routed_experts")?;
        let cfg = DecoderConfig {
            vocab_size: self.usize_req("vocab_size")?,
            hidden_size: self.usize_req("hidden_size")?,
            intermediate_size: self.usize_req("intermediate_size")?,
            moe_intermediate_size: if n_routed_experts.is_some() {
                self.usize_req("moe_intermediate_size")?
            } else {
                self.usize_or("moe_intermediate_size", 1407)?
            },
            num_hidden_layers: self.usize_req("num_hidden_layers")?,
            num_attention_heads: self.usize_req("num_attention_heads")?,
            num_key_value_heads: match self.usize_opt("num_key_value_heads")? {
                Some(n) => n,
                None => self.usize_req("num_attention_heads")?,
            },
            n_routed_experts,
            num_experts_per_tok: if n_routed_experts.is_some() { self.usize_req("num_experts_per_tok")? } else { 0 },
            n_shared_experts: self.usize_opt("n_shared_experts")?.filter(|&n| n > 0),
            first_k_dense_replace: self.usize_or("first_k_dense_replace", 0)?,
            moe_layer_freq: self.usize_or("moe_layer_freq", 1)?,
            routed_scaling_factor: self.f64_or("routed_scaling_factor", 1.0)?,
            topk_method,
            norm_topk_prob: self.bool_or("norm_topk_prob", false)?,
            rms_norm_eps: self.f64_or("rms_norm_eps", 1e-6)?,
            rope_theta: self.f64_or("rope_theta", 10_000.0)?,
            max_position_embeddings: self.usize_or("max_position_embeddings", 2048)?,
            bos_token_id: self.usize_or("bos_token_id", 100_000)? as u32,
            eos_token_id: self.usize_or("eos_token_id", 100_001)? as u32,
        };
        if let Some(hd) = self.usize_opt("head_dim")? {
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

    const REAL: &str = include_str!("../../../core/assets/deepseek-ocr/config.json");

    fn parse(text: &str) -> Result<DecoderConfig, ConfigError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        DecoderConfig::from_json_value(&doc)
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
