//! Integration tests of occ-memory (one binary, ripgrep style).

mod context;
mod errors;
mod recall;
mod schedule;
#[cfg(feature = "sweep")]
mod sweep;
mod util;
