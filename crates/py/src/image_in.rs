//! Images handed in from Python: a `Page`, encoded bytes (PNG, JPEG), a file path, a numpy array of
//! shape `(h, w, 3)` or `(h, w)` with dtype uint8, or a `PIL.Image.Image`.

use std::sync::Arc;

use image::RgbImage;
use occ_core::Mode;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString};

use crate::render::Page;

/// One image and the mode it was rendered for, if it knows one.
pub(crate) struct ImageIn {
    pub image: Arc<RgbImage>,
    pub mode: Option<Mode>,
    /// The ground truth, for a `Page`.
    pub text: Option<String>,
}

fn decode(bytes: &[u8], what: &str) -> PyResult<RgbImage> {
    image::load_from_memory(bytes)
        .map(|i| i.to_rgb8())
        .map_err(|e| PyValueError::new_err(format!("decoding {what}: {}", crate::chain(&e))))
}

fn from_raw(w: u32, h: u32, raw: Vec<u8>, what: &str) -> PyResult<RgbImage> {
    let len = raw.len();
    RgbImage::from_raw(w, h, raw)
        .ok_or_else(|| PyValueError::new_err(format!("{what}: {len} bytes are not a {w}x{h} RGB image")))
}

/// Converts one Python object to an image.
pub(crate) fn image_in(obj: &Bound<'_, PyAny>) -> PyResult<ImageIn> {
    let py = obj.py();
    if let Ok(page) = obj.cast::<Page>() {
        let page = page.get();
        return Ok(ImageIn { image: page.image.clone(), mode: Some(page.mode), text: Some(page.text.clone()) });
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(ImageIn { image: Arc::new(decode(b.as_bytes(), "image bytes")?), mode: None, text: None });
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(ImageIn { image: Arc::new(decode(&b.to_vec(), "image bytes")?), mode: None, text: None });
    }
    let is_path = obj.is_instance_of::<PyString>() || obj.is_instance(&py.import("os")?.getattr("PathLike")?)?;
    if is_path {
        let path: std::path::PathBuf = obj.extract()?;
        let bytes = std::fs::read(&path)
            .map_err(|e| PyValueError::new_err(format!("reading {}: {}", path.display(), crate::chain(&e))))?;
        return Ok(ImageIn { image: Arc::new(decode(&bytes, &path.display().to_string())?), mode: None, text: None });
    }
    if obj.hasattr("getbands")? && obj.hasattr("tobytes")? {
        // PIL.Image.Image
        let rgb = obj.call_method1("convert", ("RGB",))?;
        let (w, h): (u32, u32) = rgb.getattr("size")?.extract()?;
        let raw: Vec<u8> = rgb.call_method0("tobytes")?.extract()?;
        return Ok(ImageIn { image: Arc::new(from_raw(w, h, raw, "PIL image")?), mode: None, text: None });
    }
    if obj.hasattr("__array_interface__")? {
        let np = py.import("numpy")?;
        let arr = np.call_method1("ascontiguousarray", (obj,))?;
        let dtype: String = arr.getattr("dtype")?.str()?.extract()?;
        if dtype != "uint8" {
            return Err(PyValueError::new_err(format!("numpy image: dtype {dtype}, expected uint8")));
        }
        let shape: Vec<usize> = arr.getattr("shape")?.extract()?;
        let raw: Vec<u8> = arr.call_method0("tobytes")?.extract()?;
        let image = match shape.as_slice() {
            [h, w, 3] => from_raw(*w as u32, *h as u32, raw, "numpy image")?,
            [h, w] => {
                let rgb = raw.iter().flat_map(|&v| [v, v, v]).collect();
                from_raw(*w as u32, *h as u32, rgb, "numpy image")?
            }
            other => {
                return Err(PyValueError::new_err(format!(
                    "numpy image: shape {other:?}, expected (height, width, 3) or (height, width)"
                )))
            }
        };
        return Ok(ImageIn { image: Arc::new(image), mode: None, text: None });
    }
    Err(PyTypeError::new_err(format!(
        "cannot read an image from {}: expected a Page, PNG/JPEG bytes, a file path, a numpy array or a PIL image",
        obj.get_type().name()?
    )))
}

/// One image or a list/tuple of images.
pub(crate) fn images_in(obj: &Bound<'_, PyAny>) -> PyResult<Vec<ImageIn>> {
    if obj.is_instance_of::<pyo3::types::PyList>() || obj.is_instance_of::<pyo3::types::PyTuple>() {
        obj.try_iter()?.map(|item| image_in(&item?)).collect()
    } else {
        Ok(vec![image_in(obj)?])
    }
}
