//! Errors of training; each names the file, field, tensor or step it concerns.

use std::path::{Path, PathBuf};

/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The cause (`source`) is chained, not repeated in the message.
    #[error("{}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("training config {path}: {problem}")]
    Config { path: PathBuf, problem: String },
    #[error("{field} = {value} is invalid: {expected}")]
    Field { field: String, value: String, expected: String },
    #[error("passages {path}, line {line}: {problem}")]
    Passages { path: PathBuf, line: usize, problem: String },
    #[error("checkpoint {path}: {problem}")]
    Checkpoint { path: PathBuf, problem: String },
    #[error("step {step}: the loss is {loss} (limit {limit}); training stopped, the last good checkpoint is kept")]
    Diverged { step: usize, loss: f64, limit: f64 },
    #[error("rendering a training page: {0}")]
    Render(String),
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    #[error("{0}")]
    Other(String),
}

impl TrainError {
    pub fn io(path: &Path, source: std::io::Error) -> TrainError {
        TrainError::Io { path: path.into(), source }
    }
}

pub type TrainResult<T> = std::result::Result<T, TrainError>;
