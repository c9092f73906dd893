//! Decoding on CPU (f32, the reduced DeepSeek-OCR decoder of the CI goldens: 3 layers, real hidden size
//! and vocabulary, synthetic weights): 4 prompts × 32 new tokens through the left-padded batch path
//! (`generate`) and through continuous batching (`generate_queue`, 2 slots), plus one slot decode step.
//!
//! `cargo bench -p occ-model --bench decoder`

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use occ_model::batcher::{generate_queue, BatcherConfig};
use occ_model::decoder::{DecoderConfig, DecoderModel};
use occ_model::generate::{generate, GenerationConfig, PromptInput};
use occ_model::synth::{splitmix64_at, synth_var_builder};

fn ok<T>(r: candle_core::Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

fn prompts(model: &DecoderModel) -> Vec<PromptInput> {
    let vocab = model.config().vocab_size as u64;
    [40usize, 64, 52, 70]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let ids: Vec<u32> = (0..len as u64).map(|j| (splitmix64_at(i as u64, j) % vocab) as u32).collect();
            let t = ok(Tensor::new(ids.as_slice(), &Device::Cpu), "ids");
            let embeds = ok(model.embed(&ok(t.unsqueeze(0), "ids")).and_then(|e| e.squeeze(0)), "embed");
            PromptInput { embeds, ids }
        })
        .collect()
}

fn decoding(c: &mut Criterion) {
    let model =
        ok(DecoderModel::new(&DecoderConfig::reduced(), synth_var_builder(0, DType::F32, &Device::Cpu)), "model");
    let inputs = prompts(&model);
    let cfg = GenerationConfig { ignore_eos: true, ..GenerationConfig::plain_greedy(32) };
    let mut group = c.benchmark_group("decoder_reduced_cpu_f32");
    group.sample_size(10);
    group.bench_function("generate_4x32", |b| b.iter(|| ok(generate(&model, &inputs, &cfg), "generate")));
    let bc = BatcherConfig { slots: 2, prefill_batch: 2, cuda_graph: false, ..Default::default() };
    group.bench_function("generate_queue_4x32_2_slots", |b| {
        b.iter(|| ok(generate_queue(&model, &inputs, &cfg, &bc), "generate_queue"))
    });
    let cache = ok(model.new_slot_cache(4, 128), "slot cache");
    let ids = ok(Tensor::new(&[5u32, 6, 7, 8], &Device::Cpu), "ids");
    let pos = ok(Tensor::new(&[10u32, 20, 30, 40], &Device::Cpu), "positions");
    group.bench_function("forward_slots_4_slots", |b| {
        b.iter(|| ok(model.forward_slots(&ids, &pos, &cache), "forward_slots"))
    });
    group.finish();
}

criterion_group!(benches, decoding);
criterion_main!(benches);
