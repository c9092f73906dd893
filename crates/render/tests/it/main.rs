//! Integration tests of occ-render (one binary, ripgrep style).

mod bad_input;
mod bidi;
mod common;
mod degrade;
mod determinism;
mod fit;
mod fonts;
mod layout;
mod legibility;
mod props;
mod props_input;
mod ratio_check;
