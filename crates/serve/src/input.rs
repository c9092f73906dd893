//! From a chat request to what the model reads: the prompt, the page images and the sampling
//! settings, with every limit checked.
//!
//! The last `user` message is read (system and earlier messages are accepted and not read). Its parts
//! make the prompt in order, an image as `<image>` and a text as itself, joined by newlines: an image
//! followed by the text `Free OCR. ` is exactly the toolkit's Free-OCR prompt. A message with an
//! image and no text is read with the Free-OCR prompt. One image or one PDF per message; a PDF's
//! pages are read one by one with the same prompt.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use image::RgbImage;
use occ_core::{Mode, Prompt};

use crate::api::{ChatRequest, Content, Part};
use crate::error::ApiError;
use crate::pdf::{self, PageRange};
use crate::scheduler::Params;

/// The limits and defaults a request is checked against.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Largest image (or rendered PDF page), in pixels.
    pub max_image_pixels: u64,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens: usize,
    /// `max_tokens` of a request that names none.
    pub default_max_tokens: usize,
    /// Requests waiting for the model at most; more get 503.
    pub max_queue: usize,
    /// Pages of one PDF at most.
    pub max_pdf_pages: usize,
    /// Resolution of rendered PDF pages.
    pub pdf_dpi: f32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 << 20,
            max_image_pixels: 40_000_000,
            max_tokens: 8192,
            default_max_tokens: 4096,
            max_queue: 256,
            max_pdf_pages: 32,
            pdf_dpi: 144.0,
        }
    }
}

/// What the model is asked to do for one request.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub pages: Vec<RgbImage>,
    pub mode: Mode,
    pub prompt: Prompt,
    pub params: Params,
}

/// Where images may come from besides data URLs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sources {
    /// Paths under this folder may be read (`--allow-local-files`).
    pub local_dir: Option<PathBuf>,
}

/// Checks the request's settings (cheap; before any image is decoded).
pub fn params(req: &ChatRequest, limits: &Limits) -> Result<Params, ApiError> {
    let max_tokens = req.max_completion_tokens.or(req.max_tokens).unwrap_or(limits.default_max_tokens as u64);
    if max_tokens == 0 || max_tokens > limits.max_tokens as u64 {
        return Err(ApiError::invalid_param(
            "max_tokens",
            "invalid_max_tokens",
            format!("max_tokens is {max_tokens}; this server allows 1 to {}", limits.max_tokens),
        ));
    }
    let temperature = req.temperature.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid_param(
            "temperature",
            "invalid_temperature",
            format!("temperature is {temperature}; expected 0 to 2"),
        ));
    }
    let top_p = req.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid_param("top_p", "invalid_top_p", format!("top_p is {top_p}; expected (0, 1]")));
    }
    Ok(Params {
        max_tokens: max_tokens as usize,
        temperature,
        top_p,
        seed: req.seed.unwrap_or(0),
        ignore_eos: req.ignore_eos,
    })
}

/// The request's mode: its `mode` field, else `default`; a model with a native mode reads only that.
pub fn mode(req: &ChatRequest, default: Mode, native: Option<Mode>) -> Result<Mode, ApiError> {
    let mode = match &req.mode {
        Some(name) => {
            name.parse::<Mode>().map_err(|e| ApiError::invalid_param("mode", "invalid_mode", e.to_string()))?
        }
        None => native.unwrap_or(default),
    };
    if let Some(native) = native.filter(|&n| n != mode) {
        return Err(ApiError::invalid_param(
            "mode",
            "invalid_mode",
            format!("this model reads {native} pages only, not {mode}"),
        ));
    }
    Ok(mode)
}

/// The prompt and the pages of the last user message (decodes images and renders PDFs: call it off
/// the async threads).
pub fn pages_and_prompt(
    req: &ChatRequest,
    limits: &Limits,
    sources: &Sources,
) -> Result<(Prompt, Vec<RgbImage>), ApiError> {
    let Some(msg) = req.messages.iter().rev().find(|m| m.role == "user") else {
        return Err(ApiError::invalid_param("messages", "no_user_message", "the request has no user message"));
    };
    let parts: Vec<Part> = match &msg.content {
        Content::Text(t) => vec![Part::Text { text: t.clone() }],
        Content::Parts(p) => p.clone(),
    };
    let mut pieces: Vec<String> = Vec::new();
    let mut pages: Option<Vec<RgbImage>> = None;
    let mut has_text = false;
    for part in &parts {
        let url = match part {
            Part::Text { text } => {
                if text.contains("<image>") {
                    return Err(ApiError::invalid_param(
                        "messages",
                        "invalid_prompt",
                        "a text part contains <image>; send the image as an image_url part",
                    ));
                }
                has_text |= !text.trim().is_empty();
                pieces.push(text.clone());
                continue;
            }
            Part::ImageUrl { image_url } => image_url.url.as_str(),
            Part::File { file } => file.file_data.as_deref().ok_or_else(|| {
                ApiError::invalid_param("messages", "invalid_file", "a file part needs file_data (a data URL)")
            })?,
            Part::Other(v) => {
                let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or("?");
                return Err(ApiError::invalid_param(
                    "messages",
                    "unsupported_content",
                    format!("content parts of type {kind:?} are not read; send text, image_url or file parts"),
                ));
            }
        };
        if pages.is_some() {
            return Err(ApiError::invalid_param(
                "messages",
                "too_many_images",
                "one image or one PDF per message is read; send the others in separate requests",
            ));
        }
        let (bytes, kind) = fetch(url, sources)?;
        pages = Some(decode(&bytes, kind, limits)?);
        pieces.push("<image>".into());
    }
    let Some(pages) = pages else {
        return Err(ApiError::invalid_param(
            "messages",
            "no_image",
            "the user message has no image: send an image_url part (a data URL) or a PDF file part",
        ));
    };
    let prompt = if has_text { Prompt::Custom(pieces.join("\n")) } else { Prompt::FreeOcr };
    Ok((prompt, pages))
}

/// What the bytes of an image source are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image,
    Pdf,
}

/// The bytes of a data URL or an allowed local path.
fn fetch(url: &str, sources: &Sources) -> Result<(Vec<u8>, Kind), ApiError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((meta, data)) = rest.split_once(',') else {
            return Err(ApiError::invalid_param("messages", "invalid_image_url", "a data URL without a comma"));
        };
        let Some(mime) = meta.strip_suffix(";base64") else {
            return Err(ApiError::invalid_param("messages", "invalid_image_url", "data URLs must be base64-encoded"));
        };
        let kind = if mime.starts_with("image/") {
            Kind::Image
        } else if mime == "application/pdf" {
            Kind::Pdf
        } else {
            return Err(ApiError::invalid_param(
                "messages",
                "invalid_image_url",
                format!("the data URL is of type {mime:?}, not an image (image/*) or a PDF (application/pdf)"),
            ));
        };
        let bytes = base64::engine::general_purpose::STANDARD.decode(data.trim()).map_err(|e| {
            ApiError::invalid_param("messages", "invalid_image_url", format!("the data URL is not valid base64: {e}"))
        })?;
        return Ok((bytes, kind));
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(ApiError::invalid_param(
            "messages",
            "invalid_image_url",
            "remote URLs are not fetched by this server; send the image as a data URL",
        ));
    }
    let Some(dir) = &sources.local_dir else {
        return Err(ApiError::invalid_param(
            "messages",
            "invalid_image_url",
            "local paths are not read unless the server runs with --allow-local-files DIR; send a data URL",
        ));
    };
    let path = Path::new(url.strip_prefix("file://").unwrap_or(url));
    let path = if path.is_absolute() { path.to_path_buf() } else { dir.join(path) };
    let denied = || {
        ApiError::invalid_param(
            "messages",
            "invalid_image_url",
            format!("{} is not a readable file under the allowed folder", path.display()),
        )
    };
    let (real, root) = match (path.canonicalize(), dir.canonicalize()) {
        (Ok(r), Ok(d)) => (r, d),
        _ => return Err(denied()),
    };
    if !real.starts_with(&root) || !real.is_file() {
        return Err(denied());
    }
    let bytes = std::fs::read(&real).map_err(|_| denied())?;
    let kind = if bytes.starts_with(b"%PDF") { Kind::Pdf } else { Kind::Image };
    Ok((bytes, kind))
}

fn decode(bytes: &[u8], kind: Kind, limits: &Limits) -> Result<Vec<RgbImage>, ApiError> {
    match kind {
        Kind::Image => Ok(vec![decode_image(bytes, limits.max_image_pixels)?]),
        Kind::Pdf => {
            pdf::rasterize(bytes, PageRange::ALL, limits.pdf_dpi, limits.max_image_pixels, limits.max_pdf_pages)
                .map_err(|e| match e {
                    pdf::PdfError::TooLarge { .. } | pdf::PdfError::TooManyPages { .. } => {
                        ApiError::too_large("image_too_large", format!("PDF: {e}"))
                    }
                    _ => ApiError::invalid_param("messages", "invalid_pdf", format!("PDF: {e}")),
                })
        }
    }
}

/// Decodes an image after checking its size from the header alone.
pub fn decode_image(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ApiError> {
    let invalid = |e: image::ImageError| {
        ApiError::invalid_param("messages", "invalid_image", format!("the image cannot be read: {e}"))
    };
    let reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| invalid(e.into()))?;
    let (w, h) = reader.into_dimensions().map_err(invalid)?;
    if w as u64 * h as u64 > max_pixels {
        return Err(ApiError::too_large(
            "image_too_large",
            format!("the image is {w}x{h} = {} pixels; this server reads at most {max_pixels}", w as u64 * h as u64),
        ));
    }
    let reader = image::ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| invalid(e.into()))?;
    Ok(reader.decode().map_err(invalid)?.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ImageUrl, Message};

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        RgbImage::from_pixel(w, h, image::Rgb([200, 10, 10]))
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn data_url(mime: &str, bytes: &[u8]) -> String {
        format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    fn request(parts: Vec<Part>) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![
                Message { role: "system".into(), content: Content::Text("ignored".into()) },
                Message { role: "user".into(), content: Content::Parts(parts) },
            ],
            ..ChatRequest::default()
        }
    }

    fn image_part(url: String) -> Part {
        Part::ImageUrl { image_url: ImageUrl { url, detail: None } }
    }

    #[test]
    fn an_image_then_free_ocr_text_is_the_free_ocr_prompt() {
        let req =
            request(vec![image_part(data_url("image/png", &png(4, 3))), Part::Text { text: "Free OCR. ".into() }]);
        let (prompt, pages) = pages_and_prompt(&req, &Limits::default(), &Sources::default()).unwrap();
        assert_eq!(prompt.text(), Prompt::FreeOcr.text());
        assert_eq!(pages[0].dimensions(), (4, 3));
        let bare = request(vec![image_part(data_url("image/png", &png(4, 3)))]);
        assert_eq!(pages_and_prompt(&bare, &Limits::default(), &Sources::default()).unwrap().0, Prompt::FreeOcr);
    }

    #[test]
    fn refusals_name_the_problem() {
        let l = Limits { max_image_pixels: 100, ..Limits::default() };
        let s = Sources::default();
        let err = |parts| pages_and_prompt(&request(parts), &l, &s).unwrap_err();
        let e = err(vec![image_part(data_url("text/plain", b"hello"))]);
        assert_eq!((e.status.as_u16(), e.code), (400, "invalid_image_url"));
        assert!(e.message.contains("text/plain"), "{}", e.message);
        let e = err(vec![image_part(data_url("image/png", &png(20, 20)))]);
        assert_eq!((e.status.as_u16(), e.code), (413, "image_too_large"));
        assert!(e.message.contains("20x20"), "{}", e.message);
        let e = err(vec![image_part(data_url("image/png", b"not a png"))]);
        assert_eq!(e.code, "invalid_image");
        let e = err(vec![Part::Text { text: "no image".into() }]);
        assert_eq!(e.code, "no_image");
        let e = err(vec![image_part("/etc/passwd".into())]);
        assert!(e.message.contains("--allow-local-files"), "{}", e.message);
        let e = err(vec![image_part("https://example.com/a.png".into())]);
        assert!(e.message.contains("data URL"), "{}", e.message);
        let two = data_url("image/png", &png(2, 2));
        let e = err(vec![image_part(two.clone()), image_part(two)]);
        assert_eq!(e.code, "too_many_images");
    }

    #[test]
    fn local_files_are_read_only_under_the_allowed_folder() {
        let dir = std::env::temp_dir().join(format!("occ-serve-local-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("in")).unwrap();
        std::fs::write(dir.join("in/page.png"), png(5, 5)).unwrap();
        std::fs::write(dir.join("outside.png"), png(5, 5)).unwrap();
        let s = Sources { local_dir: Some(dir.join("in")) };
        let l = Limits::default();
        let read = |url: &str| pages_and_prompt(&request(vec![image_part(url.into())]), &l, &s);
        assert_eq!(read("page.png").unwrap().1[0].dimensions(), (5, 5));
        assert!(read(&format!("file://{}", dir.join("in/page.png").display())).is_ok());
        assert_eq!(read("../outside.png").unwrap_err().code, "invalid_image_url");
        assert_eq!(read(dir.join("outside.png").to_str().unwrap()).unwrap_err().code, "invalid_image_url");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn settings_outside_the_limits_are_refused() {
        let l = Limits { max_tokens: 100, ..Limits::default() };
        let mut req = request(vec![]);
        req.max_tokens = Some(101);
        assert_eq!(params(&req, &l).unwrap_err().param.as_deref(), Some("max_tokens"));
        req.max_tokens = Some(5);
        req.temperature = Some(3.0);
        assert_eq!(params(&req, &l).unwrap_err().param.as_deref(), Some("temperature"));
        req.temperature = Some(0.5);
        req.top_p = Some(0.0);
        assert_eq!(params(&req, &l).unwrap_err().param.as_deref(), Some("top_p"));
        req.top_p = None;
        assert_eq!(
            params(&req, &l).unwrap(),
            Params { max_tokens: 5, temperature: 0.5, top_p: 1.0, seed: 0, ignore_eos: false }
        );
        req.mode = Some("small".into());
        assert_eq!(mode(&req, Mode::Base, None).unwrap(), Mode::Small);
        assert_eq!(mode(&req, Mode::Base, Some(Mode::Tiny)).unwrap_err().code, "invalid_mode");
    }
}
