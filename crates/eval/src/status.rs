//! The status of a sample and of a run: closed sets, written in tables and manifests as their
//! snake_case names (`ok`, `engine_error`; `running`, `complete`), which is what [`as_str`] gives
//! and [`FromStr`] reads.
//!
//! [`as_str`]: SampleStatus::as_str

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! status_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $( $(#[$vmeta])* $variant, )* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The name written in files and messages.
            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text, )* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                match s {
                    $( $text => Ok($name::$variant), )*
                    _ => Err(UnknownStatus {
                        kind: stringify!($name),
                        found: s.to_string(),
                        expected: &[$($text),*],
                    }),
                }
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.as_str()
            }
        }
    };
}

status_enum! {
    /// How reading one sample ended: the `status` column of `samples.parquet`.
    pub enum SampleStatus {
        /// Rendered and read; its metrics count.
        #[default]
        Ok => "ok",
        /// The page could not be rendered.
        RenderError => "render_error",
        /// The engine failed on the page.
        EngineError => "engine_error",
    }
}

status_enum! {
    /// Where a run stands: the `status` of its manifest.
    pub enum RunStatus {
        /// Started and not finished (or killed).
        #[default]
        Running => "running",
        /// Stopped by a signal; it can be resumed.
        Interrupted => "interrupted",
        /// Finished with fewer results than planned.
        Incomplete => "incomplete",
        /// Ended by an error.
        Failed => "failed",
        /// Finished with everything planned.
        Complete => "complete",
    }
}

/// A status name that is not one of its set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {found:?} (expected one of {expected:?})")]
pub struct UnknownStatus {
    pub kind: &'static str,
    pub found: String,
    pub expected: &'static [&'static str],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        for s in SampleStatus::ALL {
            assert_eq!(s.as_str().parse::<SampleStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), *s);
            assert_eq!(serde_json::from_str::<RunStatus>(&format!("\"{s}\"")).unwrap(), *s);
        }
        assert_eq!(SampleStatus::EngineError.as_str(), "engine_error");
        assert!(SampleStatus::Ok == "ok" && "complete" == RunStatus::Complete);
        assert!("done".parse::<RunStatus>().is_err());
    }
}
