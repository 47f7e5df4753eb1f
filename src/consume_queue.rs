//! ConsumeQueue: per (topic, queue), fixed 20-byte units pointing into the CommitLog, so
//! message `n` of a queue is one seek (spec §3).
//!
//! Derived data: everything here can be rebuilt from the CommitLog. Units are appended only by
//! the dispatcher, which runs under the store's append lock (puts) or alone (recovery), so there
//! is one writer; readers see a unit once `max_offset` (Release) covers it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::format::cq_unit::{CqUnit, CQ_UNIT_SIZE};
use crate::format::root::StoreRoot;
use crate::segments::{self, file_name, Segment, SegmentList, Tail};
use crate::storage::{FlushStrategy, MappedFile, MappedWriter, Vfs};

/// Units are written into pages prefaulted this many bytes at a time, one chunk ahead of the
/// writer. A first write into a sparse file's page costs a fault that reads (zeroes) the page
/// in and then a `page_mkwrite`; for 20-byte units that was ~8% of a small put. Prefaulting
/// the whole file instead would write back megabytes of zeros at the first flush.
const PREFAULT_CHUNK: usize = 64 << 10;

/// One queue's ConsumeQueue.
#[derive(Debug)]
pub(crate) struct ConsumeQueue {
    topic: String,
    queue_id: i32,
    files: SegmentList,
    /// First readable logical offset.
    min_offset: AtomicU64,
    /// One past the last unit (logical), published after the unit's bytes.
    max_offset: AtomicU64,
    /// End (`offset + size`) of the record the last unit points at; 0 when empty.
    max_physical_end: AtomicU64,
    writer: Mutex<Option<MappedWriter>>,
}

/// A run of consecutive units borrowed from one file.
pub(crate) struct UnitRun {
    pub file: Arc<MappedFile>,
    /// Byte position of the first unit in `file`.
    pub pos: usize,
    /// Number of units.
    pub count: usize,
}

impl UnitRun {
    pub fn unit(&self, i: usize) -> Option<CqUnit> {
        CqUnit::decode(self.file.read(self.pos + i * CQ_UNIT_SIZE, CQ_UNIT_SIZE)?)
    }
}

impl ConsumeQueue {
    /// A queue with no files yet (created on first append).
    pub fn new_empty(root: &StoreRoot, topic: &str, queue_id: i32, file_size: usize) -> Self {
        ConsumeQueue {
            topic: topic.to_owned(),
            queue_id,
            files: SegmentList::new(root.queue_dir(topic, queue_id), file_size, Vec::new()),
            min_offset: AtomicU64::new(0),
            max_offset: AtomicU64::new(0),
            max_physical_end: AtomicU64::new(0),
            writer: Mutex::new(None),
        }
    }

    /// Loads an existing queue directory: maps its files, finds the end of the written units
    /// (the first invalid unit of the last file) and computes min/max. Any layout problem is an
    /// error: the caller drops the queue and rebuilds it.
    ///
    /// After a crash the bytes past the end may hold units whose pages reached the disk while an
    /// earlier page did not; appends filling the hole would make them look written. So
    /// everything after the end is zeroed and synced before the queue is used, unless `tail` is
    /// [`Tail::Clean`] and the first unit past the end is all zero (a clean shutdown leaves
    /// nothing past the end: the zeroing and its `fdatasync` were most of a clean open's cost).
    pub fn load(
        vfs: &dyn Vfs,
        root: &StoreRoot,
        topic: &str,
        queue_id: i32,
        file_size: usize,
        tail: Tail,
    ) -> Result<Self> {
        let dir = root.queue_dir(topic, queue_id);
        let mut loaded = segments::load_dir(vfs, &dir, file_size, true)?;
        let q = ConsumeQueue::new_empty(root, topic, queue_id, file_size);
        let Some((last_start, last)) = loaded.last_mut() else {
            return Ok(q);
        };
        let units = file_size / CQ_UNIT_SIZE;
        let data = last.readable();
        let valid = (0..units)
            .take_while(|&i| {
                CqUnit::decode(&data[i * CQ_UNIT_SIZE..]).is_some_and(|u| u.is_valid())
            })
            .count();
        let end_pos = valid * CQ_UNIT_SIZE;
        let last_start = *last_start;
        let stale = tail == Tail::MayHoldStale
            || data[end_pos..(end_pos + CQ_UNIT_SIZE).min(file_size)]
                .iter()
                .any(|&b| b != 0);
        if end_pos < file_size {
            if stale {
                last.truncate(end_pos)
            } else {
                last.end_at(end_pos)
            }
            .map_err(|e| Error::io(last.path(), e))?;
        }
        let max = (last_start + end_pos as u64) / CQ_UNIT_SIZE as u64;
        let mut segs = Vec::with_capacity(loaded.len());
        for (start, f) in loaded {
            segs.push(Segment {
                start,
                file: Arc::new(f),
            });
        }
        let first_start = segs[0].start;
        for s in segs {
            q.files.push(s);
        }
        q.max_offset.store(max, Ordering::Release);
        // Min: the first unit that is a real one (RocketMQ pre-fills a queue that starts late).
        let mut min = first_start / CQ_UNIT_SIZE as u64;
        while min < max && q.unit(min).is_some_and(|u| u.is_pre_blank()) {
            min += 1;
        }
        q.min_offset.store(min, Ordering::Release);
        if max > min {
            let u = q.unit(max - 1).expect("unit below max is readable");
            q.max_physical_end
                .store(u.commitlog_offset as u64 + u.size as u64, Ordering::Release);
        }
        Ok(q)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }

    pub fn min_offset(&self) -> u64 {
        self.min_offset.load(Ordering::Acquire)
    }

    pub fn max_offset(&self) -> u64 {
        self.max_offset.load(Ordering::Acquire)
    }

    /// End (offset + size) of the record the newest unit points at; 0 for an empty queue.
    pub fn max_physical_end(&self) -> u64 {
        self.max_physical_end.load(Ordering::Acquire)
    }

    /// Unit `n`, if published.
    pub fn unit(&self, n: u64) -> Option<CqUnit> {
        let byte = n.checked_mul(CQ_UNIT_SIZE as u64)?;
        let seg = self.files.find(byte)?;
        let pos = usize::try_from(byte - seg.start).ok()?;
        CqUnit::decode(seg.file.read(pos, CQ_UNIT_SIZE)?)
    }

    /// The published units from `n` to the end of the file holding `n` (at most `max`).
    pub fn units_from(&self, n: u64, max: usize) -> Option<UnitRun> {
        let byte = n.checked_mul(CQ_UNIT_SIZE as u64)?;
        let seg = self.files.find(byte)?;
        let pos = usize::try_from(byte - seg.start).ok()?;
        let published = seg.file.write_position();
        if pos >= published {
            return None;
        }
        let count = ((published - pos) / CQ_UNIT_SIZE).min(max);
        Some(UnitRun {
            file: seg.file,
            pos,
            count,
        })
    }

    /// Appends unit `queue_offset`. A unit below the current max is a re-dispatch of an existing
    /// one and is skipped; a gap is refused (a queue never has holes), except for the very first
    /// unit of an empty queue when `allow_late_start` (the CommitLog's head was deleted), which
    /// may start anywhere (the files before it are pre-filled the way RocketMQ does it).
    pub fn append(
        &self,
        vfs: &dyn Vfs,
        queue_offset: u64,
        unit: CqUnit,
        allow_late_start: bool,
    ) -> Result<()> {
        let max = self.max_offset();
        if queue_offset < max {
            // Re-dispatch of a record this queue already has: it must be the same record.
            return match self.unit(queue_offset) {
                Some(u) if u.commitlog_offset == unit.commitlog_offset && u.size == unit.size => Ok(()),
                Some(u) if queue_offset < self.min_offset() || u.is_pre_blank() => Ok(()),
                other => Err(Error::Corruption {
                    path: self.files.dir().to_path_buf(),
                    offset: queue_offset,
                    reason: format!(
                        "queue {}:{} offset {queue_offset} already points at {:?}, record at commitlog offset {} claims it",
                        self.topic, self.queue_id, other, unit.commitlog_offset
                    ),
                }),
            };
        }
        // A queue offset no ConsumeQueue can hold (its byte position overflows; only a
        // damaged or forged record carries one) is refused before anything is written.
        let Some(byte) = queue_offset
            .checked_mul(CQ_UNIT_SIZE as u64)
            .filter(|b| b.checked_add(self.files.segment_size() as u64).is_some())
        else {
            return Err(Error::Corruption {
                path: self.files.dir().to_path_buf(),
                offset: queue_offset,
                reason: format!(
                    "queue {}:{} offset {queue_offset} is beyond what a ConsumeQueue can address",
                    self.topic, self.queue_id
                ),
            });
        };
        let mut writer = self.writer.lock();
        if queue_offset > max {
            if max != 0 || self.files.len() != 0 || !allow_late_start {
                return Err(Error::Corruption {
                    path: self.files.dir().to_path_buf(),
                    offset: queue_offset,
                    reason: format!(
                        "queue {}:{} would get a gap: next offset is {max}, record carries {queue_offset}",
                        self.topic, self.queue_id
                    ),
                });
            }
            self.min_offset.store(queue_offset, Ordering::Release);
        }
        let file_size = self.files.segment_size() as u64;
        self.ensure_writer(vfs, &mut writer, byte)?;
        let w = writer.as_mut().expect("writer set above");
        let seg_start = byte - byte % file_size;
        let want_pos = (byte - seg_start) as usize;
        if w.position() < want_pos {
            // First unit of a queue that starts late: pre-fill like RocketMQ.
            let blank = CqUnit::PRE_BLANK.encode();
            while w.position() < want_pos {
                w.append(&blank);
            }
        }
        debug_assert_eq!(w.position(), want_pos);
        if !w.append(&unit.encode()) {
            return Err(Error::Corruption {
                path: w.file().path().to_path_buf(),
                offset: byte,
                reason: "consume queue unit does not fit its file".into(),
            });
        }
        if want_pos / PREFAULT_CHUNK != w.position() / PREFAULT_CHUNK {
            // Entered the next chunk: prefault the one after it (best effort).
            let _ = w.file().prefault_range(
                (w.position() / PREFAULT_CHUNK + 1) * PREFAULT_CHUNK,
                PREFAULT_CHUNK,
            );
        }
        self.max_physical_end.store(
            unit.commitlog_offset as u64 + unit.size as u64,
            Ordering::Release,
        );
        self.max_offset.store(queue_offset + 1, Ordering::Release);
        Ok(())
    }

    /// Makes sure `writer` has room for the unit at byte `byte`, opening the last file or
    /// creating the next one.
    fn ensure_writer(
        &self,
        vfs: &dyn Vfs,
        writer: &mut Option<MappedWriter>,
        byte: u64,
    ) -> Result<()> {
        if writer
            .as_ref()
            .is_some_and(|w| w.remaining() >= CQ_UNIT_SIZE)
        {
            return Ok(());
        }
        let file_size = self.files.segment_size() as u64;
        *writer = None;
        let w = match self.files.last() {
            Some(last) if last.file.write_position() < last.file.size() => {
                last.file.writer().ok_or_else(|| Error::Io {
                    path: last.file.path().to_path_buf(),
                    source: std::io::Error::other("consume queue file already has a writer"),
                })?
            }
            _ => self.create_file(vfs, byte - byte % file_size)?,
        };
        *writer = Some(w);
        Ok(())
    }

    /// Creates the file the next unit goes into, if it is missing, so that a put finds out
    /// about a full disk before its record is in the CommitLog (a record whose unit could not
    /// be written would leave the queue behind its log).
    pub fn reserve(&self, vfs: &dyn Vfs) -> Result<()> {
        // Only a unit that starts a file needs a new one; the put path calls this for every
        // put, so that is checked without the writer lock.
        let next_byte = self.max_offset() * CQ_UNIT_SIZE as u64;
        if self.files.len() > 0 && !next_byte.is_multiple_of(self.files.segment_size() as u64) {
            return Ok(());
        }
        let mut writer = self.writer.lock();
        let byte = self.max_offset() * CQ_UNIT_SIZE as u64;
        if self.max_offset() == 0 && self.files.len() == 0 {
            // An empty queue may still start late (recovery); the put path starts it at 0.
            return self.ensure_writer(vfs, &mut writer, 0);
        }
        self.ensure_writer(vfs, &mut writer, byte)
    }

    fn create_file(&self, vfs: &dyn Vfs, start: u64) -> Result<MappedWriter> {
        let dir = self.files.dir();
        let first_in_dir = self.files.len() == 0;
        if first_in_dir {
            vfs.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let path = dir.join(file_name(start));
        let file = Arc::new(
            MappedFile::create(vfs, &path, self.files.segment_size())
                .map_err(|e| Error::io(path.clone(), e))?,
        );
        let synced = vfs
            .sync_dir(dir)
            .map_err(|e| Error::io(dir, e))
            .and_then(|()| {
                if first_in_dir {
                    // Make the topic and queue directories themselves durable.
                    for d in [dir.parent(), dir.parent().and_then(Path::parent)]
                        .into_iter()
                        .flatten()
                    {
                        vfs.sync_dir(d).map_err(|e| Error::io(d, e))?;
                    }
                }
                Ok(())
            });
        if let Err(e) = synced {
            // Not durable, not in use: remove it so the next attempt can create it again.
            drop(file);
            let _ = vfs.remove_file(&path);
            return Err(e);
        }
        // Without read-around, a fault (and the prefault) brings in the pages asked for, not
        // the whole 5.7 MiB file zero-filled on the put path; best effort.
        let _ = file.advise_random();
        // The first two chunks; each unit that enters a chunk prefaults the one after it.
        let _ = file.prefault_range(0, 2 * PREFAULT_CHUNK);
        let w = file.writer().expect("fresh file has no writer");
        self.files.push(Segment { start, file });
        Ok(w)
    }

    /// Drops units pointing at or beyond `commitlog_end` (recovery cut the CommitLog there).
    /// Works from the end; files left empty are deleted.
    pub fn truncate_beyond(&mut self, vfs: &dyn Vfs, commitlog_end: u64) -> Result<()> {
        let mut max = self.max_offset();
        let min = self.min_offset();
        while max > min {
            match self.unit(max - 1) {
                Some(u)
                    if (u.commitlog_offset as u64).saturating_add(u.size as u64)
                        <= commitlog_end =>
                {
                    break
                }
                _ => max -= 1,
            }
        }
        self.cut_at(vfs, max)
    }

    /// Incremental recovery: drops the units of records starting at or after `dd` (the
    /// checkpoint's derived-durable offset) and any unreadable unit before them, working from the
    /// end. Units written after the checkpoint may be in any state after a power loss (a later
    /// page kept, an earlier one lost), so everything past the last kept unit is zeroed on disk
    /// or its file deleted: no later crash can bring those bytes back. The caller checks that
    /// the last kept unit points at its record.
    pub fn truncate_from(&mut self, vfs: &dyn Vfs, dd: u64) -> Result<()> {
        let mut max = self.max_offset();
        let min = self.min_offset();
        while max > min {
            match self.unit(max - 1) {
                Some(u) if u.is_valid() && (u.commitlog_offset as u64) < dd => break,
                _ => max -= 1,
            }
        }
        self.cut_at(vfs, max)
    }

    /// Makes `max` the end: later units are zeroed (synced), files past it deleted.
    fn cut_at(&mut self, vfs: &dyn Vfs, max: u64) -> Result<()> {
        let min = self.min_offset();
        if max == self.max_offset() {
            return Ok(());
        }
        *self.writer.get_mut() = None;
        let byte = max * CQ_UNIT_SIZE as u64;
        let mut segs = self.files.take_all();
        while let Some(last) = segs.last() {
            if last.start < byte || (last.start == byte && segs.len() == 1) {
                break;
            }
            let last = segs.pop().expect("non-empty");
            last.file
                .delete(vfs)
                .map_err(|e| Error::io(last.file.path(), e))?;
            // Newest first, each removal durable before the next: a crash leaves a prefix.
            vfs.sync_dir(self.files.dir())
                .map_err(|e| Error::io(self.files.dir(), e))?;
        }
        if let Some(last) = segs.pop() {
            let pos = (byte - last.start) as usize;
            let mut file = Arc::try_unwrap(last.file).map_err(|f| Error::Io {
                path: f.path().to_path_buf(),
                source: std::io::Error::other(
                    "consume queue file still referenced during recovery",
                ),
            })?;
            file.truncate(pos).map_err(|e| Error::io(file.path(), e))?;
            segs.push(Segment {
                start: last.start,
                file: Arc::new(file),
            });
        }
        vfs.sync_dir(self.files.dir())
            .map_err(|e| Error::io(self.files.dir(), e))?;
        for s in segs {
            self.files.push(s);
        }
        self.max_offset.store(max, Ordering::Release);
        self.max_physical_end.store(
            match max.checked_sub(1).and_then(|n| self.unit(n)) {
                Some(u) if max > min => u.commitlog_offset as u64 + u.size as u64,
                _ => 0,
            },
            Ordering::Release,
        );
        Ok(())
    }

    /// Retention (spec §8.2): deletes files, oldest first and never the last, whose last unit
    /// points below `commitlog_min`, then moves the min offset to the first unit at or above
    /// it. A queue whose units all point below keeps its max and reads as empty (min = max).
    /// Returns the number of files deleted.
    pub fn delete_expired(&self, vfs: &dyn Vfs, commitlog_min: u64) -> Result<usize> {
        let file_size = self.files.segment_size();
        let mut deleted = 0;
        loop {
            let segs = self.files.snapshot();
            let (Some(first), true) = (segs.first(), segs.len() > 1) else {
                break;
            };
            let last_unit = first
                .file
                .read(file_size - CQ_UNIT_SIZE, CQ_UNIT_SIZE)
                .and_then(CqUnit::decode);
            match last_unit {
                Some(u) if (u.commitlog_offset as u64) < commitlog_min => {}
                _ => break,
            }
            let Some(seg) = self.files.remove_first(first.start) else {
                break;
            };
            seg.file
                .delete(vfs)
                .map_err(|e| Error::io(seg.file.path(), e))?;
            // Oldest first, each removal durable before the next: a crash leaves a suffix.
            vfs.sync_dir(self.files.dir())
                .map_err(|e| Error::io(self.files.dir(), e))?;
            deleted += 1;
        }
        self.advance_min(commitlog_min);
        Ok(deleted)
    }

    /// Moves the min offset to the first unit pointing at or above `commitlog_min` (never
    /// backwards, never below the first file still present): RocketMQ 5's `correctMinOffset`,
    /// run after recovery and after retention. A queue whose units all point below it reads as
    /// empty but keeps its max.
    pub fn advance_min(&self, commitlog_min: u64) {
        let first_file = self
            .files
            .first()
            .map_or(0, |s| s.start / CQ_UNIT_SIZE as u64);
        let (mut lo, mut hi) = (self.min_offset().max(first_file), self.max_offset());
        lo = lo.min(hi);
        // Units point at increasing CommitLog offsets: binary search for the first one >= min.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.unit(mid) {
                Some(u) if (u.commitlog_offset as u64) < commitlog_min || u.is_pre_blank() => {
                    lo = mid + 1
                }
                _ => hi = mid,
            }
        }
        if lo > self.min_offset() {
            self.min_offset.fetch_max(lo, Ordering::AcqRel);
        }
    }

    /// Byte offset (in the queue's unit stream) where its first file starts; `None` without
    /// files.
    pub fn first_file_start(&self) -> Option<u64> {
        self.files.first().map(|s| s.start)
    }

    /// Number of files and bytes of one file.
    pub fn file_count(&self) -> (usize, usize) {
        (self.files.len(), self.files.segment_size())
    }

    /// The files holding units not yet flushed, for [`MappedFile::flush`] from another thread
    /// (recovery writes back a rebuild's units while it goes on dispatching).
    pub fn unflushed_files(&self) -> Vec<Arc<MappedFile>> {
        self.files
            .snapshot()
            .into_iter()
            .filter(|s| s.file.flushed_position() < s.file.write_position())
            .map(|s| s.file)
            .collect()
    }

    /// Bytes of the first file known to be synced (0 without files).
    #[cfg(test)]
    pub fn first_file_flushed(&self) -> usize {
        self.files.first().map_or(0, |s| s.file.flushed_position())
    }

    /// Syncs every file with unflushed units.
    pub fn flush(&self) -> Result<()> {
        for s in self.files.snapshot() {
            if s.file.flushed_position() == s.file.write_position() {
                continue;
            }
            s.file
                .flush(FlushStrategy::Msync)
                .map_err(|e| Error::io(s.file.path(), e))?;
        }
        Ok(())
    }
}
