//! The `fake-perfect` / `fake-drop-every-K` engines: they answer with the page's ground truth
//! (optionally with every K-th character dropped), which the runner hands them through a
//! [`TruthTap`]. For tests of the sweep machinery end to end (CLI included) without a model;
//! `occ_core::fakes::FakeOcr` needs its truth up front, which a sweep only knows after rendering.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use occ_core::{EngineError, EngineInfo, OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt};

/// Shared map page id → ground truth, filled by the runner before each engine call.
#[derive(Debug, Clone, Default)]
pub struct TruthTap(Arc<Mutex<HashMap<String, String>>>);

impl TruthTap {
    /// Records the ground truth of a page.
    pub fn insert(&self, id: &str, text: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(id.to_string(), text.to_string());
        }
    }

    fn take(&self, id: &str) -> Option<String> {
        self.0.lock().ok().and_then(|mut m| m.remove(id))
    }
}

/// An engine that reads the ground truth from a [`TruthTap`].
#[derive(Debug, Clone)]
pub struct Oracle {
    tap: TruthTap,
    drop_every: Option<usize>,
}

impl Oracle {
    /// A perfect reader, and the tap the runner must fill.
    pub fn perfect() -> (Oracle, TruthTap) {
        let tap = TruthTap::default();
        (Oracle { tap: tap.clone(), drop_every: None }, tap)
    }

    /// A reader that drops every `k`-th character (1-based, `k ≥ 1`).
    pub fn drop_every(k: usize) -> (Oracle, TruthTap) {
        let tap = TruthTap::default();
        (Oracle { tap: tap.clone(), drop_every: Some(k.max(1)) }, tap)
    }
}

impl OcrEngine for Oracle {
    fn info(&self) -> EngineInfo {
        let name = match self.drop_every {
            None => "fake-perfect".to_string(),
            Some(k) => format!("fake-drop-every-{k}"),
        };
        EngineInfo {
            name,
            version: env!("CARGO_PKG_VERSION").into(),
            weights: None,
            synthetic_weights: false,
            device: "cpu".into(),
            dtype: "n/a".into(),
        }
    }

    fn preferred_batch(&self) -> usize {
        4
    }

    fn ocr(
        &mut self,
        pages: &[OcrPage],
        _prompt: &Prompt,
        _options: &OcrOptions,
    ) -> Result<Vec<OcrOutput>, EngineError> {
        pages
            .iter()
            .map(|page| {
                let truth = self.tap.take(&page.id).ok_or_else(|| EngineError::Input {
                    page: page.id.clone(),
                    message: "no ground truth in the truth tap (the runner fills it)".into(),
                })?;
                let text = match self.drop_every {
                    None => truth,
                    Some(k) => truth.chars().enumerate().filter(|(i, _)| (i + 1) % k != 0).map(|(_, c)| c).collect(),
                };
                Ok(OcrOutput { id: page.id.clone(), text, ..OcrOutput::default() })
            })
            .collect()
    }
}
