//! [`Store`]: the facade. Opens (recovering) a store root, appends, reads, queries and closes;
//! every call is delegated to the engine (`crate::engine`), which owns the store's state and
//! threads.

use std::path::Path;
use std::sync::Arc;

use crate::config::StoreConfig;
use crate::engine::{Engine, Trigger};
use crate::error::{Error, Result};
use crate::message::Message;
use crate::recovery::RecoveryReport;
use crate::results::{GetOptions, GetResult, PutResult, StoredMessage, TimeBoundary};
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
    /// against the stored record, so hash collisions never return a wrong message.
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        begin_ms: i64,
        end_ms: i64,
        max: usize,
    ) -> Result<Vec<StoredMessage>> {
        self.engine.query_by_key(topic, key, begin_ms, end_ms, max)
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
