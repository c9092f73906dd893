//! Degradations are deterministic and do what they say.

use occ_core::Mode;
use occ_render::degrade::{apply, apply_all, mean_abs_diff, Degradation, Filter};
use occ_render::{render_page, Lang, RenderSpec};

use crate::common::en_text;

fn page(mode: Mode) -> image::RgbImage {
    render_page(&en_text(4000), &RenderSpec::for_mode(mode, Lang::En).with_font_px(14.0)).unwrap().image
}

#[test]
fn every_degradation_is_deterministic_and_changes_the_page() {
    let img = page(Mode::Tiny);
    let steps = [
        Degradation::GaussianBlur { sigma: 1.2 },
        Degradation::Jpeg { quality: 20 },
        Degradation::Noise { sigma: 12.0, seed: 7 },
        Degradation::Downscale { width: 256, height: 256, filter: Filter::Lanczos3, restore: true },
    ];
    for d in &steps {
        let a = apply(&img, d).unwrap();
        let b = apply(&img, d).unwrap();
        assert_eq!(a.as_raw(), b.as_raw(), "{d:?} is not deterministic");
        assert_eq!(a.dimensions(), img.dimensions());
        let diff = mean_abs_diff(&img, &a).unwrap();
        assert!(diff > 0.1, "{d:?} changed too little: {diff}");
    }
    let all = apply_all(&img, &steps).unwrap();
    assert_eq!(all, apply_all(&img, &steps).unwrap());
}

#[test]
fn stronger_degradations_change_more() {
    let img = page(Mode::Tiny);
    let d = |d: Degradation| mean_abs_diff(&img, &apply(&img, &d).unwrap()).unwrap();
    assert!(d(Degradation::GaussianBlur { sigma: 0.5 }) < d(Degradation::GaussianBlur { sigma: 2.0 }));
    assert!(d(Degradation::Jpeg { quality: 90 }) < d(Degradation::Jpeg { quality: 10 }));
    assert!(d(Degradation::Noise { sigma: 2.0, seed: 1 }) < d(Degradation::Noise { sigma: 20.0, seed: 1 }));
    assert_eq!(d(Degradation::Noise { sigma: 0.0, seed: 1 }), 0.0);
}

#[test]
fn noise_depends_on_the_seed_and_has_the_requested_spread() {
    let img = image::RgbImage::from_pixel(200, 200, image::Rgb([128, 128, 128]));
    let a = apply(&img, &Degradation::Noise { sigma: 10.0, seed: 1 }).unwrap();
    let b = apply(&img, &Degradation::Noise { sigma: 10.0, seed: 2 }).unwrap();
    assert_ne!(a, b);
    let n = a.as_raw().len() as f64;
    let mean = a.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = a.as_raw().iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    assert!((mean - 128.0).abs() < 0.5, "mean {mean}");
    assert!((var.sqrt() - 10.0).abs() < 0.3, "std {}", var.sqrt());
}

#[test]
fn downscale_to_a_smaller_mode_and_back() {
    let img = page(Mode::Base);
    let small = apply(&img, &Degradation::downscale_to_mode(Mode::Tiny, false)).unwrap();
    assert_eq!(small.dimensions(), (512, 512));
    let back = apply(&img, &Degradation::downscale_to_mode(Mode::Small, true)).unwrap();
    assert_eq!(back.dimensions(), (1024, 1024));
    assert!(mean_abs_diff(&img, &back).unwrap() > 0.5);
}

#[test]
fn invalid_parameters_are_errors() {
    let img = page(Mode::Tiny);
    for d in [
        Degradation::GaussianBlur { sigma: 0.0 },
        Degradation::GaussianBlur { sigma: f32::NAN },
        Degradation::Jpeg { quality: 0 },
        Degradation::Jpeg { quality: 101 },
        Degradation::Noise { sigma: -1.0, seed: 0 },
        Degradation::Downscale { width: 0, height: 10, filter: Filter::Nearest, restore: false },
    ] {
        let err = apply(&img, &d).unwrap_err();
        assert!(err.to_string().contains("invalid parameter"), "{d:?}: {err}");
    }
}
