//! Errors of the memory and of schedule parsing.

use occ_core::{EngineError, TokenizerError};
use occ_render::RenderError;

/// Errors of building or parsing a [`crate::Schedule`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("schedule {schedule:?} has no levels: give at least one (e.g. `text` or `paper`)")]
    NoLevels { schedule: String },
    #[error("schedule {schedule:?}: age {value:?} in {field} is negative; ages count rounds (or wall time) back from the newest round and start at 0")]
    NegativeAge { schedule: String, field: String, value: String },
    #[error("schedule {schedule:?}: the first level starts at age {from}, but it must start at 0 (every round needs a representation)")]
    FirstLevelNotZero { schedule: String, from: u64 },
    #[error("schedule {schedule:?}: level {index} starts at age {next}, not after the previous level's start {prev}; level boundaries must strictly increase")]
    NotMonotone { schedule: String, index: usize, prev: u64, next: u64 },
    #[error("schedule {schedule:?} drops the newest round (age 0); a memory must keep at least the round just pushed")]
    DropsNewest { schedule: String },
    #[error("schedule {schedule:?}: downscale from {from} to {to} does not shrink the page ({to} is not smaller than {from})")]
    InvalidDownscale { schedule: String, from: String, to: String },
    #[error("unknown schedule kind {kind:?} in {spec:?}: expected one of {expected}")]
    UnknownKind { spec: String, kind: String, expected: String },
    #[error("schedule {spec:?}: unknown parameter {key:?}; {kind} takes {expected}")]
    UnknownKey { spec: String, kind: String, key: String, expected: String },
    #[error("schedule {spec:?}: parameter {key} = {value:?} is invalid: {expected}")]
    BadValue { spec: String, key: String, value: String, expected: String },
    #[error("schedule {spec:?}: ages mix round counts and wall-clock durations ({rounds:?} vs {duration:?}); use one unit per schedule")]
    MixedUnits { spec: String, rounds: String, duration: String },
    #[error("schedule file {path}: {message}")]
    File { path: String, message: String },
}

/// Errors of [`crate::OpticalMemory`].
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("round id {id:?} is already in the memory; round ids must be unique")]
    DuplicateRound { id: String },
    #[error("unknown round id {id:?} (the memory holds {rounds} rounds)")]
    UnknownRound { id: String, rounds: usize },
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error(
        "budget of {budget} tokens is below what the cheapest candidate schedule {cheapest:?} needs for \
         {rounds} rounds ({cheapest_tokens} tokens); raise the budget to at least {cheapest_tokens}"
    )]
    BudgetTooSmall { budget: usize, cheapest: String, cheapest_tokens: usize, rounds: usize },
    #[error("budget selection has no candidate schedules; configure at least one")]
    NoCandidates,
    #[error("page ratio {ratio} is invalid: it must be a finite number > 0 (text tokens per nominal vision token)")]
    InvalidPageRatio { ratio: f64 },
    #[error("rendering round {id:?} as {representation}: {source}")]
    Render { id: String, representation: String, source: Box<RenderError> },
    #[error("counting text tokens: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error("vision tokens of a {width}x{height} page in mode {mode}: {message}")]
    Mode { mode: String, width: u32, height: u32, message: String },
    #[error("reading round {id:?} back: {source}")]
    Engine { id: String, source: Box<EngineError> },
    #[error("reading round {id:?} back: the engine returned {got} outputs for {expected} pages")]
    EngineOutputCount { id: String, expected: usize, got: usize },
}
