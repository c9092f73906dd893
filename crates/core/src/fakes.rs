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

/// A deterministic fake reader keyed by page id. Its truths are registered up front
/// ([`FakeOcr::perfect`], [`FakeOcr::insert`]) or handed over by the caller that rendered the pages
/// ([`OcrEngine::ground_truth`]).
#[derive(Debug, Clone)]
pub struct FakeOcr {
    truth: HashMap<String, String>,
    behaviour: Behaviour,
    calls: usize,
    /// The engine name of [`FakeOcr::named`].
    name: Option<String>,
}

impl FakeOcr {
    /// Returns the registered text of each page id.
    pub fn perfect(truth: HashMap<String, String>) -> FakeOcr {
        FakeOcr { truth, behaviour: Behaviour::Perfect, calls: 0, name: None }
    }

    /// Returns the registered text with every `k`-th character (1-based) dropped; `k` ≥ 1.
    pub fn drop_every(truth: HashMap<String, String>, k: usize) -> FakeOcr {
        FakeOcr { truth, behaviour: Behaviour::DropEvery(k.max(1)), calls: 0, name: None }
    }

    /// Returns `text` for every page.
    pub fn fixed(text: impl Into<String>) -> FakeOcr {
        FakeOcr { truth: HashMap::new(), behaviour: Behaviour::Fixed(text.into()), calls: 0, name: None }
    }

    /// Registers (or replaces) the ground truth of a page id.
    pub fn insert(&mut self, id: impl Into<String>, text: impl Into<String>) {
        self.truth.insert(id.into(), text.into());
    }

    /// The same engine under an engine name of its own (`fake-perfect`), with the toolkit's
    /// version: the identity of a named engine in manifests.
    pub fn named(self, name: impl Into<String>) -> FakeOcr {
        FakeOcr { name: Some(name.into()), ..self }
    }

    /// Number of `ocr` calls so far.
    pub fn calls(&self) -> usize {
        self.calls
    }
}

impl OcrEngine for FakeOcr {
    fn info(&self) -> EngineInfo {
        let (name, version) = match &self.name {
            Some(name) => (name.clone(), env!("CARGO_PKG_VERSION").to_string()),
            None => ("fake".to_string(), format!("{:?}", self.behaviour)),
        };
        EngineInfo { name, version, weights: None, synthetic_weights: false, device: "cpu".into(), dtype: "n/a".into() }
    }

    fn preferred_batch(&self) -> usize {
        4
    }

    fn ground_truth(&mut self, page_id: &str, text: &str) {
        self.insert(page_id, text);
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
