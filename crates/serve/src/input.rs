//! From a chat request to what the model reads: the prompt, the page images and the sampling
//! settings, with every limit checked.
//!
//! Every message is read ([`pages_and_prompt`]): each image part of the user messages (each page of
//! a PDF part) is a page, and every page is read with one prompt, the conversation's text in order
//! with the image slot `<image>` where the first image part is (the reader takes one image per
//! prompt). An image followed by the text `Free OCR. ` is exactly the toolkit's Free-OCR prompt; a
//! request without text is read with the Free-OCR prompt. A part that is not read is refused by its
//! index, never dropped.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use image::RgbImage;
use occ_core::{Mode, Prompt};
use occ_model::reader::ReadableModes;

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
    /// Pages of one request at most: its images and the pages of its PDFs together.
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

/// The request's mode: its `mode` field, else the model's default ([`ReadableModes::default_mode`]
/// of `default`); a mode the model does not read (a v1 mode for DeepSeek-OCR-2, a v2 mode for
/// DeepSeek-OCR, another than a mini reader's own) is refused, naming it.
pub fn mode(req: &ChatRequest, default: Mode, modes: ReadableModes) -> Result<Mode, ApiError> {
    let mode = match &req.mode {
        Some(name) => {
            name.parse::<Mode>().map_err(|e| ApiError::invalid_param("mode", "invalid_mode", e.to_string()))?
        }
        None => modes.default_mode(default),
    };
    if let Some(why) = modes.refuses(mode) {
        return Err(ApiError::invalid_param("mode", "invalid_mode", why));
    }
    Ok(mode)
}

/// The prompt and the pages of the conversation (decodes images and renders PDFs: call it off the
/// async threads).
///
/// Every message is read, in order. Every image part (and every page of a PDF part) of the user
/// messages is a page; the pages are read one by one, each with the same prompt. The prompt is the
/// text of every message (system, user, assistant, tool: the plain template has no roles), its
/// parts joined by newlines, with the image slot `<image>` where the first image part is; a
/// conversation without text is read with the Free-OCR prompt. A part that cannot be read (an image
/// outside a user message, a part of an unknown type) is refused, named by its index
/// (`messages[i].content[j]`); nothing is left out silently.
pub fn pages_and_prompt(
    req: &ChatRequest,
    limits: &Limits,
    sources: &Sources,
) -> Result<(Prompt, Vec<RgbImage>), ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid_param("messages", "no_user_message", "the request has no messages"));
    }
    let mut pieces: Vec<String> = Vec::new();
    let mut pages: Vec<RgbImage> = Vec::new();
    let mut images = 0usize;
    let mut has_text = false;
    for (m, msg) in req.messages.iter().enumerate() {
        let parts: Vec<Part> = match &msg.content {
            Content::Text(t) => vec![Part::Text { text: t.clone() }],
            Content::Parts(p) => p.clone(),
        };
        let is_user = msg.role == "user";
        for (k, part) in parts.iter().enumerate() {
            let named = match msg.content {
                Content::Parts(_) => format!("messages[{m}].content[{k}]"),
                Content::Text(_) => format!("messages[{m}].content"),
            };
            let url = match part {
                Part::Text { text } => {
                    if text.contains("<image>") {
                        return Err(ApiError::invalid_param(
                            &named,
                            "invalid_prompt",
                            format!("{named}: a text contains <image>; send the image as an image_url part"),
                        ));
                    }
                    if !text.trim().is_empty() {
                        has_text = true;
                        pieces.push(text.clone());
                    }
                    continue;
                }
                Part::ImageUrl { image_url } => image_url.url.as_str(),
                Part::File { file } => file.file_data.as_deref().ok_or_else(|| {
                    ApiError::invalid_param(
                        &named,
                        "invalid_file",
                        format!("{named}: a file part needs file_data (a data URL)"),
                    )
                })?,
                Part::Other(v) => {
                    let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or("?");
                    return Err(ApiError::invalid_param(
                        &named,
                        "unsupported_content",
                        format!(
                            "{named}: content parts of type {kind:?} are not read; send text, image_url or file parts"
                        ),
                    ));
                }
            };
            if !is_user {
                return Err(ApiError::invalid_param(
                    &named,
                    "unsupported_content",
                    format!("{named}: an image in a {:?} message is not read; send images in user messages", msg.role),
                ));
            }
            let (bytes, kind) = fetch(url, sources).map_err(|e| e.at(&named))?;
            let read = decode(&bytes, kind, limits).map_err(|e| e.at(&named))?;
            pages.extend(read);
            if pages.len() > limits.max_pdf_pages {
                return Err(ApiError::invalid_param(
                    &named,
                    "too_many_pages",
                    format!(
                        "{named}: the request has more than {} pages (images and PDF pages); this server reads at \
                         most {} per request",
                        limits.max_pdf_pages, limits.max_pdf_pages
                    ),
                ));
            }
            if images == 0 {
                pieces.push("<image>".into());
            }
            images += 1;
        }
    }
    if pages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "no_image",
            "the request has no image: send an image_url part (a data URL) or a PDF file part in a user message",
        ));
    }
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
                Message { role: "system".into(), content: Content::Text(String::new()) },
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
        let e = err(vec![Part::Text { text: "a".into() }, Part::Other(serde_json::json!({"type": "input_audio"}))]);
        assert_eq!((e.status.as_u16(), e.code), (400, "unsupported_content"));
        assert_eq!(e.param.as_deref(), Some("messages[1].content[1]"));
        assert!(
            e.message.starts_with("messages[1].content[1]: ") && e.message.contains("input_audio"),
            "{}",
            e.message
        );
        let e = err(vec![Part::Text { text: "a".into() }, image_part(data_url("image/png", b"not a png"))]);
        assert_eq!((e.code, e.param.as_deref()), ("invalid_image", Some("messages[1].content[1]")));
        assert!(e.message.starts_with("messages[1].content[1]: "), "{}", e.message);
    }

    #[test]
    fn every_image_of_every_user_message_is_a_page_read_with_the_conversations_text() {
        let (l, s) = (Limits::default(), Sources::default());
        let img = |w, h| image_part(data_url("image/png", &png(w, h)));
        // several images in one message, no text: each a page, the Free-OCR prompt
        let (prompt, pages) = pages_and_prompt(&request(vec![img(2, 2), img(3, 3), img(4, 4)]), &l, &s).unwrap();
        assert_eq!(prompt, Prompt::FreeOcr);
        assert_eq!(pages.iter().map(|p| p.dimensions()).collect::<Vec<_>>(), [(2, 2), (3, 3), (4, 4)]);
        // a conversation: every message's text in order, the slot where the first image is
        let req = ChatRequest {
            model: "m".into(),
            messages: vec![
                Message { role: "system".into(), content: Content::Text("Read the pages.".into()) },
                Message {
                    role: "user".into(),
                    content: Content::Parts(vec![Part::Text { text: "first".into() }, img(2, 2)]),
                },
                Message { role: "assistant".into(), content: Content::Text("ok".into()) },
                Message {
                    role: "user".into(),
                    content: Content::Parts(vec![img(5, 5), Part::Text { text: " ".into() }]),
                },
                Message { role: "user".into(), content: Content::Text("Free OCR.".into()) },
            ],
            ..ChatRequest::default()
        };
        let (prompt, pages) = pages_and_prompt(&req, &l, &s).unwrap();
        assert_eq!(prompt, Prompt::Custom("Read the pages.\nfirst\n<image>\nok\nFree OCR.".into()));
        assert_eq!(pages.iter().map(|p| p.dimensions()).collect::<Vec<_>>(), [(2, 2), (5, 5)]);
        // an image outside a user message is refused by its index, not dropped
        let mut bad = req.clone();
        bad.messages[2].content = Content::Parts(vec![Part::Text { text: "ok".into() }, img(2, 2)]);
        let e = pages_and_prompt(&bad, &l, &s).unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.code, e.param.as_deref()),
            (400, "unsupported_content", Some("messages[2].content[1]"))
        );
        assert!(e.message.contains("\"assistant\" message"), "{}", e.message);
        // more pages than the limit: 400 naming the limit and the part that passed it
        let few = Limits { max_pdf_pages: 2, ..Limits::default() };
        let e = pages_and_prompt(&request(vec![img(2, 2), img(2, 2), img(2, 2)]), &few, &s).unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.code, e.param.as_deref()),
            (400, "too_many_pages", Some("messages[1].content[2]"))
        );
        assert!(e.message.contains("at most 2"), "{}", e.message);
        // a text with the placeholder is named too
        let e = pages_and_prompt(&request(vec![img(2, 2), Part::Text { text: "<image>".into() }]), &l, &s).unwrap_err();
        assert_eq!((e.code, e.param.as_deref()), ("invalid_prompt", Some("messages[1].content[1]")));
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
        assert_eq!(mode(&req, Mode::Base, ReadableModes::Any).unwrap(), Mode::Small);
        assert_eq!(mode(&req, Mode::Base, ReadableModes::V1).unwrap(), Mode::Small);
        assert_eq!(mode(&req, Mode::Base, ReadableModes::Only(Mode::Tiny)).unwrap_err().code, "invalid_mode");
        // DeepSeek-OCR-2 reads v2 modes only, DeepSeek-OCR none of them; the refusal names the mode
        let refused = mode(&req, Mode::V2, ReadableModes::V2).unwrap_err();
        assert_eq!((refused.code, refused.param.as_deref()), ("invalid_mode", Some("mode")));
        assert!(refused.message.contains("small") && refused.message.contains("v2-single"), "{}", refused.message);
        req.mode = Some("v2-single".into());
        assert_eq!(mode(&req, Mode::V2, ReadableModes::V2).unwrap(), Mode::V2Single);
        assert!(mode(&req, Mode::Base, ReadableModes::V1).unwrap_err().message.contains("v2-single"));
        // no mode named: the model's default (v2 for DeepSeek-OCR-2 whatever the server's v1 default)
        req.mode = None;
        assert_eq!(mode(&req, Mode::Base, ReadableModes::V2).unwrap(), Mode::V2);
        assert_eq!(mode(&req, Mode::Base, ReadableModes::Only(Mode::Tiny)).unwrap(), Mode::Tiny);
    }
}
