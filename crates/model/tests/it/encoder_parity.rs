//! Full-size DeepEncoder (SAM-base + CLIP-L + projector, synthetic weights recipe v1, seed 0) against
//! the reference goldens, every stage, CPU f32. Tolerances: `golden::TOLERANCES`.
//! Goldens: `tests/reference/gen_encoder_goldens.py` (docs/PARITY.md).

use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor};
use occ_core::Mode;
use occ_model::config::VisionConfig;
use occ_model::encoder::DeepEncoder;
use occ_model::preprocess::{image_tensor, load_image, prepare_with_options, PrepareOptions, PreparedImage};
use occ_model::sam::get_rel_pos;
use occ_model::synth::synth_var_builder;

use crate::golden::{assert_reports, encoder_meta, golden_dir, recorded_resize_order, Golden, Report};

/// One full-size encoder shared by the parity tests (building it synthesises 400M values).
fn encoder() -> &'static DeepEncoder {
    static ENCODER: OnceLock<DeepEncoder> = OnceLock::new();
    ENCODER.get_or_init(|| {
        DeepEncoder::new(&VisionConfig::deepseek_ocr(), synth_var_builder(0, DType::F32, &Device::Cpu)).unwrap()
    })
}

/// The views of `page` in `mode`, resized in the order of the Pillow that made the goldens.
fn prepare(page: &image::RgbImage, mode: Mode) -> PreparedImage {
    let order = recorded_resize_order(&encoder_meta());
    prepare_with_options(page, mode, PrepareOptions { order, ..Default::default() }).unwrap()
}

/// Runs one view through every stage, comparing each against the golden as it is produced.
fn compare_stages(golden: &Golden, view: &Tensor) -> (Vec<Report>, Tensor) {
    let enc = encoder();
    let mut reports = Vec::new();
    let grid = view.dim(2).unwrap() / 16;
    reports.push(golden.compare("sam.pos_embed", &enc.sam().pos_embed(grid).unwrap()));
    let global = enc.sam().blocks().iter().find(|b| b.span() == occ_model::sam::AttentionSpan::Global).unwrap();
    reports.push(golden.compare("sam.rel_pos_h_global", &get_rel_pos(grid, grid, global.attn().rel_pos_h()).unwrap()));
    reports.push(
        golden.compare("sam.rel_pos_w_window", &get_rel_pos(14, 14, enc.sam().blocks()[0].attn().rel_pos_w()).unwrap()),
    );
    let clip_grid = grid / 4;
    reports.push(golden.compare("clip.pos_embed", &enc.clip().pos_embed(clip_grid * clip_grid + 1).unwrap()));
    let mut seen = Vec::new();
    let out = enc
        .encode_views_probed(&view.unsqueeze(0).unwrap(), &mut |stage: &str, t: &Tensor| {
            seen.push(stage.to_string());
            reports.push(golden.compare(stage, t));
            Ok(())
        })
        .unwrap();
    // Every stage the reference recorded was produced here too.
    for stage in golden.stages() {
        let direct = ["sam.pos_embed", "sam.rel_pos_h_global", "sam.rel_pos_w_window", "clip.pos_embed", "rows"];
        assert!(
            seen.contains(&stage) || direct.contains(&stage.as_str()),
            "stage {stage} of {} not produced",
            golden.name
        );
    }
    (reports, out)
}

#[test]
fn tiny_mode_matches_reference_every_stage_f32() {
    let golden = Golden::load("tiny.safetensors");
    let page = load_image(&golden_dir().join("inputs/page_portrait.png")).unwrap();
    let prepared = prepare(&page, Mode::Tiny);
    let view = image_tensor(&prepared.global, &Device::Cpu).unwrap();
    let (mut reports, _) = compare_stages(&golden, &view);
    // The laid-out rows (the reference's own DeepseekOCRModel.forward layout), via the public API.
    let rows = encoder().encode(&[prepared], &Device::Cpu).unwrap();
    assert_eq!(rows[0].dims(), &[73, 1280]);
    reports.push(golden.compare("rows", &rows[0]));
    assert_reports("tiny (512, page_portrait.png)", &reports);
}

#[test]
fn gundam_tile_matches_reference_every_stage_f32() {
    let golden = Golden::load("tile640.safetensors");
    let page = load_image(&golden_dir().join("inputs/page_landscape.png")).unwrap();
    let prepared = prepare(&page, Mode::Gundam);
    assert_eq!((prepared.grid.across, prepared.grid.down), (3, 2));
    let view = image_tensor(&prepared.tiles[0], &Device::Cpu).unwrap();
    let (reports, _) = compare_stages(&golden, &view);
    assert_reports("gundam tile 0 (640, page_landscape.png)", &reports);
}
