//! Fake engines for tests of the sweep and memory machinery without a model (ocrs
//! `FakeRecognitionModel` idea). Available with the `fakes` feature.

use std::collections::HashMap;

use crate::engine::{EngineError, EngineInfo, OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt};

/// What a [`FakeOcr`] answers.
#[derive(Debug, Clone)]
enum Behaviour {
    /// The registered ground truth.
    Perfect,
    /// The registered ground truth with every `k`-th character removed.
    DropEvery(usize),
    /// The same text for every page.
    Fixed(String),
}

/// A deterministic fake reader keyed by page id.
#[derive(Debug, Clone)]
pub struct FakeOcr {
    truth: HashMap<String, String>,
    behaviour: Behaviour,
    calls: usize,
}

impl FakeOcr {
    /// Returns the registered text of each page id.
    pub fn perfect(truth: HashMap<String, String>) -> FakeOcr {
        FakeOcr { truth, behaviour: Behaviour::Perfect, calls: 0 }
    }

    /// Returns the registered text with every `k`-th character (1-based) dropped; `k` ≥ 1.
    pub fn drop_every(truth: HashMap<String, String>, k: usize) -> FakeOcr {
        FakeOcr { truth, behaviour: Behaviour::DropEvery(k.max(1)), calls: 0 }
    }

    /// Returns `text` for every page.
    pub fn fixed(text: impl Into<String>) -> FakeOcr {
        FakeOcr { truth: HashMap::new(), behaviour: Behaviour::Fixed(text.into()), calls: 0 }
    }

    /// Registers (or replaces) the ground truth of a page id.
    pub fn insert(&mut self, id: impl Into<String>, text: impl Into<String>) {
        self.truth.insert(id.into(), text.into());
    }

    /// Number of `ocr` calls so far.
    pub fn calls(&self) -> usize {
        self.calls
    }
}

impl OcrEngine for FakeOcr {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            name: "fake".into(),
            version: format!("{:?}", self.behaviour),
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
        self.calls += 1;
        pages
            .iter()
            .map(|page| {
                let text = match &self.behaviour {
                    Behaviour::Fixed(t) => t.clone(),
                    behaviour => {
                        let truth = self.truth.get(&page.id).ok_or_else(|| EngineError::Input {
                            page: page.id.clone(),
                            message: "no ground truth registered with the fake engine".into(),
                        })?;
                        match behaviour {
                            Behaviour::DropEvery(k) => {
                                truth.chars().enumerate().filter(|(i, _)| (i + 1) % k != 0).map(|(_, c)| c).collect()
                            }
                            _ => truth.clone(),
                        }
                    }
                };
                Ok(OcrOutput { id: page.id.clone(), text, ..OcrOutput::default() })
            })
            .collect()
    }
}
