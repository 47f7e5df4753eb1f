//! [`Store`]: the facade. Opens (recovering) a store root, appends, reads, queries and closes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex, RwLock};

use crate::checkpoint;
use crate::commitlog::{Appender, CommitLog};
use crate::config::{FlushMode, StoreConfig};
use crate::consume_queue::ConsumeQueue;
use crate::dispatch::{dispatch, DispatchEntry};
use crate::error::{Error, Result};
use crate::format::checkpoint_layout::{Checkpoint, Trailer};
use crate::format::properties;
use crate::format::record::{
    self, DecodeOptions, Decoded, DispatchProperties, EncodeError, EncodeOptions, EncodedLayout,
    RecordFields,
};
use crate::format::FormatError;
use crate::group_commit::{GroupCommit, Trouble};
use crate::index::IndexService;
use crate::message::Message;
use crate::recovery::{self, RecoveryReport};
use crate::results::{
    GetOptions, GetResult, GetStatus, PutResult, PutStatus, StoredMessage, TimeBoundary,
};
use crate::retention::{self, Trigger};
use crate::stats::{CleanupReport, QueueStats, StoreStats};
use crate::storage::{self, LockGuard, OpenMode, OsVfs, Vfs};

/// Longest topic name: it is a directory name under `consumequeue/`.
pub const MAX_TOPIC_LEN: usize = 255;
/// RocketMQ caps one index query at 64 results (`maxMsgsNumBatch`).
pub const MAX_QUERY_RESULTS: usize = 64;

type QueueTable = HashMap<String, HashMap<i32, Arc<ConsumeQueue>, QueueIdHash>>;

/// Hashes a queue id with one multiply instead of SipHash: the queue table is looked up on
/// every put, and the ids are small integers the store validated (`< max_queues_per_topic`), so
/// keyed hashing buys nothing there. Topics keep the default (keyed) hasher.
type QueueIdHash = std::hash::BuildHasherDefault<QueueIdHasher>;

/// See [`QueueIdHash`].
#[derive(Default)]
struct QueueIdHasher(u64);

impl std::hash::Hasher for QueueIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i32(&mut self, id: i32) {
        // Fibonacci hashing: the high bits (hashbrown's tag) and the low bits (its bucket
        // index) both vary with the id.
        self.0 = (u64::from(id as u32) ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

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
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    config: StoreConfig,
    vfs: Arc<dyn Vfs>,
    lock: Mutex<Option<Box<dyn LockGuard>>>,
    commitlog: CommitLog,
    queues: RwLock<QueueTable>,
    index: Option<IndexService>,
    append: Mutex<AppendState>,
    /// Every record below this offset has been dispatched.
    dispatched_offset: AtomicU64,
    closed: AtomicBool,
    read_only: Mutex<Option<String>>,
    /// Puts between their start and the end of their append (Sync mode only): the sync thread
    /// gives them a moment to join its sync.
    appending: AtomicUsize,
    /// A ConsumeQueue unit or IndexFile chain was found damaged while serving reads: the next
    /// checkpoint says so, and the next open rebuilds derived data from the CommitLog.
    derived_damaged: AtomicBool,
    /// True while `read_only` or `disk_full` is set: the put path checks this one atomic and
    /// takes the locks only when it is set.
    refusing: AtomicBool,
    /// Why puts are refused until space returns, and when the disk was last looked at.
    disk_full: Mutex<Option<(String, Instant)>>,
    group_commit: GroupCommit,
    /// The group-commit sync thread (Sync flush mode only).
    syncer: Mutex<Option<JoinHandle<()>>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    cleaner: Mutex<Option<JoinHandle<()>>>,
    /// Serialises cleanup passes (background cleaner and the manual calls).
    cleanup_lock: Mutex<()>,
    /// Serialises `flush_all` (user flush, background flusher, close): each writes the
    /// checkpoint through the same temporary file.
    checkpoint_lock: Mutex<()>,
    stop: (Mutex<bool>, Condvar),
    report: RecoveryReport,
}

struct AppendState {
    appender: Appender,
    last_store_timestamp: i64,
    queues: PutQueues,
}

/// The put path's own handles on the queue table (which only ever grows), kept under the
/// append lock: a put finds its queue without the table's read lock, an `Arc` clone and a
/// keyed hash of its topic. The topic of the previous put is checked first; queue ids below
/// [`DENSE_QUEUE_IDS`] index a vector, larger ones (`max_queues_per_topic` may be up to
/// `i32::MAX`) a map.
#[derive(Default)]
struct PutQueues {
    topics: Vec<(String, TopicQueues)>,
    by_name: HashMap<String, usize>,
    recent: usize,
}

/// One topic's queues in [`PutQueues`].
#[derive(Default)]
struct TopicQueues {
    dense: Vec<Option<Arc<ConsumeQueue>>>,
    sparse: HashMap<i32, Arc<ConsumeQueue>, QueueIdHash>,
}

/// Queue ids below this are looked up by index in [`PutQueues`].
const DENSE_QUEUE_IDS: usize = 4096;

impl PutQueues {
    /// The queue `(topic, queue_id)`, taken from `table` the first time.
    fn get(
        &mut self,
        topic: &str,
        queue_id: i32,
        table: impl FnOnce() -> Arc<ConsumeQueue>,
    ) -> &ConsumeQueue {
        let t = match self.topics.get(self.recent) {
            Some((name, _)) if name == topic => self.recent,
            _ => {
                let t = match self.by_name.get(topic) {
                    Some(&t) => t,
                    None => {
                        self.topics.push((topic.to_owned(), TopicQueues::default()));
                        self.by_name.insert(topic.to_owned(), self.topics.len() - 1);
                        self.topics.len() - 1
                    }
                };
                self.recent = t;
                t
            }
        };
        let queues = &mut self.topics[t].1;
        match usize::try_from(queue_id) {
            Ok(i) if i < DENSE_QUEUE_IDS => {
                if queues.dense.len() <= i {
                    queues.dense.resize(i + 1, None);
                }
                queues.dense[i].get_or_insert_with(table)
            }
            _ => queues.sparse.entry(queue_id).or_insert_with(table),
        }
    }
}

/// Per-thread encode buffers, reused so a put allocates nothing once a thread has seen its
/// largest message.
#[derive(Default)]
struct EncodeBuffers {
    properties: Vec<u8>,
    /// One batch member's record.
    scratch: Vec<u8>,
    /// The run of records appended as one.
    run: Vec<u8>,
    layouts: Vec<EncodedLayout>,
    /// Per record: where its KEYS value is, relative to its property text.
    keys: Vec<Option<Range<usize>>>,
}

/// One put's encoded run of records: its (topic, queue), the messages, and per record its
/// layout and KEYS position (see [`EncodeBuffers`]).
struct Run<'r, 'm> {
    topic: &'r str,
    queue_id: i32,
    msgs: &'r [Message<'m>],
    layouts: &'r [EncodedLayout],
    keys: &'r [Option<Range<usize>>],
}

/// Counts a put as appending until dropped (see `Inner::appending`).
struct Appending<'a>(&'a AtomicUsize);

impl<'a> Appending<'a> {
    fn enter(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::AcqRel);
        Appending(counter)
    }
}

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How long the sync thread waits for puts still appending before it syncs.
const GROUP_GATHER: std::time::Duration = std::time::Duration::from_micros(50);

/// How often a refused put looks at the disk again.
const DISK_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Free IndexFile entries a put makes sure of before appending (see `IndexService::reserve`).
const INDEX_RESERVE_ENTRIES: u32 = 16;

thread_local! {
    static BUFFERS: RefCell<EncodeBuffers> = RefCell::new(EncodeBuffers::default());
}

/// Checks a topic name: non-empty, at most [`MAX_TOPIC_LEN`] bytes, `[%|a-zA-Z0-9_-]` only
/// (RocketMQ's broker rule; it also keeps the name safe as a directory name).
pub(crate) fn check_topic(topic: &str) -> std::result::Result<(), &'static str> {
    if topic.is_empty() {
        return Err("empty");
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err("longer than 255 bytes");
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
    {
        return Err("only [%|a-zA-Z0-9_-] allowed");
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the store at `root` on the real file system, recovering
    /// whatever a previous run left.
    pub fn open(root: impl AsRef<Path>, config: StoreConfig) -> Result<Store> {
        Store::open_on(root, config, Arc::new(OsVfs))
    }

    /// Opens the store through any implementation of the file-system seam
    /// ([`vfs::Vfs`](crate::vfs::Vfs)), such as a simulated disk for crash tests. The
    /// implementation must keep the invariants written on the trait.
    pub fn open_with_vfs(
        root: impl AsRef<Path>,
        config: StoreConfig,
        vfs: Arc<dyn Vfs>,
    ) -> Result<Store> {
        Store::open_on(root, config, vfs)
    }

    /// Opens the store through any file-system implementation.
    pub(crate) fn open_on(
        root: impl AsRef<Path>,
        config: StoreConfig,
        vfs: Arc<dyn Vfs>,
    ) -> Result<Store> {
        config.validate()?;
        let root = root.as_ref().to_path_buf();
        match vfs.metadata(&root).map_err(|e| Error::io(&root, e))? {
            Some(m) if m.kind != storage::FileKind::Dir => {
                return Err(Error::Layout {
                    path: root,
                    reason: "store root is not a directory".into(),
                })
            }
            Some(_) => {}
            None => vfs.create_dir_all(&root).map_err(|e| Error::io(&root, e))?,
        }
        let lock_path = root.join("lock");
        let lock = vfs.lock_exclusive(&lock_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::Locked { path: root.clone() }
            } else {
                Error::io(&lock_path, e)
            }
        })?;
        let abort_path = root.join("abort");
        let abort_present = vfs
            .metadata(&abort_path)
            .map_err(|e| Error::io(&abort_path, e))?
            .is_some();
        let cp = checkpoint::read(&*vfs, &root)?;
        let rec = recovery::recover(&*vfs, &root, &config, abort_present, &cp)?;
        let commitlog_dir = root.join("commitlog");
        vfs.create_dir_all(&commitlog_dir)
            .map_err(|e| Error::io(&commitlog_dir, e))?;
        let commitlog = CommitLog::new(
            vfs.clone(),
            commitlog_dir,
            config.commitlog_segment_size,
            rec.segments,
            rec.end,
            config.preallocate_next_segment,
            config.effective_write_mode(),
        );
        let commitlog = match config.flush_mode {
            FlushMode::Sync => commitlog.with_zeros_ahead(),
            FlushMode::Async => commitlog,
        };
        let appender = commitlog.appender()?;
        let queues: QueueTable = rec
            .queues
            .into_iter()
            .map(|(t, qs)| (t, qs.into_iter().map(|(id, q)| (id, Arc::new(q))).collect()))
            .collect();
        // The abort marker says "running": its presence at the next open means a crash.
        let abort = vfs
            .open_file(&abort_path, OpenMode::CreateOrOpen)
            .map_err(|e| Error::io(&abort_path, e))?;
        abort.set_len(0).map_err(|e| Error::io(&abort_path, e))?;
        abort
            .write_all_at(std::process::id().to_string().as_bytes(), 0)
            .map_err(|e| Error::io(&abort_path, e))?;
        abort.sync_data().map_err(|e| Error::io(&abort_path, e))?;
        vfs.sync_dir(&root).map_err(|e| Error::io(&root, e))?;
        let inner = Arc::new(Inner {
            root,
            vfs,
            lock: Mutex::new(Some(lock)),
            dispatched_offset: AtomicU64::new(rec.end),
            commitlog,
            queues: RwLock::new(queues),
            index: rec.index,
            append: Mutex::new(AppendState {
                appender,
                last_store_timestamp: rec.last_store_timestamp,
                queues: PutQueues::default(),
            }),
            closed: AtomicBool::new(false),
            read_only: Mutex::new(None),
            refusing: AtomicBool::new(false),
            derived_damaged: AtomicBool::new(false),
            appending: AtomicUsize::new(0),
            disk_full: Mutex::new(None),
            group_commit: GroupCommit::default(),
            syncer: Mutex::new(None),
            flusher: Mutex::new(None),
            cleaner: Mutex::new(None),
            cleanup_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
            stop: (Mutex::new(false), Condvar::new()),
            report: rec.report,
            config,
        });
        // Make the recovered state the checkpointed one right away, so a crash before the
        // first periodic flush does not redo this recovery's work.
        inner.flush_all()?;
        let worker = inner.clone();
        let handle = std::thread::Builder::new()
            .name("rocketstore-flusher".into())
            .spawn(move || worker.run_flusher())
            .map_err(|e| Error::io(&inner.root, e))?;
        *inner.flusher.lock() = Some(handle);
        if inner.config.flush_mode == FlushMode::Sync {
            let worker = inner.clone();
            let handle = std::thread::Builder::new()
                .name("rocketstore-sync".into())
                .spawn(move || worker.run_sync())
                .map_err(|e| Error::io(&inner.root, e))?;
            *inner.syncer.lock() = Some(handle);
        }
        let store = Store { inner };
        if store.inner.config.cleaner_enabled {
            let worker = store.inner.clone();
            let handle = std::thread::Builder::new()
                .name("rocketstore-cleaner".into())
                .spawn(move || worker.run_cleaner())
                .map_err(|e| Error::io(&store.inner.root, e))?;
            *store.inner.cleaner.lock() = Some(handle);
        }
        Ok(store)
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The configuration the store runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    /// What recovery found and did when this store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// Appends one message. In Sync mode returns after the record is durable (or the flush
    /// timed out: [`PutStatus::FlushDiskTimeout`]). The message is readable by `get` when this
    /// returns.
    pub fn put(&self, msg: &Message<'_>) -> Result<PutResult> {
        self.put_batch(std::slice::from_ref(msg))
    }

    /// Appends messages of one (topic, queue) as one contiguous run with consecutive queue
    /// offsets (all or nothing).
    pub fn put_batch(&self, msgs: &[Message<'_>]) -> Result<PutResult> {
        let inner = &*self.inner;
        inner.check_writable()?;
        let appending = (inner.config.flush_mode == FlushMode::Sync)
            .then(|| Appending::enter(&inner.appending));
        let first = msgs
            .first()
            .ok_or_else(|| Error::InvalidArgument("empty batch".into()))?;
        let (topic, queue_id) = (first.topic(), first.queue_id());
        inner.validate_queue(topic, queue_id)?;
        let mut body_total = 0usize;
        for m in msgs {
            if m.topic() != topic || m.queue_id() != queue_id {
                return Err(Error::InvalidArgument(
                    "a batch must target a single (topic, queue)".into(),
                ));
            }
            validate_message(m)?;
            body_total += m.body().len();
        }
        if body_total > inner.config.max_message_size {
            return Err(Error::MessageTooLarge {
                len: body_total,
                limit: inner.config.max_message_size,
            });
        }
        BUFFERS.with(|b| {
            let EncodeBuffers {
                properties: props,
                scratch,
                run: buf,
                layouts,
                keys,
            } = &mut *b.borrow_mut();
            buf.clear();
            layouts.clear();
            keys.clear();
            let opts = EncodeOptions {
                append_crc_property: inner.config.append_crc_property,
                max_body_size: inner.config.max_message_size,
            };
            let now = storage::now_ms();
            for m in msgs {
                props.clear();
                keys.push(m.encode_properties(props));
                let fields = RecordFields {
                    topic,
                    queue_id,
                    flag: m.flag,
                    sys_flag: 0,
                    born_timestamp: m.born_timestamp.unwrap_or(now),
                    born_host: m.born_host.unwrap_or(inner.config.store_host),
                    store_host: inner.config.store_host,
                    reconsume_times: m.reconsume_times,
                    prepared_transaction_offset: 0,
                    body: m.body(),
                    properties: props,
                };
                // A single message is encoded straight into the run buffer; batch members are
                // encoded one by one and appended behind each other.
                let layout = if msgs.len() == 1 {
                    record::encode(buf, &fields, &opts)
                } else {
                    record::encode(scratch, &fields, &opts)
                        .inspect(|_| buf.extend_from_slice(scratch))
                };
                layouts.push(layout.map_err(|e| encode_error(e, m))?);
            }
            let run = Run {
                topic,
                queue_id,
                msgs,
                layouts,
                keys,
            };
            inner.append(&run, buf, now, appending)
        })
    }

    /// Reads up to `max` messages of `(topic, queue_id)` starting at queue offset `offset`.
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
        self.inner.check_open()?;
        self.inner.get(topic, queue_id, offset, opts)
    }

    /// The message stored at CommitLog offset `offset` (fully validated, CRCs included).
    pub fn read_at(&self, offset: u64) -> Result<StoredMessage> {
        self.inner.check_open()?;
        self.inner.read_at(offset, true)
    }

    /// Smallest readable queue offset of a queue (0 for an unknown queue).
    pub fn min_offset(&self, topic: &str, queue_id: i32) -> Result<u64> {
        self.inner.check_open()?;
        Ok(self
            .inner
            .queue(topic, queue_id)
            .map_or(0, |q| q.min_offset()))
    }

    /// One past the newest queue offset of a queue (0 for an unknown queue).
    pub fn max_offset(&self, topic: &str, queue_id: i32) -> Result<u64> {
        self.inner.check_open()?;
        Ok(self
            .inner
            .queue(topic, queue_id)
            .map_or(0, |q| q.max_offset()))
    }

    /// Smallest CommitLog offset still stored.
    pub fn commitlog_min_offset(&self) -> u64 {
        self.inner.commitlog.min_offset()
    }

    /// End of the CommitLog (offset the next record gets).
    pub fn commitlog_max_offset(&self) -> u64 {
        self.inner.commitlog.max_offset()
    }

    /// CommitLog offset below which every byte is durable.
    pub fn durable_offset(&self) -> u64 {
        self.inner.commitlog.flushed_offset()
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
        self.inner.check_open()?;
        let Some(q) = self.inner.queue(topic, queue_id) else {
            return Ok(0);
        };
        let (min, max) = (q.min_offset(), q.max_offset());
        let time_of = |n: u64| -> Result<i64> {
            let u = q.unit(n).ok_or_else(|| Error::Corruption {
                path: self.inner.root.join("consumequeue").join(topic),
                offset: n,
                reason: "unit below max offset unreadable".into(),
            })?;
            Ok(self
                .inner
                .read_at(u.commitlog_offset as u64, false)?
                .view()
                .store_timestamp())
        };
        // Store times are non-decreasing along a queue: binary search for the boundary.
        let (mut lo, mut hi) = (min, max);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let t = time_of(mid)?;
            let go_right = match boundary {
                TimeBoundary::Lower => t < timestamp_ms,
                TimeBoundary::Upper => t <= timestamp_ms,
            };
            if go_right {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(match boundary {
            TimeBoundary::Lower => lo,
            TimeBoundary::Upper => lo.saturating_sub(1).max(min),
        })
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
        let inner = &*self.inner;
        inner.check_open()?;
        let Some(index) = &inner.index else {
            return Err(Error::InvalidArgument(
                "the index is disabled (StoreConfig::index_enabled)".into(),
            ));
        };
        let max = max.min(MAX_QUERY_RESULTS);
        if max == 0 {
            return Ok(Vec::new());
        }
        let mut out: Vec<StoredMessage> = Vec::new();
        let mut seen: Vec<u64> = Vec::new();
        // Walk hash matches newest first; only re-checked records count towards `max`, so
        // colliding keys cannot crowd out the one asked for.
        let mut visit = |off: u64| {
            if seen.contains(&off) {
                return true;
            }
            seen.push(off);
            let Ok(m) = inner.read_at(off, false) else {
                return true;
            };
            let v = m.view();
            let t = v.store_timestamp();
            let key_matches =
                v.keys().any(|k| k == key) || v.property(properties::UNIQ_KEY) == Some(key);
            if v.topic() == topic && key_matches && t >= begin_ms && t <= end_ms {
                out.push(m);
            }
            out.len() < max
        };
        let damaged = index.lookup(topic, key, begin_ms, end_ms, &mut visit);
        if damaged.is_empty() {
            return Ok(out);
        }
        // A damaged IndexFile may hide hits: read every record it covers instead (slow, but
        // complete), and have the next open rebuild the index.
        inner.derived_damaged.store(true, Ordering::Release);
        for (first, last) in damaged {
            let mut off = first.max(inner.commitlog.min_offset());
            while off <= last {
                match inner.read_at(off, false) {
                    Ok(m) => {
                        let size = m.size as u64;
                        if !visit(off) {
                            break;
                        }
                        off += size;
                    }
                    // The end of a segment (BLANK) or an unreadable record: go to the next one.
                    Err(_) => {
                        let seg = inner.config.commitlog_segment_size as u64;
                        off = off - off % seg + seg;
                    }
                }
            }
        }
        out.sort_by_key(|m| std::cmp::Reverse(m.view().commitlog_offset()));
        out.truncate(max);
        Ok(out)
    }

    /// Topics that have at least one queue, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = self.inner.queues.read().keys().cloned().collect();
        t.sort();
        t
    }

    /// Queue ids of `topic`, sorted.
    pub fn queue_ids(&self, topic: &str) -> Vec<i32> {
        let mut q: Vec<i32> = self
            .inner
            .queues
            .read()
            .get(topic)
            .map(|m| m.keys().copied().collect())
            .unwrap_or_default();
        q.sort_unstable();
        q
    }

    /// Makes everything written so far durable: CommitLog, ConsumeQueues, IndexFiles and the
    /// checkpoint.
    pub fn flush(&self) -> Result<()> {
        self.inner.check_open()?;
        self.inner.flush_all()
    }

    /// A snapshot of the store's state: offsets, per-queue counts, bytes on disk, dirty bytes,
    /// dispatch lag, last flush, and why writes are refused, if they are.
    pub fn stats(&self) -> StoreStats {
        self.inner.stats()
    }

    /// Deletes expired CommitLog segments now, whatever the hour (RocketMQ's manual delete):
    /// segments filled more than [`StoreConfig::file_reserved_time`] ago, oldest first, at most
    /// [`StoreConfig::delete_files_batch_max`], never the active one; then the ConsumeQueue and
    /// IndexFiles that point only below the new minimum, and queue min offsets move up. Works
    /// while puts are refused for a full disk.
    pub fn clean_expired_now(&self) -> Result<CleanupReport> {
        self.inner.check_open()?;
        self.inner.clean(Trigger::Manual, None)
    }

    /// Deletes every CommitLog segment that lies wholly below `commitlog_offset` (never the
    /// active one), then the derived files that point only below the new minimum. Readers that
    /// hold views into a deleted segment keep them valid until they drop them.
    pub fn delete_before(&self, commitlog_offset: u64) -> Result<CleanupReport> {
        self.inner.check_open()?;
        self.inner.clean(Trigger::Manual, Some(commitlog_offset))
    }

    /// Flushes everything, writes the checkpoint, removes `abort` and releases the lock.
    /// Further calls on this store return [`Error::Closed`].
    pub fn close(&self) -> Result<()> {
        self.inner.close()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.root)
            .field("commitlog_min_offset", &self.inner.commitlog.min_offset())
            .field("commitlog_max_offset", &self.inner.commitlog.max_offset())
            .field("durable_offset", &self.inner.commitlog.flushed_offset())
            .field("closed", &self.inner.closed.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.inner.close() {
            if !matches!(e, Error::Closed) {
                log::error!(
                    "closing store {} on drop failed: {e}",
                    self.inner.root.display()
                );
            }
        }
    }
}

fn validate_message(m: &Message<'_>) -> Result<()> {
    for k in &m.keys {
        if k.is_empty() || k.contains(' ') {
            return Err(Error::InvalidProperty {
                name: properties::KEYS.into(),
                reason: "keys must be non-empty and contain no space",
            });
        }
        properties::check_property(properties::KEYS, k).map_err(|reason| {
            Error::InvalidProperty {
                name: properties::KEYS.into(),
                reason,
            }
        })?;
    }
    if let Some(t) = &m.tags {
        if !t.is_empty() {
            properties::check_property(properties::TAGS, t).map_err(|reason| {
                Error::InvalidProperty {
                    name: properties::TAGS.into(),
                    reason,
                }
            })?;
        }
    }
    for (n, v) in &m.properties {
        if n == properties::TAGS || n == properties::KEYS || n == properties::CRC32 {
            return Err(Error::InvalidProperty {
                name: n.to_string(),
                reason: "reserved: use with_tags / with_keys",
            });
        }
        properties::check_property(n, v).map_err(|reason| Error::InvalidProperty {
            name: n.to_string(),
            reason,
        })?;
    }
    Ok(())
}

fn encode_error(e: EncodeError, m: &Message<'_>) -> Error {
    match e {
        EncodeError::EmptyTopic => Error::InvalidTopic {
            topic: String::new(),
            reason: "empty",
        },
        EncodeError::TopicTooLong { .. } => Error::InvalidTopic {
            topic: m.topic().into(),
            reason: "too long",
        },
        EncodeError::BodyTooLarge { len, max } => Error::MessageTooLarge { len, limit: max },
        EncodeError::PropertiesTooLong { len, max } => {
            Error::PropertiesTooLarge { len, limit: max }
        }
        EncodeError::RecordTooLarge { len, max } => Error::MessageTooLarge { len, limit: max },
    }
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if !self.refusing.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(reason) = &*self.read_only.lock() {
            return Err(Error::ReadOnly {
                reason: reason.clone(),
            });
        }
        self.check_disk_space()
    }

    /// Refuses with [`Error::DiskFull`] while the disk is above the warning ratio. A refusal
    /// looks at the disk again at most once a second, so the store becomes writable by itself
    /// when space returns (the cleaner, or anyone, freed some).
    fn check_disk_space(&self) -> Result<()> {
        let due = match &*self.disk_full.lock() {
            None => return Ok(()),
            Some((_, checked)) => checked.elapsed() >= DISK_RECHECK,
        };
        if due {
            self.set_disk_full(self.disk_over_warning());
        }
        match &*self.disk_full.lock() {
            None => Ok(()),
            Some((reason, _)) => Err(Error::DiskFull {
                path: self.root.clone(),
                reason: reason.clone(),
            }),
        }
    }

    /// Fraction of the root's file system in use, if it can be read.
    fn disk_used_ratio(&self) -> Option<f64> {
        let u = self.vfs.disk_usage(&self.root).ok()?;
        (u.total_bytes > 0)
            .then(|| u.total_bytes.saturating_sub(u.available_bytes) as f64 / u.total_bytes as f64)
    }

    /// The disk-full reason if the disk is at or above the warning ratio.
    fn disk_over_warning(&self) -> Option<String> {
        retention::disk_full_reason(&self.config, self.disk_used_ratio())
    }

    /// Recomputes `refusing` once the disk-full state was cleared (the caller holds the
    /// `disk_full` lock; `read_only` is locked so a concurrent `set_read_only` is not lost).
    fn refusing_after_disk_cleared(&self) {
        let read_only = self.read_only.lock();
        self.refusing.store(read_only.is_some(), Ordering::Release);
    }

    fn set_disk_full(&self, reason: Option<String>) {
        let mut full = self.disk_full.lock();
        match (&*full, reason) {
            (None, Some(r)) => {
                log::warn!("store {}: refusing puts: {r}", self.root.display());
                *full = Some((r, Instant::now()));
                self.refusing.store(true, Ordering::Release);
            }
            (Some(_), Some(r)) => *full = Some((r, Instant::now())),
            (Some(_), None) => {
                log::info!(
                    "store {}: disk space is back, writable again",
                    self.root.display()
                );
                *full = None;
                self.refusing_after_disk_cleared();
            }
            (None, None) => {}
        }
    }

    fn set_read_only(&self, reason: String) {
        log::error!("store {} is now read-only: {reason}", self.root.display());
        let mut read_only = self.read_only.lock();
        read_only.get_or_insert(reason);
        self.refusing.store(true, Ordering::Release);
    }

    fn validate_queue(&self, topic: &str, queue_id: i32) -> Result<()> {
        check_topic(topic).map_err(|reason| Error::InvalidTopic {
            topic: topic.into(),
            reason,
        })?;
        if queue_id < 0 || queue_id as u32 >= self.config.max_queues_per_topic {
            return Err(Error::QueueIdOutOfRange {
                queue_id,
                limit: self.config.max_queues_per_topic,
            });
        }
        Ok(())
    }

    fn queue(&self, topic: &str, queue_id: i32) -> Option<Arc<ConsumeQueue>> {
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

    /// The append critical section, then the durability wait.
    fn append(
        &self,
        run: &Run<'_, '_>,
        buf: &mut [u8],
        now_ms: i64,
        appending: Option<Appending<'_>>,
    ) -> Result<PutResult> {
        let layouts = run.layouts;
        let (first, end, queue_offset, ts) = {
            let mut guard = self.append.lock();
            let st = &mut *guard;
            // Re-check under the lock: a failed sync may have happened while we encoded.
            self.check_writable()?;
            // The clock read once per put (for the born time) also stamps the store time; the
            // max keeps store times monotonic in log order.
            let ts = now_ms.max(st.last_store_timestamp);
            if self.commitlog.would_roll(&st.appender, buf.len()) {
                // A roll creates a segment: look at the disk first (between cleaner passes).
                if let Some(reason) = self.disk_over_warning() {
                    self.set_disk_full(Some(reason.clone()));
                    return Err(Error::DiskFull {
                        path: self.root.clone(),
                        reason,
                    });
                }
            }
            let queue = st.queues.get(run.topic, run.queue_id, || {
                self.queue_or_create(run.topic, run.queue_id)
            });
            // Files the dispatch will need exist before the record is in the CommitLog, so a
            // full disk fails the put cleanly instead of leaving a queue behind its log.
            queue.reserve(&*self.vfs)?;
            if let Some(index) = &self.index {
                index.reserve(&*self.vfs, INDEX_RESERVE_ENTRIES)?;
            }
            st.last_store_timestamp = ts;
            let queue_offset = queue.max_offset();
            let first = self
                .commitlog
                .append(&mut st.appender, buf, layouts, queue_offset, ts)
                .map_err(|e| {
                    if matches!(e, Error::DiskFull { .. }) {
                        e
                    } else {
                        self.set_read_only(format!("append failed: {e}"));
                        e
                    }
                })?;
            let end = first + buf.len() as u64;
            if let Err(e) = self.dispatch_run(queue, run, buf, first, queue_offset, ts) {
                // The records are in the CommitLog; recovery will dispatch them at the next open.
                self.set_read_only(format!("dispatch failed: {e}"));
                return Err(e);
            }
            self.dispatched_offset.store(end, Ordering::Release);
            (first, end, queue_offset, ts)
        };
        drop(appending);
        let mut status = PutStatus::Ok;
        if self.config.flush_mode == FlushMode::Sync {
            status = self.wait_durable(end)?;
        }
        Ok(PutResult {
            status,
            commitlog_offset: first,
            queue_offset,
            message_count: layouts.len(),
            wrote_bytes: buf.len(),
            store_timestamp: ts,
        })
    }

    /// Dispatches the records of `run` just written at `first` (their bytes are `buf`), from
    /// the fields the put encoded rather than by decoding them again. Debug builds decode each
    /// record from the mapping (recovery's path) and check that it describes the same entry.
    fn dispatch_run(
        &self,
        queue: &ConsumeQueue,
        run: &Run<'_, '_>,
        buf: &[u8],
        first: u64,
        first_queue_offset: u64,
        store_timestamp: i64,
    ) -> Result<()> {
        let mut pos = 0usize;
        for (i, (layout, m)) in run.layouts.iter().zip(run.msgs).enumerate() {
            let rec = &buf[pos..pos + layout.total_size];
            let keys = run.keys[i].as_ref().and_then(|r| {
                let props = &rec[layout.properties_pos..];
                std::str::from_utf8(&props[r.start..r.end]).ok()
            });
            let entry = DispatchEntry {
                topic: run.topic,
                queue_id: run.queue_id,
                queue_offset: first_queue_offset + i as u64,
                physical_offset: first + pos as u64,
                size: layout.total_size as i32,
                store_timestamp,
                transaction_type: record::TRANSACTION_NOT_TYPE,
                props: DispatchProperties {
                    tags: m.stored_tags(),
                    keys,
                    uniq_key: m.stored_uniq_key(),
                },
            };
            #[cfg(debug_assertions)]
            self.check_dispatch_entry(&entry);
            dispatch(&*self.vfs, queue, self.index.as_ref(), &entry, false)?;
            pos += layout.total_size;
        }
        Ok(())
    }

    /// Debug builds: the record at `entry.physical_offset`, decoded from the mapping the way
    /// recovery reads it, describes exactly `entry`.
    #[cfg(debug_assertions)]
    fn check_dispatch_entry(&self, entry: &DispatchEntry<'_>) {
        let (file, pos) = self
            .commitlog
            .locate(entry.physical_offset, entry.size as usize)
            .expect("just-appended record is readable");
        let bytes = file.read(pos, entry.size as usize).expect("located above");
        let opts = DecodeOptions::structure_only(usize::MAX);
        let Ok(Decoded::Record(rec)) = record::decode(bytes, &opts) else {
            panic!(
                "just-appended record at {} does not decode",
                entry.physical_offset
            );
        };
        assert_eq!(DispatchEntry::of_record(&rec), *entry);
    }

    /// Waits until every CommitLog byte below `end` is durable (see [`GroupCommit`]), at most
    /// `sync_flush_timeout`.
    fn wait_durable(&self, end: u64) -> Result<PutStatus> {
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
    fn sync_outcome(&self) -> Result<Option<PutStatus>> {
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
        if self.refusing.load(Ordering::Acquire) {
            if let Some(reason) = self.read_only.lock().clone() {
                return Err(Error::ReadOnly { reason });
            }
        }
        Ok(None)
    }

    /// The sync thread of Sync flush mode (see [`GroupCommit`]).
    fn run_sync(&self) {
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
                Ok(_) => {
                    // The target announced in `begin`, even if the flush reached further: a put
                    // that registered during this sync, past its target, sleeps on the next
                    // generation, and only `requested > served` makes that one run.
                    served = served.max(target);
                    gc.finish();
                }
                Err(e) => {
                    let reason = format!("CommitLog sync failed: {e}");
                    let failure = match e {
                        Error::FlushFailed { path, source } => {
                            (path, source.kind(), source.to_string())
                        }
                        other => (
                            self.root.clone(),
                            std::io::ErrorKind::Other,
                            other.to_string(),
                        ),
                    };
                    // The store turns read-only only once the failure is recorded: a waiter
                    // that wakes in between must see `FlushFailed` (its sync failed), not
                    // `ReadOnly`. Everyone waiting fails now, not at their timeout.
                    let requested = gc.fail(failure, || self.set_read_only(reason));
                    served = served.max(target).max(requested);
                }
            }
        }
        gc.wake_everyone();
    }

    /// Stops the sync thread (after `close` flushed): waiters still asleep are woken and see
    /// what is durable.
    fn stop_sync(&self) {
        self.group_commit.stop();
        if let Some(h) = self.syncer.lock().take() {
            let _ = h.join();
        }
    }

    fn get(&self, topic: &str, queue_id: i32, offset: u64, opts: &GetOptions) -> Result<GetResult> {
        let Some(q) = self.queue(topic, queue_id) else {
            return Ok(GetResult::empty(GetStatus::NoMatchedLogicQueue, 0, 0, 0));
        };
        let (min, max) = (q.min_offset(), q.max_offset());
        if max == 0 {
            return Ok(GetResult::empty(GetStatus::NoMessageInQueue, 0, min, max));
        }
        if offset < min {
            return Ok(GetResult::empty(GetStatus::OffsetTooSmall, min, min, max));
        }
        if offset == max {
            return Ok(GetResult::empty(
                GetStatus::OffsetOverflowOne,
                offset,
                min,
                max,
            ));
        }
        if offset > max {
            return Ok(GetResult::empty(
                GetStatus::OffsetOverflowBadly,
                max,
                min,
                max,
            ));
        }
        let max_messages = opts.max_messages.max(1);
        // Examine at most this many units per call (RocketMQ: max(16000 bytes, n * 20)).
        let scan_limit = (max_messages).max(800);
        let mut result = GetResult::empty(GetStatus::OffsetFoundNull, offset, min, max);
        let decode_opts = DecodeOptions {
            verify_body_crc: opts.verify_crc,
            // Checked where present: a RocketMQ-written root has records without it.
            verify_record_crc: opts.verify_crc,
            max_record_size: self.config.max_record_size(),
        };
        let filter = opts.tag_filter.as_ref().filter(|f| !f.is_all());
        let (mut examined, mut filtered, mut removed, mut bytes) = (0usize, false, false, 0usize);
        let mut next = offset;
        'outer: while next < max && examined < scan_limit {
            // Never past the max sampled above: a unit is published in the file just before the
            // queue's max moves, and a result must not run ahead of the max it reports.
            let want = (scan_limit - examined).min((max - next) as usize);
            let Some(run) = q.units_from(next, want) else {
                break;
            };
            for i in 0..run.count {
                let Some(unit) = run.unit(i) else {
                    break 'outer;
                };
                if result.len() >= max_messages {
                    break 'outer;
                }
                if !result.is_empty() && bytes + unit.size.max(0) as usize > opts.max_bytes {
                    break 'outer;
                }
                examined += 1;
                next += 1;
                if let Some(f) = filter {
                    if !f.matches_code(unit.tags_code) {
                        filtered = true;
                        continue;
                    }
                }
                let (off, size) = (unit.commitlog_offset as u64, unit.size as usize);
                let Some((file, pos)) = self.commitlog.locate(off, size) else {
                    if off < self.commitlog.min_offset() {
                        removed = true;
                        continue;
                    }
                    return Err(self.cq_mismatch(
                        &q,
                        next - 1,
                        off,
                        "points past the CommitLog end",
                    ));
                };
                let bytes_at = file.read(pos, size).expect("located");
                let rec = match record::decode_crc_if_present(bytes_at, &decode_opts) {
                    Ok(Decoded::Record(r)) if r.total_size() == size => r,
                    Ok(_) => {
                        return Err(self.cq_mismatch(
                            &q,
                            next - 1,
                            off,
                            "does not point at a record of its size",
                        ))
                    }
                    Err(source) => {
                        if !matches!(
                            source,
                            FormatError::BodyCrcMismatch { .. }
                                | FormatError::RecordCrcMismatch { .. }
                        ) {
                            // No record starts here: the unit may be what is damaged. Have the
                            // next open rebuild derived data (the rebuild's scan finds it if
                            // the CommitLog is what is damaged).
                            self.note_cq_damage(&q, next - 1, "does not point at a record");
                        }
                        return Err(Error::CorruptRecord {
                            path: file.path().to_path_buf(),
                            offset: off,
                            source,
                        });
                    }
                };
                if rec.queue_offset() as u64 != next - 1
                    || rec.queue_id() != queue_id
                    || rec.topic() != topic
                {
                    return Err(self.cq_mismatch(
                        &q,
                        next - 1,
                        off,
                        "points at another queue's record",
                    ));
                }
                if let Some(f) = filter {
                    if !f.matches_tag(rec.tags()) {
                        filtered = true;
                        continue;
                    }
                }
                bytes += size;
                result.push(&file, pos, size);
            }
        }
        result.next_offset = next;
        result.status = if !result.is_empty() {
            GetStatus::Found
        } else if filtered {
            GetStatus::NoMatchedMessage
        } else if removed {
            GetStatus::MessageWasRemoving
        } else {
            GetStatus::OffsetFoundNull
        };
        Ok(result)
    }

    fn cq_mismatch(&self, q: &ConsumeQueue, n: u64, off: u64, what: &str) -> Error {
        self.note_cq_damage(q, n, what);
        Error::Corruption {
            path: crate::consume_queue::queue_dir(&self.root, q.topic(), q.queue_id()),
            offset: n,
            reason: format!("unit {n} (commitlog offset {off}) {what}"),
        }
    }

    /// Logs a damaged ConsumeQueue unit and has the next open rebuild derived data.
    fn note_cq_damage(&self, q: &ConsumeQueue, n: u64, what: &str) {
        log::error!(
            "ConsumeQueue {}:{} unit {n} {what}; derived data will be rebuilt at the next open",
            q.topic(),
            q.queue_id()
        );
        self.derived_damaged.store(true, Ordering::Release);
    }

    fn read_at(&self, offset: u64, verify: bool) -> Result<StoredMessage> {
        let no_record = || Error::NoRecordAt {
            offset,
            min: self.commitlog.min_offset(),
            max: self.commitlog.max_offset(),
        };
        let (file, pos) = self
            .commitlog
            .locate(offset, record::END_FILE_MIN_BLANK_LENGTH)
            .ok_or_else(no_record)?;
        let avail = file.write_position() - pos;
        let bytes = file.read(pos, avail).ok_or_else(no_record)?;
        let opts = DecodeOptions {
            verify_body_crc: verify,
            verify_record_crc: verify,
            max_record_size: self.config.max_record_size(),
        };
        match record::decode_crc_if_present(bytes, &opts) {
            Ok(Decoded::Record(r)) if r.physical_offset() as u64 == offset => Ok(StoredMessage {
                file: file.clone(),
                pos,
                size: r.total_size(),
            }),
            Ok(_) => Err(no_record()),
            // A checksum failure at a record boundary is corruption; anything structural means
            // no record starts at this offset.
            Err(
                source @ (FormatError::BodyCrcMismatch { .. }
                | FormatError::RecordCrcMismatch { .. }),
            ) => Err(Error::CorruptRecord {
                path: file.path().to_path_buf(),
                offset,
                source,
            }),
            Err(_) => Err(no_record()),
        }
    }

    /// Syncs the CommitLog, then derived data, then writes the checkpoint that names both.
    fn flush_all(&self) -> Result<()> {
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
        let mut derived =
            crate::recovery::summarize(all_queues().iter().map(|q| &**q), self.index.as_ref());
        let dispatched = self.dispatched_offset.load(Ordering::Acquire);
        let durable = self
            .commitlog
            .flush()
            .inspect_err(|e| self.set_read_only(format!("CommitLog sync failed: {e}")))?;
        for q in &all_queues() {
            q.flush()?;
        }
        if let Some(i) = &self.index {
            i.flush()?;
        }
        if self.derived_damaged.load(Ordering::Acquire) {
            // A summary no store can have: the next open rebuilds ConsumeQueue and IndexFile.
            derived.queues = u64::MAX;
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
            }),
            ..Checkpoint::default()
        };
        checkpoint::write(&*self.vfs, &self.root, &cp)
    }

    fn run_cleaner(&self) {
        let (stop_lock, stop_cv) = &self.stop;
        loop {
            {
                let mut stopped = stop_lock.lock();
                if !*stopped {
                    stop_cv.wait_for(&mut stopped, self.config.clean_resource_interval);
                }
                if *stopped {
                    return;
                }
            }
            if let Err(e) = self.clean(Trigger::Periodic, None) {
                log::error!("cleanup of {} failed: {e}", self.root.display());
            }
        }
    }

    /// One cleanup pass (spec §8): decide from disk use, hour and trigger; delete CommitLog
    /// segments from the front; then the derived files that point only below the new minimum.
    fn clean(&self, trigger: Trigger, below: Option<u64>) -> Result<CleanupReport> {
        let _pass = self.cleanup_lock.lock();
        let now = storage::now_ms();
        let ratio = self.disk_used_ratio();
        let decision = retention::decide(&self.config, ratio, storage::local_hour(now), trigger);
        self.set_disk_full(decision.disk_full.clone());
        let mut report = CleanupReport {
            disk_used_ratio: ratio,
            ..CleanupReport::default()
        };
        if let Some(reason) = self.read_only.lock().clone() {
            // A store that failed a sync writes nothing until it is reopened.
            if trigger == Trigger::Manual {
                return Err(Error::ReadOnly { reason });
            }
            return Ok(report);
        }
        let reserved =
            i64::try_from(self.config.file_reserved_time.as_millis()).unwrap_or(i64::MAX);
        report.segments_deleted = match below {
            Some(offset) => self
                .commitlog
                .delete_front(usize::MAX, |_, end, _| end <= offset)?,
            None if decision.delete_expired => self.commitlog.delete_front(
                self.config.delete_files_batch_max,
                |_, _, filled_at| {
                    decision.delete_unexpired || retention::expired(filled_at, now, reserved)
                },
            )?,
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
                self.root.display(),
                report.segments_deleted,
                report.consume_queue_files_deleted,
                report.index_files_deleted
            );
        }
        Ok(report)
    }

    fn stats(&self) -> StoreStats {
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
            read_only_reason: self.read_only.lock().clone(),
            disk_full_reason: self.disk_full.lock().as_ref().map(|(r, _)| r.clone()),
            disk_used_ratio: self.disk_used_ratio(),
            queues,
        }
    }

    fn run_flusher(&self) {
        let (stop_lock, stop_cv) = &self.stop;
        let mut last_thorough = Instant::now();
        let mut last_derived = Instant::now();
        let tick = match self.config.flush_mode {
            FlushMode::Async => self.config.flush_interval,
            FlushMode::Sync => self.config.consume_queue_flush_interval,
        }
        .min(self.config.consume_queue_flush_interval);
        loop {
            {
                let mut stopped = stop_lock.lock();
                if !*stopped {
                    stop_cv.wait_for(&mut stopped, tick);
                }
                if *stopped {
                    return;
                }
            }
            let now = Instant::now();
            if self.config.flush_mode == FlushMode::Async {
                let dirty = self.commitlog.max_offset() - self.commitlog.flushed_offset();
                let thorough =
                    now.duration_since(last_thorough) >= self.config.flush_thorough_interval;
                if dirty > 0 && (thorough || dirty >= (self.config.flush_least_pages as u64) * 4096)
                {
                    if thorough {
                        last_thorough = now;
                    }
                    if let Err(e) = self.commitlog.flush() {
                        self.set_read_only(format!("CommitLog sync failed: {e}"));
                    }
                }
            }
            if now.duration_since(last_derived) >= self.config.consume_queue_flush_interval {
                last_derived = now;
                if self.read_only.lock().is_none() {
                    if let Err(e) = self.flush_all() {
                        log::error!("periodic flush of {} failed: {e}", self.root.display());
                    }
                }
            }
        }
    }

    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Err(Error::Closed);
        }
        {
            let (lock, cv) = &self.stop;
            *lock.lock() = true;
            cv.notify_all();
        }
        if let Some(h) = self.flusher.lock().take() {
            let _ = h.join();
        }
        if let Some(h) = self.cleaner.lock().take() {
            let _ = h.join();
        }
        // Wait for in-flight puts: they hold the append lock while writing.
        drop(self.append.lock());
        // Bind first: a guard in the `if let` scrutinee would live through the `else`, where a
        // failed sync calls `set_read_only` and would deadlock on it.
        let read_only = self.read_only.lock().clone();
        let result = if let Some(reason) = read_only {
            // Keep `abort`: the next open must recover, not trust a checkpoint.
            Err(Error::ReadOnly { reason })
        } else {
            let discard = match &self.index {
                Some(index) => index.discard_standby(&*self.vfs),
                None => Ok(()),
            };
            discard
                .and_then(|_| self.flush_all())
                .and_then(|_| self.commitlog.shutdown())
                .and_then(|_| {
                    let abort = self.root.join("abort");
                    self.vfs
                        .remove_file(&abort)
                        .map_err(|e| Error::io(&abort, e))?;
                    self.vfs
                        .sync_dir(&self.root)
                        .map_err(|e| Error::io(&self.root, e))
                })
        };
        self.stop_sync();
        self.lock.lock().take();
        result
    }
}
