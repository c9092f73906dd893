//! Schedules in TOML (`experiments/decay/*.toml`): an array of `[[schedule]]` tables, each either a
//! command-line spec or explicit levels.
//!
//! ```toml
//! [[schedule]]
//! spec = "paper:policy=downsample"        # the grammar of `--schedule` (see [`super::parse`])
//!
//! [[schedule]]
//! name = "two-step"                        # explicit levels; `from` is a round count (integer)
//! levels = [                               # or a duration string ("1h", "7d") for wall time
//!   { from = 0, repr = "text" },
//!   { from = 4, repr = "base" },
//!   { from = 12, repr = "base>tiny" },     # FROM>TO: the Base pages downsampled to Tiny
//!   { from = 30, repr = "dropped" },
//! ]
//! ```

use std::path::Path;

use serde::Deserialize;

use super::parse::{parse_age, parse_repr, parse_spec, AgeError};
use super::{AgeUnit, Level, Schedule, ScheduleSpec};
use crate::error::ScheduleError;

/// One `[[schedule]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDef {
    /// Label in reports (defaults to the spec, or `schedule<N>` for explicit levels).
    pub name: Option<String>,
    /// A command-line spec.
    pub spec: Option<String>,
    /// Explicit levels.
    pub levels: Option<Vec<LevelDef>>,
}

/// One level of an explicit schedule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelDef {
    /// Start age: an integer (rounds) or a duration string (`"90s"`, `"1h"`, `"7d"`).
    pub from: toml::Value,
    /// `text`, a mode, `FROM>TO` or `dropped`.
    pub repr: String,
}

/// A file holding only `[[schedule]]` tables.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    #[serde(default)]
    pub schedule: Vec<ScheduleDef>,
}

impl ScheduleDef {
    /// The schedule of this table; `index` (0-based) names tables without a name, `path` is for messages.
    pub fn resolve(&self, index: usize, path: &str) -> Result<ScheduleSpec, ScheduleError> {
        let file_err = |message: String| ScheduleError::File { path: path.into(), message };
        match (&self.spec, &self.levels) {
            (Some(spec), None) => {
                let s = parse_spec(spec)?;
                Ok(match (s, &self.name) {
                    (ScheduleSpec::Fixed(s), Some(name)) => ScheduleSpec::Fixed(s.named(name)),
                    (s, _) => s,
                })
            }
            (None, Some(levels)) => {
                let name = self.name.clone().unwrap_or_else(|| format!("schedule{}", index + 1));
                if levels.is_empty() {
                    return Err(ScheduleError::NoLevels { schedule: name });
                }
                let mut unit: Option<AgeUnit> = None;
                let mut out = Vec::with_capacity(levels.len());
                for (i, l) in levels.iter().enumerate() {
                    let field = format!("levels[{i}].from");
                    let (from, u) = match &l.from {
                        toml::Value::Integer(n) if *n < 0 => {
                            return Err(ScheduleError::NegativeAge { schedule: name, field, value: n.to_string() })
                        }
                        toml::Value::Integer(n) => (*n as u64, AgeUnit::Rounds),
                        toml::Value::String(s) => match parse_age(s) {
                            Ok(v) => v,
                            Err(AgeError::Negative) => {
                                return Err(ScheduleError::NegativeAge { schedule: name, field, value: s.clone() })
                            }
                            Err(AgeError::Invalid) => {
                                return Err(file_err(format!(
                                "schedule {name:?} {field} = {s:?}: expected a round count or a duration like \"1h\""
                            )))
                            }
                        },
                        other => {
                            return Err(file_err(format!(
                                "schedule {name:?} {field} = {other}: expected an integer or a duration string"
                            )))
                        }
                    };
                    match unit {
                        Some(prev) if prev != u => {
                            return Err(ScheduleError::MixedUnits {
                                spec: name,
                                rounds: "integer ages".into(),
                                duration: "duration strings".into(),
                            })
                        }
                        _ => unit = Some(u),
                    }
                    let repr = parse_repr(&l.repr).ok_or_else(|| {
                        file_err(format!(
                            "schedule {name:?} levels[{i}].repr = {:?}: expected text, a mode, FROM>TO or dropped",
                            l.repr
                        ))
                    })?;
                    out.push(Level { from, repr });
                }
                Ok(ScheduleSpec::Fixed(Schedule::new(name, unit.unwrap_or_default(), out)?))
            }
            (Some(_), Some(_)) => {
                Err(file_err(format!("[[schedule]] #{}: give either spec or levels, not both", index + 1)))
            }
            (None, None) => Err(ScheduleError::NoLevels {
                schedule: self.name.clone().unwrap_or_else(|| format!("schedule{}", index + 1)),
            }),
        }
    }
}

/// Every schedule of a list of tables.
pub fn resolve_all(defs: &[ScheduleDef], path: &str) -> Result<Vec<ScheduleSpec>, ScheduleError> {
    defs.iter().enumerate().map(|(i, d)| d.resolve(i, path)).collect()
}

/// Parses TOML text holding `[[schedule]]` tables.
pub fn parse_str(text: &str, path: &str) -> Result<Vec<ScheduleSpec>, ScheduleError> {
    let file: ScheduleFile =
        toml::from_str(text).map_err(|e| ScheduleError::File { path: path.into(), message: e.to_string() })?;
    if file.schedule.is_empty() {
        return Err(ScheduleError::File { path: path.into(), message: "no [[schedule]] tables".into() });
    }
    resolve_all(&file.schedule, path)
}

/// Reads a TOML file holding `[[schedule]]` tables.
pub fn load(path: &Path) -> Result<Vec<ScheduleSpec>, ScheduleError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ScheduleError::File { path: display.clone(), message: format!("reading: {e}") })?;
    parse_str(&text, &display)
}
