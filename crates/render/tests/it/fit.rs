//! Ratio targeting with the real tokenizer and real corpus text.

use std::time::Instant;

use occ_core::Mode;
use occ_render::fit::{cut_tokens, fit_to_ratio, paginate, target_tokens};
use occ_render::{normalize, Lang, NewlinePolicy, RenderError, RenderSpec};

use crate::common::{assert_consistent, en_prose, en_text, tokenizer, zh_text};

#[test]
fn achieved_ratio_is_within_two_percent_for_ratios_5_to_25() {
    let tok = tokenizer();
    let text = en_prose(60_000);
    let mut failures = Vec::new();
    for mode in [Mode::Tiny, Mode::Small, Mode::Base] {
        let spec = RenderSpec::for_mode(mode, Lang::En);
        let mut prev_px = f32::INFINITY;
        for r in 5..=25 {
            let r = f64::from(r);
            let fitted = match fit_to_ratio(&text, tok, mode, r, &spec) {
                Ok(f) => f,
                Err(e) => {
                    failures.push(format!("{mode} r={r}: {e}"));
                    continue;
                }
            };
            assert_consistent(&fitted.page, &spec.with_font_px(fitted.font_px), &fitted.page.text);
            let nominal = f64::from(mode.vision_tokens(spec.width, spec.height).unwrap().nominal);
            assert_eq!(fitted.target_tokens, (r * nominal).round() as usize);
            assert_eq!(fitted.text_tokens, tok.count(&fitted.page.text).unwrap(), "{mode} r={r}");
            assert!(fitted.page.is_complete(), "{mode} r={r}: overflow");
            assert!(!fitted.complete, "{mode} r={r}: the text goes on after the page");
            let check = occ_render::RatioCheck::of(&fitted);
            assert!(check.on_target(), "{mode} r={r}: {}", check.message());
            let err = (fitted.ratio.nominal - r).abs() / r;
            if err > 0.02 {
                failures
                    .push(format!("{mode} r={r}: achieved {} ({} tokens)", fitted.ratio.nominal, fitted.text_tokens));
            }
            if fitted.font_px > prev_px {
                failures.push(format!("{mode} r={r}: font {} px > {} px at the lower ratio", fitted.font_px, prev_px));
            }
            prev_px = fitted.font_px;
            // The font is the largest that fits (one step up overflows).
            let bigger = spec.with_font_px(fitted.font_px + 0.25);
            let up = occ_render::render_page(&fitted.page.text, &bigger).unwrap();
            if up.is_complete() {
                failures.push(format!(
                    "{mode} r={r}: {} px fits too, {} px chosen",
                    fitted.font_px + 0.25,
                    fitted.font_px
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn ratios_on_every_basis_use_the_core_vision_token_counts() {
    let tok = tokenizer();
    let text = en_text(20_000);
    let spec = RenderSpec::for_mode(Mode::Tiny, Lang::En);
    let f = fit_to_ratio(&text, tok, Mode::Tiny, 10.0, &spec).unwrap();
    assert_eq!((f.vision.nominal, f.vision.valid, f.vision.slots), (64, 64, 73));
    assert_eq!(f.target_tokens, 640);
    let t = f.text_tokens as f64;
    assert_eq!(f.ratio.nominal, t / 64.0);
    assert_eq!(f.ratio.valid, t / 64.0);
    assert_eq!(f.ratio.slots, t / 73.0);
    // Base on a non-square page: valid < nominal (paper Eq. 1).
    let mut spec = RenderSpec::for_mode(Mode::Base, Lang::En);
    spec.height = 1448;
    let f = fit_to_ratio(&text, tok, Mode::Base, 5.0, &spec).unwrap();
    assert_eq!((f.vision.nominal, f.vision.valid, f.vision.slots), (256, 182, 273));
    assert_eq!(f.page.image.dimensions(), (1024, 1448));
}

#[test]
fn tiny_at_ratio_25_needs_small_but_legal_fonts() {
    let tok = tokenizer();
    let text = en_prose(60_000);
    let spec = RenderSpec::for_mode(Mode::Tiny, Lang::En);
    let f = fit_to_ratio(&text, tok, Mode::Tiny, 25.0, &spec).unwrap();
    assert!((3.0..8.0).contains(&f.font_px), "font {} px", f.font_px);
    assert_eq!(f.font_px * 4.0, (f.font_px * 4.0).round(), "quarter-pixel steps");
    // Far beyond what fits: a clear error, not a panic or an overflowing page.
    let err = fit_to_ratio(&text, tok, Mode::Tiny, 100.0, &spec).unwrap_err();
    assert!(matches!(err, RenderError::DoesNotFit { min_px, .. } if min_px == 3.0), "{err}");
    assert!(err.to_string().contains("lower the ratio"), "{err}");
}

#[test]
fn chinese_text_hits_the_target_ratio() {
    let tok = tokenizer();
    let text = zh_text(40_000);
    for (mode, r) in [(Mode::Tiny, 5.0), (Mode::Small, 10.0), (Mode::Base, 15.0)] {
        let spec = RenderSpec::for_mode(mode, Lang::Zh);
        let f = fit_to_ratio(&text, tok, mode, r, &spec).unwrap();
        assert!((f.ratio.nominal - r).abs() / r <= 0.02, "{mode} r={r}: {}", f.ratio.nominal);
        assert!(f.page.missing_glyphs.is_empty(), "{:?}", f.page.missing_glyphs);
        assert_consistent(&f.page, &spec.with_font_px(f.font_px), &f.page.text);
    }
}

#[test]
fn cuts_fall_on_char_boundaries_when_tokens_split_characters() {
    let tok = tokenizer();
    // Rare ideographs and emoji are split into byte-level pieces.
    let text = "𠀀𠀁𠀂😀😀😀 whale 鲸鱼".repeat(20);
    for n in 1..40 {
        let (cut, count) = cut_tokens(&text, tok, n).unwrap();
        assert!(text.is_char_boundary(cut), "n={n}: cut {cut}");
        assert_eq!(count, tok.count(&text[..cut]).unwrap());
        // A cut inside a character moves back to its start, or forward to its end when that would
        // leave nothing: at most the pieces of one 4-byte character more or less.
        assert!(count <= n + 3 && count + 4 >= n, "n={n}: {count} tokens kept");
    }
    assert_eq!(cut_tokens(&text, tok, 0).unwrap(), (0, 0));
    let total = tok.count(&text).unwrap();
    assert_eq!(cut_tokens(&text, tok, total + 50).unwrap(), (text.len(), total));
}

#[test]
fn pages_of_paginate_hold_the_budget_and_concatenate_to_the_text() {
    let tok = tokenizer();
    let text = en_text(30_000);
    let spec = RenderSpec::for_mode(Mode::Small, Lang::En);
    let pages = paginate(&text, tok, Mode::Small, 8.0, &spec, None).unwrap();
    let norm = normalize(&text, NewlinePolicy::Keep, 4);
    let joined: String = pages.iter().map(|p| p.page.text.as_str()).collect();
    assert_eq!(joined, norm);
    assert!(pages.len() >= 4);
    let mut offset = 0;
    for (i, p) in pages.iter().enumerate() {
        assert_eq!(p.offset, offset);
        offset += p.page.text.len();
        assert!(p.page.is_complete());
        assert_eq!(p.complete, i + 1 == pages.len(), "page {i}: only the last page ends the text");
        if i + 1 < pages.len() {
            assert!((p.ratio.nominal - 8.0).abs() / 8.0 <= 0.02, "page {i}: {}", p.ratio.nominal);
        } else {
            assert!(p.text_tokens <= 800);
        }
    }
    let two = paginate(&text, tok, Mode::Small, 8.0, &spec, Some(2)).unwrap();
    assert_eq!(two.len(), 2);
    assert_eq!(two[..], pages[..2]);
    assert!(paginate("", tok, Mode::Small, 8.0, &spec, None).unwrap().is_empty());
}

#[test]
fn a_ten_megabyte_text_costs_no_more_than_a_page() {
    let tok = tokenizer();
    let base = en_text(100_000);
    let mut huge = String::with_capacity(10_500_000);
    while huge.len() < 10_000_000 {
        huge.push_str(&base);
    }
    let spec = RenderSpec::for_mode(Mode::Base, Lang::En);
    let t = Instant::now();
    let f = fit_to_ratio(&huge, tok, Mode::Base, 10.0, &spec).unwrap();
    let fit_s = t.elapsed().as_secs_f64();
    assert!((f.ratio.nominal - 10.0).abs() <= 0.2);
    assert!(f.page.text.len() < 40_000);
    let t = Instant::now();
    let page = occ_render::render_page(&huge, &spec.with_font_px(12.0)).unwrap();
    let render_s = t.elapsed().as_secs_f64();
    assert_eq!(page.text.len() + page.overflow.len(), huge.len());
    // Generous bounds for a loaded 2-core CI machine; both take well under a second when idle.
    assert!(fit_s < 20.0 && render_s < 20.0, "fit {fit_s:.2} s, render {render_s:.2} s");
}

#[test]
fn target_tokens_is_round_ratio_times_nominal() {
    let spec = RenderSpec::for_mode(Mode::Small, Lang::En);
    assert_eq!(target_tokens(Mode::Small, &spec, 10.0).unwrap().0, 1000);
    assert_eq!(target_tokens(Mode::Small, &spec, 7.125).unwrap().0, 713);
    let spec = RenderSpec::for_mode(Mode::Gundam, Lang::En);
    let (n, v) = target_tokens(Mode::Gundam, &spec, 2.0).unwrap();
    assert_eq!((v.nominal, n), (856, 1712));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(target_tokens(Mode::Tiny, &spec, bad), Err(RenderError::InvalidRatio { .. })));
    }
}
