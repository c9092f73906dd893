//! The seeded generator of everything random in a sweep (passage choice, probes, bootstrap
//! resamples): occ-core's SplitMix64 ([`occ_core::rng`]), re-exported here so that `occ_eval::rng`
//! keeps naming it for the crates built on occ-eval (occ-train's pages and initial weights).

pub use occ_core::rng::{fnv1a64, splitmix64_at, SplitMix64};
