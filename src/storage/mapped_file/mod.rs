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
//!
//! The code is split by concern: this module has the file itself, its readers and the operations
//! before it is shared; `writer` the single writer.

mod writer;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

pub use writer::MappedWriter;

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
mod tests;
