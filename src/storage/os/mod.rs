//! The real file system: [`OsVfs`] over std, memmap2 and libc, plus the wall clock.
//!
//! Linux is the target: `fallocate`, `FALLOC_FL_ZERO_RANGE` and `MADV_POPULATE_WRITE` are used
//! there; other unix systems get the portable write-zeros fallbacks.
//!
//! The code is split by concern: this module has the file system calls on paths, directories,
//! the `lock` file and disk usage, and the portable write-zeros fallbacks of `allocate` and
//! `zero_range`; `file` the open files, `map` the mappings, `time` the wall clock and local
//! time.

mod file;
mod map;
mod time;

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub use file::OsFile;
pub use map::OsMapRegion;
pub use time::{format_local_time_ms, local_hour, now_ms};

use super::vfs::{DirEntry, DiskUsage, FileKind, LockGuard, OpenMode, Vfs, VfsFile};

/// Chunk size of the write-zeros fallbacks (and of their read-before-write check).
pub const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// The content RocketMQ writes into an empty `lock` file.
const LOCK_FILE_CONTENT: &[u8] = b"lock";

/// The real file system of the host.
#[derive(Debug, Default, Clone)]
pub struct OsVfs;

/// The `flock` held by [`OsVfs::lock_exclusive`]; released when dropped (closing the file
/// releases it too).
#[derive(Debug)]
pub struct OsLockGuard {
    file: File,
    path: PathBuf,
}

impl Vfs for OsVfs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            // DirEntry::metadata does not follow symlinks on unix. An entry removed between
            // the listing and the stat is simply not listed.
            let metadata = match entry.metadata() {
                Ok(metadata) => metadata,
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            };
            entries.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                kind: file_kind(metadata.file_type()),
                len: metadata.len(),
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    fn metadata(&self, path: &Path) -> io::Result<Option<DirEntry>> {
        match std::fs::symlink_metadata(path) {
            Ok(metadata) => Ok(Some(DirEntry {
                name: path
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                kind: file_kind(metadata.file_type()),
                len: metadata.len(),
            })),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
            OpenMode::CreateOrOpen => options.read(true).write(true).create(true),
            OpenMode::Existing => options.read(true).write(true),
            OpenMode::ReadOnly => options.read(true),
        };
        let file = options.open(path)?;
        Ok(Box::new(OsFile {
            file,
            path: path.to_path_buf(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn lock_exclusive(&self, path: &Path) -> io::Result<Box<dyn LockGuard>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("{} is locked by another holder", path.display()),
                ))
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(err),
        }
        if file.metadata()?.len() == 0 {
            file.write_all_at(LOCK_FILE_CONTENT, 0)?;
        }
        Ok(Box::new(OsLockGuard {
            file,
            path: path.to_path_buf(),
        }))
    }

    // The statvfs field types differ between platforms (u32 or u64), hence `u64::from`.
    #[allow(clippy::useless_conversion)]
    fn disk_usage(&self, path: &Path) -> io::Result<DiskUsage> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
        let mut stat = MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and `stat` points
        // to writable memory the size of a `statvfs`, which the call fills on success.
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: statvfs returned 0, so it initialised the whole struct.
        let stat = unsafe { stat.assume_init() };
        let fragment = u64::from(stat.f_frsize);
        Ok(DiskUsage {
            total_bytes: u64::from(stat.f_blocks).saturating_mul(fragment),
            available_bytes: u64::from(stat.f_bavail).saturating_mul(fragment),
        })
    }
}

impl LockGuard for OsLockGuard {}

impl Drop for OsLockGuard {
    fn drop(&mut self) {
        // Closing the descriptor releases the flock anyway; unlocking first only makes the
        // release independent of other descriptors sharing the open file description.
        if let Err(err) = self.file.unlock() {
            debug_assert!(false, "unlock of {} failed: {err}", self.path.display());
        }
    }
}

fn file_kind(file_type: std::fs::FileType) -> FileKind {
    if file_type.is_symlink() {
        FileKind::Symlink
    } else if file_type.is_file() {
        FileKind::File
    } else if file_type.is_dir() {
        FileKind::Dir
    } else {
        FileKind::Other
    }
}

fn invalid_input(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.into())
}

/// The `allocate` fallback: writes zeros over every hole in `[0, len)` (found with
/// `SEEK_HOLE`/`SEEK_DATA` where available) and over `[current length, len)`, in chunks of
/// [`ZERO_CHUNK_BYTES`]. Never changes a byte of existing data. Must not race with writers
/// of the same file.
pub fn allocate_by_writing_zeros(file: &File, len: u64) -> io::Result<()> {
    let file_len = file.metadata()?.len();
    let existing_end = file_len.min(len);
    let mut pos = 0;
    while pos < existing_end {
        let Some(hole_start) = seek_hole_or_data(file, pos, SeekTarget::Hole)? else {
            break;
        };
        if hole_start >= existing_end {
            break;
        }
        let hole_end = seek_hole_or_data(file, hole_start, SeekTarget::Data)?
            .unwrap_or(file_len)
            .min(existing_end);
        write_zeros(file, hole_start, hole_end - hole_start)?;
        pos = hole_end;
    }
    if file_len < len {
        write_zeros(file, file_len, len - file_len)?;
    }
    Ok(())
}

/// The `zero_range` fallback: zeroes `[offset, offset + len)` with `pwrite` in chunks of
/// [`ZERO_CHUNK_BYTES`], reading each chunk first and skipping it when it is already all zero,
/// so a repeated call writes nothing. The range must lie inside the file.
pub fn zero_range_by_writing(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let end = offset
        .checked_add(len)
        .ok_or_else(|| invalid_input("zero_range: offset + len overflows"))?;
    let zeros = vec![0u8; ZERO_CHUNK_BYTES];
    let mut current = vec![0u8; ZERO_CHUNK_BYTES];
    let mut pos = offset;
    while pos < end {
        let chunk = chunk_len(end - pos);
        file.read_exact_at(&mut current[..chunk], pos)?;
        if current[..chunk].iter().any(|&byte| byte != 0) {
            file.write_all_at(&zeros[..chunk], pos)?;
        }
        pos += chunk as u64;
    }
    Ok(())
}

fn write_zeros(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let zeros = vec![0u8; chunk_len(len)];
    let end = offset + len;
    let mut pos = offset;
    while pos < end {
        let chunk = chunk_len(end - pos);
        file.write_all_at(&zeros[..chunk], pos)?;
        pos += chunk as u64;
    }
    Ok(())
}

/// `min(remaining, ZERO_CHUNK_BYTES)` as a `usize`.
fn chunk_len(remaining: u64) -> usize {
    usize::try_from(remaining).map_or(ZERO_CHUNK_BYTES, |r| r.min(ZERO_CHUNK_BYTES))
}

#[derive(Clone, Copy)]
enum SeekTarget {
    Hole,
    Data,
}

/// `lseek(SEEK_HOLE / SEEK_DATA)` from `pos`; `None` when there is no such offset at or after
/// `pos` (`ENXIO`). Where the file system or OS cannot tell, the whole file counts as data
/// (no hole before the end), which is what Linux's generic implementation reports too.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_vendor = "apple"
))]
fn seek_hole_or_data(file: &File, pos: u64, target: SeekTarget) -> io::Result<Option<u64>> {
    use std::os::fd::AsRawFd;

    let whence = match target {
        SeekTarget::Hole => libc::SEEK_HOLE,
        SeekTarget::Data => libc::SEEK_DATA,
    };
    let pos = libc::off_t::try_from(pos).map_err(|_| invalid_input("seek: offset too large"))?;
    // SAFETY: lseek only reads its integer arguments and the descriptor owned by `file`, which
    // is borrowed (so open) for the call. Moving the file offset is harmless: every access to
    // these files is positional.
    let rc = unsafe { libc::lseek(file.as_raw_fd(), pos, whence) };
    if rc >= 0 {
        return Ok(Some(rc as u64));
    }
    let err = io::Error::last_os_error();
    match (err.raw_os_error(), target) {
        (Some(libc::ENXIO), _) => Ok(None),
        (Some(libc::EINVAL), SeekTarget::Hole) => Ok(None),
        (Some(libc::EINVAL), SeekTarget::Data) => Ok(Some(pos as u64)),
        _ => Err(err),
    }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_vendor = "apple"
)))]
fn seek_hole_or_data(_file: &File, pos: u64, target: SeekTarget) -> io::Result<Option<u64>> {
    Ok(match target {
        SeekTarget::Hole => None,
        SeekTarget::Data => Some(pos),
    })
}

#[cfg(test)]
mod tests;
