//! The engine behind [`Store`](crate::Store): one [`Engine`] per open root, shared by the
//! facade and the background threads through an `Arc`.
//!
//! One concern per file: [`lifecycle`] opens (lock, recovery, abort marker) and closes a root,
//! [`put`] is the append path, [`read`] the read path, [`flush`] the durability threads and the
//! checkpoint, [`cleanup`] retention, [`health`] whether writes are taken, [`workers`] the
//! threads, [`queues`] the queue table, [`arrivals`] the readers waiting for messages, [`offsets`]
//! the consumer groups' committed offsets, [`acks`] the callbacks waiting for durability.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::commitlog::CommitLog;
use crate::config::StoreConfig;
use crate::consume_queue::ConsumeQueue;
use crate::error::{Error, Result};
use crate::format::root::StoreRoot;
use crate::format::schedule::DelayLevels;
use crate::index::IndexService;
use crate::recovery::RecoveryReport;
use crate::stats::{GroupStats, QueueStats, StoreStats};
use crate::storage::{LockGuard, Vfs};

mod acks;
mod arrivals;
mod cleanup;
mod dlq;
mod flush;
mod group_commit;
mod groups;
mod health;
mod lifecycle;
mod offsets;
mod put;
mod queues;
mod read;
mod schedule;
mod subscriptions;
mod workers;

pub use acks::AckResult;
use acks::Acks;
use arrivals::Arrivals;
pub(crate) use arrivals::WaitOn;
pub(crate) use cleanup::Trigger;
pub use dlq::DlqStats;
use group_commit::GroupCommit;
use groups::Groups;
use health::Health;
use offsets::Offsets;
use put::AppendState;
use queues::QueueTable;
pub use read::MAX_QUERY_RESULTS;
pub use schedule::{DeliveryPass, LevelStats, MAX_PASS, PROGRESS_GROUP};
use workers::Workers;

/// The state of one open store root (see the module docs for where each part is handled).
pub(crate) struct Engine {
    root: StoreRoot,
    config: StoreConfig,
    /// `config.message_delay_level`, parsed.
    delays: DelayLevels,
    /// One scheduled-delivery pass at a time (the thread and `Store::deliver_due`).
    schedule_lock: Mutex<()>,
    /// Wakes the delivery thread.
    schedule_wake: schedule::ScheduleWake,
    vfs: Arc<dyn Vfs>,
    lock: Mutex<Option<Box<dyn LockGuard>>>,
    commitlog: CommitLog,
    queues: RwLock<QueueTable>,
    index: Option<IndexService>,
    append: Mutex<AppendState>,
    /// Every record below this offset has been dispatched.
    dispatched_offset: AtomicU64,
    closed: AtomicBool,
    /// Puts between their start and the end of their append (Sync mode only): the sync thread
    /// gives them a moment to join its sync.
    appending: AtomicUsize,
    /// A ConsumeQueue unit or IndexFile chain was found damaged while serving reads: the next
    /// checkpoint says so, and the next open rebuilds derived data from the CommitLog.
    derived_damaged: AtomicBool,
    /// Whether puts are refused, and why.
    health: Health,
    group_commit: GroupCommit,
    /// Callbacks waiting for the CommitLog to be durable past an offset.
    acks: Acks,
    /// Readers waiting for messages (long polling), woken by puts, syncs and `close`.
    arrivals: Arrivals,
    /// Consumer groups' committed offsets.
    offsets: Offsets,
    /// The consumers of this process (group members, ordered-consumption locks).
    groups: Groups,
    /// `config/subscriptionGroup.json` as loaded and set since (see
    /// [`subscriptions`](self::subscriptions)).
    subscriptions: Mutex<crate::format::subscription_group::SubscriptionGroups>,
    /// The background threads and their stop signal.
    workers: Workers,
    /// Serialises cleanup passes (background cleaner and the manual calls).
    cleanup_lock: Mutex<()>,
    /// Serialises `flush_all` (user flush, background flusher, close): each writes the
    /// checkpoint through the same temporary file.
    checkpoint_lock: Mutex<()>,
    report: RecoveryReport,
}

impl Engine {
    /// The store root.
    pub(crate) fn root(&self) -> &StoreRoot {
        &self.root
    }

    /// The configuration the store runs with.
    pub(crate) fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// What recovery found and did at open.
    pub(crate) fn report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The consumers of this process.
    pub(crate) fn groups(&self) -> &Groups {
        &self.groups
    }

    /// The CommitLog.
    pub(crate) fn commitlog(&self) -> &CommitLog {
        &self.commitlog
    }

    /// `Err(Closed)` once `close` ran.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub(crate) fn queue(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
        self.queues.read().get(topic)?.get(&queue_id).cloned()
    }

    fn queue_or_create(&self, topic: &str, queue_id: i32) -> Arc<ConsumeQueue> {
        if let Some(q) = self.queue(topic, queue_id) {
            return q;
        }
        let mut table = self.queues.write();
        table
            .entry(topic.to_owned())
            .or_default()
            .entry(queue_id)
            .or_insert_with(|| {
                Arc::new(ConsumeQueue::new_empty(
                    &self.root,
                    topic,
                    queue_id,
                    self.config.consume_queue_file_size(),
                ))
            })
            .clone()
    }

    pub(crate) fn stats(&self) -> StoreStats {
        let max = self.commitlog.max_offset();
        let durable = self.commitlog.flushed_offset();
        let (segments, segment_size) = self.commitlog.segment_count();
        let mut queues = Vec::new();
        let (mut cq_files, mut cq_bytes) = (0usize, 0u64);
        for (topic, qs) in self.queues.read().iter() {
            for (&queue_id, q) in qs {
                let (files, size) = q.file_count();
                cq_files += files;
                cq_bytes += files as u64 * size as u64;
                let (min_offset, max_offset) = (q.min_offset(), q.max_offset());
                queues.push(QueueStats {
                    topic: topic.clone(),
                    queue_id,
                    min_offset,
                    max_offset,
                    count: max_offset.saturating_sub(min_offset),
                });
            }
        }
        queues.sort_by(|a, b| (&a.topic, a.queue_id).cmp(&(&b.topic, b.queue_id)));
        let (index_files, index_bytes) = self.index.as_ref().map_or((0, 0), |ix| {
            let (files, _) = ix.summary();
            (files as usize, files * ix.file_size())
        });
        StoreStats {
            commitlog_min_offset: self.commitlog.min_offset(),
            commitlog_max_offset: max,
            durable_offset: durable,
            dirty_bytes: max.saturating_sub(durable),
            dispatch_lag_bytes: max.saturating_sub(self.dispatched_offset.load(Ordering::Acquire)),
            commitlog_segments: segments,
            commitlog_bytes: segments as u64 * segment_size as u64,
            consume_queue_files: cq_files,
            consume_queue_bytes: cq_bytes,
            index_files,
            index_bytes,
            last_flush_ms: self.commitlog.last_flush_ms(),
            read_only_reason: self.health.read_only.lock().clone(),
            disk_full_reason: self
                .health
                .disk_full
                .lock()
                .as_ref()
                .map(|(r, _)| r.clone()),
            disk_used_ratio: self.disk_used_ratio(),
            queues,
            groups: self.group_stats(),
        }
    }

    /// [`StoreStats::groups`].
    fn group_stats(&self) -> Vec<GroupStats> {
        let mut groups = Vec::new();
        for ((topic, group), by_queue) in self.all_committed() {
            for (queue_id, offset) in by_queue {
                let (min, max_offset) = self
                    .queue(&topic, queue_id)
                    .map_or((0, 0), |q| (q.min_offset(), q.max_offset()));
                let committed = u64::try_from(offset).ok().map(|o| o.max(min));
                groups.push(GroupStats {
                    group: group.clone(),
                    topic: topic.clone(),
                    queue_id,
                    committed,
                    max_offset,
                    lag: max_offset.saturating_sub(committed.unwrap_or(min)),
                });
            }
        }
        groups.sort_by(|a, b| {
            (&a.group, &a.topic, a.queue_id).cmp(&(&b.group, &b.topic, b.queue_id))
        });
        groups
    }

    /// Topics that have at least one queue, sorted.
    pub(crate) fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.queues.read().keys().cloned().collect();
        t.sort();
        t
    }

    /// The delay table of scheduled messages.
    pub(crate) fn delay_levels(&self) -> &DelayLevels {
        &self.delays
    }

    /// How many queues `topic` has (what a consumer checks on every poll for new queues).
    pub(crate) fn queue_count(&self, topic: &str) -> usize {
        self.queues.read().get(topic).map_or(0, |m| m.len())
    }

    /// Queue ids of `topic`, sorted.
    pub(crate) fn queue_ids(&self, topic: &str) -> Vec<i32> {
        let mut q: Vec<i32> = self
            .queues
            .read()
            .get(topic)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        q.sort_unstable();
        q
    }
}
