//! The command-line grammar of schedules (`--schedule`), also accepted as `spec = "…"` in TOML.
//!
//! ```text
//! SPEC   := KIND [ ":" PARAM { "," PARAM } ]
//! PARAM  := KEY "=" VALUE            lists inside a VALUE are separated by "/"
//! AGE    := N                        rounds (N ≥ 0; "-1" is an error, not a wrap-around)
//!         | N ("s"|"m"|"h"|"d"|"w"|"y")   wall time: seconds, minutes, hours, days, weeks, 365-day years
//! MODE   := tiny | small | base | large | gundam | custom:<base>x<image>[:crop]
//! REPR   := text | MODE | MODE ">" MODE (downscale) | dropped | drop
//! ```
//!
//! | kind | parameters (defaults) | levels |
//! | --- | --- | --- |
//! | `text` | — | everything as text |
//! | `paper` | `ages=1/2/4/8/16/32` | text, then Gundam, Large, Base, Small, Tiny from the given ages; an extra last age is the drop age (given ages without it: never dropped) |
//! | `paper-time` | `ages=1h/1d/7d/30d/365d/3650d` | the same ladder over wall time |
//! | `step` | `width=4` | text for `width`, then each mode for `width`, then dropped |
//! | `hybrid` | `k=4`, `width=k` | the last `k` rounds as text, then each mode for `width`, then dropped |
//! | `exp` | `first=2`, `factor=2` | text below `first`, mode `i` from `first·factorⁱ`, dropped from `first·factorⁿ` |
//! | `ladder` | `levels=text@0/base@4/tiny@8/dropped@20` | explicit levels `REPR@AGE` |
//! | `budget` | `tokens=N` | the most faithful of [`Schedule::budget_family`] that fits `N` tokens |
//!
//! Every ladder kind (`paper`, `paper-time`, `step`, `hybrid`, `exp`) also takes
//! `modes=gundam/large/base/small/tiny` (the image levels, in order), `policy=rerender|downsample`
//! ([`DecayPolicy`]) and `drop=AGE|never`. All ages of one spec use one unit. Examples:
//! `paper`, `paper:ages=2/4/8/16/32,drop=64,policy=downsample`, `exp:first=1h,factor=4`,
//! `hybrid:k=4,width=2,modes=base/tiny`, `ladder:levels=text@0/gundam>tiny@10`.

use std::str::FromStr;

use occ_core::Mode;

use super::{
    AgeUnit, DecayPolicy, Level, Representation, Schedule, ScheduleSpec, PAPER_AGES, PAPER_MODES, PAPER_TIME_AGES,
};
use crate::error::ScheduleError;

/// The kinds of the grammar.
pub const KINDS: &str = "text, paper, paper-time, step, hybrid, exp, ladder, budget";

impl FromStr for ScheduleSpec {
    type Err = ScheduleError;

    fn from_str(spec: &str) -> Result<ScheduleSpec, ScheduleError> {
        parse_spec(spec)
    }
}

/// Parses one schedule spec (see the module docs).
pub fn parse_spec(spec: &str) -> Result<ScheduleSpec, ScheduleError> {
    let spec = spec.trim();
    let (kind, rest) = match spec.split_once(':') {
        Some((k, r)) => (k.trim(), r),
        None => (spec, ""),
    };
    let mut p = Params::new(spec, kind, rest)?;
    let out = match kind {
        "text" => {
            p.allow(&[])?;
            ScheduleSpec::Fixed(Schedule::text().named(spec))
        }
        "paper" | "paper-time" => {
            p.allow(&["ages", "drop", "modes", "policy"])?;
            let time = kind == "paper-time";
            let modes = p.modes()?;
            let default_ages = if time { &PAPER_TIME_AGES } else { &PAPER_AGES };
            let given = p.get("ages");
            let mut ages = match given {
                Some(v) => p.age_list("ages", v)?,
                None if modes.len() <= 5 => default_ages[..modes.len()].to_vec(),
                None => {
                    return Err(p.bad("ages", "", "one start age per mode (ages= is needed for more than 5 modes)"))
                }
            };
            if time && given.is_none() {
                p.set_unit(AgeUnit::Seconds, "1h")?;
            }
            let mut drop = if given.is_none() { Some(default_ages[5]) } else { None };
            if given.is_some() && ages.len() == modes.len() + 1 {
                drop = ages.pop();
            }
            if ages.len() != modes.len() {
                let want =
                    format!("{} ages (one per mode), or {} (the last is the drop age)", modes.len(), modes.len() + 1);
                return Err(p.bad("ages", given.unwrap_or_default(), &want));
            }
            if let Some(d) = p.drop()? {
                drop = d;
            }
            let text_until = ages.first().copied().unwrap_or(0);
            ScheduleSpec::Fixed(Schedule::ladder(spec, p.unit(), text_until, &modes, &ages, drop, p.policy()?)?)
        }
        "step" | "hybrid" => {
            let (k, width) = if kind == "step" {
                p.allow(&["width", "modes", "drop", "policy"])?;
                let w = p.age_or("width", 4)?;
                (w, w)
            } else {
                p.allow(&["k", "width", "modes", "drop", "policy"])?;
                let k = p.age_or("k", 4)?;
                (k, p.age_or("width", k)?)
            };
            let modes = p.modes()?;
            let drop = p.drop()?.unwrap_or(Some(k.saturating_add(width.saturating_mul(modes.len() as u64))));
            let s = Schedule::hybrid_named(spec.into(), p.unit(), k, width, &modes, drop, p.policy()?)?;
            ScheduleSpec::Fixed(s)
        }
        "exp" => {
            p.allow(&["first", "factor", "modes", "drop", "policy"])?;
            let first = p.age_or("first", 2)?;
            let factor = match p.get("factor") {
                Some(v) => v.parse::<f64>().map_err(|_| p.bad("factor", v, "a number > 1"))?,
                None => 2.0,
            };
            let modes = p.modes()?;
            let drop = p.drop()?.map_or(Some(None), |d| d.map(Some));
            ScheduleSpec::Fixed(Schedule::exponential_named(
                spec.into(),
                p.unit(),
                first,
                factor,
                &modes,
                drop,
                p.policy()?,
            )?)
        }
        "ladder" => {
            p.allow(&["levels"])?;
            let v = p.get("levels").ok_or_else(|| ScheduleError::NoLevels { schedule: spec.into() })?;
            let mut levels = Vec::new();
            for item in v.split('/').map(str::trim).filter(|s| !s.is_empty()) {
                let (r, a) = item.rsplit_once('@').ok_or_else(|| p.bad("levels", item, "REPR@AGE, e.g. base@4"))?;
                let repr = parse_repr(r).ok_or_else(|| p.bad("levels", r, "text, a mode, FROM>TO or dropped"))?;
                let from = p.age("levels", a)?;
                levels.push(Level { from, repr });
            }
            ScheduleSpec::Fixed(Schedule::new(spec, p.unit(), levels)?)
        }
        "budget" => {
            p.allow(&["tokens"])?;
            let v = p.get("tokens").ok_or_else(|| p.bad("tokens", "", "budget needs tokens=N"))?;
            let tokens = parse_count(v).map_err(|_| p.bad("tokens", v, "a token count ≥ 1"))?;
            if tokens == 0 {
                return Err(p.bad("tokens", v, "a token count ≥ 1"));
            }
            ScheduleSpec::Budget { tokens, candidates: Schedule::budget_family() }
        }
        other => {
            return Err(ScheduleError::UnknownKind { spec: spec.into(), kind: other.into(), expected: KINDS.into() })
        }
    };
    Ok(out)
}

/// `text`, a mode, `FROM>TO`, `dropped` / `drop`.
pub fn parse_repr(s: &str) -> Option<Representation> {
    let s = s.trim();
    match s.to_ascii_lowercase().as_str() {
        "text" => return Some(Representation::Text),
        "drop" | "dropped" => return Some(Representation::Dropped),
        _ => {}
    }
    if let Some((from, to)) = s.split_once('>') {
        return Some(Representation::Downscale { from: from.parse().ok()?, to: to.parse().ok()? });
    }
    s.parse::<Mode>().ok().map(|mode| Representation::Image { mode })
}

/// An age: `(value, unit)`. Negative numbers are reported as such.
pub fn parse_age(s: &str) -> Result<(u64, AgeUnit), AgeError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(AgeError::Invalid);
    }
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '+')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let n: i128 = num.parse().map_err(|_| AgeError::Invalid)?;
    if n < 0 {
        return Err(AgeError::Negative);
    }
    let n = u64::try_from(n).map_err(|_| AgeError::Invalid)?;
    let mult: u64 = match suffix.trim() {
        "" => return Ok((n, AgeUnit::Rounds)),
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        "y" => 31_536_000,
        _ => return Err(AgeError::Invalid),
    };
    n.checked_mul(mult).map(|v| (v, AgeUnit::Seconds)).ok_or(AgeError::Invalid)
}

/// Why an age did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeError {
    Negative,
    Invalid,
}

/// Seconds in the largest unit that divides them exactly (`3600` → `1h`).
pub fn format_duration(secs: u64) -> String {
    for (unit, m) in [("y", 31_536_000), ("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs > 0 && secs % m == 0 {
            return format!("{}{unit}", secs / m);
        }
    }
    format!("{secs}s")
}

/// A signed parse so that "-5" is reported as negative rather than as not-a-number.
fn parse_count(v: &str) -> Result<usize, ()> {
    let n: i128 = v.trim().parse().map_err(|_| ())?;
    usize::try_from(n).map_err(|_| ())
}

struct Params<'a> {
    spec: &'a str,
    kind: &'a str,
    pairs: Vec<(&'a str, &'a str)>,
    unit: Option<(AgeUnit, String)>,
}

impl<'a> Params<'a> {
    fn new(spec: &'a str, kind: &'a str, rest: &'a str) -> Result<Params<'a>, ScheduleError> {
        let mut pairs = Vec::new();
        for part in rest.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = part.split_once('=').ok_or_else(|| ScheduleError::BadValue {
                spec: spec.into(),
                key: part.into(),
                value: String::new(),
                expected: "KEY=VALUE".into(),
            })?;
            pairs.push((k.trim(), v.trim()));
        }
        Ok(Params { spec, kind, pairs, unit: None })
    }

    fn allow(&self, keys: &[&str]) -> Result<(), ScheduleError> {
        match self.pairs.iter().find(|(k, _)| !keys.contains(k)) {
            Some((k, _)) => {
                let expected = if keys.is_empty() { "no parameters".to_string() } else { keys.join(", ") };
                Err(self.unknown(k, &expected))
            }
            None => Ok(()),
        }
    }

    fn unknown(&self, key: &str, expected: &str) -> ScheduleError {
        ScheduleError::UnknownKey {
            spec: self.spec.into(),
            kind: self.kind.into(),
            key: key.into(),
            expected: expected.into(),
        }
    }

    fn bad(&self, key: &str, value: &str, expected: &str) -> ScheduleError {
        ScheduleError::BadValue {
            spec: self.spec.into(),
            key: key.into(),
            value: value.into(),
            expected: expected.into(),
        }
    }

    fn get(&self, key: &str) -> Option<&'a str> {
        self.pairs.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    fn unit(&self) -> AgeUnit {
        self.unit.as_ref().map_or(AgeUnit::Rounds, |u| u.0)
    }

    fn set_unit(&mut self, unit: AgeUnit, raw: &str) -> Result<(), ScheduleError> {
        match &self.unit {
            None => {
                self.unit = Some((unit, raw.to_string()));
                Ok(())
            }
            Some((u, _)) if *u == unit => Ok(()),
            Some((u, seen)) => {
                let (rounds, duration) = if *u == AgeUnit::Rounds {
                    (seen.clone(), raw.to_string())
                } else {
                    (raw.to_string(), seen.clone())
                };
                Err(ScheduleError::MixedUnits { spec: self.spec.into(), rounds, duration })
            }
        }
    }

    fn age(&mut self, key: &str, v: &str) -> Result<u64, ScheduleError> {
        match parse_age(v) {
            Ok((n, unit)) => {
                self.set_unit(unit, v)?;
                Ok(n)
            }
            Err(AgeError::Negative) => {
                Err(ScheduleError::NegativeAge { schedule: self.spec.into(), field: key.into(), value: v.into() })
            }
            Err(AgeError::Invalid) => Err(self.bad(key, v, "an age: N rounds, or N with s/m/h/d/w/y for wall time")),
        }
    }

    fn age_or(&mut self, key: &str, default: u64) -> Result<u64, ScheduleError> {
        match self.get(key) {
            Some(v) => self.age(key, v),
            None => Ok(default),
        }
    }

    fn age_list(&mut self, key: &str, v: &str) -> Result<Vec<u64>, ScheduleError> {
        let items: Vec<&str> = v.split('/').map(str::trim).filter(|s| !s.is_empty()).collect();
        if items.is_empty() {
            return Err(ScheduleError::NoLevels { schedule: self.spec.into() });
        }
        items.into_iter().map(|a| self.age(key, a)).collect()
    }

    fn modes(&self) -> Result<Vec<Mode>, ScheduleError> {
        let Some(v) = self.get("modes") else { return Ok(PAPER_MODES.to_vec()) };
        let modes = v
            .split('/')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|m| m.parse::<Mode>().map_err(|e| self.bad("modes", m, &e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if modes.is_empty() {
            return Err(ScheduleError::NoLevels { schedule: self.spec.into() });
        }
        Ok(modes)
    }

    fn policy(&self) -> Result<DecayPolicy, ScheduleError> {
        match self.get("policy") {
            None | Some("rerender") => Ok(DecayPolicy::Rerender),
            Some("downsample") => Ok(DecayPolicy::Downsample),
            Some(v) => Err(self.bad("policy", v, "rerender or downsample")),
        }
    }

    /// `None`: not given; `Some(None)`: never; `Some(Some(age))`.
    fn drop(&mut self) -> Result<Option<Option<u64>>, ScheduleError> {
        match self.get("drop") {
            None => Ok(None),
            Some("never") => Ok(Some(None)),
            Some(v) => Ok(Some(Some(self.age("drop", v)?))),
        }
    }
}
