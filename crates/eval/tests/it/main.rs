//! Integration tests of occ-eval: the runner on fake engines and the blank renderer.

mod runner;
