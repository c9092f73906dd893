//! Tesseract as an [`OcrEngine`]: Debian's `tesseract` CLI on the same pixels the model gets.
//!
//! Each page is PNG-encoded in memory and piped to `tesseract stdin stdout -l <lang> --psm <n>`
//! (no temporary files, so a killed sweep leaves nothing behind). Pages of a batch run as parallel
//! processes with `OMP_THREAD_LIMIT=1` each (one core per page beats one page on every core).
//! The page is read at its rendered size: with the renderer's default canvases that is exactly the
//! encoder's view (512² Tiny, 640² Small, 1024² Base, 1280² Large, the 640-px tile grid of Gundam).
//!
//! Page segmentation: `--psm 6` ("a single uniform block of text") is the default because a
//! rendered page is one block; docs/SWEEPS.md records the measurement against the default `--psm 3`.

use std::io::{Cursor, Read, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use occ_core::{EngineError, EngineInfo, OcrEngine, OcrOptions, OcrOutput, OcrPage, Prompt, Timings};

use crate::normalize::Lang;

/// Tesseract's language pack for a language.
fn tesseract_lang(lang: Lang) -> &'static str {
    match lang {
        Lang::En => "eng",
        Lang::Zh => "chi_sim",
    }
}

/// The default page segmentation: `--psm 6`, one uniform block of text (see the module docs).
pub const DEFAULT_PSM: u32 = 6;

/// How to get Tesseract on Debian/Ubuntu.
pub const INSTALL_HINT: &str =
    "install it with `apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim`";

/// A Tesseract reader for one language.
#[derive(Debug, Clone)]
pub struct Tesseract {
    program: String,
    lang: Lang,
    psm: u32,
    version: String,
    threads: usize,
}

impl Tesseract {
    /// Checks that `program` (usually `tesseract`) runs and has the language pack of `lang`.
    pub fn new(program: &str, lang: Lang, psm: u32, threads: usize) -> Result<Tesseract, EngineError> {
        let unavailable =
            |reason: String| EngineError::Unavailable { engine: "tesseract".into(), reason, how: INSTALL_HINT.into() };
        let out = Command::new(program)
            .arg("--version")
            .output()
            .map_err(|e| unavailable(format!("cannot run `{program} --version`: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        // First line is `tesseract 5.3.0`; keep the number (the engine name says "tesseract").
        let first = text.lines().next().unwrap_or("").trim();
        let version = first.strip_prefix("tesseract").unwrap_or(first).trim().to_string();
        let langs = Command::new(program)
            .arg("--list-langs")
            .output()
            .map_err(|e| unavailable(format!("cannot run `{program} --list-langs`: {e}")))?;
        let listed = String::from_utf8_lossy(&langs.stdout).to_string() + &String::from_utf8_lossy(&langs.stderr);
        let want = tesseract_lang(lang);
        if !listed.lines().any(|l| l.trim() == want) {
            return Err(unavailable(format!("language pack {want} is not installed (`{program} --list-langs`)")));
        }
        if psm > 13 {
            return Err(EngineError::Backend {
                engine: "tesseract".into(),
                message: format!("--psm {psm} is not 0..=13"),
            });
        }
        Ok(Tesseract { program: program.into(), lang, psm, version, threads: threads.max(1) })
    }

    fn read_one(&self, page: &OcrPage) -> Result<OcrOutput, EngineError> {
        let backend = |message: String| EngineError::Backend { engine: "tesseract".into(), message };
        let t0 = Instant::now();
        let mut png = Vec::new();
        page.image
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| EngineError::Input { page: page.id.clone(), message: format!("encoding PNG: {e}") })?;
        let t1 = Instant::now();
        let mut child = Command::new(&self.program)
            .args(["stdin", "stdout", "-l", tesseract_lang(self.lang), "--psm", &self.psm.to_string()])
            .env("OMP_THREAD_LIMIT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| backend(format!("spawning {}: {e}", self.program)))?;
        // Write stdin on a thread so a full stdout pipe can never deadlock us.
        let mut stdin = child.stdin.take().ok_or_else(|| backend("no stdin pipe".into()))?;
        let writer = std::thread::spawn(move || stdin.write_all(&png));
        let mut stdout = Vec::new();
        if let Some(mut s) = child.stdout.take() {
            s.read_to_end(&mut stdout).map_err(|e| backend(format!("reading output: {e}")))?;
        }
        let mut stderr = Vec::new();
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_end(&mut stderr);
        }
        let status = child.wait().map_err(|e| backend(format!("waiting for tesseract: {e}")))?;
        let written = writer.join().map_err(|_| backend("stdin writer thread panicked".into()))?;
        if !status.success() {
            return Err(backend(format!(
                "page {}: tesseract exited with {status}: {}",
                page.id,
                String::from_utf8_lossy(&stderr).trim()
            )));
        }
        written.map_err(|e| backend(format!("page {}: writing the image to tesseract: {e}", page.id)))?;
        let text = String::from_utf8_lossy(&stdout).trim_end().to_string();
        Ok(OcrOutput {
            id: page.id.clone(),
            text,
            timings: Timings { preprocess: t1 - t0, decode: t1.elapsed(), ..Timings::default() },
            ..OcrOutput::default()
        })
    }
}

impl OcrEngine for Tesseract {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            name: "tesseract".into(),
            version: format!("{} (-l {} --psm {})", self.version, tesseract_lang(self.lang), self.psm),
            weights: None,
            synthetic_weights: false,
            device: "cpu".into(),
            dtype: "n/a".into(),
        }
    }

    fn preferred_batch(&self) -> usize {
        self.threads
    }

    fn ocr(
        &mut self,
        pages: &[OcrPage],
        _prompt: &Prompt,
        _options: &OcrOptions,
    ) -> Result<Vec<OcrOutput>, EngineError> {
        let mut results: Vec<Option<Result<OcrOutput, EngineError>>> = (0..pages.len()).map(|_| None).collect();
        for (chunk_pages, chunk_out) in pages.chunks(self.threads).zip(results.chunks_mut(self.threads)) {
            std::thread::scope(|s| {
                let handles: Vec<_> = chunk_pages.iter().map(|p| s.spawn(|| self.read_one(p))).collect();
                for (slot, h) in chunk_out.iter_mut().zip(handles) {
                    *slot = Some(h.join().unwrap_or_else(|_| {
                        Err(EngineError::Backend {
                            engine: "tesseract".into(),
                            message: "reader thread panicked".into(),
                        })
                    }));
                }
            });
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(EngineError::Backend { engine: "tesseract".into(), message: "page was not read".into() })
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_is_unavailable_with_install_hint() {
        let err = Tesseract::new("/nonexistent/tesseract-xyz", Lang::En, 6, 1).unwrap_err();
        assert!(matches!(err, EngineError::Unavailable { .. }));
        let msg = err.to_string();
        assert!(msg.contains("apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim"), "{msg}");
    }
}
