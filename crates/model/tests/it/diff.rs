//! The differentiable forms of the fused ops (what training runs through) against the fused ops
//! themselves, op by op and through the whole tiny model: same values, and gradients that exist.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarBuilder;
use occ_model::config::VisionConfig;
use occ_model::decoder::{DecoderConfig, DecoderModel};
use occ_model::encoder::DeepEncoder;
use occ_model::ops::{self, Act};
use occ_model::synth::{synth_var_builder, uniform_tensor as rand_tensor};

fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap();
    let d = (&a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let m = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-6);
    d / m
}

/// A tracked copy of `t` (a variable), so the ops take their differentiable form.
fn tracked(t: &Tensor) -> Tensor {
    Var::from_tensor(t).unwrap().as_tensor().clone()
}

#[test]
fn each_differentiable_form_equals_its_fused_op() {
    let x = (rand_tensor(&[3, 5, 64], 1) * 3.0).unwrap();
    let w = (rand_tensor(&[64], 2) + 1.5).unwrap();
    let bias = rand_tensor(&[64], 3);
    let res = rand_tensor(&[3, 5, 64], 4);
    for dtype in [DType::F32, DType::BF16] {
        // bf16: the forms round where the fused ops round, up to one step of the largest value
        let tol = if dtype == DType::F32 { 2e-6 } else { 1.0 / 64.0 };
        let (x, w, bias, res) = (
            x.to_dtype(dtype).unwrap(),
            w.to_dtype(dtype).unwrap(),
            bias.to_dtype(dtype).unwrap(),
            res.to_dtype(dtype).unwrap(),
        );
        let pairs: Vec<(&str, Tensor, Tensor)> = vec![
            ("swiglu", ops::swiglu(&x).unwrap(), ops::swiglu(&tracked(&x)).unwrap()),
            ("rms_norm", ops::rms_norm(&x, &w, 1e-6).unwrap(), ops::rms_norm(&tracked(&x), &w, 1e-6).unwrap()),
            (
                "bias_act none+res",
                ops::bias_act(&x, &bias, Act::None, Some(&res)).unwrap(),
                ops::bias_act(&tracked(&x), &bias, Act::None, Some(&res)).unwrap(),
            ),
            (
                "bias_act gelu",
                ops::bias_act(&x, &bias, Act::Gelu, None).unwrap(),
                ops::bias_act(&tracked(&x), &bias, Act::Gelu, None).unwrap(),
            ),
            (
                "bias_act quick_gelu",
                ops::bias_act(&x, &bias, Act::QuickGelu, None).unwrap(),
                ops::bias_act(&tracked(&x), &bias, Act::QuickGelu, None).unwrap(),
            ),
            ("softmax", ops::softmax_last_dim(&x).unwrap(), ops::softmax_last_dim(&tracked(&x)).unwrap()),
            (
                "layer_norm",
                ops::layer_norm(&x, &w, &bias, 1e-5).unwrap(),
                ops::layer_norm(&tracked(&x), &w, &bias, 1e-5).unwrap(),
            ),
        ];
        for (name, fused, diff) in pairs {
            let r = max_rel(&fused, &diff);
            assert!(r <= tol, "{name} {dtype:?}: relative difference {r}");
        }
        // rope: (b, heads, seq, d) with (b, seq, d/2) tables
        let q = rand_tensor(&[2, 3, 5, 16], 5).to_dtype(dtype).unwrap();
        let ang = rand_tensor(&[2, 5, 8], 6);
        let (cos, sin) = (ang.cos().unwrap().to_dtype(dtype).unwrap(), ang.sin().unwrap().to_dtype(dtype).unwrap());
        let r = max_rel(&ops::rope(&q, &cos, &sin).unwrap(), &ops::rope(&tracked(&q), &cos, &sin).unwrap());
        assert!(r <= tol, "rope {dtype:?}: {r}");
    }
}

#[test]
fn differentiable_forms_have_gradients() {
    let x = Var::from_tensor(&rand_tensor(&[4, 32], 7)).unwrap();
    let w = Var::from_tensor(&(rand_tensor(&[32], 8) + 1.0).unwrap()).unwrap();
    let b = Var::from_tensor(&rand_tensor(&[32], 9)).unwrap();
    let y = ops::bias_act(&ops::rms_norm(x.as_tensor(), w.as_tensor(), 1e-6).unwrap(), b.as_tensor(), Act::Gelu, None)
        .unwrap();
    let y = ops::layer_norm(
        &ops::swiglu(&Tensor::cat(&[&y, &y.sqr().unwrap()], D::Minus1).unwrap()).unwrap(),
        w.as_tensor(),
        b.as_tensor(),
        1e-5,
    )
    .unwrap();
    let loss = ops::softmax_last_dim(&y).unwrap().sqr().unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    for (name, v) in [("x", &x), ("w", &w), ("b", &b)] {
        let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        let n = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(n > 0.0 && n.is_finite(), "{name}: gradient mass {n}");
    }
}

/// The tiny model's weights as variables (tracked) and as plain tensors.
fn tiny_weights() -> HashMap<String, Tensor> {
    let vision = VisionConfig::tiny();
    let dec = DecoderConfig::tiny();
    let synth = synth_var_builder(3, DType::F32, &Device::Cpu);
    occ_model::load::expected_tensors(&vision, &dec)
        .into_iter()
        .map(|(name, shape)| {
            let t = synth.get(shape.as_slice(), &name).unwrap();
            (name, t)
        })
        .collect()
}

#[test]
fn the_tracked_model_computes_what_the_inference_model_computes() {
    let plain = tiny_weights();
    let vars: HashMap<String, Tensor> = plain.iter().map(|(k, v)| (k.clone(), tracked(v))).collect();
    let dev = Device::Cpu;
    let vb_plain = VarBuilder::from_tensors(plain, DType::F32, &dev);
    let vb_vars = VarBuilder::from_tensors(vars.clone(), DType::F32, &dev);
    let pixels = (rand_tensor(&[2, 3, 128, 128], 11) * 0.9).unwrap();
    let enc_plain = DeepEncoder::new(&VisionConfig::tiny(), vb_plain.clone()).unwrap();
    let enc_vars = DeepEncoder::new(&VisionConfig::tiny(), vb_vars.clone()).unwrap();
    let a = enc_plain.encode_views(&pixels).unwrap();
    let b = enc_vars.encode_views(&pixels).unwrap();
    assert!(b.track_op(), "the tracked encoder's output must be tracked");
    let r = max_rel(&a, &b);
    assert!(r < 1e-5, "encoder: relative difference {r}");

    let cfg = DecoderConfig::tiny();
    let dec_plain = DecoderModel::new(&cfg, vb_plain).unwrap();
    let dec_vars = DecoderModel::new(&cfg, vb_vars).unwrap();
    let embeds = (rand_tensor(&[2, 9, cfg.hidden_size], 12) * 0.5).unwrap();
    let ha = dec_plain.forward_hidden(&embeds, 0, &mut dec_plain.new_cache(vec![0, 0])).unwrap();
    let hb = dec_vars.forward_hidden(&embeds, 0, &mut dec_vars.new_cache(vec![0, 0])).unwrap();
    assert!(hb.track_op());
    let r = max_rel(&ha, &hb);
    assert!(r < 1e-5, "decoder: relative difference {r}");
    // the gradient reaches the attention, the router, the experts and the head
    let loss = dec_vars.logits(&hb).unwrap().sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    for name in [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.1.mlp.gate.weight",
        "model.layers.1.mlp.shared_experts.down_proj.weight",
        "lm_head.weight",
    ] {
        let g = grads.get(&vars[name]).unwrap_or_else(|| panic!("no gradient for {name}"));
        let n = g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(n > 0.0 && n.is_finite(), "{name}: gradient mass {n}");
    }
}
