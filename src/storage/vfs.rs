//! The file-system trait: the only door through which the engine reaches the disk.
//!
//! The engine holds an `Arc<dyn Vfs>`. [`OsVfs`](super::os::OsVfs) is the real implementation;
//! a simulated disk that drops, tears or reorders unsynced pages implements the same traits for
//! crash tests, so the surface is kept small and easy to mock.
//!
//! Invariants every implementation must keep:
//!
//! * [`VfsFile::allocate`] leaves no hole in `[0, len)`: a later write into the range can fail
//!   only with an ordinary I/O error, never with `SIGBUS` from a mapped write into a hole on a
//!   full disk.
//! * [`VfsFile::map`] never maps past the end of the file.
//! * [`MapRegion`] is an `unsafe trait`: the safe mapped-file types of this module build slices
//!   from its pointers, so an implementation must honour the contract written on the trait.
//! * Nothing reports success for an operation that did not happen: a failed sync is an `Err`.

use std::fmt::Debug;
use std::io;
use std::path::Path;

/// What a directory entry is; symlinks are reported as such, never followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else: socket, fifo, device.
    Other,
}

/// One entry of a directory listing, or the result of [`Vfs::metadata`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The entry's file name (converted lossily if it is not UTF-8).
    pub name: String,
    /// The kind of the entry itself; symlinks are not followed.
    pub kind: FileKind,
    /// Length in bytes as the file system reports it (of the link itself for a symlink).
    pub len: u64,
}

/// How [`Vfs::open_file`] opens a file. Every mode but `ReadOnly` opens read-write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the file; fail with `AlreadyExists` if it exists.
    CreateNew,
    /// Create the file if missing, open it otherwise (never truncates).
    CreateOrOpen,
    /// Open an existing file read-write; `NotFound` if missing.
    Existing,
    /// Open an existing file read-only; `NotFound` if missing.
    ReadOnly,
}

/// Space figures of the file system holding a path (from `statvfs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskUsage {
    /// Size of the file system in bytes.
    pub total_bytes: u64,
    /// Bytes available to an unprivileged writer.
    pub available_bytes: u64,
}

/// A file system: directories, files, locks, space.
///
/// Object safe; the engine holds an `Arc<dyn Vfs>`.
pub trait Vfs: Send + Sync + Debug {
    /// Creates `path` and all missing parents; `Ok` if it already exists as a directory.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// The entries of directory `path` (without `.` and `..`), sorted by name.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>>;

    /// Kind and length of `path` (symlink not followed), `None` if it does not exist.
    fn metadata(&self, path: &Path) -> io::Result<Option<DirEntry>>;

    /// Opens (or creates) the file at `path` as `mode` says.
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>>;

    /// Unlinks the file at `path`. Mappings of it stay valid until they are dropped.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Removes the directory `path` and everything below it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;

    /// Renames `from` to `to`, replacing `to` if it is a file.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// fsync of a directory, making creates/renames/removes in it durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Opens/creates `path`, takes an exclusive non-blocking lock on it (`flock`, as RocketMQ
    /// locks its `lock` file), and writes the 4 bytes `lock` if the file is empty.
    ///
    /// `Err` of kind [`io::ErrorKind::WouldBlock`] when another holder has the lock (another
    /// process, or another open of the same path in this process). The lock is held until the
    /// returned guard drops.
    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn LockGuard>>;

    /// `statvfs` of the file system holding `path`.
    fn disk_usage(&self, path: &Path) -> io::Result<DiskUsage>;
}

/// Holds a lock taken by [`Vfs::lock_exclusive`]; dropping it releases the lock.
pub trait LockGuard: Send + Sync + Debug {}

/// An open file.
///
/// Positional I/O only (no cursor), so one handle can be shared by threads.
// `len` is fallible (it asks the file system), so an `is_empty` would add nothing.
#[allow(clippy::len_without_is_empty)]
pub trait VfsFile: Send + Sync + Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;

    /// Sets the length; extending reads as zeros (and may be sparse: use
    /// [`allocate`](Self::allocate) to reserve blocks). Never shorten a file that is mapped:
    /// touching a mapped page past the new end is `SIGBUS`.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Makes sure `[0, len)` has disk blocks reserved (never sparse): `fallocate(mode 0)`; where
    /// that is unsupported (`EOPNOTSUPP`/`ENOSYS`, e.g. tmpfs on old kernels) it writes zeros
    /// over the holes in 1 MiB chunks. Extends the file to `len` if shorter; never shortens it
    /// and never changes a byte of existing data. `ENOSPC` surfaces as the I/O error
    /// (`raw_os_error() == Some(ENOSPC)`).
    fn allocate(&self, len: u64) -> io::Result<()>;

    /// Zeroes `[offset, offset + len)` keeping its blocks allocated:
    /// `fallocate(FALLOC_FL_ZERO_RANGE)`; fallback: writes zeros in 1 MiB chunks, reading each
    /// chunk first and skipping chunks that are already zero, so a second call changes no byte
    /// and writes nothing. The range must lie inside the file (`InvalidInput` otherwise): this
    /// never changes the length. Not durable until a sync.
    fn zero_range(&self, offset: u64, len: u64) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `offset` (`UnexpectedEof` past the end).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// `fdatasync`: data and the metadata needed to read it back (e.g. the length).
    fn sync_data(&self) -> io::Result<()>;

    /// `fsync`: data and all metadata.
    fn sync_all(&self) -> io::Result<()>;

    /// Maps `[0, len)` shared, writable or read-only.
    ///
    /// Refuses with `InvalidInput` when `len` exceeds the file length or is zero: touching a
    /// mapped page past the end of the file would be `SIGBUS`. Writing through a read-write
    /// mapping needs a file opened read-write.
    fn map(&self, len: usize, writable: bool) -> io::Result<Box<dyn MapRegion>>;
}

/// A shared memory mapping of `[0, len)` of a file.
///
/// # Safety
///
/// The mapped-file types of this module turn these pointers into slices and atomics without
/// further checks, so an implementation must guarantee, for as long as the region lives:
///
/// * [`as_ptr`](Self::as_ptr) always returns the same non-null pointer, aligned to at least
///   8 bytes (a real mapping is page-aligned), valid for reads of [`len`](Self::len) bytes;
///   `len` never changes;
/// * for a writable region, [`as_mut_ptr`](Self::as_mut_ptr) returns that same pointer, valid
///   for writes of `len` bytes; for a read-only region it returns null;
/// * the memory is not freed, moved or remapped before the region drops, and no method of the
///   region writes to it except as the file's own data changes (`flush_range`, `prefault_write*`
///   and the `advise_*` hints leave every byte's value unchanged);
/// * the region is safe to use from several threads at once (`Send + Sync`).
///
/// The implementation cannot stop the *file* from being shortened by someone else (which turns
/// accesses into `SIGBUS`); the engine keeps that from happening by owning the store root
/// (lock file) and never shortening a mapped file.
pub unsafe trait MapRegion: Send + Sync + Debug {
    /// Start of the mapping.
    fn as_ptr(&self) -> *const u8;

    /// Start of the mapping for writing; null for a read-only mapping.
    fn as_mut_ptr(&self) -> *mut u8;

    /// Length of the mapping in bytes.
    fn len(&self) -> usize;

    /// Whether the mapping has no bytes (never true for a region returned by
    /// [`VfsFile::map`], which refuses empty mappings).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `msync(MS_SYNC)` of the page-aligned cover of `[offset, offset + len)`; `InvalidInput`
    /// if the range is not inside the mapping.
    fn flush_range(&self, offset: usize, len: usize) -> io::Result<()>;

    /// Pre-faults the whole mapping for writing; see
    /// [`prefault_write_range`](Self::prefault_write_range).
    fn prefault_write(&self) -> io::Result<()> {
        self.prefault_write_range(0, self.len())
    }

    /// Pre-faults the pages covering `[offset, offset + len)` for writing
    /// (`MADV_POPULATE_WRITE`) so first writes there take no page faults; every byte keeps its
    /// value, so this may run while a writer writes the same pages. `InvalidInput` if the range
    /// is not inside the mapping. `Ok(())` without doing anything where the kernel refuses with
    /// `EINVAL` (kernel before 5.14) and for a read-only mapping.
    fn prefault_write_range(&self, offset: usize, len: usize) -> io::Result<()>;

    /// Hints sequential read access (`MADV_SEQUENTIAL`); best effort, callers may ignore the
    /// result.
    fn advise_sequential(&self) -> io::Result<()>;

    /// Hints that a fault should bring in only the page it touches (`MADV_RANDOM`: no
    /// read-around); best effort. The default does nothing.
    fn advise_random(&self) -> io::Result<()> {
        Ok(())
    }
}
