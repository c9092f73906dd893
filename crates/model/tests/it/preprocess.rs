//! Preprocessing is bit-identical to the reference (Pillow + torchvision): sha256 of every view's u8
//! pixels and normalised f32.
//!
//! - Pillow 12 ([`ResizeOrder::Pillow12`], the default: the released weights' training order):
//!   `preprocess_pillow12.json` from `tests/reference/gen_preprocess_goldens.py` run with Pillow
//!   12.0.0 (the cases of `preprocess.json` and the resizes of `resize.json` plus resizes around the
//!   pass-order boundary); the default-order API is checked against it.
//! - Pillow 13 ([`ResizeOrder::Pillow13`]): `preprocess.json` and `resize.json` from
//!   `tests/reference/gen_encoder_goldens.py` (Pillow 13.0.0, recorded in `meta.json`), and
//!   `preprocess_pillow13.json` (the same cases plus the boundary resizes) from
//!   `gen_preprocess_goldens.py`.

use image::RgbImage;
use occ_core::Mode;
use occ_model::preprocess::{
    load_image, normalize_chw, prepare, prepare_with_options, resize_bicubic, resize_bicubic_with, PrepareOptions,
    PreparedImage, ResizeOrder,
};
use serde_json::Value;

use crate::golden::{encoder_meta, golden_dir, recorded_resize_order, sha256_hex};

fn json(file: &str) -> Value {
    let path = golden_dir().join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn pillow_bicubic_resize_is_bit_identical() {
    // resize.json in the order of the Pillow that recorded it (meta.json).
    let order = recorded_resize_order(&encoder_meta());
    let golden = json("resize.json");
    let cases = golden["cases"].as_array().unwrap();
    let mut failures =
        resize_failures(cases, golden["source"].as_str().unwrap(), |img, w, h| resize_bicubic_with(img, w, h, order));
    // The default order (Pillow 12) through the default-order API, against Pillow 12's recording of
    // the same resizes and the boundary ones.
    let p12 = &json("preprocess_pillow12.json")["resize"];
    let p12_cases = p12["cases"].as_array().unwrap();
    assert!(p12_cases.len() >= cases.len(), "preprocess_pillow12.json holds resize.json's resizes");
    failures.extend(resize_failures(p12_cases, p12["source"].as_str().unwrap(), resize_bicubic));
    assert!(failures.is_empty(), "resizes differing from Pillow: {failures:?}");
}

#[test]
fn views_are_bit_identical_to_reference_for_every_mode() {
    // preprocess.json in the order of the Pillow that recorded it (meta.json).
    let order = recorded_resize_order(&encoder_meta());
    let cases = json("preprocess.json")["cases"].as_array().unwrap().clone();
    assert!(cases.len() >= 11, "expected the five modes on two pages plus the EXIF page");
    let options = PrepareOptions { order, ..PrepareOptions::default() };
    let mut failures = view_failures(&cases, |img, mode| prepare_with_options(img, mode, options));
    // The default (Pillow 12) through `prepare`, against Pillow 12's recording of the same cases.
    let p12 = json("preprocess_pillow12.json")["cases"].as_array().unwrap().clone();
    assert!(p12.len() >= cases.len(), "preprocess_pillow12.json holds preprocess.json's cases");
    failures.extend(view_failures(&p12, prepare));
    assert!(failures.is_empty(), "views differing from the reference: {failures:#?}");
}

/// Resizes of `cases` (layout of `resize.json`) by `resize` that differ from the golden hashes.
fn resize_failures(
    cases: &[Value],
    default_source: &str,
    resize: impl Fn(&RgbImage, u32, u32) -> candle_core::Result<RgbImage>,
) -> Vec<String> {
    let inputs = golden_dir().join("inputs");
    let mut failures = Vec::new();
    for case in cases {
        let source = case.get("image").and_then(Value::as_str).unwrap_or(default_source);
        let img = load_image(&inputs.join(source)).unwrap();
        let (w, h) = (case["width"].as_u64().unwrap() as u32, case["height"].as_u64().unwrap() as u32);
        let out = resize(&img, w, h).unwrap();
        if sha256_hex(out.as_raw()) != case["u8_sha256"].as_str().unwrap() {
            failures.push(format!("{source} {}x{} -> {w}x{h}", img.width(), img.height()));
        }
    }
    failures
}

/// Views of `cases` (layout of `preprocess.json`) made by `prepare` that differ from the goldens.
fn view_failures(
    cases: &[Value],
    prepare: impl Fn(&RgbImage, Mode) -> candle_core::Result<PreparedImage>,
) -> Vec<String> {
    let inputs = golden_dir().join("inputs");
    let mut failures = Vec::new();
    for case in cases {
        let name = case["image"].as_str().unwrap();
        let mode: Mode = case["mode"].as_str().unwrap().parse().unwrap();
        let tag = format!("{name} {mode}");
        let img = load_image(&inputs.join(name)).unwrap();
        let size: Vec<u64> = case["original_size"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(vec![u64::from(img.width()), u64::from(img.height())], size, "{tag}: size after EXIF orientation");
        let prepared = prepare(&img, mode).unwrap();
        let grid: Vec<u64> = case["grid"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(vec![u64::from(prepared.grid.across), u64::from(prepared.grid.down)], grid, "{tag}: grid");
        let want_tiles = case["tiles"].as_array().unwrap();
        assert_eq!(prepared.tiles.len(), want_tiles.len(), "{tag}: tile count");
        let views = std::iter::once((&prepared.global, &case["global"])).chain(prepared.tiles.iter().zip(want_tiles));
        for (v, (view, want)) in views.enumerate() {
            assert_eq!((u64::from(view.width()), u64::from(view.height())), dims(want), "{tag} view {v}");
            if sha256_hex(view.as_raw()) != want["u8_sha256"].as_str().unwrap() {
                failures.push(format!("{tag} view {v}: u8 pixels"));
            }
            if sha256_hex(&f32_bytes(&normalize_chw(view))) != want["f32_sha256"].as_str().unwrap() {
                failures.push(format!("{tag} view {v}: normalised f32"));
            }
        }
    }
    failures
}

fn dims(view: &Value) -> (u64, u64) {
    (view["width"].as_u64().unwrap(), view["height"].as_u64().unwrap())
}

/// Checks one `preprocess_pillow<N>.json`: recorded with a Pillow whose order is `order`, and every
/// view and resize bit-identical in that order.
fn assert_pillow_goldens(file: &str, order: ResizeOrder) {
    let golden = json(file);
    let version = golden["pillow"].as_str().unwrap();
    assert_eq!(ResizeOrder::for_pillow_version(version).unwrap(), order, "{file}: recorded with Pillow {version}");
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 12, "{file}: expected the five modes on two pages plus the EXIF page");
    let resize = &golden["resize"];
    let resizes = resize["cases"].as_array().unwrap();
    assert!(resizes.len() >= 23, "{file}: expected resize.json's 12 resizes plus 11 at the boundary");
    let options = PrepareOptions { order, ..PrepareOptions::default() };
    let mut failures = view_failures(cases, |img, mode| prepare_with_options(img, mode, options));
    let source = resize["source"].as_str().unwrap();
    failures.extend(resize_failures(resizes, source, |img, w, h| resize_bicubic_with(img, w, h, order)));
    assert!(failures.is_empty(), "{order} differs from Pillow {version} ({file}): {failures:#?}");
}

#[test]
fn pillow12_order_is_bit_identical_to_pillow_12() {
    assert_pillow_goldens("preprocess_pillow12.json", ResizeOrder::Pillow12);
}

#[test]
fn pillow13_order_is_bit_identical_to_pillow_13_across_the_pass_order_boundary() {
    assert_pillow_goldens("preprocess_pillow13.json", ResizeOrder::Pillow13);
}

#[test]
fn pillow13_goldens_of_both_generators_agree() {
    // gen_preprocess_goldens.py under Pillow 13 must reproduce gen_encoder_goldens.py's hashes.
    let ours = json("preprocess_pillow13.json");
    assert_eq!(ours["cases"], json("preprocess.json")["cases"], "views");
    let resize = json("resize.json");
    let theirs = resize["cases"].as_array().unwrap();
    assert_eq!(ours["resize"]["source"], resize["source"]);
    assert_eq!(&ours["resize"]["cases"].as_array().unwrap()[..theirs.len()], theirs.as_slice(), "resizes");
}

#[test]
fn pass_orders_differ_on_the_stretched_portrait_page() {
    let img = load_image(&golden_dir().join("inputs/page_portrait.png")).unwrap();
    let options = |order| PrepareOptions { order, ..PrepareOptions::default() };
    for mode in [Mode::Tiny, Mode::Small] {
        let old = prepare_with_options(&img, mode, options(ResizeOrder::Pillow12)).unwrap();
        let new = prepare_with_options(&img, mode, options(ResizeOrder::Pillow13)).unwrap();
        assert_eq!(old, prepare(&img, mode).unwrap(), "{mode}: Pillow12 is the default");
        let differing = old.global.as_raw().iter().zip(new.global.as_raw()).filter(|(a, b)| a != b).count();
        assert!(differing > 0, "{mode}: the two orders give the same 600x848 -> square stretch");
        let max = old.global.as_raw().iter().zip(new.global.as_raw()).map(|(a, b)| a.abs_diff(*b)).max();
        eprintln!("{mode}: {differing} of {} values differ, max {max:?}", old.global.as_raw().len());
    }
    // The goldens say the same: the two Pillows disagree on the Tiny view.
    let tiny = |file: &str| json(file)["cases"][0]["global"]["u8_sha256"].clone();
    assert_eq!(json("preprocess_pillow12.json")["cases"][0]["mode"], "tiny");
    assert_ne!(tiny("preprocess_pillow12.json"), tiny("preprocess_pillow13.json"));
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

/// The device-side normalisation (bytes mapped through a 256-entry table) equals `normalize_chw`.
#[test]
fn images_tensor_equals_normalize_chw() {
    use candle_core::{DType, Device};
    use occ_model::preprocess::{image_tensor, images_tensor};
    let a = image::RgbImage::from_fn(7, 5, |x, y| image::Rgb([(x * 37 + y) as u8, (y * 51) as u8, (x * y * 13) as u8]));
    let b = image::RgbImage::from_fn(7, 5, |x, y| image::Rgb([(x * 3) as u8, 255 - (y * 9) as u8, 128]));
    let got = images_tensor(&[&a, &b], DType::F32, &Device::Cpu).unwrap();
    assert_eq!(got.dims(), [2, 3, 5, 7]);
    for (i, img) in [&a, &b].into_iter().enumerate() {
        let want = normalize_chw(img);
        let have = got.get(i).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(have, want, "image {i}");
    }
    assert_eq!(
        image_tensor(&a, &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        normalize_chw(&a)
    );
    let wrong = image::RgbImage::new(3, 3);
    assert!(images_tensor(&[&a, &wrong], DType::F32, &Device::Cpu).is_err());
}
