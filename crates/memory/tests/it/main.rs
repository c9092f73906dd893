//! Integration tests of occ-memory (one binary, ripgrep style).

mod context;
mod errors;
mod props;
mod recall;
mod schedule;
mod util;
