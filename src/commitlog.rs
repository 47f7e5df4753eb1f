//! The CommitLog: fixed-size mapped segments holding every record in append order; the only
//! source of truth (spec §1, §2).
//!
//! Appends happen under the store's append lock through an [`Appender`]; readers find records
//! through the segment list and see bytes once the segment's write position covers them. The
//! next segment is created and allocated by a background [`Allocator`] so that a roll does not
//! wait for the disk. In mmap write mode a background [`Prefaulter`] keeps a window of
//! [`PREFAULT_WINDOW_BYTES`] ahead of the writer write-faulted, so appends take no page faults.
//!
//! Why a window and not whole segments: a write prefault of a fresh file's pages allocates and
//! zeroes them and leaves them dirty. Prefaulting a whole 1 GiB segment at once costs ~0.3 s of
//! a core in one burst (competing with the producer on a small machine) and leaves up to 1 GiB
//! of dirty zero pages that kernel writeback may write to disk and write-protect again before
//! the writer reaches them (each such page then faults on the put path a second time). A window
//! that moves with the writer does the same zeroing spread evenly, covers the first segment of
//! a new store too, and keeps pages dirty-but-unwritten for milliseconds, not seconds.

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

/// Bytes after the write position kept write-faulted in mmap write mode. Sized so the writer
/// does not catch up with the prefaulter while it waits for a core: ~60 ms of appends at
/// 1 GB/s.
pub(crate) const PREFAULT_WINDOW_BYTES: usize = 64 << 20;

/// The writer asks the prefaulter to extend the window each time it has used this much of it,
/// so the request (a lock and a wake-up) is paid once per this many bytes, not per put.
const PREFAULT_STEP_BYTES: usize = 8 << 20;

/// The prefaulter faults at most this much per call, then looks at the writer's position again
/// (and at shutdown).
const PREFAULT_CHUNK_BYTES: usize = 1 << 20;

/// When the writer has caught up with the prefaulter (a writer faster than one core can fault
/// pages, e.g. 16 KiB records), the prefaulter resumes this far ahead of it instead of at its
/// position: two threads faulting the same pages wait for each other, while faulting disjoint
/// pages splits the work between two cores.
const PREFAULT_LEAD_BYTES: usize = 2 << 20;

/// The CommitLog.
#[derive(Debug)]
pub(crate) struct CommitLog {
    vfs: Arc<dyn Vfs>,
    segments: SegmentList,
    /// End of the last published record.
    max_offset: AtomicU64,
    /// Every byte below this is durable.
    flushed_offset: AtomicU64,
    /// Serialises flushes (group-commit leader, periodic flusher, close).
    flush_lock: Mutex<()>,
    /// Wall-clock time (ms) of the last flush that made bytes durable; 0 if none yet.
    last_flush_ms: AtomicI64,
    allocator: Option<Allocator>,
    /// Keeps the window ahead of the writer faulted in (mmap write mode with preallocation).
    prefaulter: Option<Prefaulter>,
    write_mode: WriteMode,
}

/// Append-side state, owned by whoever holds the store's append lock.
#[derive(Debug)]
pub(crate) struct Appender {
    writer: Option<MappedWriter>,
    /// Start offset of the segment `writer` writes (or of the next one to create).
    start: u64,
    /// End (in-segment position) of the prefault window last requested for `writer`'s file.
    prefault_requested: usize,
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
        let prefault = preallocate && write_mode == WriteMode::Mmap;
        let head_prefault = if prefault {
            PREFAULT_WINDOW_BYTES.min(size)
        } else {
            0
        };
        let allocator =
            preallocate.then(|| Allocator::start(vfs.clone(), dir.clone(), size, head_prefault));
        let prefaulter = prefault.then(Prefaulter::start);
        CommitLog {
            vfs,
            segments: SegmentList::new(dir, size, segs),
            max_offset: AtomicU64::new(end),
            flushed_offset: AtomicU64::new(end),
            flush_lock: Mutex::new(()),
            last_flush_ms: AtomicI64::new(0),
            allocator,
            prefaulter,
            write_mode,
        }
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
                if let Some(a) = &self.allocator {
                    a.request(last.start + size);
                }
                let mut app = Appender {
                    writer: Some(writer),
                    start: last.start,
                    prefault_requested: 0,
                };
                self.extend_prefault_window(&mut app);
                return Ok(app);
            }
            return Ok(Appender {
                writer: None,
                start: last.start + size,
                prefault_requested: 0,
            });
        }
        Ok(Appender {
            writer: None,
            start: end - end % size,
            prefault_requested: 0,
        })
    }

    /// Asks the prefaulter to fault `[position, position + PREFAULT_WINDOW_BYTES)` of the
    /// active segment once the writer has used [`PREFAULT_STEP_BYTES`] of the last window.
    /// A comparison per put; a lock and a wake-up once per step.
    fn extend_prefault_window(&self, app: &mut Appender) {
        let (Some(prefaulter), Some(writer)) = (&self.prefaulter, &app.writer) else {
            return;
        };
        let wanted = writer
            .position()
            .saturating_add(PREFAULT_WINDOW_BYTES)
            .min(writer.file().size());
        if wanted >= app.prefault_requested.saturating_add(PREFAULT_STEP_BYTES)
            || (wanted == writer.file().size() && wanted > app.prefault_requested)
        {
            prefaulter.request(writer.file(), app.prefault_requested, wanted);
            app.prefault_requested = wanted;
        }
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
        }
        let writer = app.writer.as_mut().expect("roll leaves a writer");
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
            WriteMode::WriteBuffer => writer
                .append_via_file(buf)
                .map_err(|e| Error::io(writer.file().path(), e))?,
        };
        debug_assert!(appended, "space was checked above");
        self.max_offset
            .store(first + total as u64, Ordering::Release);
        self.extend_prefault_window(app);
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
        // A prepared segment comes with its head prefaulted; one created here has nothing.
        let (file, head_prefaulted) = match &self.allocator {
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
        let file = Arc::new(file);
        let writer = file.writer().expect("fresh segment has no writer");
        self.segments.push(Segment { start, file });
        if let Some(a) = &self.allocator {
            a.request(start + size);
        }
        app.writer = Some(writer);
        app.prefault_requested = head_prefaulted;
        Ok(())
    }

    /// The segment and in-segment position of the `len` bytes at `offset`, if all published.
    pub fn locate(&self, offset: u64, len: usize) -> Option<(Arc<MappedFile>, usize)> {
        let seg = self.segments.find(offset)?;
        let pos = usize::try_from(offset - seg.start).ok()?;
        seg.file.read(pos, len)?;
        Some((seg.file, pos))
    }

    /// Like [`locate`](Self::locate) for bytes the appender just wrote: its segment and the
    /// in-segment position of the `len` bytes at `offset`, if all published there.
    pub fn locate_appended<'a>(
        &self,
        app: &'a Appender,
        offset: u64,
        len: usize,
    ) -> Option<(&'a Arc<MappedFile>, usize)> {
        let file = app.writer.as_ref()?.file();
        let pos = usize::try_from(offset.checked_sub(app.start)?).ok()?;
        file.read(pos, len)?;
        Some((file, pos))
    }

    /// Makes every byte appended so far durable (one sync per segment touched). Returns the new
    /// durable offset. A failed sync leaves the durable offset where it was.
    pub fn flush(&self) -> Result<u64> {
        let _guard = self.flush_lock.lock();
        let mut durable = self.flushed_offset();
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
            let flushed = seg
                .file
                .flush(strategy)
                .map_err(|source| Error::FlushFailed {
                    path: seg.file.path().to_path_buf(),
                    source,
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
            log::info!("retention deleted {}", seg.file.path().display());
            deleted += 1;
        }
        if deleted > 0 {
            let dir = self.dir();
            self.vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        }
        Ok(deleted)
    }

    /// Stops the prefaulter and the allocator and removes a prepared but unused segment.
    pub fn shutdown(&self) -> Result<()> {
        if let Some(p) = &self.prefaulter {
            p.shutdown();
        }
        if let Some(a) = &self.allocator {
            a.shutdown()?;
        }
        Ok(())
    }
}

/// Creates segment `start` in `dir`: allocated (never sparse), its first `prefault_bytes`
/// write-prefaulted, and its directory entry made durable before anything is written into it.
fn create_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    start: u64,
    size: usize,
    prefault_bytes: usize,
) -> Result<MappedFile> {
    let path = dir.join(file_name(start));
    let file = MappedFile::create(vfs, &path, size).map_err(|e| Error::io(path.clone(), e))?;
    if prefault_bytes > 0 {
        // Best effort: only speed depends on it.
        let _ = file.prefault_range(0, prefault_bytes);
    }
    // The file's length and allocation first, then its directory entry: after a crash the
    // segment is either absent or whole-length, never a short file recovery must reject.
    if let Err(e) = file.sync_data().and_then(|()| vfs.sync_dir(dir)) {
        // Its directory entry is not durable and nothing is in it: remove it so the next roll
        // can create it again.
        let _ = file.delete(vfs);
        return Err(Error::io(dir, e));
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
    shutdown: bool,
}

#[derive(Debug)]
struct AllocShared {
    vfs: Arc<dyn Vfs>,
    dir: PathBuf,
    /// Bytes at the head of a prepared segment to write-prefault (0 unless mmap write mode).
    head_prefault: usize,
    size: usize,
    state: Mutex<AllocState>,
    cv: Condvar,
}

impl Allocator {
    fn start(vfs: Arc<dyn Vfs>, dir: PathBuf, size: usize, head_prefault: usize) -> Self {
        let shared = Arc::new(AllocShared {
            vfs,
            dir,
            head_prefault,
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

    /// The prepared segment `start` and how many bytes at its head are prefaulted, waiting for
    /// it if it is being prepared, creating it here (nothing prefaulted) if nobody asked for it.
    fn take(&self, start: u64) -> Result<(MappedFile, usize)> {
        let sh = &self.shared;
        let mut st = sh.state.lock();
        loop {
            if st.ready.as_ref().is_some_and(|(s, _)| *s == start) {
                let (_, file) = st.ready.take().expect("checked");
                sh.cv.notify_all();
                return file.map(|f| (f, sh.head_prefault));
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
            let result =
                create_segment(&*self.vfs, &self.dir, start, self.size, self.head_prefault);
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

/// Background write prefault of the window ahead of the CommitLog writer (mmap write mode).
///
/// The writer posts the segment and the end of the window it wants; the thread faults the pages
/// from wherever it got to (or from the writer's position, for a new segment) up to that end.
/// `MADV_POPULATE_WRITE` changes no byte, so racing the writer on a page is harmless: whoever
/// comes first takes the fault.
#[derive(Debug)]
struct Prefaulter {
    shared: Arc<PrefaultShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct PrefaultState {
    /// The latest window asked for: segment, where the previous window of that segment ended
    /// (already asked for, or prefaulted with the segment), end position (exclusive).
    wanted: Option<(Arc<MappedFile>, usize, usize)>,
    shutdown: bool,
}

#[derive(Debug, Default)]
struct PrefaultShared {
    state: Mutex<PrefaultState>,
    cv: Condvar,
}

impl Prefaulter {
    fn start() -> Self {
        let shared = Arc::new(PrefaultShared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("rocketstore-prefault".into())
            .spawn(move || s.run())
            .expect("spawn prefault thread");
        Prefaulter {
            shared,
            thread: Mutex::new(Some(thread)),
        }
    }

    fn request(&self, file: &Arc<MappedFile>, from: usize, end: usize) {
        let mut st = self.shared.state.lock();
        if !st.shutdown {
            // An unserved request of the same segment keeps its start.
            let from = match &st.wanted {
                Some((f, prev, _)) if Arc::ptr_eq(f, file) => from.min(*prev),
                _ => from,
            };
            st.wanted = Some((Arc::clone(file), from, end));
            self.shared.cv.notify_one();
        }
    }

    fn shutdown(&self) {
        {
            let mut st = self.shared.state.lock();
            st.shutdown = true;
            st.wanted = None;
            self.shared.cv.notify_all();
        }
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl PrefaultShared {
    fn run(&self) {
        // The segment being worked on and how far its pages are faulted.
        let mut current: Option<(Arc<MappedFile>, usize)> = None;
        let mut st = self.state.lock();
        loop {
            if st.shutdown {
                return;
            }
            let Some((file, from, end)) = st.wanted.take() else {
                self.cv.wait(&mut st);
                continue;
            };
            drop(st);
            // Holding the previous segment until the writer moves on is harmless: a deleted
            // file's mapping stays valid, and the active segment is never deleted.
            let done = match &current {
                Some((f, done)) if Arc::ptr_eq(f, &file) => *done,
                _ => from,
            };
            let mut pos = done;
            loop {
                // Pages below the writer's position were faulted by its own writes; the pages
                // just after it are about to be.
                let writer_at = file.write_position();
                if pos < writer_at {
                    pos = writer_at.saturating_add(PREFAULT_LEAD_BYTES);
                }
                if pos >= end {
                    break;
                }
                let len = (end - pos).min(PREFAULT_CHUNK_BYTES);
                // Best effort: only speed depends on it.
                if file.prefault_range(pos, len).is_err() {
                    break;
                }
                pos += len;
                if self.state.lock().shutdown {
                    return;
                }
            }
            current = Some((file, pos.max(done)));
            st = self.state.lock();
        }
    }
}

impl Drop for Prefaulter {
    fn drop(&mut self) {
        self.shutdown();
    }
}
