//! Durability: the group-commit sync thread of Sync mode (RocketMQ's GroupCommitService), the
//! periodic flusher of Async mode (FlushRealTimeService), and `flush_all`, which syncs the
//! CommitLog, then derived data, then writes the checkpoint naming both.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::group_commit::Trouble;
use super::Engine;
use crate::checkpoint;
use crate::config::FlushMode;
use crate::consume_queue::ConsumeQueue;
use crate::error::{chain, Error, Result};
use crate::format::checkpoint_layout::{Checkpoint, Trailer};
use crate::results::PutStatus;

/// How long the sync thread waits for puts still appending before it syncs.
const GROUP_GATHER: Duration = Duration::from_micros(50);

impl Engine {
    /// Waits until every CommitLog byte below `end` is durable (see [`GroupCommit`]), at most
    /// `sync_flush_timeout`.
    pub(super) fn wait_durable(&self, end: u64) -> Result<PutStatus> {
        if self.commitlog.flushed_offset() >= end {
            return Ok(PutStatus::Ok);
        }
        let deadline = Instant::now() + self.config.sync_flush_timeout;
        let gc = &self.group_commit;
        let mut ticket = gc.register(end);
        loop {
            // Checked after taking the ticket: a sync that finished since then moved it on, and
            // `sleep` returns at once.
            if self.commitlog.flushed_offset() >= end {
                return Ok(PutStatus::Ok);
            }
            if let Some(status) = self.sync_outcome()? {
                return Ok(status);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(PutStatus::FlushDiskTimeout);
            }
            if ticket.finished() {
                // Our generation finished without reaching `end` (it stopped at a segment
                // end, or we raced its start): wait for the next one.
                ticket = gc.register(end);
                continue;
            }
            ticket.sleep(deadline - now);
        }
    }

    /// For a put not yet durable: the error of a failed sync, `ReadOnly`, or `FlushDiskTimeout`
    /// after the sync thread stopped (`close` flushed everything it could before stopping it).
    pub(super) fn sync_outcome(&self) -> Result<Option<PutStatus>> {
        match self.group_commit.trouble() {
            Some(Trouble::Failed((path, kind, msg))) => {
                return Err(Error::FlushFailed {
                    path,
                    source: std::io::Error::new(kind, msg),
                })
            }
            Some(Trouble::Stopped) => return Ok(Some(PutStatus::FlushDiskTimeout)),
            None => {}
        }
        if self.health.refusing.load(Ordering::Acquire) {
            if let Some(reason) = self.health.read_only.lock().clone() {
                return Err(Error::ReadOnly { reason });
            }
        }
        Ok(None)
    }

    /// The sync thread of Sync flush mode (see [`GroupCommit`]).
    pub(super) fn run_sync(&self) {
        let gc = &self.group_commit;
        // Not the durable offset: a put may already wait for a record another flush made
        // durable (the flusher's `flush_all` also syncs the CommitLog), and only a generation
        // run after its registration wakes it. The first sync finds little to do.
        let mut served = 0;
        while gc.wait_for_work(served, || self.commitlog.max_offset() > served) {
            // Let puts that are encoding or appending right now join this sync (bounded, so a
            // lone producer never waits): on 2 vCPUs this doubles records per sync.
            let gather_until = Instant::now() + GROUP_GATHER;
            while self.appending.load(Ordering::Acquire) > 0 && Instant::now() < gather_until {
                std::thread::yield_now();
            }
            let target = self.commitlog.max_offset();
            gc.begin(target);
            // A failed sync poisons the CommitLog: every later flush fails too, so nothing
            // waiting is ever acknowledged by a retry.
            match self.commitlog.flush() {
                Ok(durable) => {
                    // The target announced in `begin`, even if the flush reached further: a put
                    // that registered during this sync, past its target, sleeps on the next
                    // generation, and only `requested > served` makes that one run.
                    served = served.max(target);
                    gc.finish();
                    self.arrivals.synced();
                    self.acks.durable(durable);
                }
                Err(e) => {
                    let reason = format!("CommitLog sync failed: {}", chain(&e));
                    let failure = match e {
                        Error::FlushFailed { path, source } => {
                            (path, source.kind(), source.to_string())
                        }
                        other => (
                            self.root.path().to_path_buf(),
                            std::io::ErrorKind::Other,
                            chain(&other).to_string(),
                        ),
                    };
                    let (path, io) = (
                        failure.0.clone(),
                        std::io::Error::new(failure.1, failure.2.clone()),
                    );
                    // The store turns read-only only once the failure is recorded: a waiter
                    // that wakes in between must see `FlushFailed` (its sync failed), not
                    // `ReadOnly`. Everyone waiting fails now, not at their timeout.
                    let requested = gc.fail(failure, || self.set_read_only(reason));
                    // After the store turned read-only: whoever a failed acknowledgement
                    // tells finds it refusing puts, as a waiting put's caller does.
                    self.acks.sync_failed(&path, &io);
                    served = served.max(target).max(requested);
                }
            }
        }
        gc.wake_everyone();
    }

    /// A CommitLog sync outside the sync thread failed: the store turns read-only and every
    /// acknowledgement still waiting fails (a failed sync is final).
    pub(super) fn commitlog_sync_failed(&self, e: &Error) {
        self.set_read_only(format!("CommitLog sync failed: {}", chain(e)));
        match e {
            Error::FlushFailed { path, source } => self.acks.sync_failed(path, source),
            other => self.acks.sync_failed(
                self.root.path(),
                &std::io::Error::other(chain(other).to_string()),
            ),
        }
    }

    /// Stops the sync thread (after `close` flushed): waiters still asleep are woken and see
    /// what is durable.
    pub(super) fn stop_sync(&self) {
        self.group_commit.stop();
        self.workers.join_syncer();
    }

    /// Syncs the CommitLog, then derived data, then writes the checkpoint that names both, and
    /// the offset snapshots when commits were made since the last.
    pub(crate) fn flush_all(&self) -> Result<()> {
        self.flush_all_with(None)
    }

    /// [`Engine::flush_all`] that writes the offset snapshots only if the last is at least
    /// `snapshot_every` old (the periodic checkpoint).
    fn flush_all_with(&self, snapshot_every: Option<std::time::Duration>) -> Result<()> {
        let _checkpoint = self.checkpoint_lock.lock();
        let all_queues = || -> Vec<Arc<ConsumeQueue>> {
            self.queues
                .read()
                .values()
                .flat_map(|m| m.values().cloned())
                .collect()
        };
        // Counted before the dispatched offset is read, so everything counted describes records
        // below it: after a crash, incremental recovery checks the derived data it keeps holds
        // at least this much. Exact when nothing is being put (close, end of open).
        let derived = checkpoint::summarize(all_queues().iter().map(|q| &**q), self.index.as_ref());
        let dispatched = self.dispatched_offset.load(Ordering::Acquire);
        // Taken before the CommitLog sync, so every commit the snapshot holds is durable when
        // the snapshot is written (see `offsets`).
        let offsets = self
            .offsets
            .dirty(snapshot_every)
            .then(|| self.offsets.snapshot());
        let durable = self
            .commitlog
            .flush()
            .inspect_err(|e| self.commitlog_sync_failed(e))?;
        self.arrivals.synced();
        self.acks.durable(durable);
        for q in &all_queues() {
            q.flush()?;
        }
        if let Some(i) = &self.index {
            i.flush()?;
        }
        let ts = self.append.lock().last_store_timestamp;
        let cp = Checkpoint {
            physic_msg_timestamp: ts,
            logics_msg_timestamp: ts,
            index_msg_timestamp: ts,
            trailer: Some(Trailer {
                durable_commitlog_offset: durable,
                derived_durable_offset: dispatched.min(durable),
                derived,
                // The next open rebuilds ConsumeQueue and IndexFile.
                derived_damaged: self.derived_damaged.load(Ordering::Acquire),
                rocketmq_timestamps: [ts; 3],
            }),
            ..Checkpoint::default()
        };
        checkpoint::write(&*self.vfs, &self.root, &cp)?;
        if let Some((table, end)) = offsets {
            super::offsets::write_snapshot(&*self.vfs, &self.root, &table, end)?;
            super::schedule::write_delay_offsets(&*self.vfs, &self.root, &table)?;
            self.offsets.persisted(end);
        }
        Ok(())
    }

    pub(super) fn run_flusher(&self) {
        let mut last_thorough = Instant::now();
        let mut last_derived = Instant::now();
        let tick = match self.config.flush_mode {
            FlushMode::Async => self.config.flush_interval,
            FlushMode::Sync => self.config.consume_queue_flush_interval,
        }
        .min(self.config.consume_queue_flush_interval);
        while !self.workers.sleep_unless_stopped(tick) {
            let now = Instant::now();
            if self.config.flush_mode == FlushMode::Async {
                let dirty = self.commitlog.max_offset() - self.commitlog.flushed_offset();
                let thorough =
                    now.duration_since(last_thorough) >= self.config.flush_thorough_interval;
                // A put waiting for its acknowledgement does not wait for `flush_least_pages`.
                let enough = dirty >= (self.config.flush_least_pages as u64) * 4096
                    || self.acks.any_pending();
                if dirty > 0 && (thorough || enough) {
                    if thorough {
                        last_thorough = now;
                    }
                    match self.commitlog.flush() {
                        Ok(durable) => {
                            self.arrivals.synced();
                            self.acks.durable(durable);
                        }
                        Err(e) => self.commitlog_sync_failed(&e),
                    }
                }
            }
            if now.duration_since(last_derived) >= self.config.consume_queue_flush_interval {
                last_derived = now;
                if self.health.read_only.lock().is_none() {
                    if let Err(e) = self.flush_all_with(Some(self.config.flush_thorough_interval)) {
                        log::error!(
                            "periodic flush of {} failed: {}",
                            self.root.path().display(),
                            chain(&e)
                        );
                    }
                }
            }
        }
    }
}
