//! Clocks for wall-time schedules. Tests use [`ManualClock`]; nothing in the memory reads real time
//! unless it is given a [`SystemClock`].

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of "now", as a duration since an arbitrary fixed epoch.
pub trait Clock: Debug + Send + Sync {
    fn now(&self) -> Duration;
}

/// Real time since the Unix epoch.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at `secs` seconds.
    pub fn at(secs: u64) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(secs.saturating_mul(1000))))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the time (milliseconds resolution).
    pub fn set(&self, t: Duration) {
        self.0.store(u64::try_from(t.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}
