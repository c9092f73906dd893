//! The whole pipeline (image → text): the full DeepEncoder + the reduced decoder of the goldens on
//! the encoder goldens' committed pages (Tiny mode, Free OCR), against the reference; the engine
//! trait; and a real-weights check that is ignored unless weights are provided.

use candle_core::{DType, Device, IndexOp};
use occ_core::{Mode, OcrEngine, OcrOptions, OcrPage, Prompt};
use occ_model::generate::GenerationConfig;
use occ_model::ngram::NgramBlocker;
use occ_model::pipeline::{DeepseekOcr, SyntheticSize};
use occ_model::preprocess::{load_image, prepare_with_options, PrepareOptions, ResizeOrder};
use occ_model::prompt::build_prompt;
use occ_model::synth::{synth_values, synth_values_with, Recipe};

use crate::decoder::{check_prefill_logits, reduced_engine, DecoderGolden, STEPS};

fn pipeline_cases(g: &DecoderGolden) -> Vec<(String, image::RgbImage)> {
    let pages = crate::decoder::golden_dir().join("../encoder/inputs");
    g.meta["pipeline_cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_string();
            let img = load_image(&pages.join(c["image"].as_str().unwrap())).unwrap();
            (name, img)
        })
        .collect()
}

#[test]
fn tiny_pages_prefill_logits_match_reference_f32() {
    let g = DecoderGolden::load();
    let e = reduced_engine();
    for (name, img) in pipeline_cases(g) {
        let options = PrepareOptions { order: e.resize_order, ..Default::default() };
        let prepared = prepare_with_options(&img, Mode::Tiny, options).unwrap();
        let rows = e.encoder().encode(&[prepared], &Device::Cpu).unwrap().remove(0);
        let toks = build_prompt(e.tokenizer(), &Prompt::FreeOcr, &[73]).unwrap();
        assert_eq!(toks.ids, g.ids(&format!("{name}.ids")), "{name}: prompt ids");
        let stats = g.get(&format!("{name}.rows.stats")).to_vec1::<f64>().unwrap();
        let v = rows.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
        assert!((mean - stats[0]).abs() <= 1e-4 * stats[1], "{name}: vision rows mean {mean} vs {}", stats[0]);
        let embeds = e.splice(&toks, &rows).unwrap();
        let m = e.decoder();
        let mut c = m.new_cache(vec![0]);
        let logits = m.forward_embeds(&embeds.unsqueeze(0).unwrap(), 0, &mut c).unwrap().i(0).unwrap();
        check_prefill_logits(g, &name, &logits);
    }
}

#[test]
fn tiny_pages_batched_greedy_matches_reference() {
    let g = DecoderGolden::load();
    let e = reduced_engine();
    let cases = pipeline_cases(g);
    let pages: Vec<(&image::RgbImage, Mode)> = cases.iter().map(|(_, img)| (img, Mode::Tiny)).collect();
    let cfg = GenerationConfig { ignore_eos: true, ..GenerationConfig::plain_greedy(STEPS) };
    let out = e.ocr(&pages, &Prompt::FreeOcr, &cfg).unwrap();
    for ((name, _), r) in cases.iter().zip(&out) {
        assert_eq!(r.token_ids, g.ids(&format!("{name}.greedy")), "{name}");
        assert_eq!(r.n_prompt_tokens, 78);
        assert_eq!(r.vision_tokens.slots, 73);
        assert!(r.timings.vision > std::time::Duration::ZERO && r.timings.decode > std::time::Duration::ZERO);
    }
}

/// The pipeline pages repeat themselves under greedy decoding, so the blockers change the output.
#[test]
fn tiny_pages_repetition_blockers_match_reference() {
    let g = DecoderGolden::load();
    let e = reduced_engine();
    let ds = &g.meta["ngram_deepseek"];
    let blocker = NgramBlocker {
        ngram_size: ds["n"].as_u64().unwrap() as usize,
        window_size: ds["window"].as_u64().unwrap() as usize,
        whitelist: ds["whitelist"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect(),
    };
    let hf_n = g.meta["ngram_hf"].as_u64().unwrap() as usize;
    let cases = pipeline_cases(g);
    let pages: Vec<(&image::RgbImage, Mode)> = cases.iter().map(|(_, img)| (img, Mode::Tiny)).collect();
    let base = GenerationConfig { ignore_eos: true, ..GenerationConfig::plain_greedy(STEPS) };
    let with_ds = GenerationConfig { ngram: Some(blocker), ..base.clone() };
    let with_hf = GenerationConfig { no_repeat_ngram_size: Some(hf_n), ..base.clone() };
    let ds_out = e.ocr(&pages, &Prompt::FreeOcr, &with_ds).unwrap();
    let hf_out = e.ocr(&pages, &Prompt::FreeOcr, &with_hf).unwrap();
    for (i, (name, _)) in cases.iter().enumerate() {
        let greedy = g.ids(&format!("{name}.greedy"));
        let want_ds = g.ids(&format!("{name}.ngram_deepseek"));
        let want_hf = g.ids(&format!("{name}.ngram_hf"));
        assert_ne!(want_ds, greedy, "{name}: the DeepSeek blocker must fire in this golden");
        assert_ne!(want_hf, greedy, "{name}: the HF blocker must fire in this golden");
        assert_eq!(ds_out[i].token_ids, want_ds, "{name}: DeepSeek blocker");
        assert_eq!(hf_out[i].token_ids, want_hf, "{name}: HF no_repeat_ngram_size");
    }
}

#[test]
fn engine_trait_reads_pages_of_different_modes_in_one_batch() {
    let mut e = DeepseekOcr::synthetic(SyntheticSize::Tiny, 1, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(e.resize_order, ResizeOrder::Pillow12, "the released weights' training order by default");
    let info = e.info();
    assert!(info.synthetic_weights && info.weights.as_deref().unwrap().starts_with("synthetic:recipe-v1"));
    assert_eq!((info.device.as_str(), info.dtype.as_str()), ("cpu", "f32"));
    assert!(e.preferred_batch() > 1);
    let img = image::RgbImage::from_fn(300, 200, |x, y| image::Rgb([(x % 251) as u8, (y % 241) as u8, 128]));
    let pages: Vec<OcrPage> = [Mode::Tiny, Mode::Small, Mode::Tiny]
        .iter()
        .enumerate()
        .map(|(i, &mode)| OcrPage { id: format!("p{i}"), image: img.clone(), mode })
        .collect();
    let opts = OcrOptions { max_new_tokens: 6, ignore_eos: true, ..OcrOptions::default() };
    let out = OcrEngine::ocr(&mut e, &pages, &Prompt::FreeOcr, &opts).unwrap();
    assert_eq!(out.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["p0", "p1", "p2"]);
    assert_eq!(out[0].n_prompt_tokens, Some(78));
    assert_eq!(out[1].n_prompt_tokens, Some(116));
    assert!(out.iter().all(|o| o.n_generated_tokens == Some(6) && o.hit_max_tokens));
    assert_eq!(out[0].token_ids, out[2].token_ids, "same page, same mode, same tokens");
    // alone equals batched
    let alone = OcrEngine::ocr(&mut e, &pages[1..2], &Prompt::FreeOcr, &opts).unwrap();
    assert_eq!(alone[0].token_ids, out[1].token_ids);
}

#[test]
fn synthetic_engine_uses_the_recipe_it_names() {
    let e = DeepseekOcr::synthetic_with_recipe(SyntheticSize::Tiny, Recipe::V2, 1, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(e.weights().id, "synthetic:recipe-v2:seed-1:tiny");
    let dims = e.decoder().lm_head.weight().dims().to_vec();
    let head = e.decoder().lm_head.weight().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(head, synth_values_with(Recipe::V2, "lm_head.weight", &dims, 1));
    assert_ne!(head, synth_values("lm_head.weight", &dims, 1));
    let v1 = DeepseekOcr::synthetic(SyntheticSize::Tiny, 1, DType::F32, &Device::Cpu).unwrap();
    assert_eq!(v1.weights().id, "synthetic:recipe-v1:seed-1:tiny");
    let head_v1 = v1.decoder().lm_head.weight().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(head_v1, synth_values("lm_head.weight", &dims, 1));
}

/// Greedy OCR with the real checkpoint reads a rendered sentence back.
#[test]
#[ignore = "needs DeepSeek-OCR weights: set OCC_WEIGHTS"]
fn real_weights_read_a_rendered_page() {
    let dir = std::env::var_os("OCC_WEIGHTS").expect("OCC_WEIGHTS must point at a DeepSeek-OCR snapshot folder");
    let device = Device::cuda_if_available(0).unwrap();
    let dtype = if device.is_cuda() { DType::BF16 } else { DType::F32 };
    let wd = occ_model::load::WeightsDir::open(std::path::Path::new(&dir)).unwrap();
    let e = DeepseekOcr::from_weights_dir(&wd, dtype, &device).unwrap();
    let text = "The quick brown fox jumps over the lazy dog.";
    let mut img = image::RgbImage::from_pixel(640, 640, image::Rgb([255, 255, 255]));
    draw_text(&mut img, text);
    let cfg = GenerationConfig { max_new_tokens: 64, ..GenerationConfig::default() };
    let out = e.ocr(&[(&img, Mode::Small)], &Prompt::FreeOcr, &cfg).unwrap();
    assert!(out[0].stopped_at_eos, "no EOS within 64 tokens: {:?}", out[0].text);
    assert!(out[0].text.to_lowercase().contains("quick brown fox"), "read {:?}", out[0].text);
}

fn draw_text(img: &mut image::RgbImage, text: &str) {
    use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
    let font = FontRef::try_from_slice(dejavu::sans::regular()).unwrap();
    let scaled = font.as_scaled(PxScale::from(28.0));
    let (mut x, y) = (20.0f32, 300.0f32);
    for ch in text.chars() {
        let glyph = scaled.scaled_glyph(ch);
        let advance = scaled.h_advance(glyph.id);
        let glyph = ab_glyph::Glyph { position: ab_glyph::point(x, y), ..glyph };
        if let Some(outline) = font.outline_glyph(glyph) {
            let b = outline.px_bounds();
            outline.draw(|gx, gy, c| {
                let (px, py) = (b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
                if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                    let v = (255.0 * (1.0 - c)) as u8;
                    img.put_pixel(px as u32, py as u32, image::Rgb([v, v, v]));
                }
            });
        }
        x += advance;
    }
}
