//! Integration tests of occ-core.

mod props;
mod tokenizer;
