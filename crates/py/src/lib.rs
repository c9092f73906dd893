//! `compress_bench`: the Python package over the toolkit's crates (docs/PYTHON.md).
//!
//! Everything here converts arguments and results; the work is done by the library crates:
//! pages by `occ_render` (the same calls as `compress-bench render`), optical memory by `occ_memory`,
//! engines by `occ_eval::tesseract`, `occ_model::pipeline` and `occ_serve::client`.
//!
//! - [`render`]: `render`, `paginate`, `Page`;
//! - [`memory`]: `OpticalMemory`, `Schedule`, the context types;
//! - [`engine`]: `Engine` and its subclasses `Tesseract`, `DeepSeekOcr`, `MiniReader`, `OpenAIEngine`.
//!
//! Long calls release the GIL (`Python::detach`); the objects they touch sit behind mutexes, so
//! they are safe to share between Python threads. Errors raise subclasses of `CompressBenchError`
//! whose message is the whole Rust error chain.

use std::error::Error as StdError;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

mod engine;
mod image_in;
mod memory;
mod render;

create_exception!(
    compress_bench,
    CompressBenchError,
    PyException,
    "Base class of every error raised by compress_bench; the message is the full Rust error chain."
);
create_exception!(compress_bench, RenderError, CompressBenchError, "A page could not be rendered (occ-render).");
create_exception!(
    compress_bench,
    ScheduleError,
    CompressBenchError,
    "A decay schedule could not be parsed or is invalid (occ-memory)."
);
create_exception!(
    compress_bench,
    OpticalMemoryError,
    CompressBenchError,
    "An optical-memory operation failed (occ-memory): unknown or duplicate round, budget too small, …"
);
create_exception!(
    compress_bench,
    EngineError,
    CompressBenchError,
    "An OCR engine is unavailable or failed to read a page."
);

/// `error: source: source of source …`, skipping a source whose text the message above already holds
/// (several errors of the crates print their source themselves).
pub(crate) fn chain(err: &(dyn StdError + 'static)) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

/// A Python exception of type `E` carrying the whole chain of `err`.
pub(crate) fn raise<E: pyo3::type_object::PyTypeInfo>(err: &(dyn StdError + 'static)) -> PyErr {
    PyErr::new::<E, _>(chain(err))
}

/// The Python module.
#[pymodule]
fn compress_bench(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CompressBenchError", py.get_type::<CompressBenchError>())?;
    m.add("RenderError", py.get_type::<RenderError>())?;
    m.add("ScheduleError", py.get_type::<ScheduleError>())?;
    m.add("OpticalMemoryError", py.get_type::<OpticalMemoryError>())?;
    m.add("EngineError", py.get_type::<EngineError>())?;
    render::register(m)?;
    memory::register(m)?;
    engine::register(m)?;
    Ok(())
}
