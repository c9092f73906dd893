//! How close a fitted page came to the compression ratio it was asked for, and why it missed.
//!
//! The fitter ([`crate::fit`]) puts `round(r · V)` text tokens on a page of `V` nominal vision tokens.
//! A page is **on target** when it holds at least one token and its token count is within
//! `max(0.5, RATIO_TOLERANCE · r · V)` of the exact budget `r · V`: as close as whole tokens allow,
//! or within [`RATIO_TOLERANCE`] (1 %) of the ratio. Otherwise it is off target, for one of the reasons
//! of [`OffTarget`]. Callers decide what an off-target page is (the `render` command warns, and fails
//! under `--strict`).

use serde::Serialize;

use crate::fit::FittedPage;

/// Relative tolerance of the achieved nominal ratio (beyond the half token of rounding).
pub const RATIO_TOLERANCE: f64 = 0.01;

/// Why a page is off target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OffTarget {
    /// The budget `r · V` rounds to no token: the page is blank.
    EmptyBudget,
    /// All of the input is on the page and it has fewer tokens than the budget.
    TextTooShort,
    /// The page holds a different number of tokens than the budget for another reason (a token cut
    /// at a character boundary, for instance).
    Other,
}

/// The comparison of a fitted page with its target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatioCheck {
    /// The asked ratio `r`.
    pub target_ratio: f64,
    /// Achieved text tokens per nominal vision token.
    pub achieved_ratio: f64,
    /// `r · V`, the exact (unrounded) token budget.
    pub exact_budget: f64,
    /// Text tokens on the page.
    pub text_tokens: usize,
    /// `(achieved − target) / target`.
    pub relative_error: f64,
    /// The relative tolerance used ([`RATIO_TOLERANCE`]).
    pub tolerance: f64,
    /// `None` when the page is on target.
    pub off_target: Option<OffTarget>,
}

impl RatioCheck {
    /// Checks `page` against the ratio it was fitted to.
    pub fn of(page: &FittedPage) -> RatioCheck {
        let exact = page.target_ratio * f64::from(page.vision.nominal);
        let tokens = page.text_tokens as f64;
        let allowed = (RATIO_TOLERANCE * exact).max(0.5) + 1e-9;
        let off_target = if page.text_tokens == 0 {
            Some(if page.target_tokens == 0 { OffTarget::EmptyBudget } else { OffTarget::Other })
        } else if (tokens - exact).abs() <= allowed {
            None
        } else if page.complete && tokens < exact {
            Some(OffTarget::TextTooShort)
        } else {
            Some(OffTarget::Other)
        };
        RatioCheck {
            target_ratio: page.target_ratio,
            achieved_ratio: page.ratio.nominal,
            exact_budget: exact,
            text_tokens: page.text_tokens,
            relative_error: if page.target_ratio > 0.0 {
                (page.ratio.nominal - page.target_ratio) / page.target_ratio
            } else {
                f64::NAN
            },
            tolerance: RATIO_TOLERANCE,
            off_target,
        }
    }

    /// Whether the page is within the tolerance.
    pub fn on_target(&self) -> bool {
        self.off_target.is_none()
    }

    /// A one-line explanation of an off-target page (empty when on target).
    pub fn message(&self) -> String {
        let head = format!(
            "the page's ratio is {:.4} where {} was asked ({:+.1} %, tolerance ±{} % or half a token)",
            self.achieved_ratio,
            self.target_ratio,
            100.0 * self.relative_error,
            100.0 * self.tolerance
        );
        match self.off_target {
            None => String::new(),
            Some(OffTarget::EmptyBudget) => format!(
                "{head}: ratio {} asks for {:.3} text tokens, which rounds to none, so the page is blank; \
                 ratio {:.6} puts one token on this page",
                self.target_ratio,
                self.exact_budget,
                self.target_ratio / self.exact_budget.max(f64::MIN_POSITIVE)
            ),
            Some(OffTarget::TextTooShort) => format!(
                "{head}: the whole text is on the page and has only {} tokens of the {:.0} asked for; give a \
                 longer text or a lower ratio",
                self.text_tokens, self.exact_budget
            ),
            Some(OffTarget::Other) => {
                format!(
                    "{head}: the page holds {} text tokens for a budget of {:.1}",
                    self.text_tokens, self.exact_budget
                )
            }
        }
    }
}
