//! Integration tests of occ-eval: the runner on fake engines and the blank renderer, and scoring
//! predictions made elsewhere on a committed fixture.

mod decay;
mod manifest;
mod props;
mod runner;
mod score;
