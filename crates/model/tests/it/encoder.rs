//! DeepEncoder properties on the tiny config (synthetic weights): slot counts per mode, batching,
//! token layout, weight loading errors.

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use occ_core::{GundamGrid, Mode};
use occ_model::config::VisionConfig;
use occ_model::encoder::DeepEncoder;
use occ_model::layout::{lay_out, lay_out_batch};
use occ_model::preprocess::{prepare, PreparedImage};
use occ_model::synth::{synth_tensor, synth_var_builder};

fn tiny_encoder() -> DeepEncoder {
    DeepEncoder::new(&VisionConfig::tiny(), synth_var_builder(0, DType::F32, &Device::Cpu)).unwrap()
}

/// A deterministic page with structure in every channel.
fn page(w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let v = (x.wrapping_mul(31) ^ y.wrapping_mul(17)).wrapping_add(seed * 101);
        image::Rgb([(v % 251) as u8, ((x + seed) % 256) as u8, ((y * 3) % 256) as u8])
    })
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn rows_equal_slots_for_every_mode() {
    let enc = tiny_encoder();
    let modes = [Mode::Tiny, Mode::Small, Mode::Base, Mode::Large, Mode::Gundam, Mode::custom(768, 512, true).unwrap()];
    // No tiles (both sides ≤ 640), 2×3, 3×2 and 3×1 grids in crop modes.
    let sizes = [(500, 400), (600, 848), (800, 600), (1500, 500)];
    for mode in modes {
        // The slot count of a single-view mode does not depend on the image size.
        let sizes = if mode.crop() { &sizes[..] } else { &sizes[1..2] };
        for &(w, h) in sizes {
            let prepared = prepare(&page(w, h, 1), mode).unwrap();
            let tokens = prepared.vision_tokens(Default::default()).unwrap();
            let rows = enc.encode(&[prepared], &Device::Cpu).unwrap();
            assert_eq!(rows[0].dims(), &[tokens.slots as usize, 64], "{mode} {w}x{h}");
        }
    }
}

#[test]
fn batched_encoding_equals_page_by_page() {
    // Small custom modes keep this fast; the batching logic is the same as for Gundam / Tiny.
    let crop = Mode::custom(256, 128, true).unwrap();
    let direct = Mode::custom(128, 128, false).unwrap();
    let pages: Vec<PreparedImage> = vec![
        prepare(&page(300, 420, 1), crop).unwrap(),
        prepare(&page(400, 300, 2), crop).unwrap(),
        prepare(&page(120, 100, 3), crop).unwrap(),
        prepare(&page(600, 848, 4), direct).unwrap(),
        prepare(&page(800, 600, 5), direct).unwrap(),
    ];
    assert!(pages[0].tiles.len() > 1 && pages[1].tiles.len() > 1 && pages[2].tiles.is_empty());
    let dev = Device::Cpu;
    let alone: Vec<Tensor> = pages
        .iter()
        .map(|p| tiny_encoder().with_max_batch(1).encode(std::slice::from_ref(p), &dev).unwrap().remove(0))
        .collect();
    for max_batch in [3, 16] {
        let together = tiny_encoder().with_max_batch(max_batch).encode(&pages, &dev).unwrap();
        for (i, (t, a)) in together.iter().zip(&alone).enumerate() {
            let d = max_abs_diff(t, a);
            assert!(d <= 1e-5, "page {i} with max_batch {max_batch}: max |batched − single| = {d}");
        }
    }
    // Tiles encoded in one batch equal tiles encoded one by one.
    let enc = tiny_encoder();
    let tiles = pages[0].tiles_tensor(&dev).unwrap().unwrap();
    let batched = enc.encode_views(&tiles).unwrap();
    for k in 0..tiles.dim(0).unwrap() {
        let one = enc.encode_views(&tiles.i(k..k + 1).unwrap()).unwrap();
        let d = max_abs_diff(&batched.i(k..k + 1).unwrap(), &one);
        assert!(d <= 1e-5, "tile {k}: {d}");
    }
}

#[test]
fn encoding_is_deterministic() {
    let p = prepare(&page(300, 420, 7), Mode::custom(256, 128, true).unwrap()).unwrap();
    let a = tiny_encoder().encode(std::slice::from_ref(&p), &Device::Cpu).unwrap();
    let b = tiny_encoder().encode(std::slice::from_ref(&p), &Device::Cpu).unwrap();
    assert_eq!(max_abs_diff(&a[0], &b[0]), 0.0);
}

/// Features whose 3 channels name their origin: (view, row, column); view 0 = global, k+1 = tile k.
fn tagged(view: usize, side: usize) -> Tensor {
    let v: Vec<f32> = (0..side * side).flat_map(|i| [view as f32, (i / side) as f32, (i % side) as f32]).collect();
    Tensor::from_vec(v, (side * side, 3), &Device::Cpu).unwrap()
}

#[test]
fn layout_puts_stitched_tiles_first_then_global_then_separator() {
    let newline = Tensor::new(&[-1f32, -1., -1.], &Device::Cpu).unwrap();
    let sep = Tensor::new(&[-2f32, -2., -2.], &Device::Cpu).unwrap();
    let grid = GundamGrid { across: 3, down: 2 };
    let tiles = Tensor::stack(&(0..6).map(|k| tagged(k + 1, 2)).collect::<Vec<_>>(), 0).unwrap();
    let rows = lay_out(&tagged(0, 3), Some((&tiles, grid)), &newline, &sep).unwrap();
    let rows: Vec<Vec<f32>> = rows.to_vec2().unwrap();
    // Expected, written out from the layout rule (docs/MODEL.md §6): big grid of 4 rows × 6 columns + newline, then the
    // 3×3 global + newlines, then the separator.
    let mut want: Vec<[f32; 3]> = Vec::new();
    for big_row in 0..4 {
        let (tile_row, y) = (big_row / 2, big_row % 2);
        for big_col in 0..6 {
            let (tile_col, x) = (big_col / 2, big_col % 2);
            want.push([(tile_row * 3 + tile_col + 1) as f32, y as f32, x as f32]);
        }
        want.push([-1.; 3]);
    }
    for y in 0..3 {
        for x in 0..3 {
            want.push([0., y as f32, x as f32]);
        }
        want.push([-1.; 3]);
    }
    want.push([-2.; 3]);
    let want: Vec<Vec<f32>> = want.into_iter().map(|r| r.to_vec()).collect();
    assert_eq!(rows, want);
    // Slot count for this grid with 2×2 tiles and a 3×3 global view: (2·3+1)·(2·2) + 3·4 + 1.
    assert_eq!(rows.len(), 7 * 4 + 12 + 1);
}

#[test]
fn layout_without_tiles_is_global_then_separator() {
    let newline = Tensor::new(&[-1f32, -1., -1.], &Device::Cpu).unwrap();
    let sep = Tensor::new(&[-2f32, -2., -2.], &Device::Cpu).unwrap();
    let rows: Vec<Vec<f32>> = lay_out(&tagged(0, 2), None, &newline, &sep).unwrap().to_vec2().unwrap();
    let want = [[0., 0., 0.], [0., 0., 1.], [-1.; 3], [0., 1., 0.], [0., 1., 1.], [-1.; 3], [-2.; 3]];
    assert_eq!(rows, want.iter().map(|r| r.to_vec()).collect::<Vec<_>>());
}

#[test]
fn batch_layout_equals_each_page_laid_out() {
    let newline = Tensor::new(&[-1f32, -1., -1.], &Device::Cpu).unwrap();
    let sep = Tensor::new(&[-2f32, -2., -2.], &Device::Cpu).unwrap();
    let pages: Vec<Tensor> = (0..3).map(|k| (tagged(0, 3) + k as f64).unwrap()).collect();
    let batch = lay_out_batch(&Tensor::stack(&pages, 0).unwrap(), &newline, &sep).unwrap();
    assert_eq!(batch.dims(), &[3, 3 * 4 + 1, 3]);
    for (k, page) in pages.iter().enumerate() {
        let one: Vec<Vec<f32>> = lay_out(page, None, &newline, &sep).unwrap().to_vec2().unwrap();
        assert_eq!(batch.i(k).unwrap().to_vec2::<f32>().unwrap(), one, "page {k}");
    }
}

/// All tensors the tiny encoder reads, synthesised, as a name → tensor map.
fn tiny_checkpoint() -> HashMap<String, Tensor> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(HashMap::new()));
    let rec = seen.clone();
    let vb = VarBuilder::from_backend(Box::new(Recording(rec)), DType::F32, Device::Cpu);
    DeepEncoder::new(&VisionConfig::tiny(), vb).unwrap();
    let map = seen.lock().unwrap().clone();
    map
}

struct Recording(std::sync::Arc<std::sync::Mutex<HashMap<String, Tensor>>>);

impl candle_nn::var_builder::SimpleBackend for Recording {
    fn get(
        &self,
        s: candle_core::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = synth_tensor(name, &s, 0, dtype, dev)?;
        self.0.lock().unwrap().insert(name.to_string(), t.clone());
        Ok(t)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("unexpected unchecked read of {name}")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

fn load_error(tensors: &HashMap<String, Tensor>) -> String {
    let dir = std::env::temp_dir().join(format!("occ-model-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("ckpt-{}.safetensors", tensors.len()));
    candle_core::safetensors::save(tensors, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu).unwrap();
    match DeepEncoder::new(&VisionConfig::tiny(), vb) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn checkpoint_names_load_and_bad_tensors_are_named() {
    let ckpt = tiny_checkpoint();
    assert!(ckpt.contains_key("model.sam_model.blocks.1.attn.rel_pos_h"));
    assert!(ckpt.contains_key("model.vision_model.embeddings.position_embedding.weight"));
    assert!(ckpt.contains_key("model.view_seperator"));
    assert_eq!(load_error(&ckpt), "", "the complete checkpoint loads");

    let name = "model.sam_model.blocks.1.attn.rel_pos_h";
    // Global block 1 of the tiny SAM: 2·4 − 1 = 7 rows of head_dim 16.
    let mut wrong = ckpt.clone();
    wrong.insert(name.to_string(), Tensor::zeros((5, 16), DType::F32, &Device::Cpu).unwrap());
    let err = load_error(&wrong);
    assert!(err.contains(name) && err.contains("[7, 16]") && err.contains("[5, 16]"), "{err}");

    let mut missing = ckpt.clone();
    missing.remove("model.projector.layers.bias");
    let err = load_error(&missing);
    assert!(err.contains("model.projector.layers.bias"), "{err}");
}

use occ_model::synth::uniform_tensor as rand_tensor;

/// The fused attention (`ops::vit_attention`, CPU specification) equals the materialised path of
/// SAM's blocks: global over a grid the tables are resized for, and windows over a padded grid.
#[test]
fn fused_sam_attention_matches_the_materialised_path() {
    use occ_model::sam::{Attention, AttentionSpan};
    let cfg = VisionConfig::tiny().sam;
    let x = (rand_tensor(&[2, 5, 5, cfg.width], 7) * 2.0).unwrap();
    for (span, input_size) in [(AttentionSpan::Global, cfg.pos_grid()), (AttentionSpan::Windowed(3), 3)] {
        for dtype in [DType::F32, DType::BF16] {
            let vb = synth_var_builder(0, dtype, &Device::Cpu);
            let attn = Attention::new(&cfg, input_size, vb.pp("model.sam_model.blocks.1.attn")).unwrap();
            let xd = x.to_dtype(dtype).unwrap();
            let fused = attn.core_fused(&xd, span).unwrap().to_dtype(DType::F32).unwrap();
            let plain = attn.core_materialised(&xd, span).unwrap().to_dtype(DType::F32).unwrap();
            let scale = plain.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let d = max_abs_diff(&fused, &plain) / scale;
            let tol = if dtype == DType::F32 { 1e-5 } else { 2e-2 };
            assert!(d < tol, "{span:?} {dtype:?}: relative difference {d}");
        }
    }
}

/// Without relative positions and windows (CLIP), the fused attention is plain scaled dot-product
/// attention over the projection (the bias is only read for padded window positions).
#[test]
fn fused_attention_without_tables_is_sdpa() {
    use occ_model::ops::{vit_attention, VitGrid};
    let (b, t, heads, d) = (2usize, 7usize, 2usize, 8usize);
    let qkv = (rand_tensor(&[b, t, 3 * heads * d], 11) * 2.0).unwrap();
    let bias = rand_tensor(&[3 * heads * d], 12);
    let grid = VitGrid { heads, grid: (1, t), window: None, scale: 0.3 };
    let got = vit_attention(&qkv, &bias, None, grid).unwrap();
    let full = qkv.reshape((b, t, 3, heads, d)).unwrap().permute((2, 0, 3, 1, 4)).unwrap();
    let part = |i: usize| full.i(i).unwrap().contiguous().unwrap();
    let want = occ_model::nn::attention::sdpa(&part(0), &part(1), &part(2), None, 0.3)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .reshape((b, t, heads * d))
        .unwrap();
    assert!(max_abs_diff(&got, &want) < 1e-5);
    // shape errors name the op
    let bad = VitGrid { grid: (2, 4), ..grid };
    let err = vit_attention(&qkv, &bias, None, bad).unwrap_err().to_string();
    assert!(err.contains("vit_attention"), "{err}");
}

/// A reader built with `ink_input` reads page x exactly as one without it reads (1 − x) / 2.
#[test]
fn ink_input_reads_one_minus_the_pixels_halved() {
    let mut ink = VisionConfig::tiny();
    ink.sam.ink_input = true;
    let vb = || synth_var_builder(0, DType::F32, &Device::Cpu);
    let light = DeepEncoder::new(&VisionConfig::tiny(), vb()).unwrap();
    let ink = DeepEncoder::new(&ink, vb()).unwrap();
    let x = rand_tensor(&[2, 3, 64, 64], 3);
    let flipped = ((1.0 - &x).unwrap() * 0.5).unwrap();
    let a = ink.encode_views(&x).unwrap();
    let b = light.encode_views(&flipped).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-5, "{}", max_abs_diff(&a, &b));
    // and it is not the identity: the light reader gives something else on x
    assert!(max_abs_diff(&a, &light.encode_views(&x).unwrap()) > 1e-3);
}
