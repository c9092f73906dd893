//! SIGINT / SIGTERM for the long commands (sweep, decay, train): the first signal asks the run to
//! stop after the sample (training: the step) in flight (it is journaled, the manifest is marked `interrupted` and the exact
//! resume command printed); a second one ends the process at once (exit 1; the journal still holds
//! every sample finished before it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

/// Exit status of a run stopped by a signal (128 + SIGINT, as shells report Ctrl-C).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Whether a stop was requested.
#[derive(Debug, Clone)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Installs the handlers of SIGINT and SIGTERM.
    pub fn install() -> anyhow::Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so that it sees the flag a previous signal set: the second signal exits.
            signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&flag))?;
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
        }
        Ok(Interrupt(flag))
    }

    /// Whether SIGINT or SIGTERM arrived.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag the handlers set, for a library loop that polls it (occ-train).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }

    /// Test hook: raise SIGINT in this process (the handler sets the flag).
    pub fn raise() {
        let _ = signal_hook::low_level::raise(SIGINT);
    }
}

/// The error of a run stopped by a signal; `main` exits with [`EXIT_INTERRUPTED`].
#[derive(Debug)]
pub struct Interrupted {
    /// What was left behind, e.g. `RUN_DIR is marked interrupted`.
    pub state: String,
    /// What is done, e.g. `12 of 30 samples`.
    pub done: String,
    /// The command that continues the run.
    pub resume: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted with {} done; {}. Continue with:\n  {}", self.done, self.state, self.resume)
    }
}

impl std::error::Error for Interrupted {}
