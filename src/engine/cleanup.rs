//! Retention (spec §8): the background cleaner and the manual deletes. What a pass deletes is a
//! pure function of the configuration, the disk's fill ratio, the hour and the trigger
//! ([`decide`]), tested without a disk; [`Engine::clean`] carries it out: CommitLog segments from
//! the front, then the derived files that point only below the new minimum.

use super::Engine;
use crate::config::StoreConfig;
use crate::error::{chain, Error, Result};
use crate::stats::CleanupReport;
use crate::storage;

/// Why a cleanup pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The background cleaner's timer.
    Periodic,
    /// [`Store::clean_expired_now`](crate::Store::clean_expired_now): delete what is expired
    /// whatever the hour (RocketMQ's manual delete).
    Manual,
}

/// What one cleanup pass does.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Decision {
    /// Delete expired segments (time-up, space pressure or manual).
    pub delete_expired: bool,
    /// Delete the oldest segments even if not expired (disk above the forcible ratio).
    pub delete_unexpired: bool,
    /// Refuse puts: the disk is above the warning ratio. `None` = writable.
    pub disk_full: Option<String>,
}

/// Decides a pass from the disk fill ratio (`None` if it could not be read), the local hour and
/// the trigger, as RocketMQ's `CleanCommitLogService` does.
pub(crate) fn decide(
    config: &StoreConfig,
    used_ratio: Option<f64>,
    local_hour: u32,
    trigger: Trigger,
) -> Decision {
    let time_up = config
        .delete_hours()
        .is_ok_and(|hours| hours.contains(&local_hour));
    let disk_full = disk_full_reason(config, used_ratio);
    let (mut clean_immediately, mut space) = (disk_full.is_some(), false);
    if let Some(r) = used_ratio {
        clean_immediately |= r >= config.disk_space_clean_forcibly_ratio;
        space = r > config.disk_max_used_space_ratio as f64 / 100.0;
    }
    Decision {
        delete_expired: time_up || space || clean_immediately || trigger == Trigger::Manual,
        delete_unexpired: clean_immediately && config.clean_file_forcibly_enable,
        disk_full,
    }
}

/// Why puts must be refused at this fill ratio: at or above the warning ratio. `None` if the
/// disk is below it or its ratio could not be read.
pub(crate) fn disk_full_reason(config: &StoreConfig, used_ratio: Option<f64>) -> Option<String> {
    let r = used_ratio.filter(|&r| r >= config.disk_space_warning_level_ratio)?;
    Some(format!(
        "disk {:.1}% used, above disk_space_warning_level_ratio {:.0}%",
        r * 100.0,
        config.disk_space_warning_level_ratio * 100.0
    ))
}

/// Whether a segment filled at `filled_at_ms` has outlived `reserved_ms` at `now_ms`. A segment
/// whose fill time is unknown is kept.
pub(crate) fn expired(filled_at_ms: Option<i64>, now_ms: i64, reserved_ms: i64) -> bool {
    filled_at_ms.is_some_and(|t| now_ms >= t.saturating_add(reserved_ms))
}

impl Engine {
    pub(super) fn run_cleaner(&self) {
        while !self
            .workers
            .sleep_unless_stopped(self.config.clean_resource_interval)
        {
            if let Err(e) = self.clean(Trigger::Periodic, None) {
                log::error!(
                    "cleanup of {} failed: {}",
                    self.root.path().display(),
                    chain(&e)
                );
            }
        }
    }

    /// One cleanup pass (spec §8): decide from disk use, hour and trigger; delete CommitLog
    /// segments from the front; then the derived files that point only below the new minimum.
    pub(crate) fn clean(&self, trigger: Trigger, below: Option<u64>) -> Result<CleanupReport> {
        let _pass = self.cleanup_lock.lock();
        let now = storage::now_ms();
        let ratio = self.disk_used_ratio();
        let decision = decide(&self.config, ratio, storage::local_hour(now), trigger);
        self.set_disk_full(decision.disk_full.clone());
        let mut report = CleanupReport {
            disk_used_ratio: ratio,
            ..CleanupReport::default()
        };
        if let Some(reason) = self.health.read_only.lock().clone() {
            // A store that failed a sync writes nothing until it is reopened.
            if trigger == Trigger::Manual {
                return Err(Error::ReadOnly { reason });
            }
            return Ok(report);
        }
        if (below.is_some() || decision.delete_expired) && self.offsets.dirty(None) {
            // Commit records after the last snapshot of consumer offsets must outlive it.
            self.flush_all()?;
        }
        let reserved =
            i64::try_from(self.config.file_reserved_time.as_millis()).unwrap_or(i64::MAX);
        report.segments_deleted = match below {
            Some(offset) => self
                .commitlog
                .delete_front(usize::MAX, |_, end, _| end <= offset)?,
            None if decision.delete_expired => self
                .commitlog
                .delete_front(self.config.delete_files_batch_max, |_, _, filled_at| {
                    decision.delete_unexpired || expired(filled_at, now, reserved)
                })?,
            None => 0,
        };
        // Derived files follow the CommitLog minimum whatever moved it (this pass, or one that
        // stopped half way before a crash).
        let min = self.commitlog.min_offset();
        let queues: Vec<_> = self
            .queues
            .read()
            .values()
            .flat_map(|qs| qs.values().cloned())
            .collect();
        for q in queues {
            report.consume_queue_files_deleted += q.delete_expired(&*self.vfs, min)?;
        }
        if let Some(index) = &self.index {
            report.index_files_deleted = index.delete_expired(&*self.vfs, min)?;
        }
        report.commitlog_min_offset = min;
        if report.segments_deleted > 0 {
            log::info!(
                "store {}: cleanup deleted {} segments, {} consume queue files, {} index files; commitlog min offset now {min}",
                self.root.path().display(),
                report.segments_deleted,
                report.consume_queue_files_deleted,
                report.index_files_deleted
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StoreConfig {
        StoreConfig {
            delete_when: "04;16".into(),
            ..StoreConfig::small()
        }
    }

    #[test]
    fn quiet_disk_deletes_only_at_the_configured_hours_or_on_demand() {
        let c = config();
        for hour in 0..24 {
            let d = decide(&c, Some(0.10), hour, Trigger::Periodic);
            assert_eq!(d.delete_expired, hour == 4 || hour == 16, "hour {hour}");
            assert!(!d.delete_unexpired && d.disk_full.is_none());
        }
        assert!(decide(&c, Some(0.10), 9, Trigger::Manual).delete_expired);
        assert!(!decide(&c, None, 9, Trigger::Periodic).delete_expired);
    }

    #[test]
    fn space_pressure_escalates_from_expired_to_forced_to_disk_full() {
        let c = config();
        let at = |r| decide(&c, Some(r), 9, Trigger::Periodic);
        assert!(!at(0.75).delete_expired, "75% is not above the max ratio");
        let d = at(0.76);
        assert!(d.delete_expired && !d.delete_unexpired && d.disk_full.is_none());
        let d = at(0.85);
        assert!(d.delete_expired && d.delete_unexpired && d.disk_full.is_none());
        let d = at(0.90);
        assert!(d.delete_expired && d.delete_unexpired);
        assert!(d.disk_full.unwrap().contains("90.0% used"));
        let no_force = StoreConfig {
            clean_file_forcibly_enable: false,
            ..config()
        };
        assert!(!decide(&no_force, Some(0.95), 9, Trigger::Periodic).delete_unexpired);
    }

    #[test]
    fn expiry_needs_a_known_fill_time_older_than_the_reserve() {
        assert!(!expired(None, 1_000_000, 0));
        assert!(!expired(Some(1000), 1999, 1000));
        assert!(expired(Some(1000), 2000, 1000));
        assert!(!expired(Some(i64::MAX - 1), i64::MAX - 1, 5), "no overflow");
    }
}
