//! The CommitLog: fixed-size mapped segments holding every record in append order; the only
//! source of truth (spec §1, §2).
//!
//! Appends happen under the store's append lock through an [`Appender`]; readers find records
//! through the segment list and see bytes once the segment's write position covers them. The
//! next segment is created and allocated by a background [`Allocator`] so that a roll does not
//! wait for the disk, and the same thread prefaults the active segment a window ahead of the
//! writer ([`WARM_AHEAD`]), so appends take no page faults without a whole segment of zero
//! pages being dirtied long before it is written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::config::WriteMode;
use crate::error::{Error, Result};
use crate::format::record::{self, EncodedLayout, END_FILE_MIN_BLANK_LENGTH};
use crate::segments::{file_name, Segment, SegmentList};
use crate::storage::{FlushStrategy, MappedFile, MappedWriter, Vfs};

/// With Sync flush in WriteBuffer mode, zeros are written this far ahead of the records (see
/// [`MappedWriter::write_zeros_ahead`]), topped up when half of the window is used. Measured
/// with 1 KiB Sync puts (`cargo bench --bench append`): 256 KiB took 16 producers from 41.9 k to
/// 64.0 k puts/s and one producer's p50 from 114 to 89 µs with p99 unchanged; 1 MiB and 4 MiB
/// windows gave about the same throughput but put their zero write into the p99 (1.8-2.4 ms at
/// 16 producers), as the sync that writes a window out carries all of it.
const ZERO_AHEAD: usize = 256 << 10;

/// In Mmap write mode, the allocator thread keeps the active segment prefaulted this far ahead
/// of the write position, asked for [`WARM_CHUNK`] at a time by the appender.
///
/// Why a window and not the whole next segment, as before: a fresh root's first segment was
/// written cold (a fault on every folio, on the put path) while the allocator prefaulted all of
/// the *next* 1 GiB on the other core; on this VM first-touch memory costs ~4 µs a page (free
/// page reporting, MACHINE.md), so that prefault took seconds of CPU for pages a short run never
/// used, and dirty zero pages written back before the writer reached them (30 s) were faulted
/// again. Measured with 2 GiB of async puts on a fresh root, first / second segment, against
/// the whole-segment prefault in the same minute: 1 KiB 2.57 / 2.18 GB/s (was 1.65 / 0.36),
/// 16 KiB 5.70 / 5.48 GB/s (was 3.38 / 1.98); see the README's Performance section.
const WARM_AHEAD: usize = 32 << 20;

/// The step in which the appender asks for the window to move.
const WARM_CHUNK: usize = 8 << 20;

/// The allocator prefaults at most this much per `madvise` call.
const WARM_STEP: usize = 1 << 20;

/// The allocator prefaults nothing closer than this to the writer: a fault there would wait
/// for the folios a prefault holds locked, read-around (`read_ahead_kb`, 8 MiB here) included.
/// Measured with 3 GiB of 1 KiB async puts, where the writer runs about as fast as the
/// prefault: without the lead they kept colliding (0.6 M puts/s against 1.9 M with no
/// prefault at all).
const WARM_MIN_LEAD: usize = 12 << 20;

/// The CommitLog.
#[derive(Debug)]
pub(crate) struct CommitLog {
    vfs: Arc<dyn Vfs>,
    segments: SegmentList,
    /// End of the last published record.
    max_offset: AtomicU64,
    /// Every byte below this is durable.
    flushed_offset: AtomicU64,
    /// Serialises flushes (group-commit sync thread, periodic flusher, close); holds whether
    /// a sync has failed. After a failed fsync the kernel may have dropped the dirty pages and a
    /// later sync can succeed without them, so a failure is final for this instance: no later
    /// flush may turn it into an acknowledgement.
    flush_lock: Mutex<bool>,
    /// Wall-clock time (ms) of the last flush that made bytes durable; 0 if none yet.
    last_flush_ms: AtomicI64,
    allocator: Option<Allocator>,
    write_mode: WriteMode,
    /// Bytes of zeros kept written ahead of the records (0: none); see [`ZERO_AHEAD`].
    zero_ahead: usize,
}

/// Append-side state, owned by whoever holds the store's append lock.
#[derive(Debug)]
pub(crate) struct Appender {
    writer: Option<MappedWriter>,
    /// Start offset of the segment `writer` writes (or of the next one to create).
    start: u64,
    /// The allocator was asked for the segment after `start`. Not at open: a store opened to
    /// read, or closed before it writes, should not create and prefault a whole segment (1 GiB
    /// of zeros by default, written on the second core while recovery runs on the first).
    next_requested: bool,
    /// The allocator was asked to prefault `writer`'s segment up to here ([`WARM_AHEAD`]);
    /// `usize::MAX` when it is not to be warmed (opened from disk, or no prefault).
    warmed_until: usize,
}

impl CommitLog {
    /// Wraps recovered segments. `end` is the recovered end of the log (also the durable offset:
    /// recovery only keeps what it read back from disk).
    pub fn new(
        vfs: Arc<dyn Vfs>,
        dir: PathBuf,
        size: usize,
        segs: Vec<Segment>,
        end: u64,
        preallocate: bool,
        write_mode: WriteMode,
    ) -> Self {
        // Written with pwrite, a segment needs no write prefault of its mapping.
        // The store resolves `Auto` by flush mode; unresolved, it means the mapping.
        let write_mode = match write_mode {
            WriteMode::Auto => WriteMode::Mmap,
            mode => mode,
        };
        let prefault = write_mode == WriteMode::Mmap;
        let allocator =
            preallocate.then(|| Allocator::start(vfs.clone(), dir.clone(), size, prefault));
        CommitLog {
            vfs,
            segments: SegmentList::new(dir, size, segs),
            max_offset: AtomicU64::new(end),
            flushed_offset: AtomicU64::new(end),
            flush_lock: Mutex::new(false),
            last_flush_ms: AtomicI64::new(0),
            allocator,
            write_mode,
            zero_ahead: 0,
        }
    }

    /// Keeps zeros written ahead of the records (WriteBuffer mode only), for Sync flush: each
    /// group commit then overwrites blocks instead of converting unwritten extents.
    pub fn with_zeros_ahead(mut self) -> Self {
        if self.write_mode == WriteMode::WriteBuffer {
            self.zero_ahead = ZERO_AHEAD;
        }
        self
    }

    /// The appender positioned at the end of the log.
    pub fn appender(&self) -> Result<Appender> {
        let end = self.max_offset();
        let size = self.segments.segment_size() as u64;
        if let Some(last) = self.segments.last() {
            if last.file.write_position() < last.file.size() {
                let writer = last.file.writer().ok_or_else(|| Error::Io {
                    path: last.file.path().to_path_buf(),
                    source: std::io::Error::other("segment already has a writer"),
                })?;
                // A segment opened from disk is flushed with fdatasync, which would also
                // write back prefaulted zero pages ahead of the writer: not warmed.
                let warmed_until = if last.file.is_fresh() { 0 } else { usize::MAX };
                return Ok(Appender {
                    writer: Some(writer),
                    start: last.start,
                    next_requested: false,
                    warmed_until,
                });
            }
            return Ok(Appender {
                writer: None,
                start: last.start + size,
                next_requested: false,
                warmed_until: usize::MAX,
            });
        }
        Ok(Appender {
            writer: None,
            start: end - end % size,
            next_requested: false,
            warmed_until: usize::MAX,
        })
    }

    pub fn dir(&self) -> &Path {
        self.segments.dir()
    }

    pub fn max_offset(&self) -> u64 {
        self.max_offset.load(Ordering::Acquire)
    }

    pub fn flushed_offset(&self) -> u64 {
        self.flushed_offset.load(Ordering::Acquire)
    }

    /// Smallest offset still stored.
    pub fn min_offset(&self) -> u64 {
        self.segments.first().map_or(self.max_offset(), |s| s.start)
    }

    /// Appends `buf`, which holds whole encoded records described by `layouts`, as one
    /// contiguous run in one segment (a batch is all-or-nothing, spec §1.8). Fills each record's
    /// queue offset (`first_queue_offset + i`), physical offset and store time, then copies the
    /// run into the mapping once. Returns the physical offset of the first record.
    pub fn append(
        &self,
        app: &mut Appender,
        buf: &mut [u8],
        layouts: &[EncodedLayout],
        first_queue_offset: u64,
        store_timestamp: i64,
    ) -> Result<u64> {
        let total = buf.len();
        let fits = |w: &MappedWriter| w.remaining() >= total + END_FILE_MIN_BLANK_LENGTH;
        if !app.writer.as_ref().is_some_and(fits) {
            self.roll(app)?;
        } else if !app.next_requested {
            if let Some(a) = &self.allocator {
                a.request(app.start + self.segments.segment_size() as u64);
            }
            app.next_requested = true;
        }
        let writer = app.writer.as_mut().expect("roll leaves a writer");
        if writer.position() + total + WARM_AHEAD > app.warmed_until {
            if let Some(a) = &self.allocator {
                app.warmed_until =
                    a.warm(writer.file(), app.warmed_until, writer.position() + total);
            }
        }
        let first = app.start + writer.position() as u64;
        let mut pos = 0;
        for (i, l) in layouts.iter().enumerate() {
            let rec = &mut buf[pos..pos + l.total_size];
            record::finalize(
                rec,
                l,
                (first_queue_offset + i as u64) as i64,
                (first + pos as u64) as i64,
                store_timestamp,
            );
            pos += l.total_size;
        }
        debug_assert_eq!(pos, total);
        let appended = match self.write_mode {
            WriteMode::Mmap | WriteMode::Auto => writer.append(buf),
            WriteMode::WriteBuffer => {
                let end = writer.position() + total;
                if self.zero_ahead > 0 && end + self.zero_ahead / 2 > writer.zeroed_until() {
                    // Best effort: only the speed of later syncs depends on it.
                    let _ = writer.write_zeros_ahead(end + self.zero_ahead);
                }
                writer
                    .append_via_file(buf)
                    .map_err(|e| Error::io(writer.file().path(), e))?
            }
        };
        debug_assert!(appended, "space was checked above");
        self.max_offset
            .store(first + total as u64, Ordering::Release);
        Ok(first)
    }

    /// Fills the rest of the active segment with a BLANK record and moves to the next segment.
    fn roll(&self, app: &mut Appender) -> Result<()> {
        let size = self.segments.segment_size() as u64;
        if let Some(mut w) = app.writer.take() {
            let remaining = w.remaining();
            if remaining > 0 {
                let pos = w.position();
                w.write_unpublished(pos, &record::blank_record(remaining as u32));
                w.publish(w.file().size());
            }
            app.start += size;
            self.max_offset.store(app.start, Ordering::Release);
        }
        let start = app.start;
        let (file, warmed) = match &self.allocator {
            Some(a) => a.take(start)?,
            None => (
                create_segment(
                    &*self.vfs,
                    self.dir(),
                    start,
                    self.segments.segment_size(),
                    0,
                )?,
                0,
            ),
        };
        // Warmed by the allocator from here on (mmap write mode only).
        app.warmed_until = match &self.allocator {
            Some(a) if a.shared.prefault => warmed,
            _ => usize::MAX,
        };
        let file = Arc::new(file);
        let writer = file.writer().expect("fresh segment has no writer");
        self.segments.push(Segment { start, file });
        if let Some(a) = &self.allocator {
            a.request(start + size);
        }
        app.next_requested = true;
        app.writer = Some(writer);
        Ok(())
    }

    /// The segment and in-segment position of the `len` bytes at `offset`, if all published.
    pub fn locate(&self, offset: u64, len: usize) -> Option<(Arc<MappedFile>, usize)> {
        let seg = self.segments.find(offset)?;
        let pos = usize::try_from(offset - seg.start).ok()?;
        seg.file.read(pos, len)?;
        Some((seg.file, pos))
    }

    /// Makes every byte appended so far durable (one sync per segment touched). Returns the new
    /// durable offset. A failed sync leaves the durable offset where it was, and every later
    /// flush fails too.
    pub fn flush(&self) -> Result<u64> {
        let mut failed = self.flush_lock.lock();
        let mut durable = self.flushed_offset();
        if *failed {
            return Err(Error::FlushFailed {
                path: self
                    .segments
                    .find(durable)
                    .map_or_else(PathBuf::new, |s| s.file.path().to_path_buf()),
                source: std::io::Error::other(
                    "an earlier sync of the CommitLog failed; reopen the store to recover",
                ),
            });
        }
        let target = self.max_offset();
        if durable >= target {
            return Ok(durable);
        }
        while durable < target {
            let Some(seg) = self.segments.find(durable) else {
                break;
            };
            // A segment created here: msync of just the unflushed range. fdatasync would also
            // write back the prefaulted (dirty) zero pages ahead of the writer, and the next
            // write into each of them would fault again. A segment opened from disk may sit in
            // large folios, where msync of a page writes the whole folio: fdatasync there.
            let strategy = if seg.file.is_fresh() && self.write_mode == WriteMode::Mmap {
                FlushStrategy::Msync
            } else {
                FlushStrategy::Fdatasync
            };
            let flushed = seg.file.flush(strategy).map_err(|source| {
                *failed = true;
                Error::FlushFailed {
                    path: seg.file.path().to_path_buf(),
                    source,
                }
            })?;
            let new = seg.start + flushed as u64;
            if new <= durable {
                break;
            }
            durable = new;
            self.flushed_offset.fetch_max(durable, Ordering::AcqRel);
            self.last_flush_ms
                .store(crate::storage::now_ms(), Ordering::Release);
        }
        Ok(durable)
    }

    /// Wall-clock time (ms) of the last flush that made bytes durable, if any.
    pub fn last_flush_ms(&self) -> Option<i64> {
        Some(self.last_flush_ms.load(Ordering::Acquire)).filter(|&t| t > 0)
    }

    /// Number of segment files and the size of one.
    pub fn segment_count(&self) -> (usize, usize) {
        (self.segments.len(), self.segments.segment_size())
    }

    /// Whether appending `len` bytes would make the appender roll to a new segment.
    pub fn would_roll(&self, app: &Appender, len: usize) -> bool {
        app.writer
            .as_ref()
            .is_none_or(|w| w.remaining() < len + END_FILE_MIN_BLANK_LENGTH)
    }

    /// When segment `seg` was filled: the store time of the first record of the segment after
    /// it (the last write into `seg` happened just before). `None` if the next segment has no
    /// readable first record yet.
    fn filled_at(next: &Segment) -> Option<i64> {
        let head = next.file.read(0, next.file.write_position())?;
        let opts = record::DecodeOptions::structure_only(usize::MAX);
        match record::decode(head, &opts) {
            Ok(record::Decoded::Record(r)) => Some(r.store_timestamp()),
            _ => None,
        }
    }

    /// Deletes segments from the front, oldest first, at most `max_files`, never the last one
    /// (the append target), stopping at the first segment `delete` refuses: `delete(start,
    /// end, filled_at_ms)`. Files are unlinked at once (in order, so a crash never leaves a hole
    /// in the list); readers holding views into them keep a valid mapping until they drop it,
    /// and the kernel frees the blocks then. Returns the number deleted.
    pub fn delete_front(
        &self,
        max_files: usize,
        mut delete: impl FnMut(u64, u64, Option<i64>) -> bool,
    ) -> Result<usize> {
        let size = self.segments.segment_size() as u64;
        let mut deleted = 0;
        while deleted < max_files {
            let segs = self.segments.snapshot();
            let (Some(first), Some(next)) = (segs.first(), segs.get(1)) else {
                break;
            };
            if !delete(first.start, first.start + size, Self::filled_at(next)) {
                break;
            }
            let Some(seg) = self.segments.remove_first(first.start) else {
                break;
            };
            if let Err(e) = seg.file.delete(&*self.vfs) {
                // Put it back: the file is still there and still the oldest.
                let err = Error::io(seg.file.path(), e);
                self.segments.push_front(seg);
                return Err(err);
            }
            // Each removal durable before the next: a crash may undo any unsynced directory
            // operation on its own, and an undone older removal behind a kept newer one would
            // leave a gap in the log.
            let dir = self.dir();
            self.vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
            log::info!("retention deleted {}", seg.file.path().display());
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Stops the allocator and removes a prepared but unused segment.
    pub fn shutdown(&self) -> Result<()> {
        if let Some(a) = &self.allocator {
            a.shutdown()?;
        }
        Ok(())
    }
}

/// What to prefault of a segment of `size` bytes when an append will end at `end`: from the
/// start of a request still pending for it (`pending`) or else from `from` (the end of what
/// was asked before), to [`WARM_AHEAD`] past `end` rounded up to [`WARM_CHUNK`]s and clamped to
/// the file; and the new end of what was asked, `usize::MAX` once that is the file's end.
fn warm_window(
    pending: Option<usize>,
    from: usize,
    end: usize,
    size: usize,
) -> (std::ops::Range<usize>, usize) {
    let until = ((end + WARM_AHEAD).div_ceil(WARM_CHUNK) * WARM_CHUNK).min(size);
    let start = pending.unwrap_or(from).min(until);
    let next = if until >= size { usize::MAX } else { until };
    (start..until, next)
}

/// Creates segment `start` in `dir`: allocated (never sparse), its first `prefault` bytes
/// prefaulted, and its directory entry made durable before anything is written into it.
fn create_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    start: u64,
    size: usize,
    prefault: usize,
) -> Result<MappedFile> {
    let path = dir.join(file_name(start));
    let file = MappedFile::create(vfs, &path, size).map_err(|e| Error::io(path.clone(), e))?;
    // The file's length and allocation first, then its directory entry: after a crash the
    // segment is either absent or whole-length, never a short file recovery must reject.
    if let Err(e) = file.sync_data().and_then(|()| vfs.sync_dir(dir)) {
        // Its directory entry is not durable and nothing is in it: remove it so the next roll
        // can create it again.
        let _ = file.delete(vfs);
        return Err(Error::io(dir, e));
    }
    // Prefault after the sync: prefaulting dirties every page (zeros), and a sync after it
    // wrote the whole segment of zeros to disk and left the pages clean and write-protected,
    // so the writer still took a fault on every page.
    if prefault > 0 {
        // Best effort: only speed depends on it.
        let _ = file.prefault_range(0, prefault);
    }
    Ok(file)
}

/// Background creation of the next CommitLog segment (RocketMQ's AllocateMappedFileService).
#[derive(Debug)]
struct Allocator {
    shared: Arc<AllocShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct AllocState {
    /// Start offset the thread should prepare next.
    wanted: Option<u64>,
    /// Start offset being prepared right now.
    busy: Option<u64>,
    ready: Option<(u64, Result<MappedFile>)>,
    /// A part of the active segment to prefault (ahead of its writer), served before segments.
    warm: Option<(Arc<MappedFile>, std::ops::Range<usize>)>,
    shutdown: bool,
}

#[derive(Debug)]
struct AllocShared {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    /// Write-prefault segments ahead of the writer (mmap write mode only).
    prefault: bool,
    size: usize,
    state: Mutex<AllocState>,
    cv: Condvar,
}

impl Allocator {
    fn start(vfs: Arc<dyn Vfs>, dir: PathBuf, size: usize, prefault: bool) -> Self {
        let shared = Arc::new(AllocShared {
            vfs,
            dir,
            prefault,
            size,
            state: Mutex::new(AllocState::default()),
            cv: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("rocketstore-allocator".into())
            .spawn(move || s.run())
            .expect("spawn allocator thread");
        Allocator {
            shared,
            thread: Mutex::new(Some(thread)),
        }
    }

    fn request(&self, start: u64) {
        let mut st = self.shared.state.lock();
        let already = st.busy == Some(start) || st.ready.as_ref().is_some_and(|(s, _)| *s == start);
        if !already && !st.shutdown {
            st.wanted = Some(start);
            self.shared.cv.notify_all();
        }
    }

    /// Asks for `file` to be prefaulted from `from` (what was asked before) to [`WARM_AHEAD`]
    /// past `end` (where the append about to happen ends), rounded up to [`WARM_CHUNK`]s;
    /// returns the new end of what was asked (`usize::MAX` once that is the file's end).
    /// A pending request for another file (the segment before a roll) is dropped.
    fn warm(&self, file: &Arc<MappedFile>, from: usize, end: usize) -> usize {
        if !self.shared.prefault {
            return usize::MAX;
        }
        let mut st = self.shared.state.lock();
        if st.shutdown {
            return usize::MAX;
        }
        let pending = match &st.warm {
            Some((f, pending)) if Arc::ptr_eq(f, file) => Some(pending.start),
            _ => None,
        };
        let (range, next) = warm_window(pending, from, end, file.size());
        st.warm = Some((file.clone(), range));
        self.shared.cv.notify_all();
        next
    }

    /// The prepared segment `start` and how far it is prefaulted, waiting for it if it is being
    /// prepared, creating it here (not prefaulted) if nobody asked for it.
    fn take(&self, start: u64) -> Result<(MappedFile, usize)> {
        let sh = &self.shared;
        let mut st = sh.state.lock();
        loop {
            if st.ready.as_ref().is_some_and(|(s, _)| *s == start) {
                let (_, file) = st.ready.take().expect("checked");
                sh.cv.notify_all();
                let warmed = if sh.prefault { WARM_AHEAD } else { 0 };
                return file.map(|f| (f, warmed));
            }
            if st.busy == Some(start) || st.wanted == Some(start) {
                sh.cv.wait(&mut st);
                continue;
            }
            // A stale prepared segment (the log was truncated behind it) is removed first.
            if let Some((_, Ok(stale))) = st.ready.take() {
                let _ = stale.delete(&*sh.vfs);
            }
            drop(st);
            return create_segment(&*sh.vfs, &sh.dir, start, sh.size, 0).map(|f| (f, 0));
        }
    }

    fn shutdown(&self) -> Result<()> {
        {
            let mut st = self.shared.state.lock();
            st.shutdown = true;
            st.wanted = None;
            st.warm = None;
            self.shared.cv.notify_all();
        }
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
        let mut st = self.shared.state.lock();
        if let Some((_, Ok(unused))) = st.ready.take() {
            unused
                .delete(&*self.shared.vfs)
                .map_err(|e| Error::io(unused.path(), e))?;
            self.shared
                .vfs
                .sync_dir(&self.shared.dir)
                .map_err(|e| Error::io(&self.shared.dir, e))?;
        }
        Ok(())
    }
}

impl AllocShared {
    fn run(&self) {
        let mut st = self.state.lock();
        loop {
            if st.shutdown {
                return;
            }
            if let Some((file, range)) = st.warm.take() {
                drop(st);
                // Best effort: only speed depends on it. Concurrent with the writer, which
                // the advice cannot disturb (it faults pages in, never changes a byte).
                let mut at = range.start;
                while at < range.end {
                    // Never next to the writer: a fault waits for the folios a prefault (and
                    // its read-around) holds locked, so where the writer is close, skip ahead.
                    let lead = file.write_position() + WARM_MIN_LEAD;
                    if at < lead {
                        at = lead.next_multiple_of(WARM_STEP);
                        continue;
                    }
                    let n = (range.end - at).min(WARM_STEP);
                    let _ = file.prefault_range(at, n);
                    at += n;
                }
                drop(file);
                st = self.state.lock();
                continue;
            }
            let Some(start) = st.wanted.take() else {
                self.cv.wait(&mut st);
                continue;
            };
            // Segments are wanted strictly in order: a prepared one that was not taken
            // belongs to a log that was truncated behind it.
            if let Some((_, Ok(stale))) = st.ready.take() {
                let _ = stale.delete(&*self.vfs);
            }
            st.busy = Some(start);
            drop(st);
            let warm = if self.prefault { WARM_AHEAD } else { 0 };
            let result = create_segment(&*self.vfs, &self.dir, start, self.size, warm);
            st = self.state.lock();
            st.busy = None;
            st.ready = Some((start, result));
            self.cv.notify_all();
        }
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::{warm_window, WARM_AHEAD, WARM_CHUNK};

    const GIB: usize = 1 << 30;

    #[test]
    fn the_window_moves_in_chunks_and_always_covers_warm_ahead_past_the_append() {
        // A fresh first segment: nothing asked yet.
        let (r, next) = warm_window(None, 0, 200, GIB);
        assert_eq!(r, 0..WARM_AHEAD + WARM_CHUNK);
        assert_eq!(next, WARM_AHEAD + WARM_CHUNK);
        // Appends continue from what was asked, in whole chunks, always past the append.
        let mut asked = next;
        let mut pos = 0;
        while pos < GIB - 5000 {
            pos += 4999;
            if pos + WARM_AHEAD > asked {
                let (r, next) = warm_window(None, asked, pos, GIB);
                assert_eq!(r.start, asked, "no gap and no overlap");
                assert!(r.end >= (pos + WARM_AHEAD).min(GIB));
                assert_eq!(r.end % WARM_CHUNK, 0);
                asked = next;
                if next == usize::MAX {
                    assert_eq!(r.end, GIB, "clamped to the file");
                    break;
                }
            }
        }
        assert_eq!(asked, usize::MAX, "the end of the file stops the requests");
    }

    #[test]
    fn a_request_still_pending_is_extended_not_replaced() {
        let (r, _) = warm_window(Some(8 * WARM_CHUNK), 10 * WARM_CHUNK, 20 * WARM_CHUNK, GIB);
        assert_eq!(r.start, 8 * WARM_CHUNK);
        assert!(r.end >= 20 * WARM_CHUNK + WARM_AHEAD);
    }

    #[test]
    fn a_small_segment_is_warmed_whole_at_once() {
        let size = 4 << 20;
        assert_eq!(warm_window(None, 0, 100, size), (0..size, usize::MAX));
    }
}
