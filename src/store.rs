//! [`Store`]: the facade. Opens (recovering) a store root, appends, reads, queries and closes;
//! every call is delegated to the engine (`crate::engine`), which owns the store's state and
//! threads.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::config::StoreConfig;
use crate::engine::{AckResult, DeliveryPass, DlqStats, Engine, LevelStats, Trigger};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::recovery::RecoveryReport;
use crate::results::{GetOptions, GetResult, KeyPage, PutResult, StoredMessage, TimeBoundary};
use crate::stats::{CleanupReport, StoreStats};
use crate::storage::{OsVfs, Vfs};

/// A message store on one root directory. `Send + Sync`: share it between threads by reference
/// or in an `Arc`.
///
/// ```
/// use rocketstore::{Message, Store, StoreConfig};
/// # fn main() -> rocketstore::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path(), StoreConfig::small())?;
/// let r = store.put(&Message::new("orders", 3, b"body").with_tags("TagA").with_keys(["ORDER-100"]))?;
/// let batch = store.get("orders", 3, r.queue_offset, 32)?;
/// assert_eq!(batch.messages().next().unwrap().body(), b"body");
/// let hits = store.query_by_key("orders", "ORDER-100", 0, i64::MAX, 16)?;
/// assert_eq!(hits.len(), 1);
/// store.close()?;
/// # Ok(()) }
/// ```
pub struct Store {
    engine: Arc<Engine>,
}

impl Store {
    /// Opens (creating if needed) the store at `root` on the real file system, recovering
    /// whatever a previous run left.
    pub fn open(root: impl AsRef<Path>, config: StoreConfig) -> Result<Store> {
        Store::open_with_vfs(root, config, Arc::new(OsVfs))
    }

    /// Opens the store through any implementation of the file-system seam
    /// ([`vfs::Vfs`](crate::vfs::Vfs)), such as a simulated disk for crash tests. The
    /// implementation must keep the invariants written on the trait.
    pub fn open_with_vfs(
        root: impl AsRef<Path>,
        config: StoreConfig,
        vfs: Arc<dyn Vfs>,
    ) -> Result<Store> {
        let engine = Engine::open(root.as_ref(), config, vfs)?;
        Ok(Store { engine })
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        self.engine.root().path()
    }

    /// The configuration the store runs with.
    pub fn config(&self) -> &StoreConfig {
        self.engine.config()
    }

    /// What recovery found and did when this store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        self.engine.report()
    }

    /// Appends one message. In Sync mode returns after the record is durable (or the flush
    /// timed out: [`PutStatus::FlushDiskTimeout`](crate::PutStatus::FlushDiskTimeout)). The message is readable by `get` when this
    /// returns.
    pub fn put(&self, msg: &Message<'_>) -> Result<PutResult> {
        self.put_batch(std::slice::from_ref(msg))
    }

    /// Appends messages of one (topic, queue) as one contiguous run with consecutive queue
    /// offsets (all or nothing).
    pub fn put_batch(&self, msgs: &[Message<'_>]) -> Result<PutResult> {
        self.engine.put_batch(msgs)
    }

    /// Appends like [`Store::put_batch`] (one message: pass a one-element slice) but returns
    /// as soon as the records are written, without waiting for them to be durable even in
    /// [`FlushMode::Sync`](crate::FlushMode::Sync), and has `callback` run once they are: with
    /// `Ok(())` once the CommitLog is durable past them, or with the error if a sync failed
    /// first. The records are readable (and dispatched) when this returns; `status` is
    /// [`PutStatus::Ok`](crate::PutStatus::Ok) and says nothing about durability.
    ///
    /// One producer thread can so keep many puts in flight and still learn when each is
    /// durable, instead of one blocked thread per put. Sync mode syncs as soon as the group
    /// commit thread can; Async mode at the flusher's next tick (`flush_interval`), without
    /// waiting for `flush_least_pages`. The callback runs exactly once, on the thread that made
    /// the records durable (or on this one if they already are), and must not wait on the
    /// store (see [`Store::when_durable`]). If this returns an error nothing was written and
    /// the callback is dropped without running.
    ///
    /// ```
    /// use std::sync::mpsc;
    /// use rocketstore::{FlushMode, Message, Store, StoreConfig};
    /// # fn main() -> rocketstore::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), StoreConfig { flush_mode: FlushMode::Sync, ..StoreConfig::small() })?;
    /// let (tx, rx) = mpsc::channel();
    /// for i in 0..100u32 {
    ///     let tx = tx.clone();
    ///     let body = i.to_be_bytes();
    ///     store.put_with_ack(&[Message::new("orders", 0, &body)], move |r| {
    ///         let _ = tx.send((i, r.is_ok()));
    ///     })?;
    /// }
    /// let acked: Vec<_> = rx.iter().take(100).collect();
    /// assert!(acked.iter().all(|&(_, ok)| ok));
    /// store.close()?;
    /// # Ok(()) }
    /// ```
    pub fn put_with_ack(
        &self,
        msgs: &[Message<'_>],
        callback: impl FnOnce(AckResult) + Send + 'static,
    ) -> Result<PutResult> {
        self.engine.put_with_ack(msgs, Box::new(callback))
    }

    /// Has `callback` run once every CommitLog byte below `offset` is durable (at most
    /// [`Store::commitlog_max_offset`]; past it is an error, since nothing would make it so):
    /// with `Ok(())`, or with the error of the sync that failed first (a failed sync is final:
    /// nothing after it is acknowledged), or [`Error::Closed`](crate::Error::Closed) if the
    /// store closes first (it flushes before, so only what was never written can get that).
    /// If the log is durable past `offset` already, the callback runs here, before this
    /// returns; if this returns an error, the callback is dropped without running.
    ///
    /// Callbacks run in offset order, on the thread whose sync made their bytes durable (the
    /// group-commit thread, the flusher, [`Store::flush`], [`Store::close`]). They must not
    /// wait on the store — a Sync put, `flush` or `close` from a callback would wait for the
    /// thread running it — and should be short (a channel send): the group commit waits for
    /// them before its next sync.
    pub fn when_durable(
        &self,
        offset: u64,
        callback: impl FnOnce(AckResult) + Send + 'static,
    ) -> Result<()> {
        self.engine.when_durable(offset, Box::new(callback))
    }

    /// Reads up to `max` messages of `(topic, queue_id)` starting at queue offset `offset`
    /// (`max == 0` reads none, see [`GetOptions::max_messages`]).
    pub fn get(&self, topic: &str, queue_id: i32, offset: u64, max: usize) -> Result<GetResult> {
        self.get_with(topic, queue_id, offset, &GetOptions::new(max))
    }

    /// [`Store::get`] with a tag filter, byte budget and CRC verification.
    pub fn get_with(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        opts: &GetOptions,
    ) -> Result<GetResult> {
        self.engine.check_open()?;
        self.engine.get(topic, queue_id, offset, opts)
    }

    /// [`Store::get_with`] that waits up to `timeout` for a message to return: in-process long
    /// polling, woken by the puts into this queue (by the syncs with
    /// [`GetOptions::durable_only`]) rather than by polling, so waiting threads cost nothing.
    /// Returns as soon as there are messages, at once for an offset to correct
    /// (`OffsetTooSmall`, `OffsetOverflowBadly`), and at the timeout with an empty result whose
    /// `next_offset` is where to go on (past messages the tag filter rejected). A `close`
    /// meanwhile ends the wait with [`Error::Closed`].
    ///
    /// ```
    /// use rocketstore::{GetOptions, GetStatus, Message, Store, StoreConfig};
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), StoreConfig::small())?;
    /// std::thread::scope(|s| {
    ///     let consumer = s.spawn(|| {
    ///         store.get_waiting("t", 0, 0, &GetOptions::new(8), Duration::from_secs(30))
    ///     });
    ///     store.put(&Message::new("t", 0, b"hello")).unwrap();
    ///     let got = consumer.join().unwrap().unwrap();
    ///     assert_eq!(got.status(), GetStatus::Found);
    /// });
    /// # Ok::<(), rocketstore::Error>(())
    /// ```
    pub fn get_waiting(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        opts: &GetOptions,
        timeout: std::time::Duration,
    ) -> Result<GetResult> {
        self.engine
            .get_waiting(topic, queue_id, offset, opts, timeout)
    }

    /// Waits up to `timeout` until one of `queues` (`(topic, queue id, offset)`) has a message
    /// at or after its offset and returns the index of the first such queue, or `None` at the
    /// timeout. Woken by the puts into those queues; `durable_only` waits for durable messages
    /// instead, woken by the syncs. [`Error::Closed`] when the store closes meanwhile.
    pub fn wait_for_messages(
        &self,
        queues: &[(&str, i32, u64)],
        durable_only: bool,
        timeout: std::time::Duration,
    ) -> Result<Option<usize>> {
        self.engine.wait_for_messages(queues, durable_only, timeout)
    }

    /// A consumer of `topic` in `group` (see [`crate::consumer`]): joins the group in this
    /// process (its clustering consumers split the queues) and reads from the group's
    /// committed offsets.
    ///
    /// ```
    /// use rocketstore::consumer::{ConsumerConfig, StartFrom};
    /// use rocketstore::{Message, Store, StoreConfig};
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), StoreConfig::small())?;
    /// store.put(&Message::new("orders", 0, b"a"))?;
    /// let config = ConsumerConfig { start_from: StartFrom::First, ..ConsumerConfig::default() };
    /// let mut consumer = store.consumer("billing", "orders", config)?;
    /// let batch = consumer.poll(32, Duration::from_secs(1))?;
    /// assert_eq!(batch.messages().next().unwrap().body(), b"a");
    /// consumer.commit()?;
    /// # Ok::<(), rocketstore::Error>(())
    /// ```
    pub fn consumer(
        &self,
        group: &str,
        topic: &str,
        config: crate::consumer::ConsumerConfig,
    ) -> Result<crate::consumer::Consumer> {
        crate::consumer::Consumer::new(self.engine.clone(), group, topic, config)
    }

    /// Commits consumer-group offsets: `group` has consumed each `(queue id, offset)` of
    /// `topic` up to, not including, `offset` (the next message it will read, as RocketMQ's
    /// `commitOffset`). Kept in the store root and recovered with it: in Sync mode durable when
    /// this returns (it shares the group commit with the puts), in Async mode with the next
    /// flush; after any crash a group's offset is a value it committed and never ahead of the
    /// messages the store still holds. Also written to `config/consumerOffset.json` in
    /// RocketMQ's format at every checkpoint. An offset past the queue's max offset is refused
    /// ([`Error::OffsetPastMax`]). Returns the put of the commit record (its status says
    /// whether a Sync store's flush timed out).
    ///
    /// ```
    /// use rocketstore::{Message, Store, StoreConfig};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path(), StoreConfig::small())?;
    /// store.put(&Message::new("orders", 0, b"a"))?;
    /// assert_eq!(store.committed_offset("billing", "orders", 0)?, None);
    /// store.commit_offsets("billing", "orders", &[(0, 1)])?;
    /// assert_eq!(store.committed_offset("billing", "orders", 0)?, Some(1));
    /// store.close()?;
    /// let store = Store::open(dir.path(), StoreConfig::small())?;
    /// assert_eq!(store.committed_offset("billing", "orders", 0)?, Some(1));
    /// # Ok::<(), rocketstore::Error>(())
    /// ```
    pub fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(i32, u64)],
    ) -> Result<PutResult> {
        self.engine.commit_offsets(group, topic, offsets, false)
    }

    /// [`Store::commit_offsets`] that returns only once the commit is durable, in Async mode
    /// too (one `fdatasync` of the CommitLog).
    pub fn commit_offsets_durable(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(i32, u64)],
    ) -> Result<PutResult> {
        self.engine.commit_offsets(group, topic, offsets, true)
    }

    /// The offset `group` last committed for `topic:queue_id`; `None` if it never did
    /// (RocketMQ's `queryOffset` answers `-1`). An offset below the queue's min offset
    /// (retention deleted what it pointed at) comes back as the min offset, with a log line.
    pub fn committed_offset(&self, group: &str, topic: &str, queue_id: i32) -> Result<Option<u64>> {
        self.engine.committed_offset(group, topic, queue_id)
    }

    /// Every committed offset: `(topic, group)` → queue id → offset (`-1`: unknown, as in a
    /// RocketMQ file).
    pub fn committed_offsets(
        &self,
    ) -> Result<std::collections::BTreeMap<(String, String), std::collections::BTreeMap<i32, i64>>>
    {
        self.engine.check_open()?;
        Ok(self.engine.all_committed())
    }

    /// The message with RocketMQ's offset message id `msg_id` ([`MessageView::msg_id`]: store
    /// host, port and CommitLog offset in hex). [`Error::InvalidArgument`] for a string that is
    /// not one; [`Error::NoRecordAt`] when no message starts at its offset (or the id names
    /// another store host).
    ///
    /// [`MessageView::msg_id`]: crate::MessageView::msg_id
    pub fn read_by_msg_id(&self, msg_id: &str) -> Result<StoredMessage> {
        let offset = crate::message::offset_of_msg_id(msg_id).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{msg_id:?} is not a RocketMQ offset message id (32 or 56 hex digits)"
            ))
        })?;
        let found = self.read_at(offset)?;
        if !found.view().msg_id().eq_ignore_ascii_case(msg_id) {
            return Err(Error::NoRecordAt {
                offset,
                min: self.commitlog_min_offset(),
                max: self.commitlog_max_offset(),
            });
        }
        Ok(found)
    }

    /// The message stored at CommitLog offset `offset` (fully validated, CRCs included).
    pub fn read_at(&self, offset: u64) -> Result<StoredMessage> {
        self.engine.check_open()?;
        self.engine.read_at(offset, true)
    }

    /// Smallest readable queue offset of a queue (0 for an unknown queue).
    pub fn min_offset(&self, topic: &str, queue_id: i32) -> Result<u64> {
        self.engine.check_open()?;
        Ok(self
            .engine
            .queue(topic, queue_id)
            .map_or(0, |q| q.min_offset()))
    }

    /// One past the newest queue offset of a queue (0 for an unknown queue).
    pub fn max_offset(&self, topic: &str, queue_id: i32) -> Result<u64> {
        self.engine.check_open()?;
        Ok(self
            .engine
            .queue(topic, queue_id)
            .map_or(0, |q| q.max_offset()))
    }

    /// Smallest CommitLog offset still stored.
    pub fn commitlog_min_offset(&self) -> u64 {
        self.engine.commitlog().min_offset()
    }

    /// End of the CommitLog (offset the next record gets).
    pub fn commitlog_max_offset(&self) -> u64 {
        self.engine.commitlog().max_offset()
    }

    /// CommitLog offset below which every byte is durable.
    pub fn durable_offset(&self) -> u64 {
        self.engine.commitlog().flushed_offset()
    }

    /// Queue offset of the message stored first at or after `timestamp_ms` ([`TimeBoundary::Lower`]).
    pub fn offset_for_timestamp(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp_ms: i64,
    ) -> Result<u64> {
        self.offset_for_timestamp_with(topic, queue_id, timestamp_ms, TimeBoundary::Lower)
    }

    /// Queue offset for a time: `Lower` = first message stored at or after it (the queue's max
    /// offset if none); `Upper` = last message stored at or before it (the min offset if none).
    /// An unknown queue gives 0.
    pub fn offset_for_timestamp_with(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp_ms: i64,
        boundary: TimeBoundary,
    ) -> Result<u64> {
        self.engine
            .offset_for_timestamp_with(topic, queue_id, timestamp_ms, boundary)
    }

    /// Messages of `topic` carrying `key` (in KEYS or as UNIQ_KEY) stored within
    /// `[begin_ms, end_ms]`, newest first, at most `max` (capped at 64). Every hit is re-checked
    /// against the stored record, so hash collisions never return a wrong message. For more
    /// than 64, page with [`Store::query_by_key_page`].
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
    ) -> Result<Vec<StoredMessage>> {
        Ok(self
            .engine
            .query_by_key_page(topic, key, (begin_ms, end_ms), max, None)?
            .messages)
    }

    /// [`Store::query_by_key`] one page at a time: the hits at CommitLog offsets below `before`
    /// (`None`: from the newest), newest first, at most `max` (capped at 64). Pass the page's
    /// [`KeyPage::next`] as `before` for the next, older page; every hit comes once.
    ///
    /// ```
    /// # use rocketstore::{Message, Store, StoreConfig};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path(), StoreConfig::small()).unwrap();
    /// # for i in 0..100 {
    /// #     store.put(&Message::new("orders", 0, b"x").with_keys(["HOT"])).unwrap();
    /// # }
    /// let mut all = Vec::new();
    /// let mut before = None;
    /// loop {
    ///     let page = store.query_by_key_page("orders", "HOT", 0, i64::MAX, 64, before)?;
    ///     all.extend(page.messages);
    ///     match page.next {
    ///         Some(next) => before = Some(next),
    ///         None => break,
    ///     }
    /// }
    /// assert_eq!(all.len(), 100);
    /// # Ok::<(), rocketstore::Error>(())
    /// ```
    pub fn query_by_key_page(
        &self,
        topic: &str,
        key: &str,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
        before: Option<u64>,
    ) -> Result<KeyPage> {
        self.engine
            .query_by_key_page(topic, key, (begin_ms, end_ms), max, before)
    }

    /// [`Store::offset_for_timestamp_with`] for every queue of `topic`: queue id → offset
    /// (what a consumer seeks each queue to when it rewinds a topic to a time).
    pub fn offsets_for_timestamp(
        &self,
        topic: &str,
        timestamp_ms: i64,
        boundary: TimeBoundary,
    ) -> Result<BTreeMap<i32, u64>> {
        self.engine
            .queue_ids(topic)
            .into_iter()
            .map(|q| {
                self.engine
                    .offset_for_timestamp_with(topic, q, timestamp_ms, boundary)
                    .map(|o| (q, o))
            })
            .collect()
    }

    /// Delivers every scheduled message whose time has come on the store's clock (at most
    /// [`crate::MAX_PASS`] per call: call again while [`DeliveryPass::more`]). The background
    /// thread does this by itself with the system clock; with a
    /// [`ManualClock`](crate::clock::ManualClock), advance the clock and call this.
    pub fn deliver_due(&self) -> Result<DeliveryPass> {
        self.engine.deliver_due()
    }

    /// Per delay level that has messages: how many wait, when the next is due, the progress.
    pub fn schedule_stats(&self) -> Vec<LevelStats> {
        self.engine.schedule_stats()
    }

    /// The settings of consumer group `group` from `config/subscriptionGroup.json` (RocketMQ's
    /// `SubscriptionGroupConfig`), if the file has an entry for it. Its `retryMaxTimes` is the
    /// group's retry limit: it takes precedence over
    /// [`ConsumerConfig::max_reconsume_times`](crate::consumer::ConsumerConfig), which applies
    /// to groups without an entry.
    pub fn subscription_group(
        &self,
        group: &str,
    ) -> Option<crate::format::subscription_group::SubscriptionGroupConfig> {
        self.engine.subscription_group(group)
    }

    /// Every group entry of `config/subscriptionGroup.json`, by name.
    pub fn subscription_groups(
        &self,
    ) -> Vec<crate::format::subscription_group::SubscriptionGroupConfig> {
        self.engine.subscription_groups()
    }

    /// Adds or replaces the settings of `config.group_name` and rewrites
    /// `config/subscriptionGroup.json` as RocketMQ persists a config file: the new version
    /// synced to `.tmp`, the old one kept as `.bak`, `.tmp` renamed into place, the directory
    /// synced. Takes effect for the group's next [`send_back`](crate::consumer::Consumer::send_back)
    /// (and `fail`); survives reopen. [`Error::InvalidGroup`] for a bad name; I/O errors leave
    /// the previous settings in force.
    pub fn set_subscription_group(
        &self,
        config: crate::format::subscription_group::SubscriptionGroupConfig,
    ) -> Result<()> {
        self.engine.set_subscription_group(config)
    }

    /// The dead-letter topic `%DLQ%group`: how many messages it holds past what was purged or
    /// re-driven, and its offsets.
    pub fn dlq(&self, group: &str) -> Result<DlqStats> {
        self.engine.dlq(group)
    }

    /// Puts up to `max` dead letters of `group` (oldest first) back into the topic they first
    /// came from (`RETRY_TOPIC`), reconsume count reset, `UNIQ_KEY` and properties kept, in
    /// the queue [`queue_for_key`](crate::queue_for_key) picks for their first message id among
    /// that topic's queues; then moves the dead-letter topic's purge point past them. Returns
    /// how many. At least once: a crash between the two re-drives them again.
    pub fn dlq_redrive(&self, group: &str, max: usize) -> Result<usize> {
        self.engine.dlq_redrive(group, max)
    }

    /// Gives up every dead letter of `group` now (the dead-letter topic's purge point moves to
    /// its end; the records go with retention). Returns how many.
    pub fn dlq_purge(&self, group: &str) -> Result<u64> {
        self.engine.dlq_purge(group)
    }

    /// Topics that have at least one queue, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.engine.topics()
    }

    /// Queue ids of `topic`, sorted.
    pub fn queue_ids(&self, topic: &str) -> Vec<i32> {
        self.engine.queue_ids(topic)
    }

    /// Makes everything written so far durable: CommitLog, ConsumeQueues, IndexFiles and the
    /// checkpoint.
    pub fn flush(&self) -> Result<()> {
        self.engine.check_open()?;
        self.engine.flush_all()
    }

    /// A snapshot of the store's state: offsets, per-queue counts, bytes on disk, dirty bytes,
    /// dispatch lag, last flush, and why writes are refused, if they are.
    pub fn stats(&self) -> StoreStats {
        self.engine.stats()
    }

    /// Deletes expired CommitLog segments now, whatever the hour (RocketMQ's manual delete):
    /// segments filled more than [`StoreConfig::file_reserved_time`] ago, oldest first, at most
    /// [`StoreConfig::delete_files_batch_max`], never the active one; then the ConsumeQueue and
    /// IndexFiles that point only below the new minimum, and queue min offsets move up. Works
    /// while puts are refused for a full disk.
    pub fn clean_expired_now(&self) -> Result<CleanupReport> {
        self.engine.check_open()?;
        self.engine.clean(Trigger::Manual, None)
    }

    /// Deletes every CommitLog segment that lies wholly below `commitlog_offset` (never the
    /// active one), then the derived files that point only below the new minimum. Readers that
    /// hold views into a deleted segment keep them valid until they drop them.
    pub fn delete_before(&self, commitlog_offset: u64) -> Result<CleanupReport> {
        self.engine.check_open()?;
        self.engine.clean(Trigger::Manual, Some(commitlog_offset))
    }

    /// Flushes everything, writes the checkpoint, removes `abort` and releases the lock.
    /// Further calls on this store return [`Error::Closed`].
    pub fn close(&self) -> Result<()> {
        self.engine.close()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.engine.root().path())
            .field(
                "commitlog_min_offset",
                &self.engine.commitlog().min_offset(),
            )
            .field(
                "commitlog_max_offset",
                &self.engine.commitlog().max_offset(),
            )
            .field("durable_offset", &self.engine.commitlog().flushed_offset())
            .field("closed", &self.engine.check_open().is_err())
            .finish_non_exhaustive()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.engine.close() {
            if !matches!(e, Error::Closed) {
                log::error!(
                    "closing store {} on drop failed: {}",
                    self.engine.root().path().display(),
                    crate::error::chain(&e)
                );
            }
        }
    }
}
