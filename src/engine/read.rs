//! The read path: `get` through the ConsumeQueue (with the damaged-unit policy), `read_at` by
//! CommitLog offset, lookups by key and by time.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Engine;
use crate::consume_queue::ConsumeQueue;
use crate::error::{Error, Result};
use crate::format::cq_unit::CqUnit;
use crate::format::filler;
use crate::format::properties;
use crate::format::record::{self, DecodeOptions, Decoded};
use crate::format::FormatError;
use crate::results::{
    GetOptions, GetResult, GetStatus, KeyPage, StoredMessage, TagFilter, TimeBoundary,
};
use crate::storage::MappedFile;

/// RocketMQ caps one index query at 64 results (`maxMsgsNumBatch`).
pub const MAX_QUERY_RESULTS: usize = 64;

/// What one ConsumeQueue unit of a `get` came to.
enum UnitRead {
    /// Its record was deleted by retention, or lost in a salvaged CommitLog span.
    Removed,
    /// Its record does not match the tag filter.
    Filtered,
    /// Its record, checked, at `pos` in `file`.
    Found(Arc<MappedFile>, usize),
}

/// The result of a `get` at `offset` that finds nothing by the queue's bounds alone, if any.
fn out_of_bounds(offset: u64, min: u64, max: u64) -> Option<GetResult> {
    let (status, next) = if max == 0 {
        (GetStatus::NoMessageInQueue, 0)
    } else if offset < min {
        (GetStatus::OffsetTooSmall, min)
    } else if offset == max {
        (GetStatus::OffsetOverflowOne, offset)
    } else if offset > max {
        (GetStatus::OffsetOverflowBadly, max)
    } else {
        return None;
    };
    Some(GetResult::empty(status, next, min, max))
}

impl Engine {
    /// Up to `opts.max_messages` messages of `topic:queue_id` from queue offset `offset`, read
    /// through the ConsumeQueue. A unit that does not point at its record is reported as
    /// corruption and has the next open rebuild derived data (see `note_cq_damage`).
    pub(crate) fn get(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        opts: &GetOptions,
    ) -> Result<GetResult> {
        let Some(q) = self.queue(topic, queue_id) else {
            return Ok(GetResult::empty(GetStatus::NoMatchedLogicQueue, 0, 0, 0));
        };
        let min = q.min_offset();
        let max = self.visible_max(&q, opts.durable_only);
        if max < q.max_offset() && offset >= max && offset <= q.max_offset() {
            // Durable only: the message there (or the offset a non-durable read reached) is
            // not durable yet. Nothing new, not an offset to correct.
            return Ok(GetResult::empty(
                GetStatus::OffsetOverflowOne,
                offset,
                min,
                max,
            ));
        }
        if let Some(result) = out_of_bounds(offset, min, max) {
            return Ok(result);
        }
        if opts.max_messages == 0 {
            // Asked for nothing: read nothing, consume nothing. The bounds were checked above,
            // so `Found` only says a message is there to read at `offset`.
            return Ok(GetResult::empty(GetStatus::Found, offset, min, max));
        }
        let max_messages = opts.max_messages;
        // Examine at most this many units per call (RocketMQ: max(16000 bytes, n * 20)).
        let scan_limit = (max_messages).max(800);
        let mut result = GetResult::empty(GetStatus::OffsetFoundNull, offset, min, max);
        let decode_opts = DecodeOptions {
            verify_body_crc: opts.verify_crc,
            // The one CRC rule: checked where present, BODYCRC where absent (RocketMQ 4.x).
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
                if filter.is_some_and(|f| !f.matches_code(unit.tags_code)) {
                    filtered = true;
                    continue;
                }
                let read = match self.read_unit(&q, next - 1, unit, &decode_opts, filter) {
                    Ok(read) => read,
                    // What came before the damaged message is returned; the get that starts at
                    // it gets the error, so a consumer sees it at its exact offset.
                    Err(_) if examined > 1 => {
                        next -= 1;
                        break 'outer;
                    }
                    Err(e) => return Err(e),
                };
                match read {
                    UnitRead::Removed => removed = true,
                    UnitRead::Filtered => filtered = true,
                    UnitRead::Found(file, pos) => {
                        bytes += unit.size as usize;
                        result.push(&file, pos, unit.size as usize);
                    }
                }
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

    /// One past the newest message of `q` a read may return: its max offset, or with
    /// `durable_only` one past its newest message whose record is durable. Units are in
    /// CommitLog order, and only the few newest can be ahead of the durable offset, so the walk
    /// back is short.
    pub(crate) fn visible_max(&self, q: &ConsumeQueue, durable_only: bool) -> u64 {
        let mut max = q.max_offset();
        if !durable_only {
            return max;
        }
        let (min, durable) = (q.min_offset(), self.commitlog.flushed_offset());
        while max > min {
            match q.unit(max - 1) {
                Some(u) if u.commitlog_offset as u64 + u.size as u64 > durable => max -= 1,
                _ => break,
            }
        }
        max
    }

    /// Waits until one of `queues` has a message a read may return at or after its offset
    /// (`(topic, queue id, offset)`; with `durable_only` a durable one) and returns its index,
    /// or `None` once `timeout` passed. Woken by the puts into those queues (or by the syncs,
    /// with `durable_only`), not by polling; [`Error::Closed`] when the store closes meanwhile.
    pub(crate) fn wait_for_messages(
        &self,
        queues: &[(&str, i32, u64)],
        durable_only: bool,
        timeout: std::time::Duration,
    ) -> Result<Option<usize>> {
        self.check_open()?;
        let deadline = std::time::Instant::now() + timeout;
        let keys: Vec<(&str, i32)> = queues.iter().map(|&(t, q, _)| (t, q)).collect();
        let on = if durable_only {
            super::WaitOn::Durable
        } else {
            super::WaitOn::Queues(&keys)
        };
        let mut found = None;
        let ready = self.arrivals.wait(on, deadline, || {
            found = queues.iter().position(|&(topic, queue_id, offset)| {
                self.queue(topic, queue_id)
                    .is_some_and(|q| self.visible_max(&q, durable_only) > offset)
            });
            found.is_some()
        })?;
        Ok(if ready { found } else { None })
    }

    /// [`Engine::get`] that waits, at most `timeout`, while there is nothing to return: no
    /// message at the offset yet, or only messages the tag filter rejects (the wait then goes
    /// on from past them). Returns the first result with messages, or an error, or a bounds
    /// status the caller must act on (`OffsetTooSmall`, `OffsetOverflowBadly`), or, at the
    /// timeout, the last empty result, whose `next_offset` is where to continue.
    pub(crate) fn get_waiting(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        opts: &GetOptions,
        timeout: std::time::Duration,
    ) -> Result<GetResult> {
        let deadline = std::time::Instant::now() + timeout;
        let mut offset = offset;
        loop {
            self.check_open()?;
            let r = self.get(topic, queue_id, offset, opts)?;
            match r.status {
                GetStatus::Found | GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly => {
                    return Ok(r)
                }
                _ if r.next_offset < r.max_offset => {
                    // Filtered, removed or unreadable units before the max: read on.
                    offset = r.next_offset.max(offset + 1);
                    continue;
                }
                _ => {}
            }
            offset = r.next_offset.max(offset);
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero()
                || self
                    .wait_for_messages(&[(topic, queue_id, offset)], opts.durable_only, left)?
                    .is_none()
            {
                return Ok(r);
            }
        }
    }

    /// The record unit `n` of `q` points at, checked: it decodes (CRCs as `opts` says), has the
    /// unit's size, and is message `n` of `q`.
    fn read_unit(
        &self,
        q: &ConsumeQueue,
        n: u64,
        unit: CqUnit,
        opts: &DecodeOptions,
        filter: Option<&TagFilter>,
    ) -> Result<UnitRead> {
        let (off, size) = (unit.commitlog_offset as u64, unit.size as usize);
        let Some((file, pos)) = self.commitlog.locate(off, size) else {
            if off < self.commitlog.min_offset() {
                return Ok(UnitRead::Removed);
            }
            return Err(self.cq_mismatch(q, n, off, "points past the CommitLog end"));
        };
        let bytes_at = file.read(pos, size).expect("located");
        let rec = match record::decode(bytes_at, opts) {
            Ok(Decoded::Record(r)) if r.total_size() == size => r,
            Ok(_) => {
                return Err(self.cq_mismatch(q, n, off, "does not point at a record of its size"))
            }
            Err(source) => {
                if !matches!(
                    source,
                    FormatError::BodyCrcMismatch { .. }
                        | FormatError::RecordCrcMismatch { .. }
                        | FormatError::BadCrcProperty
                ) {
                    // No record starts here: the unit may be what is damaged. Have the next
                    // open rebuild derived data (the rebuild's scan finds it if the CommitLog
                    // is what is damaged).
                    self.note_cq_damage(q, n, "does not point at a record");
                }
                return Err(Error::CorruptRecord {
                    path: file.path().to_path_buf(),
                    offset: off,
                    source,
                });
            }
        };
        if filler::is_filler(rec.topic(), rec.transaction_type()) {
            // A message lost in a salvaged span (recovery's report and `salvaged/` say which).
            return Ok(UnitRead::Removed);
        }
        if rec.queue_offset() as u64 != n
            || rec.queue_id() != q.queue_id()
            || rec.topic() != q.topic()
        {
            return Err(self.cq_mismatch(q, n, off, "points at another queue's record"));
        }
        if filter.is_some_and(|f| !f.matches_tag(rec.tags())) {
            return Ok(UnitRead::Filtered);
        }
        Ok(UnitRead::Found(file, pos))
    }

    pub(super) fn cq_mismatch(&self, q: &ConsumeQueue, n: u64, off: u64, what: &str) -> Error {
        self.note_cq_damage(q, n, what);
        Error::Corruption {
            path: self.root.queue_dir(q.topic(), q.queue_id()),
            offset: n,
            reason: format!("unit {n} (commitlog offset {off}) {what}"),
        }
    }

    /// Logs a damaged ConsumeQueue unit and has the next open rebuild derived data.
    pub(super) fn note_cq_damage(&self, q: &ConsumeQueue, n: u64, what: &str) {
        log::error!(
            "ConsumeQueue {}:{} unit {n} {what}; derived data will be rebuilt at the next open",
            q.topic(),
            q.queue_id()
        );
        self.derived_damaged.store(true, Ordering::Release);
    }

    pub(crate) fn read_at(&self, offset: u64, verify: bool) -> Result<StoredMessage> {
        self.read_at_with(offset, verify, |m, _| m)
    }

    /// [`Engine::read_at`] handing `f` the message and the view decoded to find it (so a
    /// caller that looks at the record does not decode it again).
    pub(crate) fn read_at_with<T>(
        &self,
        offset: u64,
        verify: bool,
        f: impl FnOnce(StoredMessage, crate::message::MessageView<'_>) -> T,
    ) -> Result<T> {
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
        match record::decode(bytes, &opts) {
            Ok(Decoded::Record(r)) if r.physical_offset() as u64 == offset => {
                let m = StoredMessage {
                    file: file.clone(),
                    pos,
                    size: r.total_size(),
                };
                Ok(f(m, crate::message::MessageView::new(r)))
            }
            Ok(_) => Err(no_record()),
            // A checksum failure at a record boundary is corruption; anything structural means
            // no record starts at this offset.
            Err(
                source @ (FormatError::BodyCrcMismatch { .. }
                | FormatError::RecordCrcMismatch { .. }
                | FormatError::BadCrcProperty),
            ) => Err(Error::CorruptRecord {
                path: file.path().to_path_buf(),
                offset,
                source,
            }),
            Err(_) => Err(no_record()),
        }
    }

    /// Queue offset for a time: `Lower` = first message stored at or after it (the queue's max
    /// offset if none); `Upper` = last message stored at or before it (the min offset if none).
    /// An unknown queue gives 0.
    pub(crate) fn offset_for_timestamp_with(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp_ms: i64,
        boundary: TimeBoundary,
    ) -> Result<u64> {
        self.check_open()?;
        let Some(q) = self.queue(topic, queue_id) else {
            return Ok(0);
        };
        let (min, max) = (q.min_offset(), q.max_offset());
        let time_of = |n: u64| -> Result<i64> {
            let u = q.unit(n).ok_or_else(|| Error::Corruption {
                path: self.root.topic_dir(topic),
                offset: n,
                reason: "unit below max offset unreadable".into(),
            })?;
            Ok(self
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
    /// `[begin_ms, end_ms]` at CommitLog offsets below `before` (all if `None`), newest first,
    /// at most `max` (capped at 64). Every hit is re-checked against the stored record, so hash
    /// collisions never return a wrong message.
    pub(crate) fn query_by_key_page(
        &self,
        topic: &str,
        key: &str,
        (begin_ms, end_ms): (i64, i64),
        max: usize,
        before: Option<u64>,
    ) -> Result<KeyPage> {
        self.check_open()?;
        let Some(index) = &self.index else {
            return Err(Error::InvalidArgument(
                "the index is disabled (StoreConfig::index_enabled)".into(),
            ));
        };
        let max = max.min(MAX_QUERY_RESULTS);
        if max == 0 {
            return Ok(KeyPage {
                messages: Vec::new(),
                next: None,
            });
        }
        let mut hits = KeyHits {
            engine: self,
            topic,
            key,
            times: (begin_ms, end_ms),
            before,
            max,
            complete: false,
            out: Vec::new(),
            seen: Vec::new(),
        };
        let mut damaged = index.lookup(topic, key, begin_ms, end_ms, &mut |o| hits.visit(o));
        if !damaged.is_empty() {
            // A damaged IndexFile may hide hits, and the walk may have stopped in an older
            // file before the damaged range was scanned: start again and gather every hit,
            // the damaged ranges by reading every record they cover (slow, but complete), and
            // have the next open rebuild the index.
            self.derived_damaged.store(true, Ordering::Release);
            hits.complete = true;
            hits.out.clear();
            hits.seen.clear();
            damaged = index.lookup(topic, key, begin_ms, end_ms, &mut |o| hits.visit(o));
        }
        // The range comes from the damaged file's header, so it is clamped to the CommitLog:
        // records start in `[min, max)`, and each step below moves forward by a record or to
        // the next segment, so the scan visits at most the log's records plus one step per
        // segment and always ends.
        let seg = self.config.commitlog_segment_size as u64;
        for (first, last) in damaged {
            let (min, max) = (self.commitlog.min_offset(), self.commitlog.max_offset());
            let last = last.min(max.saturating_sub(1));
            let mut off = first.max(min);
            while off <= last && off < max {
                let step = match self.read_at(off, false) {
                    Ok(m) => {
                        hits.visit(off);
                        m.size as u64
                    }
                    // The end of a segment (BLANK) or an unreadable record: go to the next one.
                    Err(_) => seg - off % seg,
                };
                match off.checked_add(step.max(1)) {
                    Some(next) => off = next,
                    None => break,
                }
            }
        }
        let mut out = hits.out;
        out.sort_by_key(|m| std::cmp::Reverse(m.view().commitlog_offset()));
        out.truncate(max);
        let next =
            (out.len() == max).then(|| out.last().expect("max > 0").view().commitlog_offset());
        Ok(KeyPage {
            messages: out,
            next,
        })
    }
}

/// The hits of one key query (see [`Engine::query_by_key_page`]).
struct KeyHits<'a> {
    engine: &'a Engine,
    topic: &'a str,
    key: &'a str,
    times: (i64, i64),
    before: Option<u64>,
    max: usize,
    /// Gather every hit rather than stop at `max` (the index's newest-first order is not
    /// what a damaged file's scan gives).
    complete: bool,
    out: Vec<StoredMessage>,
    seen: Vec<u64>,
}

impl KeyHits<'_> {
    /// Re-checks the record at `off`; whether to go on.
    fn visit(&mut self, off: u64) -> bool {
        if self.before.is_some_and(|b| off >= b) || self.seen.contains(&off) {
            return true;
        }
        self.seen.push(off);
        let Ok(m) = self.engine.read_at(off, false) else {
            return true;
        };
        let v = m.view();
        let t = v.store_timestamp();
        let key_matches =
            v.keys().any(|k| k == self.key) || v.property(properties::UNIQ_KEY) == Some(self.key);
        if v.topic() == self.topic && key_matches && t >= self.times.0 && t <= self.times.1 {
            self.out.push(m);
        }
        self.complete || self.out.len() < self.max
    }
}
