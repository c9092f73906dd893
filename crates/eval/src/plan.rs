//! The deterministic sample list of an experiment, and its sharding.
//!
//! Order: corpus → page setting (degradation → font → line height, [`ExperimentSpec::settings`]) →
//! mode → ratio → page (spec order for each). For each corpus the same `pages` passages are used in
//! every cell (a paired design: curves over ratio, mode and setting compare the same texts). They are the first `pages` of a permutation of the eligible passages seeded by
//! `(seed, corpus)`. A page whose ratio needs more tokens than its passage has continues with the
//! next passages of the permutation (joined by a blank line) until it has enough.

use std::sync::Arc;

use occ_core::Mode;
use serde::{Deserialize, Serialize};

use crate::axes::PageSetting;
use crate::corpus::{Corpus, CorpusError};
use crate::normalize::Lang;
use crate::render::PageRenderer;
use crate::rng::SplitMix64;
use crate::spec::ExperimentSpec;

/// Extra tokens drawn beyond the page budget (token counts of joined passages are estimates).
const TOKEN_MARGIN: usize = 64;

/// One planned sample.
#[derive(Debug, Clone)]
pub struct PlannedSample {
    pub index: u64,
    pub sample_id: String,
    pub corpus: String,
    pub lang: Lang,
    pub passage_id: String,
    pub mode: Mode,
    pub target_ratio: f64,
    /// Font, line height and degradation of the page.
    pub setting: Arc<PageSetting>,
    /// Source text with at least the page's token budget (the renderer cuts it).
    pub source_text: Arc<str>,
}

/// `K/N`: this process runs samples with `index % N == K − 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 1-based.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parses `K/N` with 1 ≤ K ≤ N.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {text:?}: expected K/N with 1 <= K <= N, e.g. 1/4");
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether sample `index` belongs to this shard (round robin, which balances the cost of
    /// expensive modes and ratios over shards).
    pub fn contains(&self, index: u64) -> bool {
        index % u64::from(self.count) == u64::from(self.index - 1)
    }
}

/// Formats a ratio for ids: shortest exact decimal (`10`, `10.5`).
pub fn ratio_label(r: f64) -> String {
    format!("{r}")
}

/// Builds the full sample list (all shards).
pub fn build_plan(
    spec: &ExperimentSpec,
    corpora: &[Corpus],
    renderer: &dyn PageRenderer,
) -> Result<Vec<PlannedSample>, CorpusError> {
    let mut plan = Vec::new();
    for corpus in corpora {
        let eligible = corpus.eligible(spec.min_passage_tokens, spec.max_passage_tokens);
        if eligible.len() < spec.pages {
            return Err(CorpusError::TooFewPages {
                name: corpus.name.clone(),
                have: eligible.len(),
                need: spec.pages,
                min_tokens: spec.min_passage_tokens,
                max_tokens: spec.max_passage_tokens,
            });
        }
        let mut order = eligible;
        SplitMix64::stream(spec.seed, &format!("passages/{}", corpus.name)).shuffle(&mut order);
        let total_tokens: usize = order.iter().map(|&i| corpus.passages[i].n_tokens).sum();
        for setting in spec.settings() {
            let setting = Arc::new(setting);
            let suffix = setting.id_suffix();
            for &mode in &spec.modes {
                let (w, h) = renderer.canvas(mode);
                let vision = mode.vision_tokens(w, h).map_err(|e| CorpusError::Invalid {
                    name: corpus.name.clone(),
                    message: format!("vision tokens of mode {mode} for a {w}x{h} page: {e}"),
                })?;
                for &ratio in spec.ratios_for(mode) {
                    // The spec's ratios are validated finite and above 0, so the budget exists.
                    let need = occ_core::tokens_for_ratio(ratio, vision.nominal).unwrap_or(0) + TOKEN_MARGIN;
                    if need > total_tokens {
                        return Err(CorpusError::Invalid {
                        name: corpus.name.clone(),
                        message: format!(
                            "mode {mode} at ratio {ratio} needs {need} tokens per page, the eligible passages hold {total_tokens} in all"
                        ),
                    });
                    }
                    for page in 0..spec.pages {
                        let first = &corpus.passages[order[page]];
                        let mut text = first.text.clone();
                        let mut have = first.n_tokens;
                        let mut next = page + 1;
                        while have < need {
                            let p = &corpus.passages[order[next % order.len()]];
                            text.push_str("\n\n");
                            text.push_str(&p.text);
                            have += p.n_tokens;
                            next += 1;
                        }
                        plan.push(PlannedSample {
                            index: plan.len() as u64,
                            sample_id: format!("{}/{}/{}/r{}{suffix}", corpus.name, first.id, mode, ratio_label(ratio)),
                            corpus: corpus.name.clone(),
                            lang: corpus.lang,
                            passage_id: first.id.clone(),
                            mode,
                            target_ratio: ratio,
                            setting: Arc::clone(&setting),
                            source_text: Arc::from(text),
                        });
                    }
                }
            }
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_parsing_and_membership() {
        assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 2, count: 3 });
        for bad in ["0/3", "4/3", "x", "1/0", "1-2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let shards: Vec<Shard> = (1..=3).map(|k| Shard { index: k, count: 3 }).collect();
        for i in 0..30u64 {
            assert_eq!(shards.iter().filter(|s| s.contains(i)).count(), 1, "sample {i} in exactly one shard");
        }
    }

    #[test]
    fn ratio_labels_are_short() {
        assert_eq!(ratio_label(10.0), "10");
        assert_eq!(ratio_label(10.5), "10.5");
    }
}
