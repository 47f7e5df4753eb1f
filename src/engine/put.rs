//! The append path: validate and encode a put outside the lock (into per-thread buffers, so a
//! put allocates nothing once a thread has seen its largest message), then the append critical
//! section (store time, offsets, copy into the CommitLog, dispatch), then the durability wait.

use std::cell::RefCell;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::health::NewFile;
use super::queues::PutQueues;
use super::Engine;
use crate::clock::TimeSource;
use crate::commitlog::Appender;
use crate::config::FlushMode;
use crate::consume_queue::ConsumeQueue;
use crate::dispatch::dispatch;
use crate::error::{chain, Error, Result};
use crate::format::dispatch_entry::DispatchEntry;
use crate::format::offset_commit::{self, OffsetCommit};
use crate::format::properties;
use crate::format::record::{
    self, DispatchProperties, EncodeError, EncodeOptions, EncodedLayout, RecordFields,
};
use crate::format::schedule::{self, DelayLevels};
use crate::format::topic::check_topic;
use crate::message::Message;
use crate::results::{PutResult, PutStatus};

/// What only the append critical section touches (under `Engine::append`).
pub(super) struct AppendState {
    pub(super) appender: Appender,
    pub(super) last_store_timestamp: i64,
    pub(super) queues: PutQueues,
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

/// What a put appends, one record each: a [`Message`], or a stored record that scheduled
/// delivery re-puts as it is ([`Redelivery`](super::schedule::Redelivery)). Generic, so the
/// put path of a [`Message`] stays what it was.
pub(super) trait Outgoing {
    /// The topic.
    fn topic(&self) -> &str;
    /// The queue id.
    fn queue_id(&self) -> i32;
    /// The body.
    fn body(&self) -> &[u8];
    /// Why it cannot be stored (keys, tags and properties), checked before encoding.
    fn validate(&self) -> Result<()>;
    /// Appends the property text to `buf`; returns where the KEYS value went, if any.
    fn encode_properties(&self, buf: &mut Vec<u8>) -> Option<Range<usize>>;
    /// FLAG, BORNTIMESTAMP (`None`: the store time), BORNHOST (`None`: the store host) and
    /// RECONSUMETIMES.
    fn header(&self) -> (i32, Option<i64>, Option<std::net::SocketAddr>, i32);
    /// What dispatch needs from the stored properties (its KEYS come from the encoded text).
    fn dispatch_properties(&self) -> DispatchProperties<'_>;
}

impl Outgoing for Message<'_> {
    fn topic(&self) -> &str {
        Message::topic(self)
    }
    fn queue_id(&self) -> i32 {
        Message::queue_id(self)
    }
    fn body(&self) -> &[u8] {
        Message::body(self)
    }
    fn validate(&self) -> Result<()> {
        validate_message(self)
    }
    fn encode_properties(&self, buf: &mut Vec<u8>) -> Option<Range<usize>> {
        Message::encode_properties(self, buf)
    }
    fn header(&self) -> (i32, Option<i64>, Option<std::net::SocketAddr>, i32) {
        (
            self.flag,
            self.born_timestamp,
            self.born_host,
            self.reconsume_times,
        )
    }
    fn dispatch_properties(&self) -> DispatchProperties<'_> {
        DispatchProperties {
            tags: self.stored_tags(),
            keys: None,
            uniq_key: self.stored_uniq_key(),
            delay: self.stored_property(schedule::DELAY),
            timer_deliver_ms: self.stored_property(schedule::TIMER_DELIVER_MS),
        }
    }
}

/// One put's encoded run of records: its (topic, queue), the messages, and per record its
/// layout and KEYS position (see [`EncodeBuffers`]).
pub(super) struct Run<'r, M> {
    topic: &'r str,
    queue_id: i32,
    msgs: &'r [M],
    layouts: &'r [EncodedLayout],
    keys: &'r [Option<Range<usize>>],
}

/// Counts a put as appending until dropped (see `Inner::appending`).
pub(super) struct Appending<'a>(&'a AtomicUsize);

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

/// Free IndexFile entries a put makes sure of before appending (see `IndexService::reserve`).
const INDEX_RESERVE_ENTRIES: u32 = 16;

thread_local! {
    static BUFFERS: RefCell<EncodeBuffers> = RefCell::new(EncodeBuffers::default());
}

impl Engine {
    /// Appends messages of one (topic, queue) as one contiguous run with consecutive queue
    /// offsets (all or nothing). A message with a delay level or a delivery time goes to the
    /// schedule topic instead (alone: a batch cannot hold one).
    pub(crate) fn put_batch(&self, msgs: &[Message<'_>]) -> Result<PutResult> {
        self.put_batch_with(msgs, true)
    }

    /// [`Engine::put_batch`]; `wait`: in a Sync store, return once the records are durable
    /// (without: once written, for [`Engine::put_with_ack`]).
    fn put_batch_with(&self, msgs: &[Message<'_>], wait: bool) -> Result<PutResult> {
        if let Some(m) = msgs.first() {
            let reserved = match m.topic() {
                offset_commit::TOPIC => {
                    Some("reserved for consumer offset commits (Store::commit_offsets)")
                }
                schedule::SCHEDULE_TOPIC => {
                    Some("reserved for scheduled messages (Message::with_delay_level)")
                }
                _ => None,
            };
            if let Some(reason) = reserved {
                return Err(Error::InvalidTopic {
                    topic: m.topic().into(),
                    reason,
                });
            }
        }
        if let Some(m) = msgs.iter().find(|m| is_scheduled(m)) {
            if msgs.len() > 1 {
                return Err(Error::InvalidArgument(
                    "a batch cannot hold a scheduled message (put it alone)".into(),
                ));
            }
            return match self.scheduled(m)? {
                Some(s) => {
                    let r = self.put_any(&[s], wait);
                    self.schedule_wake.notify();
                    r
                }
                None => self.put_any(&[unscheduled(m)], wait),
            };
        }
        self.put_any(msgs, wait)
    }

    /// Appends like [`Engine::put_batch`] without waiting for durability, and has `callback`
    /// run once the records are durable (see [`acks`](super::acks)).
    pub(crate) fn put_with_ack(
        &self,
        msgs: &[Message<'_>],
        callback: Box<dyn FnOnce(super::AckResult) + Send>,
    ) -> Result<PutResult> {
        let r = self.put_batch_with(msgs, false)?;
        // Not `when_durable`: the records are written, so a `close` racing this must not turn
        // the put into an error; the callback then learns from the durable offset.
        self.register_ack(r.commitlog_offset + r.wrote_bytes as u64, callback);
        Ok(r)
    }

    /// Has `callback` run once every CommitLog byte below `offset` is durable: at once (on
    /// this thread) if it is already, else on the thread whose sync gets there.
    pub(crate) fn when_durable(
        &self,
        offset: u64,
        callback: Box<dyn FnOnce(super::AckResult) + Send>,
    ) -> Result<()> {
        self.check_open()?;
        let max = self.commitlog.max_offset();
        if offset > max {
            return Err(Error::InvalidArgument(format!(
                "offset {offset} is past the end of the CommitLog ({max}): nothing will make it durable"
            )));
        }
        self.register_ack(offset, callback);
        Ok(())
    }

    /// [`Engine::when_durable`] for an `offset` known to be written.
    fn register_ack(&self, offset: u64, callback: Box<dyn FnOnce(super::AckResult) + Send>) {
        self.acks
            .register(offset, || self.commitlog.flushed_offset(), callback);
        if self.config.flush_mode == FlushMode::Sync {
            // Wakes the sync thread if it sleeps; the ticket is not needed.
            let _ = self.group_commit.register(offset);
        }
    }

    /// The schedule-topic message that delivers `m` later, or `None` if its delivery time has
    /// come already (it is then put straight into its topic).
    fn scheduled<'m>(&self, m: &Message<'m>) -> Result<Option<Message<'m>>> {
        self.validate_queue(m.topic(), m.queue_id())?;
        let bad = |name: &str, reason: &'static str| Error::InvalidProperty {
            name: name.into(),
            reason,
        };
        let delay = m.stored_property(schedule::DELAY);
        let timer = m.stored_property(schedule::TIMER_DELIVER_MS);
        let level = match (delay, timer) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    schedule::DELAY,
                    "a message has a delay level or a delivery time, not both",
                ))
            }
            (Some(d), None) => {
                let level: i32 = d
                    .parse()
                    .map_err(|_| bad(schedule::DELAY, "not an integer delay level"))?;
                if level < 1 {
                    return Err(bad(
                        schedule::DELAY,
                        "delay levels start at 1 (no delay: leave the property out)",
                    ));
                }
                if level > self.delays.len() {
                    return Err(Error::InvalidArgument(format!(
                        "delay level {level} is past the table of {} levels (StoreConfig::message_delay_level)",
                        self.delays.len()
                    )));
                }
                level
            }
            (None, Some(t)) => {
                let at: i64 = t
                    .parse()
                    .map_err(|_| bad(schedule::TIMER_DELIVER_MS, "not epoch milliseconds"))?;
                let now = self.config.clock.now_ms();
                let max =
                    i64::try_from(self.config.max_delivery_delay.as_millis()).unwrap_or(i64::MAX);
                if at <= now {
                    return Ok(None);
                }
                if at - now > max {
                    return Err(Error::InvalidArgument(format!(
                        "delivery time {at} is {} ms away, past StoreConfig::max_delivery_delay ({max} ms)",
                        at - now
                    )));
                }
                self.delays.level_for(at - now)
            }
            (None, None) => unreachable!("is_scheduled"),
        };
        Ok(Some(to_schedule(m, level)))
    }

    /// Commits consumer-group offsets: `group` has consumed `topic:queue` up to (not including)
    /// each `(queue, offset)`. Appended as a record of the system topic (see
    /// [`offsets`](super::offsets)): durable on return in Sync mode, or with `durable` in
    /// Async mode (one `fdatasync`); otherwise with the next flush, and never after the
    /// messages put before it. An offset past its queue's max is refused.
    pub(crate) fn commit_offsets(
        &self,
        group: &str,
        topic: &str,
        entries: &[(i32, u64)],
        durable: bool,
    ) -> Result<PutResult> {
        check_topic(group).map_err(|reason| Error::InvalidGroup {
            group: group.into(),
            reason,
        })?;
        for &(queue_id, offset) in entries {
            self.validate_queue(topic, queue_id)?;
            let max = self.queue(topic, queue_id).map_or(0, |q| q.max_offset());
            if offset > max {
                return Err(Error::OffsetPastMax {
                    topic: topic.into(),
                    queue_id,
                    offset,
                    max,
                });
            }
        }
        let mut body = Vec::new();
        let commit = OffsetCommit {
            group,
            topic,
            entries: entries.iter().map(|&(q, o)| (q, o as i64)).collect(),
        };
        offset_commit::encode(&commit, &mut body)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let r = self.put_any(
            &[Message::new(offset_commit::TOPIC, 0, &body).with_tags(group)],
            true,
        )?;
        if durable && self.config.flush_mode == FlushMode::Async && r.status == PutStatus::Ok {
            let durable = self
                .commitlog
                .flush()
                .inspect_err(|e| self.commitlog_sync_failed(e))?;
            self.arrivals.synced();
            self.acks.durable(durable);
        }
        Ok(r)
    }

    /// [`Engine::put_batch`] without the reserved-topic and schedule checks. `wait`: in a
    /// Sync store, return once the records are durable (without: once written, for the
    /// store's own re-puts, whose progress record is what waits).
    pub(super) fn put_any<M: Outgoing>(&self, msgs: &[M], wait: bool) -> Result<PutResult> {
        let inner = self;
        inner.check_writable()?;
        let appending = (inner.config.flush_mode == FlushMode::Sync && wait)
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
            m.validate()?;
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
            let now = inner.config.clock.now_ms();
            for m in msgs {
                props.clear();
                keys.push(m.encode_properties(props));
                let (flag, born_timestamp, born_host, reconsume_times) = m.header();
                let fields = RecordFields {
                    topic,
                    queue_id,
                    flag,
                    sys_flag: 0,
                    born_timestamp: born_timestamp.unwrap_or(now),
                    born_host: born_host.unwrap_or(inner.config.store_host),
                    store_host: inner.config.store_host,
                    reconsume_times,
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
                layouts.push(layout.map_err(|e| encode_error(e, topic))?);
            }
            let run = Run {
                topic,
                queue_id,
                msgs,
                layouts,
                keys,
            };
            inner.append(&run, buf, now, appending, wait)
        })
    }

    pub(super) fn validate_queue(&self, topic: &str, queue_id: i32) -> Result<()> {
        check_topic(topic)
            .and_then(|()| {
                if topic == crate::format::filler::SALVAGE_TOPIC {
                    Err("reserved for the filler records of salvaged CommitLog spans")
                } else {
                    Ok(())
                }
            })
            .map_err(|reason| Error::InvalidTopic {
                topic: topic.into(),
                reason,
            })?;
        self.check_queue_id(topic, queue_id)
    }

    /// The queue-id half of [`Engine::validate_queue`], for a topic whose name is known valid.
    pub(super) fn check_queue_id(&self, topic: &str, queue_id: i32) -> Result<()> {
        // The schedule topic has one queue per delay level, whatever the limit for user topics.
        let limit = if topic == schedule::SCHEDULE_TOPIC {
            self.delays.len() as u32
        } else {
            self.config.max_queues_per_topic
        };
        if queue_id < 0 || queue_id as u32 >= limit {
            return Err(Error::QueueIdOutOfRange { queue_id, limit });
        }
        Ok(())
    }

    /// The append critical section, then the durability wait.
    pub(super) fn append<M: Outgoing>(
        &self,
        run: &Run<'_, M>,
        buf: &mut [u8],
        now_ms: i64,
        appending: Option<Appending<'_>>,
        wait: bool,
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
            let rolls = self.commitlog.would_roll(&st.appender, buf.len());
            if rolls {
                // A roll creates a segment: look at the disk first (between cleaner passes).
                if let Some(reason) = self.disk_over_warning() {
                    self.set_disk_full(Some(reason.clone()));
                    return Err(Error::DiskFull {
                        path: self.root.path().to_path_buf(),
                        reason,
                    });
                }
            }
            let queue = st.queues.get(run.topic, run.queue_id, || {
                self.queue_or_create(run.topic, run.queue_id)
            });
            // Files the dispatch will need exist before the record is in the CommitLog, so a
            // full disk fails the put cleanly instead of leaving a queue behind its log.
            queue
                .reserve(&*self.vfs)
                .map_err(|e| self.explain_enospc(e, NewFile::ConsumeQueue))?;
            if let Some(index) = &self.index {
                index
                    .reserve(&*self.vfs, INDEX_RESERVE_ENTRIES)
                    .map_err(|e| self.explain_enospc(e, NewFile::Index))?;
            }
            st.last_store_timestamp = ts;
            let queue_offset = queue.max_offset();
            let first = self
                .commitlog
                .append(&mut st.appender, buf, layouts, queue_offset, ts)
                .map_err(|e| {
                    if matches!(e, Error::DiskFull { .. }) {
                        // Only a roll creates a file: a full disk there is a segment that
                        // does not fit.
                        if rolls {
                            self.explain_enospc(e, NewFile::Segment)
                        } else {
                            e
                        }
                    } else {
                        self.set_read_only(format!("append failed: {}", chain(&e)));
                        e
                    }
                })?;
            let end = first + buf.len() as u64;
            if let Err(e) = self.dispatch_run(queue, run, buf, first, queue_offset, ts) {
                // The records are in the CommitLog; recovery will dispatch them at the next open.
                self.set_read_only(format!("dispatch failed: {}", chain(&e)));
                return Err(e);
            }
            if run.topic == offset_commit::TOPIC {
                let mut at = first;
                for (m, l) in run.msgs.iter().zip(layouts) {
                    at += l.total_size as u64;
                    self.offsets.apply(m.body(), at);
                }
            }
            self.dispatched_offset.store(end, Ordering::Release);
            (first, end, queue_offset, ts)
        };
        drop(appending);
        self.arrivals.arrived(run.topic, run.queue_id);
        let mut status = PutStatus::Ok;
        if self.config.flush_mode == FlushMode::Sync && wait {
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
    pub(super) fn dispatch_run<M: Outgoing>(
        &self,
        queue: &ConsumeQueue,
        run: &Run<'_, M>,
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
                commitlog_offset: first + pos as u64,
                size: layout.total_size as i32,
                store_timestamp,
                transaction_type: record::TRANSACTION_NOT_TYPE,
                props: DispatchProperties {
                    keys,
                    ..m.dispatch_properties()
                },
            };
            #[cfg(debug_assertions)]
            self.check_dispatch_entry(&entry);
            dispatch(
                &*self.vfs,
                queue,
                self.index.as_ref(),
                &entry,
                false,
                &self.delays,
            )?;
            pos += layout.total_size;
        }
        Ok(())
    }

    /// Debug builds: the record at `entry.commitlog_offset`, decoded from the mapping the way
    /// recovery reads it, describes exactly `entry`.
    #[cfg(debug_assertions)]
    pub(super) fn check_dispatch_entry(&self, entry: &DispatchEntry<'_>) {
        let (file, pos) = self
            .commitlog
            .locate(entry.commitlog_offset, entry.size as usize)
            .expect("just-appended record is readable");
        let bytes = file.read(pos, entry.size as usize).expect("located above");
        use crate::format::record::{DecodeOptions, Decoded};
        let opts = DecodeOptions::structure_only(usize::MAX);
        let Ok(Decoded::Record(rec)) = record::decode(bytes, &opts) else {
            panic!(
                "just-appended record at {} does not decode",
                entry.commitlog_offset
            );
        };
        assert_eq!(DispatchEntry::of_record(&rec), *entry);
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

fn encode_error(e: EncodeError, topic: &str) -> Error {
    match e {
        EncodeError::EmptyTopic => Error::InvalidTopic {
            topic: String::new(),
            reason: "empty",
        },
        EncodeError::TopicTooLong { .. } => Error::InvalidTopic {
            topic: topic.into(),
            reason: "too long",
        },
        EncodeError::BodyTooLarge { len, max } => Error::MessageTooLarge { len, limit: max },
        EncodeError::PropertiesTooLong { len, max } => {
            Error::PropertiesTooLarge { len, limit: max }
        }
        EncodeError::RecordTooLarge { len, max } => Error::MessageTooLarge { len, limit: max },
    }
}

/// Whether `m` asks for scheduled delivery.
fn is_scheduled(m: &Message<'_>) -> bool {
    m.properties
        .iter()
        .any(|(n, _)| n == schedule::DELAY || n == schedule::TIMER_DELIVER_MS)
}

/// `m` without its schedule properties (a delivery time that has come).
fn unscheduled<'m>(m: &Message<'m>) -> Message<'m> {
    let mut out = m.clone();
    out.properties
        .retain(|(n, _)| n != schedule::DELAY && n != schedule::TIMER_DELIVER_MS);
    out
}

/// `m` as a message of the schedule topic's queue for `level`, its real topic and queue in
/// properties (RocketMQ's `CommitLog.putMessage` for a delayed message).
pub(super) fn to_schedule<'m>(m: &Message<'m>, level: i32) -> Message<'m> {
    let mut out = m.clone();
    out.properties.retain(|(n, _)| {
        n != schedule::DELAY && n != schedule::REAL_TOPIC && n != schedule::REAL_QID
    });
    out.properties
        .push((schedule::REAL_TOPIC.into(), m.topic().to_owned().into()));
    out.properties
        .push((schedule::REAL_QID.into(), m.queue_id().to_string().into()));
    out.properties
        .push((schedule::DELAY.into(), level.to_string().into()));
    out.topic = schedule::SCHEDULE_TOPIC.into();
    out.queue_id = DelayLevels::queue_of(level);
    out
}
