//! Whether the store takes writes: read-only after a failed sync or append (until reopened),
//! refusing puts while the disk is above the warning ratio (until space returns).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::cleanup;
use super::Engine;
use crate::error::{Error, Result};

/// How often a refused put looks at the disk again.
const DISK_RECHECK: Duration = Duration::from_secs(1);

/// Why writes are refused, if they are.
#[derive(Default)]
pub(super) struct Health {
    /// Set for good by a failed sync, append or dispatch: the store takes no write until it is
    /// reopened (a failed sync is never retried into an acknowledgement).
    pub(super) read_only: Mutex<Option<String>>,
    /// True while `read_only` or `disk_full` is set: the put path checks this one atomic and
    /// takes the locks only when it is set.
    pub(super) refusing: AtomicBool,
    /// Why puts are refused until space returns, and when the disk was last looked at.
    pub(super) disk_full: Mutex<Option<(String, Instant)>>,
}

impl Engine {
    pub(super) fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if !self.health.refusing.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(reason) = &*self.health.read_only.lock() {
            return Err(Error::ReadOnly {
                reason: reason.clone(),
            });
        }
        self.check_disk_space()
    }

    /// Refuses with [`Error::DiskFull`] while the disk is above the warning ratio. A refusal
    /// looks at the disk again at most once a second, so the store becomes writable by itself
    /// when space returns (the cleaner, or anyone, freed some).
    pub(super) fn check_disk_space(&self) -> Result<()> {
        let due = match &*self.health.disk_full.lock() {
            None => return Ok(()),
            Some((_, checked)) => checked.elapsed() >= DISK_RECHECK,
        };
        if due {
            self.set_disk_full(self.disk_over_warning());
        }
        match &*self.health.disk_full.lock() {
            None => Ok(()),
            Some((reason, _)) => Err(Error::DiskFull {
                path: self.root.path().to_path_buf(),
                reason: reason.clone(),
            }),
        }
    }

    /// Fraction of the root's file system in use, if it can be read.
    pub(super) fn disk_used_ratio(&self) -> Option<f64> {
        let u = self.vfs.disk_usage(self.root.path()).ok()?;
        (u.total_bytes > 0)
            .then(|| u.total_bytes.saturating_sub(u.available_bytes) as f64 / u.total_bytes as f64)
    }

    /// The disk-full reason if the disk is at or above the warning ratio.
    pub(super) fn disk_over_warning(&self) -> Option<String> {
        cleanup::disk_full_reason(&self.config, self.disk_used_ratio())
    }

    /// Recomputes `refusing` once the disk-full state was cleared (the caller holds the
    /// `disk_full` lock; `read_only` is locked so a concurrent `set_read_only` is not lost).
    pub(super) fn refusing_after_disk_cleared(&self) {
        let read_only = self.health.read_only.lock();
        self.health
            .refusing
            .store(read_only.is_some(), Ordering::Release);
    }

    pub(super) fn set_disk_full(&self, reason: Option<String>) {
        let mut full = self.health.disk_full.lock();
        match (&*full, reason) {
            (None, Some(r)) => {
                log::warn!("store {}: refusing puts: {r}", self.root.path().display());
                *full = Some((r, Instant::now()));
                self.health.refusing.store(true, Ordering::Release);
            }
            (Some(_), Some(r)) => *full = Some((r, Instant::now())),
            (Some(_), None) => {
                log::info!(
                    "store {}: disk space is back, writable again",
                    self.root.path().display()
                );
                *full = None;
                self.refusing_after_disk_cleared();
            }
            (None, None) => {}
        }
    }

    pub(super) fn set_read_only(&self, reason: String) {
        log::error!(
            "store {} is now read-only: {reason}",
            self.root.path().display()
        );
        let mut read_only = self.health.read_only.lock();
        read_only.get_or_insert(reason);
        self.health.refusing.store(true, Ordering::Release);
    }
}
