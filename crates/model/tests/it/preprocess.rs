//! Preprocessing is bit-identical to the reference (Pillow 13 + torchvision), goldens from
//! `tests/reference/gen_encoder_goldens.py`: sha256 of every view's u8 pixels and normalised f32.

use occ_core::Mode;
use occ_model::preprocess::{load_image, normalize_chw, prepare, resize_bicubic};
use serde_json::Value;

use crate::golden::{golden_dir, sha256_hex};

fn json(file: &str) -> Value {
    let path = golden_dir().join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn pillow_bicubic_resize_is_bit_identical() {
    let golden = json("resize.json");
    let inputs = golden_dir().join("inputs");
    let mut failures = Vec::new();
    for case in golden["cases"].as_array().unwrap() {
        let source = case.get("image").and_then(Value::as_str).unwrap_or(golden["source"].as_str().unwrap());
        let img = load_image(&inputs.join(source)).unwrap();
        let (w, h) = (case["width"].as_u64().unwrap() as u32, case["height"].as_u64().unwrap() as u32);
        let out = resize_bicubic(&img, w, h).unwrap();
        if sha256_hex(out.as_raw()) != case["u8_sha256"].as_str().unwrap() {
            failures.push(format!("{source} {}x{} -> {w}x{h}", img.width(), img.height()));
        }
    }
    assert!(failures.is_empty(), "resizes differing from Pillow: {failures:?}");
}

#[test]
fn views_are_bit_identical_to_reference_for_every_mode() {
    let golden = json("preprocess.json");
    let inputs = golden_dir().join("inputs");
    let mut failures = Vec::new();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 11, "expected the five modes on two pages plus the EXIF page");
    for case in cases {
        let name = case["image"].as_str().unwrap();
        let mode: Mode = case["mode"].as_str().unwrap().parse().unwrap();
        let img = load_image(&inputs.join(name)).unwrap();
        let tag = format!("{name} {mode}");
        let size: Vec<u64> = case["original_size"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(vec![u64::from(img.width()), u64::from(img.height())], size, "{tag}: size after EXIF orientation");
        let prepared = prepare(&img, mode).unwrap();
        let grid: Vec<u64> = case["grid"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(vec![u64::from(prepared.grid.across), u64::from(prepared.grid.down)], grid, "{tag}: grid");
        let want_tiles = case["tiles"].as_array().unwrap();
        assert_eq!(prepared.tiles.len(), want_tiles.len(), "{tag}: tile count");
        let views = std::iter::once((&prepared.global, &case["global"]))
            .chain(prepared.tiles.iter().zip(want_tiles.iter()))
            .enumerate();
        for (v, (view, want)) in views {
            assert_eq!(u64::from(view.width()), want["width"].as_u64().unwrap(), "{tag} view {v}");
            assert_eq!(u64::from(view.height()), want["height"].as_u64().unwrap(), "{tag} view {v}");
            if sha256_hex(view.as_raw()) != want["u8_sha256"].as_str().unwrap() {
                failures.push(format!("{tag} view {v}: u8 pixels"));
            }
            if sha256_hex(&f32_bytes(&normalize_chw(view))) != want["f32_sha256"].as_str().unwrap() {
                failures.push(format!("{tag} view {v}: normalised f32"));
            }
        }
    }
    assert!(failures.is_empty(), "views differing from the reference: {failures:#?}");
}

#[test]
fn exif_orientation_is_applied_when_loading() {
    // Stored 96×64 with Orientation = 6 (rotate 90° clockwise to display): displayed 64×96, and the
    // red mark stored top-left ends up top-right.
    let img = load_image(&golden_dir().join("inputs/exif_orientation6.png")).unwrap();
    assert_eq!(img.dimensions(), (64, 96));
    assert_eq!(img.get_pixel(63, 0).0, [255, 0, 0]);
    assert_ne!(img.get_pixel(0, 0).0, [255, 0, 0]);
}

#[test]
fn vision_tokens_of_prepared_pages_follow_the_mode_table() {
    let img = load_image(&golden_dir().join("inputs/page_landscape.png")).unwrap();
    for (mode, slots, tiles) in [
        (Mode::Tiny, 73, 0),
        (Mode::Small, 111, 0),
        (Mode::Base, 273, 0),
        (Mode::Large, 421, 0),
        (Mode::Gundam, 893, 6),
    ] {
        let p = prepare(&img, mode).unwrap();
        let t = p.vision_tokens(Default::default()).unwrap();
        assert_eq!((t.slots, p.tiles.len()), (slots, tiles), "{mode}");
    }
}
