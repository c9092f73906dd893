//! Pages that miss the asked ratio are recognised, with the reason: a blank page from a budget that
//! rounds to no token, a text too short for the budget, and the pages that are on target.

use occ_core::Mode;
use occ_render::fit::fit_to_ratio;
use occ_render::{Lang, OffTarget, RatioCheck, RenderSpec, RATIO_TOLERANCE};

use crate::common::{en_prose, tokenizer};

fn check(text: &str, mode: Mode, ratio: f64) -> (occ_render::FittedPage, RatioCheck) {
    let spec = RenderSpec::for_mode(mode, Lang::En);
    let fitted = fit_to_ratio(text, tokenizer(), mode, ratio, &spec).unwrap();
    let check = RatioCheck::of(&fitted);
    (fitted, check)
}

#[test]
fn a_ratio_that_rounds_to_no_token_is_a_blank_page_off_target() {
    let (fitted, c) = check(&en_prose(5_000), Mode::Tiny, 0.001);
    assert_eq!(fitted.text_tokens, 0);
    assert!(fitted.page.text.is_empty() && fitted.page.lines.is_empty());
    assert_eq!(c.off_target, Some(OffTarget::EmptyBudget));
    let msg = c.message();
    assert!(msg.contains("rounds to none") && msg.contains("blank"), "{msg}");
    // A Tiny page has 64 vision tokens: ratio 1/64 puts one text token on it.
    assert!(msg.contains("0.015625 puts one token"), "{msg}");
}

#[test]
fn a_short_text_at_a_high_ratio_is_off_target_as_too_short() {
    let text = "Call me Ishmael. Some years ago, never mind how long precisely.";
    let (fitted, c) = check(text, Mode::Tiny, 12.0);
    assert!(fitted.complete);
    assert_eq!(fitted.page.text, text);
    assert!(fitted.ratio.nominal < 0.5, "{}", fitted.ratio.nominal);
    assert_eq!(c.off_target, Some(OffTarget::TextTooShort));
    assert!(c.relative_error < -0.9);
    assert!(c.message().contains("whole text is on the page"), "{}", c.message());
    // An absurd ratio on a text that fits: the same diagnosis, not a silent 41×.
    let (_, c) = check(&en_prose(3_000), Mode::Tiny, 1e9);
    assert_eq!(c.off_target, Some(OffTarget::TextTooShort), "{}", c.message());
}

#[test]
fn long_texts_are_on_target_at_every_budget_size() {
    let text = en_prose(40_000);
    for (mode, ratio) in
        [(Mode::Tiny, 0.05), (Mode::Tiny, 0.3), (Mode::Tiny, 1.0), (Mode::Small, 7.7), (Mode::Base, 3.3)]
    {
        let (fitted, c) = check(&text, mode, ratio);
        assert!(c.on_target(), "{mode} {ratio}: {}", c.message());
        assert!(c.message().is_empty());
        assert!(!fitted.complete);
        // Within the tolerance or half a token of the exact budget.
        let slack = (RATIO_TOLERANCE * c.exact_budget).max(0.5);
        assert!((fitted.text_tokens as f64 - c.exact_budget).abs() <= slack + 1e-9);
    }
}

#[test]
fn the_check_serialises_with_its_reason() {
    let (_, c) = check("Short.", Mode::Tiny, 10.0);
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["off_target"], "text_too_short");
    assert_eq!(json["tolerance"], RATIO_TOLERANCE);
}
