//! Scheduled delivery: RocketMQ's `ScheduleMessageService`, synchronous.
//!
//! A scheduled message waits in its level's queue of the schedule topic; its ConsumeQueue
//! unit's tags code is its delivery time, and a level's units are in delivery order (one
//! delay per level, store times monotonic), so each level is a FIFO read from its progress
//! offset. A delivery pass re-puts every due message into its real topic (or, for an exact
//! delivery time still ahead, into the next hop's level), then commits the levels' new progress
//! offsets as one commit record of the internal group [`PROGRESS_GROUP`] (see
//! [`offsets`](super::offsets)).
//!
//! **At least once, never early.** The progress record is appended after the re-puts, and
//! recovery keeps a prefix of the log, so a recovered progress offset never covers a re-put that
//! was lost; a crash between the re-puts and the progress record delivers those messages again
//! (duplicates bounded by one pass, [`MAX_PASS`], and detectable: the same `UNIQ_KEY` and
//! properties). A message is re-put only when the clock has reached its unit's time.
//!
//! The progress is also written as RocketMQ's `config/delayOffset.json` (level → offset) with
//! the consumer offset snapshot, and read from it when the log has none (a root a broker wrote).

use std::ops::Range;
use std::time::Duration;

use super::offsets::{load_config, write_config};
use super::put::{to_schedule, Outgoing};
use super::Engine;
use crate::clock::TimeSource;
use crate::consume_queue::ConsumeQueue;
use crate::error::{Error, Result};
use crate::format::properties;
use crate::format::record::DispatchProperties;
use crate::format::root::StoreRoot;
use crate::format::schedule::{self, DelayLevels, DelayOffsets, SCHEDULE_TOPIC};
use crate::message::MessageView;
use crate::results::StoredMessage;
use crate::storage::Vfs;

/// The internal consumer group whose committed offsets on the schedule topic are the delivery
/// progress of each level (queue `level - 1`).
pub const PROGRESS_GROUP: &str = "rmq_sys_schedule_progress";

/// Messages one pass re-puts at most before it commits its progress.
pub const MAX_PASS: usize = 4096;

/// What one delivery pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryPass {
    /// Messages put into their real topic.
    pub delivered: usize,
    /// Messages with an exact delivery time still ahead, put into their next level.
    pub hops: usize,
    /// Units that could not be delivered (no record, or no valid real topic): skipped, with an
    /// error log line each.
    pub skipped: usize,
    /// The delivery time of the next message not yet due, if any.
    pub next_due_ms: Option<i64>,
    /// Whether the pass stopped at [`MAX_PASS`] with due messages left.
    pub more: bool,
}

/// Wakes the delivery thread early: a scheduled put, a hop, or `close`. A flag and a condvar of
/// its own, so the thread waits without registering with the arrivals every put looks at
/// (as a waiter there it cost each put of any topic a hash lookup, about 220 instructions).
#[derive(Default)]
pub(crate) struct ScheduleWake {
    pending: parking_lot::Mutex<bool>,
    cv: parking_lot::Condvar,
}

impl ScheduleWake {
    /// Says there is something new to look at.
    pub(crate) fn notify(&self) {
        *self.pending.lock() = true;
        self.cv.notify_all();
    }

    /// Waits up to `timeout` or until notified (since the last wait).
    fn wait(&self, timeout: Duration) {
        let mut pending = self.pending.lock();
        if !*pending {
            self.cv.wait_for(&mut pending, timeout);
        }
        *pending = false;
    }
}

/// One delay level's state in [`crate::Store::schedule_stats`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LevelStats {
    /// The level (1-based).
    pub level: i32,
    /// Its delay in milliseconds.
    pub delay_ms: i64,
    /// Messages waiting in it.
    pub pending: u64,
    /// The delivery time of its next message.
    pub next_due_ms: Option<i64>,
    /// Its progress: the next queue offset of the schedule topic's queue `level - 1`.
    pub progress: u64,
}

impl Engine {
    /// The next queue offset to deliver of `level`.
    fn progress(&self, level: i32) -> u64 {
        let queue_id = DelayLevels::queue_of(level);
        let min = self
            .queue(SCHEDULE_TOPIC, queue_id)
            .map_or(0, |q| q.min_offset());
        self.offsets
            .get(PROGRESS_GROUP, SCHEDULE_TOPIC, queue_id)
            .and_then(|o| u64::try_from(o).ok())
            .unwrap_or(0)
            .max(min)
    }

    /// Delivers every scheduled message due at the clock's now (at most [`MAX_PASS`]).
    pub(crate) fn deliver_due(&self) -> Result<DeliveryPass> {
        self.check_open()?;
        let _one_pass = self.schedule_lock.lock();
        let now = self.config.clock.now_ms();
        let mut pass = DeliveryPass::default();
        let mut progress = Vec::new();
        let mut failed = None;
        for level in 1..=self.delays.len() {
            let queue_id = DelayLevels::queue_of(level);
            let Some(q) = self.queue(SCHEDULE_TOPIC, queue_id) else {
                continue;
            };
            let start = self.progress(level);
            let (done, result) = self.deliver_level(&q, level, start, now, &mut pass);
            if done > start {
                progress.push((queue_id, done));
            }
            if let Err(e) = result {
                // Nothing past `done` is committed: a later pass delivers it.
                failed = Some(e);
                break;
            }
        }
        if !progress.is_empty() {
            self.commit_offsets(PROGRESS_GROUP, SCHEDULE_TOPIC, &progress, false)?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(pass),
        }
    }

    /// Delivers the due messages of one level from queue offset `start`. Consecutive messages
    /// bound for one (topic, queue) are re-put as one batch (one append, one dispatch run).
    /// Returns the queue offset up to which every message's re-put is done, and the error that
    /// stopped it, if any.
    fn deliver_level(
        &self,
        q: &ConsumeQueue,
        level: i32,
        start: u64,
        now: i64,
        pass: &mut DeliveryPass,
    ) -> (u64, Result<()>) {
        let mut done = start;
        let mut at = start;
        // The run being gathered: records due for `dest`, and the size of their records so
        // far (the batch's bodies must stay within `max_message_size`, and the batch well
        // within a segment).
        let mut run: Vec<(StoredMessage, Shape)> = Vec::new();
        // The run's destination (meaningful while `run` is not empty), and the next record's
        // real topic: two buffers swapped, so a level's runs allocate no topic names.
        let (mut dest, mut dest_qid, mut next_topic) = (String::new(), 0, String::new());
        // The last real topic whose name was found valid.
        let mut valid_topic = String::new();
        let mut run_bytes = 0usize;
        let limit = self
            .config
            .max_message_size
            .min(self.config.commitlog_segment_size / 4);
        loop {
            let next = if at < q.max_offset() {
                q.unit(at)
            } else {
                None
            };
            let due = next.filter(|u| u.tags_code <= now);
            if let (Some(u), None) = (next, due) {
                pass.next_due_ms =
                    Some(pass.next_due_ms.map_or(u.tags_code, |d| d.min(u.tags_code)));
            }
            let full = pass.delivered + pass.hops + run.len() >= MAX_PASS;
            if full && due.is_some() {
                pass.more = true;
            }
            let unit = match due {
                Some(u) if !full => u,
                _ => {
                    if let Err(e) = self.put_run(&mut run, (&dest, dest_qid), pass) {
                        return (done, Err(e));
                    }
                    return (at, Ok(()));
                }
            };
            let read = self.read_at_with(unit.commitlog_offset as u64, false, |m, v| {
                classify(self, m, v, now, &mut valid_topic, &mut next_topic)
            });
            let target = match read {
                Ok(t) => t,
                Err(e @ (Error::NoRecordAt { .. } | Error::CorruptRecord { .. })) => {
                    Target::Skip(e.to_string())
                }
                Err(e) => Target::Fail(e),
            };
            match target {
                Target::Deliver(m, qid, shape) => {
                    // Its record's size, with room for a longer topic name and a new CRC.
                    let len = m.size + next_topic.len() + 64;
                    let same = dest == next_topic && dest_qid == qid;
                    if !run.is_empty() && (!same || run_bytes + len > limit) {
                        if let Err(e) = self.put_run(&mut run, (&dest, dest_qid), pass) {
                            return (done, Err(e));
                        }
                        done = at;
                        run_bytes = 0;
                    }
                    if run.is_empty() {
                        std::mem::swap(&mut dest, &mut next_topic);
                        dest_qid = qid;
                    }
                    run_bytes += len;
                    run.push((m, shape));
                }
                Target::Hop(m, level) => {
                    if let Err(e) = self.put_run(&mut run, (&dest, dest_qid), pass) {
                        return (done, Err(e));
                    }
                    done = at;
                    run_bytes = 0;
                    let v = m.view();
                    let real = v.property(schedule::REAL_TOPIC).unwrap_or_default();
                    let qid = v
                        .property(schedule::REAL_QID)
                        .and_then(|q| q.parse().ok())
                        .unwrap_or(0);
                    let msg = to_schedule(&v.copy_without(real, qid, &[schedule::DELAY]), level);
                    if let Err(e) = self.put_any(&[msg], false) {
                        return (done, Err(e));
                    }
                    // Its level may have been looked at already in this pass.
                    self.schedule_wake.notify();
                    pass.hops += 1;
                }
                Target::Skip(why) => {
                    log::error!(
                        "scheduled message at CommitLog offset {} (level {level}, queue offset {at}) cannot be delivered: {why}; skipping it",
                        unit.commitlog_offset
                    );
                    pass.skipped += 1;
                }
                Target::Fail(e) => {
                    if let Err(e2) = self.put_run(&mut run, (&dest, dest_qid), pass) {
                        return (done, Err(e2));
                    }
                    return (at, Err(e));
                }
            }
            at += 1;
            if run.is_empty() {
                done = at;
            }
        }
    }

    /// Re-puts the gathered run into `dest` as one batch (RocketMQ's `messageTimeup`: the
    /// level and an exact time go, REAL_TOPIC / REAL_QID stay) and empties it. Records whose
    /// properties are in the order this store writes them go as [`Redelivery`]s (their stored
    /// property text and body reused as they are); a run holding any other record (a broker's
    /// map order, say) goes through [`MessageView::copy_without`](crate::MessageView), which
    /// writes the same bytes for the first kind.
    fn put_run(
        &self,
        run: &mut Vec<(StoredMessage, Shape)>,
        (topic, queue_id): (&str, i32),
        pass: &mut DeliveryPass,
    ) -> Result<()> {
        if run.is_empty() {
            return Ok(());
        }
        let gone = [schedule::DELAY, schedule::TIMER_DELIVER_MS];
        if let [(one, shape)] = run.as_slice() {
            // The common case when consecutive due messages go to different queues: no vectors.
            let v = one.view();
            match Redelivery::new(v, *shape, topic, queue_id) {
                Some(r) => self.put_any(&[r], false)?,
                None => self.put_any(&[v.copy_without(topic, queue_id, &gone)], false)?,
            };
        } else {
            let views: Vec<_> = run.iter().map(|(m, s)| (m.view(), *s)).collect();
            let raw: Option<Vec<_>> = views
                .iter()
                .map(|&(v, s)| Redelivery::new(v, s, topic, queue_id))
                .collect();
            match raw {
                Some(raw) => self.put_any(&raw, false)?,
                None => {
                    let msgs: Vec<_> = views
                        .iter()
                        .map(|(v, _)| v.copy_without(topic, queue_id, &gone))
                        .collect();
                    self.put_any(&msgs, false)?
                }
            };
        }
        pass.delivered += run.len();
        run.clear();
        Ok(())
    }

    /// Per level with messages: pending count, next delivery time, progress.
    pub(crate) fn schedule_stats(&self) -> Vec<LevelStats> {
        (1..=self.delays.len())
            .filter_map(|level| {
                let q = self.queue(SCHEDULE_TOPIC, DelayLevels::queue_of(level))?;
                let progress = self.progress(level);
                Some(LevelStats {
                    level,
                    delay_ms: self.delays.delay_ms(level),
                    pending: q.max_offset().saturating_sub(progress),
                    next_due_ms: q.unit(progress).map(|u| u.tags_code),
                    progress,
                })
            })
            .collect()
    }

    /// The delivery thread: passes, then a wait until the next message is due or a scheduled
    /// put (or a hop) comes in.
    pub(super) fn run_scheduler(&self) {
        loop {
            let wait = match self.deliver_due() {
                Ok(p) if p.more => Duration::ZERO,
                Ok(p) => p.next_due_ms.map_or(Duration::from_secs(1), |due| {
                    let ms = due.saturating_sub(self.config.clock.now_ms()).max(0);
                    Duration::from_millis(ms as u64).min(Duration::from_secs(1))
                }),
                Err(Error::Closed) => return,
                Err(e) => {
                    // A full disk or a read-only store: nothing was lost, try again later.
                    log::warn!("scheduled delivery: {e}; retrying in 1 s");
                    Duration::from_secs(1)
                }
            };
            if wait.is_zero() {
                continue;
            }
            self.schedule_wake.wait(wait);
            if self.check_open().is_err() || self.workers.stopped() {
                return;
            }
        }
    }

    /// Seeds the progress from `config/delayOffset.json` for levels the log has none of (a
    /// root RocketMQ wrote).
    pub(super) fn seed_schedule_progress(&self, file: Option<DelayOffsets>) {
        let Some(file) = file else { return };
        for (level, offset) in file {
            let queue_id = DelayLevels::queue_of(level);
            if self
                .offsets
                .get(PROGRESS_GROUP, SCHEDULE_TOPIC, queue_id)
                .is_none()
            {
                self.offsets
                    .seed(PROGRESS_GROUP, SCHEDULE_TOPIC, queue_id, offset);
            }
        }
    }
}

/// What a due scheduled record becomes.
enum Target {
    /// Put into its real topic (left in `classify`'s `topic_out`) and this queue; the shape
    /// of its properties.
    Deliver(StoredMessage, i32, Shape),
    /// An exact time still ahead: put into this level again.
    Hop(StoredMessage, i32),
    /// Not deliverable (why).
    Skip(String),
    /// Reading it failed: the pass stops.
    Fail(Error),
}

/// Where the scheduled record `m` (`v` its view) goes at `now`; for [`Target::Deliver`], its
/// real topic is left in `topic_out`. `valid_topic`: a topic name already found valid (only
/// the queue id is checked for it), updated to this record's when that is checked.
fn classify(
    engine: &Engine,
    m: StoredMessage,
    v: MessageView<'_>,
    now: i64,
    valid_topic: &mut String,
    topic_out: &mut String,
) -> Target {
    let Scan {
        topic,
        qid,
        exact,
        shape,
    } = scan(v.raw_properties());
    let Some(topic) = topic else {
        return Target::Skip("no REAL_TOPIC property".into());
    };
    let Some(queue_id) = qid.and_then(|q| q.parse::<i32>().ok()) else {
        return Target::Skip("no valid REAL_QID property".into());
    };
    let checked = if topic == valid_topic.as_str() {
        engine.check_queue_id(topic, queue_id)
    } else {
        engine.validate_queue(topic, queue_id).inspect(|()| {
            valid_topic.clear();
            valid_topic.push_str(topic);
        })
    };
    if let Err(e) = checked {
        return Target::Skip(e.to_string());
    }
    match exact.and_then(|t| t.parse::<i64>().ok()) {
        Some(t) if t > now => {
            let level = engine.delays.level_for(t - now);
            Target::Hop(m, level)
        }
        _ => {
            topic_out.clear();
            topic_out.push_str(topic);
            Target::Deliver(m, queue_id, shape)
        }
    }
}

/// What one pass over a scheduled record's property text finds.
struct Scan<'a> {
    /// REAL_TOPIC, REAL_QID and TIMER_DELIVER_MS (the last of each, if UTF-8).
    topic: Option<&'a str>,
    qid: Option<&'a str>,
    exact: Option<&'a str>,
    shape: Shape,
}

/// The properties a delivery needs (last occurrence wins), names compared as bytes and only
/// those values decoded, and the text's [`Shape`]: one pass.
fn scan(text: &[u8]) -> Scan<'_> {
    let base = text.as_ptr() as usize;
    let (mut topic, mut qid, mut exact) = (None, None, None);
    let mut shape = Shape {
        raw: true,
        ..Shape::default()
    };
    let (mut keys_seen, mut user, mut covered) = (false, false, 0usize);
    for (n, val) in properties::iter(text) {
        let start = n.as_ptr() as usize - base;
        let value_at = start + n.len() + 1;
        covered += n.len() + val.len() + 2;
        // `iter` gives non-empty names without separators and non-empty values without 0x02:
        // check_property refuses only a value holding a 0x01.
        if val.contains(&properties::NAME_VALUE_SEPARATOR) {
            shape.raw = false;
        }
        let mut drop = false;
        match n {
            n if n == properties::TAGS.as_bytes() => {
                shape.raw &= shape.tags.is_none() && !keys_seen && !user;
                shape.tags = Some((value_at, val.len()));
            }
            n if n == properties::KEYS.as_bytes() => {
                // copy_without drops empty keys: only text without them is kept as is.
                shape.raw &=
                    !keys_seen && !user && !val.split(|&b| b == b' ').any(<[u8]>::is_empty);
                keys_seen = true;
                shape.keys = Some((value_at, val.len()));
            }
            n if n == properties::CRC32.as_bytes() || n == schedule::DELAY.as_bytes() => {
                drop = true
            }
            n if n == schedule::TIMER_DELIVER_MS.as_bytes() => {
                exact = std::str::from_utf8(val).ok();
                drop = true;
            }
            n => {
                user = true;
                if n == schedule::REAL_TOPIC.as_bytes() {
                    topic = std::str::from_utf8(val).ok();
                } else if n == schedule::REAL_QID.as_bytes() {
                    qid = std::str::from_utf8(val).ok();
                } else if n == properties::UNIQ_KEY.as_bytes() {
                    shape.uniq_key = Some((value_at, val.len()));
                }
            }
        }
        if drop {
            match shape.drops.get_mut(shape.n_drops) {
                Some(d) => {
                    *d = (start, value_at + val.len() + 1);
                    shape.n_drops += 1;
                }
                None => shape.raw = false,
            }
        }
    }
    // Every byte in a pair with its separator (nothing `iter` skips), and UTF-8 as a whole:
    // then so is every name and value (split at ASCII separators), as copy_without needs.
    shape.raw &= covered == text.len() && std::str::from_utf8(text).is_ok();
    Scan {
        topic,
        qid,
        exact,
        shape,
    }
}

/// Where a scheduled record's property text holds what a re-put needs, found by [`classify`]
/// (positions relative to the text), and whether it can be re-put as it is: `raw` when the
/// text is in the order [`Message::encode_properties`](crate::Message) writes (TAGS first,
/// then KEYS, then the rest), every pair ends in its separator, and a put would refuse none of
/// it; then leaving out the `drops` spans gives exactly what the
/// [`MessageView::copy_without`](crate::MessageView) message would encode.
#[derive(Clone, Copy, Debug, Default)]
struct Shape {
    raw: bool,
    /// (start, len) of the TAGS, KEYS and UNIQ_KEY values (the last of each).
    tags: Option<(usize, usize)>,
    keys: Option<(usize, usize)>,
    uniq_key: Option<(usize, usize)>,
    /// The pairs left out (`__CRC32#`, `DELAY`, `TIMER_DELIVER_MS`), in order, as ranges.
    drops: [(usize, usize); 4],
    n_drops: usize,
}

/// A due scheduled record re-put into its real topic as it is stored: its body and property
/// text reused (without `DELAY`, `TIMER_DELIVER_MS` and the old `__CRC32#`), its flag, born
/// time and host and reconsume count kept. Only for a [`Shape`] that is `raw`, so it encodes
/// exactly what the [`MessageView::copy_without`](crate::MessageView) message would.
pub(super) struct Redelivery<'a> {
    view: MessageView<'a>,
    shape: Shape,
    topic: &'a str,
    queue_id: i32,
    tags: Option<&'a str>,
    uniq_key: Option<&'a str>,
}

impl<'a> Redelivery<'a> {
    /// `None` if `shape` (of `view`) is not `raw` (the caller then goes through
    /// [`MessageView::copy_without`]).
    fn new(
        view: MessageView<'a>,
        shape: Shape,
        topic: &'a str,
        queue_id: i32,
    ) -> Option<Redelivery<'a>> {
        if !shape.raw {
            return None;
        }
        let text = view.raw_properties();
        let value = |at: Option<(usize, usize)>| {
            at.and_then(|(s, l)| std::str::from_utf8(text.get(s..s + l)?).ok())
        };
        Some(Redelivery {
            view,
            shape,
            topic,
            queue_id,
            tags: value(shape.tags),
            uniq_key: value(shape.uniq_key),
        })
    }
}

impl Outgoing for Redelivery<'_> {
    fn topic(&self) -> &str {
        self.topic
    }
    fn queue_id(&self) -> i32 {
        self.queue_id
    }
    fn body(&self) -> &[u8] {
        self.view.body()
    }
    fn validate(&self) -> Result<()> {
        // Checked in `Redelivery::new`.
        Ok(())
    }
    fn encode_properties(&self, buf: &mut Vec<u8>) -> Option<Range<usize>> {
        let text = self.view.raw_properties();
        let start = buf.len();
        let (mut at, mut dropped_before_keys) = (0, 0);
        let keys_at = self.shape.keys.map(|(s, _)| s);
        for &(from, to) in &self.shape.drops[..self.shape.n_drops] {
            buf.extend_from_slice(&text[at..from]);
            if keys_at.is_some_and(|k| k > from) {
                dropped_before_keys += to - from;
            }
            at = to;
        }
        buf.extend_from_slice(&text[at..]);
        self.shape.keys.map(|(s, l)| {
            let s = start + s - dropped_before_keys;
            s..s + l
        })
    }
    fn header(&self) -> (i32, Option<i64>, Option<std::net::SocketAddr>, i32) {
        let v = &self.view;
        (
            v.flag(),
            Some(v.born_timestamp()),
            Some(v.born_host()),
            v.reconsume_times(),
        )
    }
    fn dispatch_properties(&self) -> DispatchProperties<'_> {
        DispatchProperties {
            tags: self.tags,
            uniq_key: self.uniq_key,
            ..DispatchProperties::default()
        }
    }
}

/// Reads `config/delayOffset.json` (or its `.bak`); `None` if neither exists.
pub(super) fn load_delay_offsets(vfs: &dyn Vfs, root: &StoreRoot) -> Result<Option<DelayOffsets>> {
    load_config(
        vfs,
        &root.delay_offsets(""),
        &root.delay_offsets(".bak"),
        |text| schedule::parse_delay_offsets(text).map_err(|e| e.to_string()),
    )
}

/// Writes `config/delayOffset.json` from the progress in `table`, if it has any.
pub(super) fn write_delay_offsets(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    table: &super::offsets::Table,
) -> Result<()> {
    let key: &dyn super::offsets::TopicGroup = &(SCHEDULE_TOPIC, PROGRESS_GROUP);
    let Some(progress) = table.get(key) else {
        return Ok(());
    };
    let levels: DelayOffsets = progress.iter().map(|(&q, &o)| (q + 1, o)).collect();
    let text = schedule::encode_delay_offsets(&levels);
    write_config(vfs, root, |s| root.delay_offsets(s), &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::record::{self, DecodeOptions, Decoded, EncodeOptions, RecordFields};
    use proptest::prelude::*;

    /// A record of topic `T` with exactly `props` as its property text.
    fn record(props: &[u8]) -> Vec<u8> {
        let host = "127.0.0.1:10911".parse().unwrap();
        let fields = RecordFields {
            topic: "SCHEDULE_TOPIC_XXXX",
            queue_id: 0,
            flag: 3,
            sys_flag: 0,
            born_timestamp: 7,
            born_host: host,
            store_host: host,
            reconsume_times: 2,
            prepared_transaction_offset: 0,
            body: b"body",
            properties: props,
        };
        let opts = EncodeOptions {
            append_crc_property: false,
            max_body_size: 1 << 20,
        };
        let mut buf = Vec::new();
        record::encode(&mut buf, &fields, &opts).unwrap();
        buf
    }

    /// Pairs and junk a property text can be made of: this store's names, a broker's order,
    /// empty keys, separators inside values, bytes that are not UTF-8.
    fn piece() -> impl Strategy<Value = Vec<u8>> {
        let names = prop::sample::select(vec![
            "TAGS",
            "KEYS",
            "UNIQ_KEY",
            "DELAY",
            "TIMER_DELIVER_MS",
            "__CRC32#",
            "REAL_TOPIC",
            "REAL_QID",
            "a",
            "b",
        ]);
        let values = prop::sample::select(vec![
            &b"x"[..],
            b"k1 k2",
            b" k",
            b"k  j",
            b"k ",
            b"v\x01w",
            b"\xff\xfe",
            b"1",
        ]);
        prop_oneof![
            8 => (names, values).prop_map(|(n, v)| {
                let mut p = n.as_bytes().to_vec();
                p.push(1);
                p.extend_from_slice(v);
                p.push(2);
                p
            }),
            1 => Just(b"junk\x02".to_vec()),
            1 => Just(b"\x01x\x02".to_vec()),
        ]
    }

    proptest! {
        /// Wherever the raw path is taken, it encodes exactly what copy_without's message
        /// encodes, with the same KEYS position and dispatch properties, and that message is
        /// one a put accepts.
        #[test]
        fn the_raw_re_put_encodes_what_copy_without_does(
            pieces in prop::collection::vec(piece(), 0..8),
            strip_last in any::<bool>(),
        ) {
            let mut text: Vec<u8> = pieces.concat();
            if strip_last && text.last() == Some(&2) {
                text.pop();
            }
            let rec = record(&text);
            let Ok(Decoded::Record(r)) = record::decode(&rec, &DecodeOptions::structure_only(usize::MAX)) else {
                panic!("does not decode");
            };
            let view = MessageView::new(r);
            let shape = scan(view.raw_properties()).shape;
            let Some(raw) = Redelivery::new(view, shape, "T", 1) else {
                return Ok(());
            };
            let msg = view.copy_without("T", 1, &[schedule::DELAY, schedule::TIMER_DELIVER_MS]);
            prop_assert!(Outgoing::validate(&msg).is_ok());
            let (mut a, mut b) = (vec![9u8], vec![9u8]);
            let ka = raw.encode_properties(&mut a);
            let kb = Outgoing::encode_properties(&msg, &mut b);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(ka, kb);
            prop_assert_eq!(raw.header(), Outgoing::header(&msg));
            prop_assert_eq!(raw.body(), Outgoing::body(&msg));
            let (da, db) = (raw.dispatch_properties(), msg.dispatch_properties());
            prop_assert_eq!((da.tags, da.uniq_key, da.delay, da.timer_deliver_ms),
                (db.tags, db.uniq_key, db.delay, db.timer_deliver_ms));
        }
    }

    #[test]
    fn this_stores_scheduled_text_takes_the_raw_path_and_a_brokers_order_does_not() {
        let ours = b"TAGS\x01A\x02KEYS\x01k1 k2\x02UNIQ_KEY\x01U\x02REAL_TOPIC\x01T\x02REAL_QID\x011\x02DELAY\x011\x02__CRC32#\x010123456789\x02";
        let s = scan(ours);
        assert!(s.shape.raw);
        assert_eq!((s.topic, s.qid, s.shape.n_drops), (Some("T"), Some("1"), 2));
        let broker = b"REAL_TOPIC\x01T\x02TAGS\x01A\x02REAL_QID\x011\x02DELAY\x011";
        assert!(!scan(broker).shape.raw);
    }
}
