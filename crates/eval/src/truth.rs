//! Ground truth for page images read outside a sweep (scanned pages, Fox- or OmniDocBench-style
//! document sets): a truth file joined to image files by file name. The CLI's `ocr --truth` reads
//! the joined pages and writes one [`crate::predictions::PredictionLine`] per page, the input of
//! [`crate::score`].
//!
//! Truth file: JSON Lines, one page per line; blank lines are skipped and other fields ignored.
//!
//! | field | type | meaning |
//! | --- | --- | --- |
//! | `image` | string | the page's image file name; folders are ignored (`scans/p1.png` joins `p1.png`) |
//! | `truth` | string | the ground truth |
//! | `id` | string or integer, optional | the page id of the predictions (default: the image file name) |
//! | `group` | string, optional | passed on (`score`'s cell key) |
//! | `text_tokens` | integer ≥ 0, optional | passed on (`score` counts them when absent) |
//!
//! The join is by file name, exactly (case-sensitive). Only a name with exactly one image and exactly
//! one truth row is read. Everything else is a [`JoinProblem`] naming the image: a truth row that
//! cannot be read (by line), several truth rows for one name or several images of one name (every
//! one left out: which is meant is unknown), an image without a truth row, a truth row without an
//! image, and an id given to more than one joined page (those pages are left out). The caller decides
//! whether problems are warnings or refuse the join.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::score::{self, Problem};

/// Extensions (lower case) of the files [`list_images`] takes from a folder: the formats the image
/// decoder reads.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Errors that stop a join (a problem with one page is a [`JoinProblem`], not one of these).
#[derive(Debug, thiserror::Error)]
pub enum TruthError {
    #[error("reading {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: no .png, .jpg or .jpeg file in the folder")]
    NoImages { path: String },
}

/// One well-formed row of a truth file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthRow {
    /// 1-based line number.
    pub line: usize,
    /// The image file name (the last component of the row's `image`).
    pub image: String,
    pub truth: String,
    pub id: Option<String>,
    pub group: Option<String>,
    pub text_tokens: Option<u32>,
}

/// The rows of a truth file and the lines that could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedTruth {
    pub rows: Vec<TruthRow>,
    /// [`JoinProblem::BadTruthRow`]s, by line.
    pub bad: Vec<JoinProblem>,
    /// Non-blank lines read.
    pub n_lines: usize,
}

/// Something that keeps a page out of the join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JoinProblem {
    /// A truth row that cannot be read (not UTF-8, not JSON, a missing or mistyped field).
    BadTruthRow { line: usize, image: Option<String>, problem: Problem },
    /// Several truth rows name one image (every one is left out).
    DuplicateTruth { image: String, lines: Vec<usize> },
    /// Several image files have one name (every one is left out).
    DuplicateImage { image: String, paths: Vec<String> },
    /// An image no truth row names (not read).
    NoTruth { image: String, path: String },
    /// A truth row whose image is not among the images.
    NoImage { image: String, line: usize },
    /// Several joined pages have one id (every one is left out).
    DuplicateId { id: String, images: Vec<String> },
}

impl JoinProblem {
    /// The `kind` tag (`no_truth`, `duplicate_image`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            JoinProblem::BadTruthRow { .. } => "bad_truth_row",
            JoinProblem::DuplicateTruth { .. } => "duplicate_truth",
            JoinProblem::DuplicateImage { .. } => "duplicate_image",
            JoinProblem::NoTruth { .. } => "no_truth",
            JoinProblem::NoImage { .. } => "no_image",
            JoinProblem::DuplicateId { .. } => "duplicate_id",
        }
    }

    /// The image file name the problem is about, when known.
    pub fn image(&self) -> Option<&str> {
        match self {
            JoinProblem::BadTruthRow { image, .. } => image.as_deref(),
            JoinProblem::DuplicateTruth { image, .. }
            | JoinProblem::DuplicateImage { image, .. }
            | JoinProblem::NoTruth { image, .. }
            | JoinProblem::NoImage { image, .. } => Some(image),
            JoinProblem::DuplicateId { .. } => None,
        }
    }
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

impl fmt::Display for JoinProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinProblem::BadTruthRow { line, image: Some(image), problem } => {
                write!(f, "truth line {line} (image {image}): {problem}")
            }
            JoinProblem::BadTruthRow { line, image: None, problem } => write!(f, "truth line {line}: {problem}"),
            JoinProblem::DuplicateTruth { image, lines } => {
                let lines: Vec<String> = lines.iter().map(usize::to_string).collect();
                write!(f, "image {image}: several truth rows (lines {}); left out", list(&lines))
            }
            JoinProblem::DuplicateImage { image, paths } => {
                write!(f, "image {image}: several files of this name ({}); left out", list(paths))
            }
            JoinProblem::NoTruth { image, path } => write!(f, "image {image} ({path}): no truth row; not read"),
            JoinProblem::NoImage { image, line } => write!(f, "image {image} (truth line {line}): no such image"),
            JoinProblem::DuplicateId { id, images } => {
                write!(f, "id {id:?} is given to several images ({}); left out", list(images))
            }
        }
    }
}

/// A page with exactly one image and one truth row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedPage {
    pub path: PathBuf,
    pub truth: TruthRow,
}

impl JoinedPage {
    /// The page id: the truth row's `id`, else the image file name.
    pub fn id(&self) -> &str {
        self.truth.id.as_deref().unwrap_or(&self.truth.image)
    }
}

/// The pages to read, in image order, and every problem.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Join {
    pub pages: Vec<JoinedPage>,
    /// Bad truth rows by line, then the other problems in image order.
    pub problems: Vec<JoinProblem>,
    /// Image files given.
    pub n_images: usize,
    /// Non-blank truth lines.
    pub n_truth_lines: usize,
}

impl Join {
    /// Problems per kind (only kinds that occur).
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for p in &self.problems {
            *counts.entry(p.kind()).or_insert(0) += 1;
        }
        counts
    }
}

/// The image files of a folder ([`IMAGE_EXTENSIONS`], any case; not its subfolders), sorted by
/// file name. A folder without one is an error.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>, TruthError> {
    let io = |e| TruthError::Io { path: dir.display().to_string(), source: e };
    let mut images = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if is_image && path.is_file() {
            images.push(path);
        }
    }
    if images.is_empty() {
        return Err(TruthError::NoImages { path: dir.display().to_string() });
    }
    images.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(images)
}

/// Reads and parses a truth file ([`parse_truth`]).
pub fn read_truth(path: &Path) -> Result<ParsedTruth, TruthError> {
    let bytes = std::fs::read(path).map_err(|e| TruthError::Io { path: path.display().to_string(), source: e })?;
    Ok(parse_truth(&bytes))
}

/// Parses JSON Lines bytes: every non-blank line becomes a row or a bad row.
pub fn parse_truth(bytes: &[u8]) -> ParsedTruth {
    let mut parsed = ParsedTruth::default();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        parsed.n_lines += 1;
        match parse_line(raw, line) {
            Ok(row) => parsed.rows.push(row),
            Err(bad) => parsed.bad.push(bad),
        }
    }
    parsed
}

fn parse_line(raw: &[u8], line: usize) -> Result<TruthRow, JoinProblem> {
    let bad = |image: Option<String>, problem| JoinProblem::BadTruthRow { line, image, problem };
    let obj: Map<String, Value> = score::parse_object(raw).map_err(|p| bad(None, p))?;
    let image = score::required_string(&obj, "image").map_err(|p| bad(None, p))?;
    let image = file_name(Path::new(&image)).ok_or_else(|| bad(None, score::wrong("image", "a file name")))?;
    let with_image = |problem| bad(Some(image.clone()), problem);
    let truth = score::required_string(&obj, "truth").map_err(with_image)?;
    let id = score::optional_id(&obj).map_err(with_image)?;
    let group = score::optional_name(&obj, "group").map_err(with_image)?;
    let text_tokens = score::optional_u32(&obj, "text_tokens", 0).map_err(with_image)?;
    Ok(TruthRow { line, image, truth, id, group, text_tokens })
}

/// The last component of a path as UTF-8, if it has one.
fn file_name(path: &Path) -> Option<String> {
    path.file_name().and_then(|n| n.to_str()).filter(|n| !n.is_empty()).map(str::to_string)
}

/// Joins images and truth rows by file name (see the module docs). Pages keep the order of
/// `images`.
pub fn join(images: &[PathBuf], truth: ParsedTruth) -> Join {
    let mut problems = truth.bad;
    let mut truth_by_name: BTreeMap<String, Vec<TruthRow>> = BTreeMap::new();
    for row in truth.rows {
        truth_by_name.entry(row.image.clone()).or_default().push(row);
    }
    let mut images_by_name: BTreeMap<String, Vec<&PathBuf>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for path in images {
        // A path without a UTF-8 file name keeps its lossy name: it can then join no truth row.
        let name = file_name(path).unwrap_or_else(|| path.display().to_string());
        let paths = images_by_name.entry(name.clone()).or_default();
        if paths.is_empty() {
            order.push(name);
        }
        paths.push(path);
    }
    let mut pages = Vec::new();
    for name in &order {
        let paths = &images_by_name[name];
        let rows = truth_by_name.get(name);
        let single = match paths.as_slice() {
            [path] => Some(*path),
            _ => {
                let paths = paths.iter().map(|p| p.display().to_string()).collect();
                problems.push(JoinProblem::DuplicateImage { image: name.clone(), paths });
                None
            }
        };
        match (rows.map(Vec::as_slice), single) {
            (Some([row]), Some(path)) => pages.push(JoinedPage { path: path.clone(), truth: row.clone() }),
            (None | Some([]), Some(path)) => {
                problems.push(JoinProblem::NoTruth { image: name.clone(), path: path.display().to_string() });
            }
            (Some(rows), _) if rows.len() > 1 => {
                let lines = rows.iter().map(|r| r.line).collect();
                problems.push(JoinProblem::DuplicateTruth { image: name.clone(), lines });
            }
            // Several images of this name: already reported.
            _ => {}
        }
    }
    let mut no_image: Vec<&TruthRow> =
        truth_by_name.iter().filter(|(name, _)| !images_by_name.contains_key(*name)).flat_map(|(_, r)| r).collect();
    no_image.sort_by_key(|r| r.line);
    for row in no_image {
        problems.push(JoinProblem::NoImage { image: row.image.clone(), line: row.line });
    }
    let pages = drop_duplicate_ids(pages, &mut problems);
    Join { pages, problems, n_images: images.len(), n_truth_lines: truth.n_lines }
}

/// Leaves out every page whose id another page has too, with one problem per id.
fn drop_duplicate_ids(pages: Vec<JoinedPage>, problems: &mut Vec<JoinProblem>) -> Vec<JoinedPage> {
    let mut by_id: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in &pages {
        by_id.entry(p.id()).or_default().push(&p.truth.image);
    }
    let duplicated: BTreeSet<String> =
        by_id.iter().filter(|(_, images)| images.len() > 1).map(|(id, _)| id.to_string()).collect();
    for id in &duplicated {
        let images = by_id[id.as_str()].iter().map(|s| s.to_string()).collect();
        problems.push(JoinProblem::DuplicateId { id: id.clone(), images });
    }
    pages.into_iter().filter(|p| !duplicated.contains(p.id())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth(lines: &[&str]) -> ParsedTruth {
        parse_truth(lines.join("\n").as_bytes())
    }

    fn paths(names: &[&str]) -> Vec<PathBuf> {
        names.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn rows_join_images_by_file_name_in_image_order() {
        let t = truth(&[
            r#"{"image": "scans/b.png", "truth": "bee", "group": "g", "text_tokens": 3}"#,
            "",
            r#"{"image": "a.png", "truth": "ay", "id": 7}"#,
        ]);
        assert_eq!(t.n_lines, 2);
        let j = join(&paths(&["pages/a.png", "pages/b.png"]), t);
        assert!(j.problems.is_empty(), "{:?}", j.problems);
        let got: Vec<(&str, &str, &str)> =
            j.pages.iter().map(|p| (p.id(), p.truth.truth.as_str(), p.path.to_str().unwrap())).collect();
        assert_eq!(got, [("7", "ay", "pages/a.png"), ("b.png", "bee", "pages/b.png")]);
        assert_eq!(j.pages[1].truth.group.as_deref(), Some("g"));
        assert_eq!(j.pages[1].truth.text_tokens, Some(3));
        assert_eq!((j.n_images, j.n_truth_lines), (2, 2));
    }

    #[test]
    fn every_problem_is_named_and_its_pages_left_out() {
        let t = truth(&[
            r#"{"image": "ok.png", "truth": "fine"}"#,
            r#"{"image": "twice.png", "truth": "one"}"#,
            r#"{"image": "twice.png", "truth": "two"}"#,
            r#"{"image": "gone.png", "truth": "lost"}"#,
            r#"{"image": "same.png", "truth": "s"}"#,
            r#"{"image": "x.png", "truth": "x", "id": "dup"}"#,
            r#"{"image": "y.png", "truth": "y", "id": "dup"}"#,
            r#"{"image": "z.png"}"#,
            r#"not json"#,
        ]);
        let images =
            paths(&["d/ok.png", "d/twice.png", "d/alone.png", "d/same.png", "e/same.png", "d/x.png", "d/y.png"]);
        let j = join(&images, t);
        let ids: Vec<&str> = j.pages.iter().map(JoinedPage::id).collect();
        assert_eq!(ids, ["ok.png"]);
        let shown: Vec<String> = j.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "truth line 8 (image z.png): missing field `truth`",
                "truth line 9: invalid JSON: expected ident at line 1 column 2",
                "image twice.png: several truth rows (lines 2, 3); left out",
                "image alone.png (d/alone.png): no truth row; not read",
                "image same.png: several files of this name (d/same.png, e/same.png); left out",
                "image gone.png (truth line 4): no such image",
                "id \"dup\" is given to several images (x.png, y.png); left out",
            ]
        );
        let counts = j.counts();
        assert_eq!(counts.get("no_truth"), Some(&1));
        assert_eq!(counts.get("bad_truth_row"), Some(&2));
        assert_eq!(j.problems[2].image(), Some("twice.png"));
    }

    #[test]
    fn a_row_without_a_file_name_or_with_a_mistyped_field_is_bad() {
        let t = truth(&[
            r#"{"image": "", "truth": "t"}"#,
            r#"{"image": "a.png", "truth": 3}"#,
            r#"{"image": "b.png", "truth": "t", "text_tokens": -1}"#,
            r#"[1, 2]"#,
        ]);
        let kinds: Vec<String> = t
            .bad
            .iter()
            .map(|p| match p {
                JoinProblem::BadTruthRow { problem, .. } => problem.kind().to_string(),
                other => other.kind().to_string(),
            })
            .collect();
        assert_eq!(kinds, ["wrong_type", "wrong_type", "wrong_type", "not_an_object"]);
        assert!(t.rows.is_empty());
    }

    #[test]
    fn problems_serialise_with_their_kind() {
        let p = JoinProblem::NoTruth { image: "a.png".into(), path: "d/a.png".into() };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v, serde_json::json!({"kind": "no_truth", "image": "a.png", "path": "d/a.png"}));
    }

    #[test]
    fn a_folder_lists_its_images_by_name_and_an_empty_one_is_an_error() {
        let dir = std::env::temp_dir().join(format!("occ-truth-list-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub.png")).unwrap();
        for f in ["b.PNG", "a.jpg", "c.jpeg", "notes.txt", "truth.jsonl"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        let names: Vec<String> =
            list_images(&dir).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["a.jpg", "b.PNG", "c.jpeg"]);
        let empty = dir.join("sub.png");
        let err = list_images(&empty).unwrap_err().to_string();
        assert!(err.contains("no .png, .jpg or .jpeg file"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
