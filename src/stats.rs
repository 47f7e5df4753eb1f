//! What an operator needs to see: [`Store::stats`](crate::Store::stats) and the result of a
//! cleanup pass.

/// A snapshot of a store's state, from [`Store::stats`](crate::Store::stats).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct StoreStats {
    /// Smallest CommitLog offset still stored (moves forward with retention).
    pub commitlog_min_offset: u64,
    /// End of the CommitLog: the offset the next record gets.
    pub commitlog_max_offset: u64,
    /// Every CommitLog byte below this offset is durable.
    pub durable_offset: u64,
    /// Appended but not yet durable: `commitlog_max_offset - durable_offset`.
    pub dirty_bytes: u64,
    /// CommitLog bytes appended but not yet in ConsumeQueue/IndexFile (0 unless a dispatch
    /// failed: the store dispatches inside `put`).
    pub dispatch_lag_bytes: u64,
    /// CommitLog segment files and their bytes on disk (segments are preallocated).
    pub commitlog_segments: usize,
    /// Bytes of the CommitLog segment files.
    pub commitlog_bytes: u64,
    /// ConsumeQueue files of all queues.
    pub consume_queue_files: usize,
    /// Bytes of the ConsumeQueue files.
    pub consume_queue_bytes: u64,
    /// IndexFiles.
    pub index_files: usize,
    /// Bytes of the IndexFiles.
    pub index_bytes: u64,
    /// Wall-clock time (ms since the epoch) of the last CommitLog flush that made bytes
    /// durable in this process, if any.
    pub last_flush_ms: Option<i64>,
    /// Why the store refuses writes until it is reopened (a failed sync or dispatch), if so.
    pub read_only_reason: Option<String>,
    /// Why puts are refused until disk space returns, if so.
    pub disk_full_reason: Option<String>,
    /// Fraction (0..1) of the file system holding the root that is used, if it could be read.
    pub disk_used_ratio: Option<f64>,
    /// Every (topic, queue), sorted by topic then queue id.
    pub queues: Vec<QueueStats>,
    /// Every committed consumer offset, sorted by group, topic, queue id (broadcasting
    /// consumers appear as groups `"{group}%BROADCAST%{consumer id}"`).
    pub groups: Vec<GroupStats>,
}

/// One committed offset in [`StoreStats`], with the queue's end and the lag.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupStats {
    /// Consumer group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// The committed offset (`None`: RocketMQ's `-1`, unknown), corrected forward to the
    /// queue's min offset as a consumer would start there.
    pub committed: Option<u64>,
    /// One past the newest message of the queue (0 if the queue does not exist).
    pub max_offset: u64,
    /// Messages not yet consumed: `max_offset - committed` (the whole queue if unknown).
    pub lag: u64,
}

/// One queue's offsets in [`StoreStats`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Topic name.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// Smallest readable queue offset.
    pub min_offset: u64,
    /// One past the newest queue offset.
    pub max_offset: u64,
    /// Readable messages: `max_offset - min_offset`.
    pub count: u64,
}

/// What one cleanup pass deleted ([`Store::clean_expired_now`](crate::Store::clean_expired_now),
/// [`Store::delete_before`](crate::Store::delete_before), or the background cleaner).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct CleanupReport {
    /// CommitLog segments deleted.
    pub segments_deleted: usize,
    /// ConsumeQueue files deleted (their units all pointed below the new CommitLog minimum).
    pub consume_queue_files_deleted: usize,
    /// IndexFiles deleted (their entries all pointed below the new CommitLog minimum).
    pub index_files_deleted: usize,
    /// The CommitLog minimum offset after the pass.
    pub commitlog_min_offset: u64,
    /// Disk fill ratio seen by the pass, if it could be read.
    pub disk_used_ratio: Option<f64>,
}
