//! Compression sweeps over OCR engines: metrics, statistics, experiment specs, the sweep runner
//! and its Parquet results. No candle: engines come in through `occ_core::OcrEngine`.
//!
//! - [`metrics`], [`normalize`], [`stats`]: one documented definition per score;
//! - [`spec`], [`corpus`], [`probes`], [`plan`]: what to run, deterministically from a seed
//!   ([`rng`]: the one seeded generator); [`axes`]: the robustness axes of a sweep (degradation,
//!   font family, line height);
//! - [`render`], [`truncation`]: pages at a target ratio and the text-only baseline;
//! - [`tesseract`]: the engine that lives here (DeepSeek-OCR lives in occ-model; the fake engines
//!   in `occ_core::fakes`);
//! - [`sweep`]: a sweep from its spec to its files (prepare → open → execute → finish: corpora
//!   with the generated probes, plan, shard, manifest, resume), on top of [`runner`] (the loop),
//!   [`journal`], [`schema`], [`summary`] and [`results`] (the run directory and its files);
//!   [`lock`]: the lock of a run folder (one process at a time, stale locks taken over);
//!   [`manifest`]: the one manifest shape of every run folder (sweep, score, decay) and the
//!   migration of older ones;
//! - [`score`]: predictions made elsewhere, scored into the same files; [`truth`] and
//!   [`predictions`]: a truth file joined to page images by file name, and the predictions file
//!   `score` reads, written page by page.
//! - [`compare`]: samples of several runs paired by page, and the paired differences of their scores;
//! - [`decay`]: the decay sweep of optical memory (`occ_memory` schedules read back through an
//!   engine), its tables in [`schema`] like the sweep's.
//!
//! # Invariants
//! - The sample list is a pure function of the spec and the corpora; results are written in its
//!   order whatever the sharding, batching or resuming.
//! - Every column of every result file is declared once, in [`schema`].
//! - Nothing here prints, reads environment variables or draws progress: the CLI does, through
//!   [`runner::Observer`].

pub mod axes;
pub mod compare;
pub mod corpus;
pub mod decay;
pub mod journal;
pub mod lock;
pub mod manifest;
pub mod metrics;
pub mod normalize;
pub mod plan;
pub mod predictions;
pub mod probes;
pub mod render;
pub mod results;
pub mod rng;
pub mod runner;
pub mod schema;
pub mod score;
pub mod spec;
pub mod stats;
pub mod status;
pub mod summary;
pub mod sweep;
pub mod tesseract;
pub mod truncation;
pub mod truth;

pub use normalize::{Lang, Normalization};
pub use spec::{EngineKind, ExperimentSpec, SpecFile, SpecOverrides};
pub use status::{RunStatus, SampleStatus};
