//! PDF pages as images, rasterised by the pure-Rust `hayro` (no system library), and a small writer
//! of plain-text PDFs for tests and examples.

use std::sync::Arc;

use hayro::hayro_interpret::InterpreterSettings;
use hayro::hayro_syntax::Pdf;
use hayro::vello_cpu::color::palette::css::WHITE;
use hayro::{PixmapSettings, RenderCache, RenderSettings};
use image::RgbImage;

/// PDF points per inch.
const POINTS_PER_INCH: f32 = 72.0;

/// Errors of reading a PDF.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PdfError {
    #[error("not a readable PDF ({0})")]
    Invalid(String),
    #[error("the PDF has {have} pages; pages {from}-{to} were asked for")]
    PagesOutOfRange { from: usize, to: usize, have: usize },
    #[error(
        "page {page} would be {width}x{height} pixels at {dpi} dpi, over the limit of {max} pixels; lower the dpi"
    )]
    TooLarge { page: usize, width: u32, height: u32, dpi: f32, max: u64 },
    #[error("{pages} pages asked for, over the limit of {max}")]
    TooManyPages { pages: usize, max: usize },
    #[error("page range {0:?}: expected N, N-M, N- or -M with pages counted from 1")]
    BadRange(String),
}

/// Pages `from..=to`, counted from 1 (`to` = `None`: to the last page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRange {
    pub from: usize,
    pub to: Option<usize>,
}

impl PageRange {
    /// Every page.
    pub const ALL: PageRange = PageRange { from: 1, to: None };
}

impl std::str::FromStr for PageRange {
    type Err = PdfError;

    /// `3`, `1-5`, `2-` (to the end) or `-4` (from the first).
    fn from_str(s: &str) -> Result<PageRange, PdfError> {
        let bad = || PdfError::BadRange(s.into());
        let num = |t: &str| t.trim().parse::<usize>().ok().filter(|&n| n >= 1);
        let range = match s.split_once('-') {
            None => {
                let n = num(s).ok_or_else(bad)?;
                PageRange { from: n, to: Some(n) }
            }
            Some((a, b)) => {
                let from = if a.trim().is_empty() { 1 } else { num(a).ok_or_else(bad)? };
                let to = if b.trim().is_empty() { None } else { Some(num(b).ok_or_else(bad)?) };
                PageRange { from, to }
            }
        };
        if range.to.is_some_and(|t| t < range.from) {
            return Err(bad());
        }
        Ok(range)
    }
}

/// Pages in a PDF.
pub fn page_count(bytes: &[u8]) -> Result<usize, PdfError> {
    Ok(open(bytes)?.pages().len())
}

fn open(bytes: &[u8]) -> Result<Pdf, PdfError> {
    Pdf::new(Arc::new(bytes.to_vec())).map_err(|e| PdfError::Invalid(format!("{e:?}")))
}

/// Rasterises the pages of `range` at `dpi` on white, refusing a page over `max_pixels` or more than
/// `max_pages` pages before drawing anything.
pub fn rasterize(
    bytes: &[u8],
    range: PageRange,
    dpi: f32,
    max_pixels: u64,
    max_pages: usize,
) -> Result<Vec<RgbImage>, PdfError> {
    let pdf = open(bytes)?;
    let pages = pdf.pages();
    let have = pages.len();
    let to = range.to.unwrap_or(have);
    if range.from > have || to > have || have == 0 {
        return Err(PdfError::PagesOutOfRange { from: range.from, to, have });
    }
    let n = to + 1 - range.from;
    if n > max_pages {
        return Err(PdfError::TooManyPages { pages: n, max: max_pages });
    }
    let scale = dpi / POINTS_PER_INCH;
    for i in range.from..=to {
        let (w, h) = pages[i - 1].render_dimensions();
        let (width, height) = ((w * scale) as u32, (h * scale) as u32);
        // the rasteriser's canvas is addressed with u16
        if width as u64 * height as u64 > max_pixels || width > u16::MAX as u32 || height > u16::MAX as u32 {
            return Err(PdfError::TooLarge { page: i, width, height, dpi, max: max_pixels });
        }
    }
    let cache = RenderCache::new();
    let settings = InterpreterSettings::default();
    let pixmap_settings = PixmapSettings { x_scale: scale, y_scale: scale, bg_color: WHITE };
    let mut out = Vec::with_capacity(n);
    for i in range.from..=to {
        let pixmap = hayro::render(&pages[i - 1], &cache, &settings, &RenderSettings::default(), &pixmap_settings);
        let (w, h) = (pixmap.width() as u32, pixmap.height() as u32);
        // on an opaque white background premultiplied RGBA equals straight RGBA
        let rgb: Vec<u8> = pixmap.data_as_u8_slice().chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
        let img = RgbImage::from_raw(w, h, rgb).ok_or_else(|| PdfError::Invalid(format!("page {i}: pixmap size")))?;
        out.push(img);
    }
    Ok(out)
}

/// A PDF of US-letter pages, each with its text in 12-point Helvetica, one line per `\n`.
/// Characters outside printable ASCII are written as `?`.
pub fn text_pdf(pages: &[&str]) -> Vec<u8> {
    // objects: 1 catalog, 2 page tree, 3 font, then per page: the page and its content stream
    let n = pages.len();
    let mut objects: Vec<String> = Vec::with_capacity(3 + 2 * n);
    objects.push("<< /Type /Catalog /Pages 2 0 R >>".into());
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    objects.push(format!("<< /Type /Pages /Kids [{}] /Count {n} >>", kids.join(" ")));
    objects.push("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".into());
    for (i, text) in pages.iter().enumerate() {
        let mut content = String::from("BT /F1 12 Tf 72 720 Td 14 TL\n");
        for line in text.lines() {
            let escaped: String = line
                .chars()
                .map(|c| match c {
                    '(' | ')' | '\\' => format!("\\{c}"),
                    ' '..='~' => c.to_string(),
                    _ => "?".into(),
                })
                .collect();
            content.push_str(&format!("({escaped}) Tj T*\n"));
        }
        content.push_str("ET");
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> \
             /Contents {} 0 R >>",
            5 + 2 * i
        ));
        objects.push(format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()));
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ranges_parse_and_bad_ones_are_refused() {
        assert_eq!("3".parse::<PageRange>().unwrap(), PageRange { from: 3, to: Some(3) });
        assert_eq!("1-5".parse::<PageRange>().unwrap(), PageRange { from: 1, to: Some(5) });
        assert_eq!("2-".parse::<PageRange>().unwrap(), PageRange { from: 2, to: None });
        assert_eq!("-4".parse::<PageRange>().unwrap(), PageRange { from: 1, to: Some(4) });
        for bad in ["0", "5-2", "a", "1-b", ""] {
            assert!(bad.parse::<PageRange>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_written_pdf_is_read_page_by_page_with_ink_where_the_text_is() {
        let bytes = text_pdf(&["first page", "second page\nwith two lines", "third"]);
        assert_eq!(page_count(&bytes).unwrap(), 3);
        let pages = rasterize(&bytes, "2-3".parse().unwrap(), 72.0, 10_000_000, 10).unwrap();
        assert_eq!(pages.len(), 2);
        assert_eq!(pages[0].dimensions(), (612, 792));
        let ink = |img: &RgbImage| img.pixels().filter(|p| p.0[0] < 128).count();
        // text sits at the top left; the bottom half is blank paper
        let top = image::imageops::crop_imm(&pages[0], 0, 0, 612, 100).to_image();
        let bottom = image::imageops::crop_imm(&pages[0], 0, 400, 612, 392).to_image();
        assert!(ink(&top) > 50, "text drawn: {} dark pixels", ink(&top));
        assert_eq!(ink(&bottom), 0);
        // two lines of text carry more ink than one word
        assert!(ink(&pages[0]) > ink(&pages[1]));
        // 144 dpi doubles each side
        let big = rasterize(&bytes, "1".parse().unwrap(), 144.0, 10_000_000, 10).unwrap();
        assert_eq!(big[0].dimensions(), (1224, 1584));
    }

    #[test]
    fn limits_and_garbage_are_refused_before_drawing() {
        let bytes = text_pdf(&["a", "b"]);
        assert_eq!(
            rasterize(&bytes, "2-4".parse().unwrap(), 72.0, u64::MAX, 10),
            Err(PdfError::PagesOutOfRange { from: 2, to: 4, have: 2 })
        );
        assert!(matches!(rasterize(&bytes, PageRange::ALL, 72.0, 1000, 10), Err(PdfError::TooLarge { page: 1, .. })));
        assert_eq!(
            rasterize(&bytes, PageRange::ALL, 72.0, u64::MAX, 1),
            Err(PdfError::TooManyPages { pages: 2, max: 1 })
        );
        assert!(matches!(page_count(b"%PDF-1.4 nothing here"), Err(PdfError::Invalid(_))));
    }
}
