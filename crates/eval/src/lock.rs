//! The lock of a run folder: `run.lock`, a small JSON file naming the process that works on the
//! folder (pid, host, start time, command line).
//!
//! - [`RunLock::acquire`] creates the file exclusively. While the process it names is alive, a
//!   second process is refused with [`LockError::Held`] (its pid and start time).
//! - A lock whose process is gone (`kill -9`, a crash, a reboot) is **stale**: it is detected and
//!   taken over; [`RunLock::took_over`] tells the caller whose it was. A process is gone when its
//!   pid no longer exists, is a zombie, or now belongs to a process started at another time (the
//!   kernel's start time of the pid is recorded in the lock on Linux, so a reused pid is told apart).
//! - A lock written on another host cannot be checked from here and is refused with
//!   [`LockError::OtherHost`], naming the file to delete if that process is gone.
//! - The lock is released (the file removed) when the [`RunLock`] is dropped, if it is still ours.
//!
//! Creating the lock file is also the check that the folder is writable: it is the first file a
//! run writes.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::results::utc_now;

/// File name of the lock inside a run folder.
pub const LOCK_FILE: &str = "run.lock";

/// How long an unreadable lock file is taken for one being written by its creator.
const UNREADABLE_GRACE: Duration = Duration::from_secs(2);

/// Who holds a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    /// When the lock was taken (UTC, ISO 8601).
    pub started_utc: String,
    /// The kernel's start time of the process (clock ticks since boot; Linux only), to tell a
    /// reused pid from the holder.
    #[serde(default)]
    pub process_start: Option<u64>,
    pub command: String,
}

/// Errors of taking a lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{dir} is in use by process {} on {} (started {}: {}); wait for it to finish or stop it first",
        holder.pid, holder.host, holder.started_utc, holder.command
    )]
    Held { dir: String, holder: Box<LockHolder> },
    #[error(
        "{dir} is locked by process {} on host {} (started {}), which cannot be checked from {here}; \
         if that process is gone, delete {path}",
        holder.pid, holder.host, holder.started_utc
    )]
    OtherHost { dir: String, path: String, here: String, holder: Box<LockHolder> },
    #[error("output folder {path} is not writable: {source}")]
    Unwritable { path: String, source: std::io::Error },
    #[error("lock {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// A held lock on a run folder; released when dropped.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    holder: LockHolder,
    took_over: Option<LockHolder>,
}

impl RunLock {
    /// Takes the lock of `dir` (which must exist) for this process, `command` being its command
    /// line. Refuses while another live process holds it; takes over a stale lock.
    pub fn acquire(dir: &Path, command: &str) -> Result<RunLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let me = LockHolder {
            pid: std::process::id(),
            host: host_name(),
            started_utc: utc_now().0,
            process_start: process_start(std::process::id()),
            command: command.to_string(),
        };
        let io = |e| LockError::Io { path: path.display().to_string(), source: e };
        let mut took_over = None;
        for _ in 0..100 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let text = serde_json::to_string_pretty(&me).map_err(|e| io(std::io::Error::other(e)))?;
                    file.write_all(format!("{text}\n").as_bytes()).and_then(|()| file.sync_all()).map_err(io)?;
                    return Ok(RunLock { path, holder: me, took_over });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(LockError::Unwritable { path: dir.display().to_string(), source: e }),
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // released meanwhile
                Err(e) => return Err(io(e)),
            };
            match serde_json::from_str::<LockHolder>(&text) {
                Ok(holder) => {
                    if holder.host != me.host {
                        return Err(LockError::OtherHost {
                            dir: dir.display().to_string(),
                            path: path.display().to_string(),
                            here: me.host.clone(),
                            holder: Box::new(holder),
                        });
                    }
                    if is_alive(&holder) {
                        return Err(LockError::Held { dir: dir.display().to_string(), holder: Box::new(holder) });
                    }
                    remove_if_unchanged(&path, &text).map_err(io)?;
                    took_over = Some(holder);
                }
                Err(_) => {
                    // Being written by its creator, or torn by a crash while being written.
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .unwrap_or_default();
                    if age < UNREADABLE_GRACE {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    remove_if_unchanged(&path, &text).map_err(io)?;
                }
            }
        }
        Err(io(std::io::Error::other("the lock changed hands too often; try again")))
    }

    /// This process's entry in the lock.
    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }

    /// The holder of the stale lock this one replaced, if any.
    pub fn took_over(&self) -> Option<&LockHolder> {
        self.took_over.as_ref()
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| serde_json::from_str::<LockHolder>(&t).ok())
            .is_some_and(|h| h == self.holder);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Removes the lock file if it still holds `seen` (another process may have taken it over since).
fn remove_if_unchanged(path: &Path, seen: &str) -> std::io::Result<()> {
    match std::fs::read_to_string(path) {
        Ok(now) if now == seen => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// This machine's host name (`/proc/sys/kernel/hostname`, else `hostname`), or `unknown`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| {
            std::process::Command::new("hostname")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        })
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The fields of `/proc/<pid>/stat` after the command name (state first), on Linux.
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// The kernel's start time of a process (field 22 of `/proc/<pid>/stat`), on Linux.
pub fn process_start(pid: u32) -> Option<u64> {
    proc_stat(pid)?.get(19)?.parse().ok()
}

/// Whether the holder's process still runs (on this host).
pub fn is_alive(holder: &LockHolder) -> bool {
    if Path::new("/proc/self/stat").exists() {
        let Some(stat) = proc_stat(holder.pid) else { return false };
        if stat.first().is_some_and(|s| s == "Z" || s == "X") {
            return false; // exited, not yet reaped
        }
        match (holder.process_start, stat.get(19).and_then(|s| s.parse::<u64>().ok())) {
            (Some(recorded), Some(now)) => recorded == now,
            _ => true,
        }
    } else {
        std::process::Command::new("kill")
            .args(["-0", &holder.pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("occ-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_second_lock_is_refused_while_the_first_is_held_and_released_on_drop() {
        let dir = scratch("held");
        let lock = RunLock::acquire(&dir, "first").unwrap();
        assert!(dir.join(LOCK_FILE).is_file());
        let err = RunLock::acquire(&dir, "second").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{text}");
        assert!(text.contains(&std::process::id().to_string()) && text.contains(&lock.holder().started_utc), "{text}");
        drop(lock);
        assert!(!dir.join(LOCK_FILE).exists(), "released on drop");
        let again = RunLock::acquire(&dir, "third").unwrap();
        assert!(again.took_over().is_none());
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lock_of_a_dead_process_is_taken_over() {
        let dir = scratch("stale");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = LockHolder {
            pid,
            host: host_name(),
            started_utc: "2020-01-01T00:00:00Z".into(),
            process_start: Some(1),
            command: "killed".into(),
        };
        std::fs::write(dir.join(LOCK_FILE), serde_json::to_string(&dead).unwrap()).unwrap();
        let lock = RunLock::acquire(&dir, "next").unwrap();
        assert_eq!(lock.took_over(), Some(&dead));
        drop(lock);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reused_pid_with_another_start_time_is_stale() {
        let me = LockHolder {
            pid: std::process::id(),
            host: host_name(),
            started_utc: String::new(),
            process_start: process_start(std::process::id()),
            command: String::new(),
        };
        assert!(is_alive(&me));
        if me.process_start.is_some() {
            assert!(!is_alive(&LockHolder { process_start: Some(u64::MAX), ..me }));
        }
    }

    #[test]
    fn a_lock_from_another_host_is_refused_naming_the_file() {
        let dir = scratch("host");
        let other = LockHolder {
            pid: 1,
            host: "elsewhere.example".into(),
            started_utc: "2020-01-01T00:00:00Z".into(),
            process_start: None,
            command: "sweep".into(),
        };
        std::fs::write(dir.join(LOCK_FILE), serde_json::to_string(&other).unwrap()).unwrap();
        let err = RunLock::acquire(&dir, "here").unwrap_err().to_string();
        assert!(err.contains("elsewhere.example") && err.contains(LOCK_FILE), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_folder_is_refused() {
        let err = RunLock::acquire(Path::new("/proc/occ-no-such-folder"), "x").unwrap_err();
        assert!(matches!(err, LockError::Unwritable { .. }), "{err}");
    }
}
