//! One fixed-size memory-mapped file (a CommitLog or ConsumeQueue segment) with a single-writer
//! publication protocol, so the engine above never needs `unsafe`.
//!
//! The protocol:
//!
//! * The file is `[0, size)`, allocated on disk (never sparse) and mapped once for its lifetime.
//! * `published` (the write position) splits it: readers get `&[u8]` only for bytes below it.
//! * At most one [`MappedWriter`] exists per file. It writes only at or after the write
//!   position, then moves the position forward with a `Release` store; readers load it with
//!   `Acquire`. So a byte a reader can see is never written again while the file is shared,
//!   and every byte a reader sees was completely written before it became visible.
//! * The only operation that changes bytes below the write position, [`MappedFile::truncate`],
//!   takes `&mut self`: it runs before the file is shared (recovery), when no reader or writer
//!   can exist.
//! * The file handle is private: nothing can shorten the mapped file or write under a reader
//!   through it.
//!
//! What the engine must respect: map a given path through at most one `MappedFile` (or
//! [`MappedWords`](super::mapped_words::MappedWords)) at a time, and never shorten the file by
//! other means while it is mapped.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::vfs::{MapRegion, OpenMode, Vfs, VfsFile};

/// Why [`MappedFile::open`] or [`MappedWords::open`](super::mapped_words::MappedWords::open)
/// failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// An operating-system call failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The file does not have the fixed size of its kind; it was not mapped.
    #[error("file length is {found} bytes, expected {expected}")]
    WrongLength {
        /// The fixed size the caller asked for.
        expected: u64,
        /// The length found on disk.
        found: u64,
    },
}

/// How [`MappedFile::flush`] forces data to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushStrategy {
    /// `msync(MS_SYNC)` of the page-aligned cover of the unflushed range. Cheap for freshly
    /// created files; on pages that came into the page cache as large folios (e.g. files read
    /// back at recovery) it writes whole folios (see MACHINE.md).
    Msync,
    /// `fdatasync` of the whole file (on Linux this also writes pages dirtied through the
    /// mapping).
    Fdatasync,
}

/// One fixed-size mapped file; see the module docs for the publication protocol.
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    file: Box<dyn VfsFile>,
    map: Box<dyn MapRegion>,
    size: usize,
    /// Readers may read `[0, published)`; only the single writer (or `truncate`) changes it.
    published: AtomicUsize,
    /// Everything below is known durable.
    flushed: AtomicUsize,
    writer_taken: AtomicBool,
    /// Created (and so page-cached in 4 KiB pages) by this process, not opened from disk.
    fresh: bool,
}

/// The single writer of a [`MappedFile`]; dropping it lets [`MappedFile::writer`] hand out a
/// new one.
#[derive(Debug)]
pub struct MappedWriter {
    file: Arc<MappedFile>,
    /// [`write_zeros_ahead`](MappedWriter::write_zeros_ahead) wrote zeros up to here.
    zeroed_until: usize,
}

impl MappedFile {
    /// Creates a new file at `path` (fails with `AlreadyExists` if there is one), reserves `size`
    /// bytes on disk (no sparse file) and maps it writable, with nothing published or flushed.
    ///
    /// If allocating or mapping fails (e.g. `ENOSPC`), the new file is removed again (best
    /// effort). Does not sync the directory: the caller does.
    pub fn create(vfs: &dyn Vfs, path: &Path, size: usize) -> io::Result<MappedFile> {
        if size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a mapped file cannot be empty",
            ));
        }
        let file = vfs.open_file(path, OpenMode::CreateNew)?;
        let map = match allocate_and_map(file.as_ref(), size) {
            Ok(map) => map,
            Err(err) => {
                drop(file);
                // Best effort: the error that matters is the one that made us give up.
                let _ = vfs.remove_file(path);
                return Err(err);
            }
        };
        let mut created = MappedFile::new(path, file, map, size, 0);
        created.fresh = true;
        Ok(created)
    }

    /// Opens an existing file that must be exactly `size` bytes long (else
    /// [`OpenError::WrongLength`], before anything is mapped) and maps it writable or read-only.
    ///
    /// Everything is published and counted as flushed (`size`): the whole file is readable
    /// until recovery [`truncate`](Self::truncate)s it. After a crash of the process the page
    /// cache may still hold bytes that are not on disk; recovery decides whether to sync them.
    pub fn open(
        vfs: &dyn Vfs,
        path: &Path,
        size: usize,
        writable: bool,
    ) -> Result<MappedFile, OpenError> {
        let mode = if writable {
            OpenMode::Existing
        } else {
            OpenMode::ReadOnly
        };
        let file = vfs.open_file(path, mode)?;
        let found = file.len()?;
        if found != size as u64 {
            return Err(OpenError::WrongLength {
                expected: size as u64,
                found,
            });
        }
        let map = file.map(size, writable)?;
        check_region(map.as_ref(), size, writable)?;
        Ok(MappedFile::new(path, file, map, size, size))
    }

    fn new(
        path: &Path,
        file: Box<dyn VfsFile>,
        map: Box<dyn MapRegion>,
        size: usize,
        position: usize,
    ) -> MappedFile {
        MappedFile {
            path: path.to_path_buf(),
            file,
            map,
            size,
            published: AtomicUsize::new(position),
            flushed: AtomicUsize::new(position),
            writer_taken: AtomicBool::new(false),
            fresh: false,
        }
    }

    /// Whether this file was created by [`create`](Self::create) in this process rather than
    /// opened from disk. Its pages came in through the mapping one 4 KiB page at a time, so a
    /// range `msync` writes just the range; pages of a file read back from disk may sit in
    /// large folios, where `msync` of one page writes the whole folio (MACHINE.md).
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// The path the file was created or opened under.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fixed size of the file in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether the file is mapped writable (a writer can exist).
    pub fn is_writable(&self) -> bool {
        !self.map.as_mut_ptr().is_null()
    }

    /// The published write position: readers may read `[0, write_position())`.
    pub fn write_position(&self) -> usize {
        self.published.load(Ordering::Acquire)
    }

    /// Everything below this position is known to be on disk.
    pub fn flushed_position(&self) -> usize {
        self.flushed.load(Ordering::Acquire)
    }

    /// Bytes `[pos, pos + len)` if they lie entirely below the write position, else `None`.
    pub fn read(&self, pos: usize, len: usize) -> Option<&[u8]> {
        let end = pos.checked_add(len)?;
        self.readable().get(pos..end)
    }

    /// All published bytes, `[0, write_position())`.
    pub fn readable(&self) -> &[u8] {
        let published = self.published.load(Ordering::Acquire);
        debug_assert!(published <= self.size);
        // SAFETY: the region maps `size` bytes (checked at construction) and lives as long as
        // `self`, which the returned slice borrows. `published <= size`. Bytes below the
        // published position are never written while `&self` exists: the single writer only
        // writes at or after the position, and `truncate` needs `&mut self`. The Acquire load
        // pairs with the writer's Release store, so those bytes were completely written
        // before we could see the position that covers them.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), published) }
    }

    /// The single writer; `None` if another writer handle exists or the mapping is read-only.
    pub fn writer(self: &Arc<Self>) -> Option<MappedWriter> {
        if !self.is_writable() {
            return None;
        }
        self.writer_taken
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        Some(MappedWriter {
            file: Arc::clone(self),
            zeroed_until: 0,
        })
    }

    /// Sets the write position to `pos` and zeroes `[pos, size)` through the file
    /// ([`VfsFile::zero_range`]), then syncs the file (`fdatasync`), so no stale byte after the
    /// cut can ever be read as data again, even after a power loss. Both write and flushed
    /// positions become `pos`. Idempotent: a second call with the same `pos` changes no byte.
    ///
    /// Takes `&mut self`: no reader or writer can exist (recovery, before the file is shared).
    /// `InvalidInput` if `pos > size`. If the sync fails the bytes are zeroed in memory but
    /// the flushed position does not move.
    pub fn truncate(&mut self, pos: usize) -> io::Result<()> {
        if pos > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "truncate of {} at {pos}, past its size {}",
                    self.path.display(),
                    self.size
                ),
            ));
        }
        self.file.zero_range(pos as u64, (self.size - pos) as u64)?;
        *self.published.get_mut() = pos;
        let flushed = self.flushed.get_mut();
        *flushed = (*flushed).min(pos);
        self.file.sync_data()?;
        *self.flushed.get_mut() = pos;
        Ok(())
    }

    /// Sets the write position to `pos` and leaves the bytes after it as they are: for a file
    /// whose rest is known to be zero (recovery after a clean shutdown, see
    /// [`crate::segments::Tail`]), where [`truncate`](Self::truncate) would only cost a sync.
    /// Both write and flushed positions become `pos`. `InvalidInput` if `pos > size`.
    pub fn end_at(&mut self, pos: usize) -> io::Result<()> {
        if pos > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "end of {} at {pos}, past its size {}",
                    self.path.display(),
                    self.size
                ),
            ));
        }
        *self.published.get_mut() = pos;
        *self.flushed.get_mut() = pos;
        Ok(())
    }

    /// Writes `bytes` at `pos` through the file ([`VfsFile::write_all_at`]) and syncs it
    /// (`fdatasync`): recovery's in-place repair of a damaged span below the write position.
    ///
    /// Takes `&mut self`: no reader or writer can exist (recovery, before the file is shared).
    /// `InvalidInput` if the bytes do not fit the file.
    pub fn overwrite(&mut self, pos: usize, bytes: &[u8]) -> io::Result<()> {
        if pos
            .checked_add(bytes.len())
            .is_none_or(|end| end > self.size)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "overwrite of {} bytes at {pos} of {}, past its size {}",
                    bytes.len(),
                    self.path.display(),
                    self.size
                ),
            ));
        }
        self.file.write_all_at(bytes, pos as u64)?;
        self.file.sync_data()
    }

    /// Forces `[flushed, write position)` to disk and advances the flushed position to the
    /// write position read before syncing; a failed sync never advances it (and, as on any
    /// Linux file, the pages it failed to write may since have been marked clean: the engine
    /// must stop acknowledging writes). Returns the new flushed position.
    ///
    /// Safe to call from several threads; the flushed position only grows.
    pub fn flush(&self, strategy: FlushStrategy) -> io::Result<usize> {
        let target = self.published.load(Ordering::Acquire);
        let from = self.flushed.load(Ordering::Acquire);
        if target <= from {
            return Ok(from);
        }
        match strategy {
            FlushStrategy::Msync => self.map.flush_range(from, target - from)?,
            FlushStrategy::Fdatasync => self.file.sync_data()?,
        }
        let previous = self.flushed.fetch_max(target, Ordering::AcqRel);
        Ok(previous.max(target))
    }

    /// `fdatasync` of the whole file regardless of the positions (the flushed position does
    /// not move). For recovery: after a process crash the page cache may hold bytes of an
    /// opened file (counted as flushed) that never reached the disk; syncing every recovered
    /// file makes them durable before new writes are acknowledged after them.
    pub fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Asks that page faults on this mapping bring in only the page touched, without the
    /// read-around of up to `read_ahead_kb` that would otherwise zero-fill megabytes of a fresh
    /// file at its first write (best effort).
    pub fn advise_random(&self) -> io::Result<()> {
        self.map.advise_random()
    }

    /// Pre-faults `[pos, pos + len)` of the mapping for writing (clamped to the file). A no-op
    /// for a read-only mapping.
    pub fn prefault_range(&self, pos: usize, len: usize) -> io::Result<()> {
        let pos = pos.min(self.size);
        self.map.prefault_write_range(pos, len.min(self.size - pos))
    }

    /// Unlinks the file. The mapping stays valid until the last `Arc` drops, so readers that
    /// still hold the file keep reading it.
    pub fn delete(&self, vfs: &dyn Vfs) -> io::Result<()> {
        vfs.remove_file(&self.path)?;
        Ok(())
    }
}

impl MappedWriter {
    /// The file this writer writes.
    pub fn file(&self) -> &Arc<MappedFile> {
        &self.file
    }

    /// The write position (same as [`MappedFile::write_position`]).
    pub fn position(&self) -> usize {
        // Only this writer moves the position while it exists, so Relaxed sees the latest.
        self.file.published.load(Ordering::Relaxed)
    }

    /// Bytes left after the write position.
    pub fn remaining(&self) -> usize {
        self.file.size - self.position()
    }

    /// Copies `bytes` to the write position and publishes them. Returns `false`, writing
    /// nothing, if they do not fit.
    pub fn append(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.remaining() {
            return false;
        }
        let position = self.position();
        self.write_unpublished(position, bytes);
        self.publish(position + bytes.len());
        true
    }

    /// Like [`append`](Self::append), but writes with `pwrite` through the file instead of
    /// through the mapping. For files whose pages came into the page cache as large folios
    /// (files reopened at recovery): a `pwrite` dirties only the blocks it touches, while a
    /// write fault on the mapping dirties the whole folio (see MACHINE.md). Pair it with
    /// [`FlushStrategy::Fdatasync`]. `Ok(false)`, writing nothing, if the bytes do not fit;
    /// on `Err` nothing is published.
    pub fn append_via_file(&mut self, bytes: &[u8]) -> io::Result<bool> {
        if bytes.len() > self.remaining() {
            return Ok(false);
        }
        let position = self.position();
        // Bytes at and after the position are not visible to any reader and no borrow of them
        // exists (`&mut self`), so the kernel may write them.
        self.file.file.write_all_at(bytes, position as u64)?;
        self.publish(position + bytes.len());
        Ok(true)
    }

    /// How far [`write_zeros_ahead`](Self::write_zeros_ahead) has written zeros (0 if never).
    pub fn zeroed_until(&self) -> usize {
        self.zeroed_until
    }

    /// Writes zeros through the file over `[max(position, zeroed_until), until)` (clamped to the
    /// file), so the blocks there hold written zeros before records land on them.
    ///
    /// Why: a segment is allocated with `fallocate`, whose extents are *unwritten*; the first
    /// sync of data in each one must also commit the extent conversion to the journal, so a
    /// commit there costs like an append (MACHINE.md: ~200 µs against ~130 µs for an
    /// overwrite). Writing zeros a window ahead converts the extents once per window instead of
    /// once per group commit. Only bytes past the write position are written, which no reader
    /// sees and which hold zeros already, so the content of the file never changes.
    pub fn write_zeros_ahead(&mut self, until: usize) -> io::Result<()> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let until = until.min(self.file.size);
        let mut pos = self.position().max(self.zeroed_until);
        while pos < until {
            let n = (until - pos).min(ZEROS.len());
            // At or past the write position: not visible to any reader, and `&mut self` holds
            // off the writer, so nothing else writes here.
            self.file.file.write_all_at(&ZEROS[..n], pos as u64)?;
            pos += n;
        }
        self.zeroed_until = self.zeroed_until.max(until);
        Ok(())
    }

    /// Copies `bytes` to `pos` (at or after the write position) without publishing them, for
    /// multi-part writes. Panics if `pos` is below the position or the bytes do not fit.
    pub fn write_unpublished(&mut self, pos: usize, bytes: &[u8]) {
        self.unpublished_mut(pos, bytes.len())
            .copy_from_slice(bytes);
    }

    /// Mutable access to the unpublished bytes `[pos, pos + len)`, for encoding a record in
    /// place. Panics if `pos` is below the write position or the range passes the end.
    pub fn unpublished_mut(&mut self, pos: usize, len: usize) -> &mut [u8] {
        let position = self.position();
        let end = pos.checked_add(len);
        assert!(
            pos >= position && end.is_some_and(|end| end <= self.file.size),
            "unpublished range [{pos}, +{len}) outside [{position}, {}) of {}",
            self.file.size,
            self.file.path.display()
        );
        let base = self.file.map.as_mut_ptr();
        // SAFETY: the mapping is writable (a writer is only created for a non-null mut ptr),
        // maps `size` bytes and lives as long as the `Arc` we hold. `[pos, pos + len)` is
        // inside it and at or after the write position, so no reader can hold a slice of it
        // (readers stop at the position, which only `publish(&mut self)` moves, and that
        // cannot run while the returned borrow of `self` lives). This writer is the only one
        // (`writer_taken`) and `truncate` needs `&mut MappedFile`, impossible while we hold
        // an `Arc` to it. So the returned slice is the only reference to these bytes.
        unsafe { std::slice::from_raw_parts_mut(base.add(pos), len) }
    }

    /// Publishes everything up to `pos` (`position() <= pos <= size`, else panics): readers
    /// can see it from now on, and it must never be written again.
    pub fn publish(&mut self, pos: usize) {
        let position = self.position();
        assert!(
            position <= pos && pos <= self.file.size,
            "publish at {pos} outside [{position}, {}] of {}",
            self.file.size,
            self.file.path.display()
        );
        self.file.published.store(pos, Ordering::Release);
    }
}

impl Drop for MappedWriter {
    fn drop(&mut self) {
        self.file.writer_taken.store(false, Ordering::Release);
    }
}

fn allocate_and_map(file: &dyn VfsFile, size: usize) -> io::Result<Box<dyn MapRegion>> {
    file.allocate(size as u64)?;
    let map = file.map(size, true)?;
    check_region(map.as_ref(), size, true)?;
    Ok(map)
}

/// Refuses a region that does not match what was asked for (a broken `Vfs` implementation).
fn check_region(map: &dyn MapRegion, size: usize, writable: bool) -> io::Result<()> {
    if map.len() != size || map.as_ptr().is_null() || map.as_mut_ptr().is_null() == writable {
        return Err(io::Error::other(format!(
            "mapping of {} bytes (writable: {writable}) came back as {} bytes at {:p}/{:p}",
            size,
            map.len(),
            map.as_ptr(),
            map.as_mut_ptr()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::os::OsVfs;
    use std::sync::atomic::AtomicBool;
    use std::thread;

    const SIZE: usize = 64 * 1024;

    fn vfs() -> OsVfs {
        OsVfs
    }

    #[test]
    fn create_append_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000");
        let file = Arc::new(MappedFile::create(&vfs(), &path, SIZE).unwrap());
        assert_eq!((file.write_position(), file.flushed_position()), (0, 0));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), SIZE as u64);
        let mut writer = file.writer().unwrap();
        assert!(writer.append(b"hello"));
        assert!(writer.append(b"world"));
        assert_eq!(writer.position(), 10);
        assert_eq!(writer.remaining(), SIZE - 10);
        assert_eq!(file.read(0, 5), Some(&b"hello"[..]));
        assert_eq!(file.read(5, 5), Some(&b"world"[..]));
        assert_eq!(file.readable(), b"helloworld");
    }

    #[test]
    fn create_refuses_an_existing_file_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"precious").unwrap();
        let err = MappedFile::create(&vfs(), &path, SIZE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn read_beyond_the_write_position_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), SIZE).unwrap());
        let mut writer = file.writer().unwrap();
        writer.append(b"0123456789");
        assert_eq!(file.read(8, 2), Some(&b"89"[..]));
        assert_eq!(file.read(8, 3), None);
        assert_eq!(file.read(10, 0), Some(&b""[..]));
        assert_eq!(file.read(11, 0), None);
        assert_eq!(file.read(usize::MAX, 2), None);
        assert_eq!(file.read(1, usize::MAX), None);
        // Written but not yet published: still invisible.
        writer.write_unpublished(10, b"abc");
        assert_eq!(file.read(10, 3), None);
        writer.publish(13);
        assert_eq!(file.read(10, 3), Some(&b"abc"[..]));
    }

    #[test]
    fn only_one_writer_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), SIZE).unwrap());
        let first = file.writer().unwrap();
        assert!(file.writer().is_none());
        assert!(file.writer().is_none());
        drop(first);
        let mut second = file.writer().expect("a writer after the first dropped");
        assert!(second.append(b"x"));
        assert!(file.writer().is_none());
    }

    #[test]
    fn append_that_does_not_fit_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), 4096).unwrap());
        let mut writer = file.writer().unwrap();
        assert!(writer.append(&[7u8; 4000]));
        assert!(!writer.append(&[9u8; 97]));
        assert_eq!(writer.position(), 4000);
        assert!(writer.append(&[8u8; 96]));
        assert_eq!(writer.remaining(), 0);
        assert!(!writer.append(&[1]));
        assert!(writer.append(&[]));
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn writing_below_the_write_position_panics() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), 4096).unwrap());
        let mut writer = file.writer().unwrap();
        writer.append(b"abcd");
        writer.write_unpublished(3, b"x");
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn unpublished_range_past_the_end_panics() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), 4096).unwrap());
        let mut writer = file.writer().unwrap();
        let _ = writer.unpublished_mut(4000, 97);
    }

    #[test]
    fn unpublished_mut_encodes_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), 4096).unwrap());
        let mut writer = file.writer().unwrap();
        let record = writer.unpublished_mut(0, 8);
        record[..4].copy_from_slice(&8u32.to_be_bytes());
        record[4..].copy_from_slice(b"body");
        assert_eq!(file.readable(), b"");
        writer.publish(8);
        assert_eq!(file.readable(), b"\0\0\0\x08body");
    }

    #[test]
    fn open_with_the_wrong_length_reports_the_found_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 5000]).unwrap();
        match MappedFile::open(&vfs(), &path, 4096, true) {
            Err(OpenError::WrongLength { expected, found }) => {
                assert_eq!((expected, found), (4096, 5000));
            }
            other => panic!("expected WrongLength, got {other:?}"),
        }
        match MappedFile::open(&vfs(), &path, 8192, false) {
            Err(OpenError::WrongLength { found: 5000, .. }) => {}
            other => panic!("expected WrongLength, got {other:?}"),
        }
        match MappedFile::open(&vfs(), &dir.path().join("missing"), 4096, false) {
            Err(OpenError::Io(err)) => assert_eq!(err.kind(), io::ErrorKind::NotFound),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    #[test]
    fn open_publishes_everything_and_read_only_has_no_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let content: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = Arc::new(MappedFile::open(&vfs(), &path, 4096, false).unwrap());
        assert_eq!(file.write_position(), 4096);
        assert_eq!(file.flushed_position(), 4096);
        assert_eq!(file.readable(), &content[..]);
        assert!(!file.is_writable());
        assert!(file.writer().is_none());
        let writable = Arc::new(MappedFile::open(&vfs(), &path, 4096, true).unwrap());
        let writer = writable.writer().unwrap();
        assert_eq!(writer.remaining(), 0);
    }

    #[test]
    fn truncate_zeroes_the_tail_on_disk_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let size = 3 * 4096;
        {
            let file = Arc::new(MappedFile::create(&vfs(), &path, size).unwrap());
            let mut writer = file.writer().unwrap();
            writer.append(&vec![0xAB; 10_000]);
            file.flush(FlushStrategy::Msync).unwrap();
        }
        let mut file = MappedFile::open(&vfs(), &path, size, true).unwrap();
        file.truncate(300).unwrap();
        assert_eq!(file.write_position(), 300);
        assert_eq!(file.flushed_position(), 300);
        assert_eq!(file.read(299, 2), None);
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), size);
        assert!(on_disk[..300].iter().all(|&b| b == 0xAB));
        assert!(
            on_disk[300..].iter().all(|&b| b == 0),
            "stale bytes after the cut"
        );

        file.truncate(300).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), on_disk);
        drop(file);

        // Reopened, the zeros are what the mapping shows, and writing resumes at the cut.
        let mut file = MappedFile::open(&vfs(), &path, size, true).unwrap();
        assert!(file.readable()[300..].iter().all(|&b| b == 0));
        file.truncate(300).unwrap();
        let file = Arc::new(file);
        let mut writer = file.writer().unwrap();
        assert!(writer.append(b"next"));
        assert_eq!(file.read(300, 4), Some(&b"next"[..]));
    }

    #[test]
    fn truncate_past_the_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = MappedFile::create(&vfs(), &dir.path().join("f"), 4096).unwrap();
        let err = file.truncate(4097).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        file.truncate(4096).unwrap();
        assert_eq!(file.write_position(), 4096);
    }

    #[test]
    fn flush_advances_the_flushed_position_to_the_write_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = Arc::new(MappedFile::create(&vfs(), &path, SIZE).unwrap());
        let mut writer = file.writer().unwrap();
        writer.append(&[1u8; 5000]);
        assert_eq!(file.flushed_position(), 0);
        assert_eq!(file.flush(FlushStrategy::Msync).unwrap(), 5000);
        assert_eq!(file.flushed_position(), 5000);
        writer.append(&[2u8; 100]);
        writer.write_unpublished(5100, &[3u8; 10]);
        assert_eq!(file.flush(FlushStrategy::Fdatasync).unwrap(), 5100);
        assert_eq!(file.flushed_position(), 5100);
        assert_eq!(file.flush(FlushStrategy::Msync).unwrap(), 5100);
        file.sync_data().unwrap();
        assert_eq!(file.flushed_position(), 5100);
    }

    #[test]
    fn appended_bytes_reach_the_file_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = Arc::new(MappedFile::create(&vfs(), &path, SIZE).unwrap());
        file.prefault_range(0, file.size()).unwrap();
        let mut writer = file.writer().unwrap();
        writer.append(&[0u8; 4000]);
        writer.append(b"across a page boundary");
        assert!(writer.append_via_file(b"+pwrite").unwrap());
        file.flush(FlushStrategy::Msync).unwrap();
        let reader = vfs().open_file(&path, OpenMode::ReadOnly).unwrap();
        let mut back = vec![0u8; 29];
        reader.read_exact_at(&mut back, 4000).unwrap();
        assert_eq!(&back, b"across a page boundary+pwrite");
        assert_eq!(file.read(4022, 7), Some(&b"+pwrite"[..]));
        assert!(!writer.append_via_file(&vec![0u8; SIZE]).unwrap());
    }

    #[test]
    fn zeros_ahead_are_written_only_past_the_write_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = Arc::new(MappedFile::create(&vfs(), &path, SIZE).unwrap());
        let mut writer = file.writer().unwrap();
        writer.write_zeros_ahead(4096).unwrap();
        assert_eq!(writer.zeroed_until(), 4096);
        // Records run past the zeroed window; topping it up must start at the write position,
        // not at the old window end, or it would zero [4096, 5000).
        assert!(writer.append_via_file(&[0xAB; 5000]).unwrap());
        writer.write_zeros_ahead(8192).unwrap();
        assert_eq!(writer.zeroed_until(), 8192);
        // A smaller target changes nothing, a larger one stops at the end of the file.
        writer.write_zeros_ahead(100).unwrap();
        assert_eq!(writer.zeroed_until(), 8192);
        writer.write_zeros_ahead(SIZE * 2).unwrap();
        assert_eq!(writer.zeroed_until(), SIZE);
        assert!(writer.append_via_file(b"tail").unwrap());
        let reader = vfs().open_file(&path, OpenMode::ReadOnly).unwrap();
        let mut back = vec![0u8; SIZE];
        reader.read_exact_at(&mut back, 0).unwrap();
        assert!(back[..5000].iter().all(|&b| b == 0xAB));
        assert_eq!(&back[5000..5004], b"tail");
        assert!(back[5004..].iter().all(|&b| b == 0));
        assert_eq!(reader.len().unwrap(), SIZE as u64, "the file did not grow");
    }

    #[test]
    fn delete_unlinks_but_keeps_the_mapping_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = Arc::new(MappedFile::create(&vfs(), &path, SIZE).unwrap());
        file.writer().unwrap().append(b"still here");
        file.delete(&vfs()).unwrap();
        assert!(!path.exists());
        assert_eq!(file.readable(), b"still here");
    }

    /// A self-describing chunk: `len` (u32 LE), `seq` (u32 LE), `len` payload bytes derived from
    /// `seq`, CRC32 of all of that (u32 LE).
    fn chunk(seq: u32, len: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(12 + len);
        bytes.extend_from_slice(&(len as u32).to_le_bytes());
        bytes.extend_from_slice(&seq.to_le_bytes());
        bytes.extend((0..len).map(|i| (seq as usize * 31 + i) as u8));
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Checks every chunk in `readable`; returns how many there are. Panics on a partial or
    /// corrupt chunk: the reader saw an unpublished byte.
    fn verify_chunks(readable: &[u8]) -> u32 {
        let mut pos = 0;
        let mut seq = 0u32;
        while pos < readable.len() {
            let header = readable
                .get(pos..pos + 8)
                .expect("partial chunk header visible");
            let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
            let found_seq = u32::from_le_bytes(header[4..].try_into().unwrap());
            assert_eq!(found_seq, seq, "chunk at {pos}");
            let body = readable
                .get(pos..pos + 8 + len + 4)
                .expect("partial chunk visible");
            let crc = u32::from_le_bytes(body[8 + len..].try_into().unwrap());
            assert_eq!(crc32fast::hash(&body[..8 + len]), crc, "torn chunk {seq}");
            pos += 12 + len;
            seq += 1;
        }
        seq
    }

    #[test]
    fn concurrent_readers_never_see_unpublished_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let size = 512 * 1024;
        let file = Arc::new(MappedFile::create(&vfs(), &dir.path().join("f"), size).unwrap());
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let file = Arc::clone(&file);
                let done = Arc::clone(&done);
                thread::spawn(move || {
                    let mut last = 0;
                    let mut checks = 0u64;
                    loop {
                        let finished = done.load(Ordering::Acquire);
                        let count = verify_chunks(file.readable());
                        assert!(count >= last, "published chunks went backwards");
                        last = count;
                        checks += 1;
                        if finished {
                            return (last, checks);
                        }
                    }
                })
            })
            .collect();

        let mut writer = file.writer().unwrap();
        let mut seq = 0u32;
        let mut state = 0x9E37_79B9u32;
        loop {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let bytes = chunk(seq, (state % 400) as usize);
            if bytes.len() > writer.remaining() {
                break;
            }
            let position = writer.position();
            match seq % 3 {
                0 => assert!(writer.append(&bytes)),
                1 => {
                    // Two parts with a pause between them, then publish.
                    let half = bytes.len() / 2;
                    writer.write_unpublished(position + half, &bytes[half..]);
                    thread::yield_now();
                    writer.write_unpublished(position, &bytes[..half]);
                    writer.publish(position + bytes.len());
                }
                _ => {
                    // Garbage first, then the real bytes, in place.
                    let region = writer.unpublished_mut(position, bytes.len());
                    region.fill(0xFF);
                    region.copy_from_slice(&bytes);
                    writer.publish(position + bytes.len());
                }
            }
            seq += 1;
        }
        done.store(true, Ordering::Release);
        assert!(seq > 2000, "only {seq} appends");
        for reader in readers {
            let (count, checks) = reader.join().unwrap();
            assert_eq!(count, seq);
            assert!(checks > 0);
        }
        assert_eq!(verify_chunks(file.readable()), seq);
    }
}
