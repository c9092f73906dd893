//! A predictions file: [`crate::score`]'s input, written one line per page as pages are read (the
//! CLI's `ocr --truth … --predictions-out FILE`).
//!
//! Lines are written to `FILE.partial` and flushed after every batch; [`PredictionsWriter::finish`]
//! renames the file to `FILE`. A run that stops early therefore leaves its pages in `FILE.partial`
//! and never a `FILE` that looks complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use occ_core::Mode;
use serde::Serialize;

use crate::truth::JoinedPage;

/// One line of a predictions file. `score` reads `id`, `truth`, `prediction`, `mode`,
/// `vision_tokens`, `text_tokens` and `group`; `image` (the file the page was read from) is for
/// people and ignored by `score`. Unknown values are left out of the line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictionLine {
    pub id: String,
    pub truth: String,
    pub prediction: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Nominal vision tokens of the page in `mode` (`occ_core::Mode::vision_tokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vision_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub image: String,
}

impl PredictionLine {
    /// The line of a joined page read in `mode` (with `vision_tokens` nominal tokens) as
    /// `prediction`.
    pub fn new(page: &JoinedPage, prediction: &str, mode: Option<Mode>, vision_tokens: Option<u32>) -> Self {
        PredictionLine {
            id: page.id().to_string(),
            truth: page.truth.truth.clone(),
            prediction: prediction.to_string(),
            mode,
            vision_tokens,
            text_tokens: page.truth.text_tokens,
            group: page.truth.group.clone(),
            image: page.truth.image.clone(),
        }
    }
}

/// Errors of writing a predictions file.
#[derive(Debug, thiserror::Error)]
pub enum PredictionsError {
    #[error("writing {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("encoding the prediction of page {id}: {message}")]
    Encode { id: String, message: String },
}

/// Writes a predictions file (see the module docs).
#[derive(Debug)]
pub struct PredictionsWriter {
    path: PathBuf,
    partial: PathBuf,
    out: BufWriter<File>,
    written: usize,
}

impl PredictionsWriter {
    /// Creates `path.partial` (and its folder), so an unwritable destination fails before any page
    /// is read.
    pub fn create(path: &Path) -> Result<PredictionsWriter, PredictionsError> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let io = |p: &Path, source| PredictionsError::Io { path: p.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        let file = File::create(&partial).map_err(|e| io(&partial, e))?;
        Ok(PredictionsWriter { path: path.to_path_buf(), partial, out: BufWriter::new(file), written: 0 })
    }

    /// The file being written until [`PredictionsWriter::finish`].
    pub fn partial_path(&self) -> &Path {
        &self.partial
    }

    /// Appends one line.
    pub fn write(&mut self, line: &PredictionLine) -> Result<(), PredictionsError> {
        let json = serde_json::to_string(line)
            .map_err(|e| PredictionsError::Encode { id: line.id.clone(), message: e.to_string() })?;
        writeln!(self.out, "{json}").map_err(|e| self.io_error(e))?;
        self.written += 1;
        Ok(())
    }

    /// Puts every line written so far on disk.
    pub fn flush(&mut self) -> Result<(), PredictionsError> {
        self.out.flush().map_err(|e| self.io_error(e))
    }

    /// Lines written.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Flushes and renames the file to its final name; returns that path.
    pub fn finish(mut self) -> Result<PathBuf, PredictionsError> {
        self.flush()?;
        self.out.get_ref().sync_all().map_err(|e| self.io_error(e))?;
        std::fs::rename(&self.partial, &self.path)
            .map_err(|e| PredictionsError::Io { path: self.path.display().to_string(), source: e })?;
        Ok(self.path)
    }

    fn io_error(&self, source: std::io::Error) -> PredictionsError {
        PredictionsError::Io { path: self.partial.display().to_string(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::{parse_input, InputRow};
    use crate::truth::{join, parse_truth};

    #[test]
    fn written_lines_are_read_back_by_score_as_the_same_rows() {
        let truth = parse_truth(
            concat!(
                r#"{"image": "a.png", "truth": "The cat sat.", "group": "scans", "text_tokens": 4}"#,
                "\n",
                r#"{"image": "b.png", "truth": "Second page", "id": 12}"#,
            )
            .as_bytes(),
        );
        let j = join(&[PathBuf::from("d/a.png"), PathBuf::from("d/b.png")], truth);
        let dir = std::env::temp_dir().join(format!("occ-predictions-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub").join("p.jsonl");
        let mut w = PredictionsWriter::create(&path).unwrap();
        assert!(w.partial_path().ends_with("p.jsonl.partial") && w.partial_path().exists());
        let tiny: Mode = "tiny".parse().unwrap();
        w.write(&PredictionLine::new(&j.pages[0], "The cat sat", Some(tiny), Some(64))).unwrap();
        w.write(&PredictionLine::new(&j.pages[1], "", None, None)).unwrap();
        assert_eq!(w.written(), 2);
        assert!(!path.exists(), "the final name appears only when finished");
        assert_eq!(w.finish().unwrap(), path);
        let body = std::fs::read_to_string(&path).unwrap();
        let first = body.lines().next().unwrap();
        assert_eq!(
            first,
            r#"{"id":"a.png","truth":"The cat sat.","prediction":"The cat sat","mode":"tiny","vision_tokens":64,"text_tokens":4,"group":"scans","image":"a.png"}"#
        );
        let parsed = parse_input(body.as_bytes());
        assert!(parsed.bad.is_empty(), "{:?}", parsed.bad);
        assert_eq!(
            parsed.rows,
            [
                InputRow {
                    line: 1,
                    id: "a.png".into(),
                    truth: "The cat sat.".into(),
                    prediction: "The cat sat".into(),
                    mode: Some(tiny),
                    vision_tokens: Some(64),
                    text_tokens: Some(4),
                    group: Some("scans".into()),
                },
                InputRow {
                    line: 2,
                    id: "12".into(),
                    truth: "Second page".into(),
                    prediction: String::new(),
                    mode: None,
                    vision_tokens: None,
                    text_tokens: None,
                    group: None,
                },
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_destination_fails_at_creation() {
        let err = PredictionsWriter::create(Path::new("/proc/occ-no-such-dir/p.jsonl")).unwrap_err();
        assert!(err.to_string().contains("/proc/occ-no-such-dir"), "{err}");
    }
}
