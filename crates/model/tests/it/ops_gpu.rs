//! The fused decode ops and the device MoE path on the GPU against their CPU specifications (never in
//! CI: `cargo test --release -p occ-model --features cuda --test it ops_gpu -- --ignored`).

use candle_core::{DType, Device, Module, Tensor};
use occ_model::decoder::moe::Moe;
use occ_model::decoder::DecoderConfig;
use occ_model::ops;
use occ_model::synth::{splitmix64_at, synth_var_builder};

use occ_model::synth::uniform_tensor as rand;

fn max_rel(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap();
    let b = b.to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap();
    let diff = (&a - &b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    let rms = b.sqr().unwrap().mean_all().unwrap().sqrt().unwrap().to_scalar::<f32>().unwrap();
    diff / rms.max(1e-12)
}

fn min_row_cosine(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap().flatten_to(0).unwrap();
    let b = b.to_dtype(DType::F32).unwrap().to_device(&Device::Cpu).unwrap().flatten_to(0).unwrap();
    let (a, b) = (a.reshape((a.dim(0).unwrap(), ())).unwrap(), b.reshape((b.dim(0).unwrap(), ())).unwrap());
    let dot = (&a * &b).unwrap().sum(1).unwrap();
    let n =
        (a.sqr().unwrap().sum(1).unwrap().sqrt().unwrap() * b.sqr().unwrap().sum(1).unwrap().sqrt().unwrap()).unwrap();
    (dot / n).unwrap().to_vec1::<f32>().unwrap().into_iter().fold(f32::INFINITY, f32::min)
}

#[test]
#[ignore = "needs a CUDA build (--features cuda) and a GPU"]
fn fused_ops_on_gpu_match_their_cpu_specification() {
    let gpu = ops::cuda_device(0).expect("a CUDA device");
    let mut failures = Vec::new();
    for dtype in [DType::F32, DType::BF16] {
        let tol = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
        let on = |t: &Tensor| t.to_dtype(dtype).unwrap().to_device(&gpu).unwrap();
        let cpu = |t: &Tensor| t.to_dtype(dtype).unwrap();
        let mut check = |name: &str, a: &Tensor, b: &Tensor| {
            let e = max_rel(a, b);
            eprintln!("{dtype:?} {name}: rel {e:.2e}");
            if e > tol {
                failures.push(format!("{dtype:?} {name}: {e}"));
            }
        };
        let x = (rand(&[5, 1, 1280], 1) * 3.0).unwrap();
        let w = (rand(&[1280], 2) + 1.0).unwrap();
        check(
            "rms_norm",
            &ops::rms_norm(&on(&x), &on(&w), 1e-6).unwrap(),
            &ops::rms_norm(&cpu(&x), &cpu(&w), 1e-6).unwrap(),
        );
        let g = (rand(&[7, 2 * 896], 3) * 4.0).unwrap();
        check("swiglu", &ops::swiglu(&on(&g)).unwrap(), &ops::swiglu(&cpu(&g)).unwrap());
        // a decode step: fused projection of 3 slots at different positions into a 40-column cache
        let (slots, h, kv, d, cap) = (3usize, 10usize, 10usize, 128usize, 40usize);
        let inv: Vec<f32> = (0..d / 2).map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / d as f32)).collect();
        let full = rand(&[2, slots, kv, cap, d], 4);
        let qkv = rand(&[slots, (h + 2 * kv) * d], 5);
        let pos_v = [0u32, 17, 39];
        let (cache_g, cache_c) = (on(&full), cpu(&full));
        let (pos_g, pos_c) = (Tensor::new(&pos_v, &gpu).unwrap(), Tensor::new(&pos_v, &Device::Cpu).unwrap());
        check(
            "rope_q",
            &ops::rope_q(&on(&qkv), &pos_g, h, kv, &inv).unwrap(),
            &ops::rope_q(&cpu(&qkv), &pos_c, h, kv, &inv).unwrap(),
        );
        ops::kv_rope_write(&cache_g, &on(&qkv), &pos_g, h, &inv).unwrap();
        ops::kv_rope_write(&cache_c, &cpu(&qkv), &pos_c, h, &inv).unwrap();
        check("kv_rope_write", &cache_g, &cache_c);
        let q = rand(&[slots, h, d], 6);
        check(
            "decode_attention",
            &ops::decode_attention(&on(&q), &cache_g, &pos_g, 0.088).unwrap(),
            &ops::decode_attention(&cpu(&q), &cache_c, &pos_c, 0.088).unwrap(),
        );
        let src = rand(&[2, kv, 9, d], 7);
        ops::kv_insert(&cache_g, &on(&src), 1).unwrap();
        ops::kv_insert(&cache_c, &cpu(&src), 1).unwrap();
        check("kv_insert", &cache_g, &cache_c);
    }
    let scores = rand(&[5, 129_280], 11);
    let want = ops::argmax_rows(&scores).unwrap().to_vec1::<u32>().unwrap();
    let got = ops::argmax_rows(&scores.to_device(&gpu).unwrap()).unwrap().to_vec1::<u32>().unwrap();
    assert_eq!(got, want, "argmax_rows on the GPU");
    let logits = Tensor::zeros((2, 50), DType::F32, &gpu).unwrap();
    ops::apply_ban(&logits, &Tensor::new(&[[3u32, ops::NO_BAN], [49, 0]], &gpu).unwrap()).unwrap();
    let l = logits.to_vec2::<f32>().unwrap();
    assert!(l[0][3].is_infinite() && l[1][49].is_infinite() && l[1][0].is_infinite());
    assert_eq!(l.iter().flatten().filter(|v| v.is_infinite()).count(), 3);
    let pos = Tensor::new(&[1u32, 2], &gpu).unwrap();
    ops::advance(&pos).unwrap();
    ops::write_u32(&pos, &[9, 9]).unwrap();
    ops::advance(&pos).unwrap();
    assert_eq!(pos.to_vec1::<u32>().unwrap(), [10, 10]);
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
#[ignore = "needs a CUDA build (--features cuda) and a GPU"]
fn device_moe_path_matches_host_routing_in_bf16() {
    let gpu = ops::cuda_device(0).expect("a CUDA device");
    let cfg = DecoderConfig::deepseek_ocr();
    let vb = synth_var_builder(0, DType::BF16, &gpu);
    let moe = Moe::new(&cfg, vb.pp("model.layers.1.mlp")).unwrap();
    let mut failures = Vec::new();
    for tokens in [1usize, 6, 8, 9, 101, 256, 257, 300, 1100] {
        let x = (rand(&[1, tokens, 1280], tokens as u64) * 2.0)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap()
            .to_device(&gpu)
            .unwrap();
        assert!(moe.uses_device_path(&x.reshape((tokens, 1280)).unwrap()));
        let dev = moe.forward(&x).unwrap();
        let host = moe.forward_host_routed(&x).unwrap();
        let (rel, cos) = (max_rel(&dev, &host), min_row_cosine(&dev.squeeze(0).unwrap(), &host.squeeze(0).unwrap()));
        eprintln!("moe bf16, {tokens} tokens: device vs host rel {rel:.2e}, min row cosine {cos:.6}");
        if cos < 0.9999 {
            failures.push(format!("{tokens} tokens: rel {rel}, min cosine {cos}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
#[ignore = "needs a CUDA build (--features cuda) and a GPU"]
fn device_moe_of_256_tokens_and_more_is_captured_in_a_graph() {
    // issue 16: a decode step of 256 slots routed 256 tokens through candle's thrust variant inside
    // the capture, and thrust's C++ exception aborted the process
    let gpu = ops::cuda_device(0).expect("a CUDA device");
    let cfg = DecoderConfig::deepseek_ocr();
    let moe = Moe::new(&cfg, synth_var_builder(0, DType::BF16, &gpu).pp("model.layers.1.mlp")).unwrap();
    for tokens in [200usize, 256, 512, 1100] {
        let x = (rand(&[tokens, 1, 1280], tokens as u64) * 2.0)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap()
            .to_device(&gpu)
            .unwrap();
        let eager = moe.forward(&x).unwrap().to_dtype(DType::F32).unwrap();
        // the step writes into a buffer made before the capture, as the batcher's step does
        let out = Tensor::zeros((tokens, 1, 1280), DType::BF16, &gpu).unwrap();
        let step = || out.slice_set(&moe.forward(&x)?, 0, 0);
        let graph = ops::capture_after_warmup(&gpu, &step).unwrap();
        let graph = graph.unwrap_or_else(|| panic!("{tokens} tokens: the MoE step was not captured"));
        out.slice_set(&out.zeros_like().unwrap(), 0, 0).unwrap();
        graph.launch().unwrap();
        gpu.synchronize().unwrap();
        let replayed = out.to_dtype(DType::F32).unwrap();
        let cos = min_row_cosine(&eager.squeeze(1).unwrap(), &replayed.squeeze(1).unwrap());
        eprintln!("moe bf16, {tokens} tokens captured: replay vs eager min row cosine {cos:.6}");
        assert!(cos > 0.9999, "{tokens} tokens: replay vs eager min row cosine {cos}");
    }
}

#[test]
#[ignore = "needs a CUDA build (--features cuda) and a GPU"]
fn vision_attention_and_epilogue_match_their_cpu_specification_in_bf16() {
    let gpu = ops::cuda_device(0).expect("a CUDA device");
    let mut failures = Vec::new();
    // (images, grid, window, heads, tables): SAM Base global and windowed, a Gundam tile's grid, CLIP
    let cases = [
        (1usize, (64usize, 64usize), None, 2usize, true),
        (2, (64, 64), Some(14usize), 2, true),
        (3, (40, 40), None, 1, true),
        (2, (1, 257), None, 3, false),
        (1, (16, 16), None, 2, true),
    ];
    for (b, (gh, gw), window, heads, tables) in cases {
        let grid = ops::VitGrid { heads, grid: (gh, gw), window, scale: 0.125 };
        let ((uh, uw), _) = grid.units();
        let bf = |t: Tensor| t.to_dtype(DType::BF16).unwrap();
        let qkv = bf((rand(&[b, gh * gw, 3 * heads * 64], 40 + gh as u64) * 2.0).unwrap());
        let bias = bf(rand(&[3 * heads * 64], 41));
        let rh = bf((rand(&[uh, uh, 64], 42) * 0.5).unwrap());
        let rw = bf((rand(&[uw, uw, 64], 43) * 0.5).unwrap());
        let rel_c = tables.then_some((&rh, &rw));
        let want = ops::vit_attention(&qkv, &bias, rel_c, grid).unwrap();
        let on = |t: &Tensor| t.to_device(&gpu).unwrap();
        let (rh_g, rw_g) = (on(&rh), on(&rw));
        let rel_g = tables.then_some((&rh_g, &rw_g));
        assert!(ops::vit_attention_supported(&on(&qkv), 64, (uh, uw), tables));
        let got = ops::vit_attention(&on(&qkv), &on(&bias), rel_g, grid).unwrap();
        let (rel, cos) =
            (max_rel(&got, &want), min_row_cosine(&got.reshape(((), 64)).unwrap(), &want.reshape(((), 64)).unwrap()));
        eprintln!("vit_attention bf16 {b} × {gh}×{gw} window {window:?} tables {tables}: rel {rel:.2e}, min row cosine {cos:.6}");
        if cos < 0.9999 {
            failures.push(format!("{gh}×{gw} {window:?}: rel {rel}, min cosine {cos}"));
        }
    }
    for dtype in [DType::F32, DType::BF16] {
        for (act, res) in
            [(ops::Act::None, false), (ops::Act::Gelu, false), (ops::Act::QuickGelu, false), (ops::Act::None, true)]
        {
            let x = (rand(&[3, 5, 768], 50) * 4.0).unwrap().to_dtype(dtype).unwrap();
            let b = rand(&[768], 51).to_dtype(dtype).unwrap();
            let r = rand(&[3, 5, 768], 52).to_dtype(dtype).unwrap();
            let want = ops::bias_act(&x, &b, act, res.then_some(&r)).unwrap();
            let on = |t: &Tensor| t.to_device(&gpu).unwrap();
            let got = ops::bias_act(&on(&x), &on(&b), act, res.then_some(&on(&r))).unwrap();
            let e = max_rel(&got, &want);
            eprintln!("bias_act {dtype:?} {act:?} residual {res}: rel {e:.2e}");
            if e > if dtype == DType::F32 { 1e-5 } else { 1e-2 } {
                failures.push(format!("bias_act {dtype:?} {act:?} {res}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The continuous-batching queue on the GPU with the slot cache starting small, so that it grows (and the
/// decode step's CUDA graph is captured again) three times: the same tokens as the eager queue.
#[test]
#[ignore = "needs a CUDA build (--features cuda) and a GPU"]
fn queue_graph_after_cache_growth_equals_eager_on_gpu() {
    use occ_model::batcher::{generate_queue, BatcherConfig};
    use occ_model::decoder::DecoderModel;
    use occ_model::generate::{GenerationConfig, PromptInput};
    let gpu = ops::cuda_device(0).expect("a CUDA device");
    let model = DecoderModel::new(&DecoderConfig::deepseek_ocr(), synth_var_builder(0, DType::BF16, &gpu)).unwrap();
    let prompts: Vec<PromptInput> = [40usize, 70, 55]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let ids: Vec<u32> = (0..len as u64).map(|j| (splitmix64_at(60 + i as u64, j) % 100_000) as u32).collect();
            let t = Tensor::new(ids.as_slice(), &gpu).unwrap().unsqueeze(0).unwrap();
            PromptInput { embeds: model.embed(&t).unwrap().squeeze(0).unwrap(), ids }
        })
        .collect();
    let cfg = GenerationConfig { ignore_eos: true, ..GenerationConfig::plain_greedy(48) };
    let run = |graph: bool| {
        let bc =
            BatcherConfig { slots: 2, prefill_batch: 2, cuda_graph: graph, initial_new_tokens: 8, free_memory: None };
        generate_queue(&model, &prompts, &cfg, &bc).unwrap()
    };
    let (eager, graph) = (run(false), run(true));
    assert!(graph.graph, "the decode step was captured");
    for (i, (a, b)) in eager.rows.iter().zip(&graph.rows).enumerate() {
        assert_eq!(a.tokens.len(), 48, "row {i}");
        assert_eq!(a.tokens, b.tokens, "row {i}: graph replay after growth differs from eager decoding");
    }
    eprintln!("queue with cache growth 8 → 64: graph = eager for {} rows of 48 tokens", eager.rows.len());
}
