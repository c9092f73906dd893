//! `manifest.json`, the record every run folder carries, in one versioned shape for every kind of run.
//!
//! Every manifest starts with the same keys, [`ManifestHead`]: `manifest_version`, `kind` (`sweep`,
//! `score` or `decay`), `status`, `run_id`, `created_utc`, `engines`, `tokenizer` and `wall_time_s`.
//! The rest is the kind's own: a sweep's or score run's spec, counts and sessions
//! ([`crate::results::Manifest`]), a decay run's configuration, schedules and summaries
//! ([`crate::decay::output`]). [`ManifestHead::load`] reads the head of any run folder, so a reader
//! (the report) can tell what a folder holds before it reads the rest.
//!
//! Older shapes are read through [`migrate`], which brings them to the current version before they
//! are deserialised:
//! - version 1 of sweeps and score runs (`manifest_version: 1`, no `kind`): the kind is `score` when
//!   the spec's engine is `external` (predictions made elsewhere), else `sweep`;
//! - version 1 of decay runs (`schema_version: 1`, `kind: "decay"`): `schema_version` becomes
//!   `manifest_version`, `wall_s` becomes `wall_time_s`, the one `engine` becomes `engines`, and a
//!   missing `status` (runs written before states were recorded) is `complete`.
//!
//! Files committed under `crates/eval/tests/fixtures/manifests/` keep one manifest of each old shape,
//! and a test reads them.

use std::path::Path;

use occ_core::EngineInfo;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::status::RunStatus;

/// Version of the manifest shape written now.
pub const MANIFEST_VERSION: u32 = 2;
/// File name of the manifest inside a run folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// What a run folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// `compress-bench sweep` (or `merge`).
    Sweep,
    /// `compress-bench score`: predictions made elsewhere, scored.
    Score,
    /// `compress-bench decay`: the decay sweep of optical memory.
    Decay,
}

impl RunKind {
    /// The name written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Sweep => "sweep",
            RunKind::Score => "score",
            RunKind::Decay => "decay",
        }
    }
}

/// Errors of reading a manifest; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The keys every manifest has, under one name each whatever the kind of run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestHead {
    pub manifest_version: u32,
    pub kind: RunKind,
    /// `running`, `interrupted`, `incomplete`, `failed` or `complete`.
    pub status: RunStatus,
    pub run_id: String,
    pub created_utc: String,
    /// The readers of the run (one per language for Tesseract sweeps; who made the predictions of a
    /// score run).
    pub engines: Vec<EngineInfo>,
    pub tokenizer: String,
    /// Wall time of every session of the run, summed.
    pub wall_time_s: f64,
}

impl ManifestHead {
    /// Reads the head of `dir/manifest.json`, of any kind and version.
    pub fn load(dir: &Path) -> Result<ManifestHead, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let value = read(dir)?;
        serde_json::from_value(value).map_err(|e| invalid(&path, e.to_string()))
    }
}

fn invalid(path: &Path, message: String) -> ManifestError {
    ManifestError::Invalid { path: path.display().to_string(), message }
}

/// Reads `dir/manifest.json` as JSON in the current shape ([`migrate`]).
pub fn read(dir: &Path) -> Result<Value, ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ManifestError::Io { path: path.display().to_string(), source: e })?;
    let value: Value = serde_json::from_str(&text).map_err(|e| invalid(&path, e.to_string()))?;
    migrate(value).map_err(|message| invalid(&path, message))
}

/// Brings a manifest of any known version to the current shape (see the module docs); a manifest
/// already current is returned as it is.
pub fn migrate(value: Value) -> Result<Value, String> {
    let Value::Object(mut m) = value else {
        return Err("not a manifest: expected a JSON object".into());
    };
    let version = m.get("manifest_version").or_else(|| m.get("schema_version")).and_then(Value::as_u64);
    match version {
        Some(v) if v == u64::from(MANIFEST_VERSION) => {}
        Some(1) if m.get("kind").and_then(Value::as_str) == Some("decay") => {
            m.remove("schema_version");
            m.insert("manifest_version".into(), MANIFEST_VERSION.into());
            if let Some(wall) = m.remove("wall_s") {
                m.insert("wall_time_s".into(), wall);
            }
            if let Some(engine) = m.remove("engine") {
                m.insert("engines".into(), Value::Array(vec![engine]));
            }
            if m.get("status").is_none_or(Value::is_null) {
                m.insert("status".into(), RunStatus::Complete.as_str().into());
            }
        }
        Some(1) => {
            let external = m.get("spec").and_then(|s| s.get("engine")).and_then(Value::as_str) == Some("external");
            let kind = if external { RunKind::Score } else { RunKind::Sweep };
            m.insert("manifest_version".into(), MANIFEST_VERSION.into());
            m.insert("kind".into(), kind.as_str().into());
        }
        Some(v) => {
            return Err(format!(
                "manifest version {v} is not known to this build (it reads 1 to {MANIFEST_VERSION}); use a newer \
                 compress-bench"
            ))
        }
        None => return Err("no manifest_version: not a compress-bench run manifest".into()),
    }
    Ok(Value::Object(m))
}

/// Writes `value` as `dir/manifest.json` atomically (a temporary file renamed over it).
pub fn write(dir: &Path, value: &impl Serialize) -> Result<(), ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    let tmp = dir.join(".manifest.json.tmp");
    let io = |p: &Path, e| ManifestError::Io { path: p.display().to_string(), source: e };
    let text = serde_json::to_string_pretty(value).map_err(|e| invalid(&path, e.to_string()))?;
    std::fs::write(&tmp, text + "\n").map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_broken_manifests_are_named_errors() {
        let err = migrate(serde_json::json!({"manifest_version": 9, "kind": "sweep"})).unwrap_err();
        assert!(err.contains("version 9") && err.contains("newer"), "{err}");
        assert!(migrate(serde_json::json!({"kind": "decay"})).unwrap_err().contains("no manifest_version"));
        assert!(migrate(serde_json::json!([1, 2])).is_err());
        let current = serde_json::json!({"manifest_version": MANIFEST_VERSION, "kind": "sweep"});
        assert_eq!(migrate(current.clone()).unwrap(), current);
    }
}
