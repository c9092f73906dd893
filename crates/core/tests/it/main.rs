//! Integration tests of occ-core.

mod tokenizer;
