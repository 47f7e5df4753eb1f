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

/// A file a put had to create, for [`Engine::explain_enospc`].
#[derive(Clone, Copy, Debug)]
pub(super) enum NewFile {
    /// A CommitLog segment (`commitlog_segment_size` bytes).
    Segment,
    /// A ConsumeQueue file (`consume_queue_units_per_file` units).
    ConsumeQueue,
    /// An IndexFile (`index_hash_slots` and `index_max_entries`).
    Index,
}

/// `n` in the largest binary unit that divides it (`1 GiB`, `300 KiB`), else in bytes.
fn human_bytes(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

impl Engine {
    /// Turns the bare `ENOSPC` ([`Error::DiskFull`]) of creating a `kind` file into what the
    /// user needs to act: the bytes the file needs, the bytes the file system has free and the
    /// setting that sizes the file. The reason is also what
    /// [`StoreStats::disk_full_reason`](crate::StoreStats::disk_full_reason) shows until the
    /// next put looks at the disk again.
    /// Other errors pass through unchanged.
    pub(super) fn explain_enospc(&self, e: Error, kind: NewFile) -> Error {
        let Error::DiskFull { path, reason } = e else {
            return e;
        };
        let c = &self.config;
        let (what, needed) = match kind {
            NewFile::Segment => ("CommitLog segment", c.commitlog_segment_size as u64),
            NewFile::ConsumeQueue => ("ConsumeQueue file", c.consume_queue_file_size() as u64),
            NewFile::Index => (
                "IndexFile",
                crate::format::index_layout::file_size(c.index_hash_slots, c.index_max_entries),
            ),
        };
        let setting = match kind {
            NewFile::Segment => format!(
                "commitlog_segment_size is {}; set a smaller commitlog_segment_size",
                human_bytes(needed)
            ),
            NewFile::ConsumeQueue => format!(
                "consume_queue_units_per_file is {} units of 20 bytes; set a smaller \
                 consume_queue_units_per_file",
                c.consume_queue_units_per_file
            ),
            NewFile::Index => format!(
                "index_hash_slots {} and index_max_entries {} make {} files; set smaller ones",
                c.index_hash_slots,
                c.index_max_entries,
                human_bytes(needed)
            ),
        };
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        // Asked after the failed file was removed again: what is free for a retry.
        let explained = match self.vfs.disk_usage(self.root.path()) {
            Ok(u) if u.available_bytes < needed => format!(
                "creating {what} {name} needs {needed} bytes, the file system has {} bytes free \
                 ({setting}): {reason}",
                u.available_bytes
            ),
            Ok(u) => format!(
                "creating {what} {name} needs {needed} bytes and failed although the file \
                 system reports {} bytes free (quota or reserved blocks?): {reason}",
                u.available_bytes
            ),
            Err(_) => format!(
                "creating {what} {name} needs {needed} bytes ({setting}), free space unknown: \
                 {reason}"
            ),
        };
        self.note_enospc(explained.clone());
        Error::DiskFull {
            path,
            reason: explained,
        }
    }

    /// Records a failed file creation as the disk-full reason, due for a recheck at once: the
    /// next put looks at the disk again (and clears it if the fill ratio is fine) and retries
    /// the file, so space that returns is used without delay.
    fn note_enospc(&self, reason: String) {
        let mut full = self.health.disk_full.lock();
        if full.is_none() {
            log::warn!("store {}: {reason}", self.root.path().display());
        }
        let checked = Instant::now()
            .checked_sub(DISK_RECHECK)
            .unwrap_or_else(Instant::now);
        *full = Some((reason, checked));
        self.health.refusing.store(true, Ordering::Release);
    }

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
