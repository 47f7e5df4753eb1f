//! The real file system: [`OsVfs`] over std, memmap2 and libc, plus the wall clock.
//!
//! Invariants:
//!
//! * Files are only ever accessed positionally (`pread`/`pwrite`), never through a cursor, so
//!   one handle is safe to share between threads.
//! * [`VfsFile::allocate`] never leaves a hole in the allocated range and never changes a byte
//!   that was already there; [`VfsFile::zero_range`] never changes the file length.
//! * [`VfsFile::map`] refuses to map past the end of the file, and mappings are never remapped
//!   or resized, which is what makes [`OsMapRegion`] a sound [`MapRegion`].
//! * Linux is the target: `fallocate`, `FALLOC_FL_ZERO_RANGE` and `MADV_POPULATE_WRITE` are used
//!   there; other unix systems get the portable write-zeros fallbacks.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::{Advice, MmapOptions, MmapRaw};

use super::vfs::{DirEntry, DiskUsage, FileKind, LockGuard, MapRegion, OpenMode, Vfs, VfsFile};

/// Chunk size of the write-zeros fallbacks (and of their read-before-write check).
pub const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// The content RocketMQ writes into an empty `lock` file.
const LOCK_FILE_CONTENT: &[u8] = b"lock";

/// The real file system of the host.
#[derive(Debug, Default, Clone)]
pub struct OsVfs;

/// An open file of [`OsVfs`].
#[derive(Debug)]
pub struct OsFile {
    file: File,
    path: PathBuf,
}

/// A shared mapping made by [`OsFile::map`].
#[derive(Debug)]
pub struct OsMapRegion {
    raw: MmapRaw,
    writable: bool,
}

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

impl VfsFile for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        match fallocate(&self.file, 0, 0, len) {
            Ok(()) => return Ok(()),
            Err(err) if is_unsupported(&err) => {}
            Err(err) => return Err(err),
        }
        allocate_by_writing_zeros(&self.file, len)
    }

    fn zero_range(&self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| invalid_input("zero_range: offset + len overflows"))?;
        let file_len = self.len()?;
        if end > file_len {
            return Err(invalid_input(format!(
                "zero_range [{offset}, {end}) is not inside {} (length {file_len})",
                self.path.display()
            )));
        }
        if len == 0 {
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        match fallocate(&self.file, libc::FALLOC_FL_ZERO_RANGE, offset, len) {
            Ok(()) => return Ok(()),
            Err(err) if is_unsupported(&err) => {}
            Err(err) => return Err(err),
        }
        zero_range_by_writing(&self.file, offset, len)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }

    fn map(&self, len: usize, writable: bool) -> io::Result<Box<dyn MapRegion>> {
        let file_len = self.len()?;
        if len == 0 || len as u64 > file_len {
            return Err(invalid_input(format!(
                "refusing to map {len} bytes of {} (length {file_len}): empty, or past the end",
                self.path.display()
            )));
        }
        let mut options = MmapOptions::new();
        options.len(len);
        let raw = if writable {
            options.map_raw(&self.file)?
        } else {
            options.map_raw_read_only(&self.file)?
        };
        debug_assert_eq!(raw.len(), len);
        Ok(Box::new(OsMapRegion { raw, writable }))
    }
}

// SAFETY: `MmapRaw` owns one mapping of exactly `len` bytes (`len > 0`, checked in
// `OsFile::map`) at a fixed, page-aligned address until it is dropped; this type never remaps
// or resizes it. `as_mut_ptr` hands out the same pointer only for a read-write mapping and null
// otherwise. msync and madvise(MADV_POPULATE_WRITE / MADV_SEQUENTIAL) leave every byte's value
// unchanged. `MmapRaw` is `Send + Sync`.
unsafe impl MapRegion for OsMapRegion {
    fn as_ptr(&self) -> *const u8 {
        self.raw.as_ptr()
    }

    fn as_mut_ptr(&self) -> *mut u8 {
        if self.writable {
            self.raw.as_mut_ptr()
        } else {
            std::ptr::null_mut()
        }
    }

    fn len(&self) -> usize {
        self.raw.len()
    }

    fn flush_range(&self, offset: usize, len: usize) -> io::Result<()> {
        // memmap2 checks the range and rounds the start down to a page boundary.
        self.raw.flush_range(offset, len)
    }

    fn prefault_write_range(&self, offset: usize, len: usize) -> io::Result<()> {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > self.raw.len())
        {
            return Err(invalid_input(format!(
                "prefault of [{offset}, +{len}) outside a mapping of {} bytes",
                self.raw.len()
            )));
        }
        if !self.writable || len == 0 {
            return Ok(());
        }
        populate_write(&self.raw, offset, len)
    }

    fn advise_sequential(&self) -> io::Result<()> {
        self.raw.advise(Advice::Sequential)
    }

    fn advise_random(&self) -> io::Result<()> {
        self.raw.advise(Advice::Random)
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

/// `MADV_POPULATE_WRITE` over the pages covering `[offset, offset + len)` (inside the mapping,
/// checked by the caller); `Ok(())` when the kernel does not know the advice (`EINVAL`, before
/// Linux 5.14). There is deliberately no fallback that touches a byte per page: the range may
/// be written by the mapped file's writer at the same time, and a read-and-write-back of a
/// byte could undo its store; without the advice the writer takes its own faults.
#[cfg(target_os = "linux")]
fn populate_write(raw: &MmapRaw, offset: usize, len: usize) -> io::Result<()> {
    match raw.advise_range(Advice::PopulateWrite, offset, len) {
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        result => result,
    }
}

/// No write prefault outside Linux: first writes take their page faults.
#[cfg(not(target_os = "linux"))]
fn populate_write(_raw: &MmapRaw, _offset: usize, _len: usize) -> io::Result<()> {
    Ok(())
}

/// Formats `ms` (milliseconds since the Unix epoch) as `yyyyMMddHHmmssSSS` in the local time
/// zone, the way RocketMQ names index files (17 digits for years 1000–9999).
///
/// Uses `localtime_r`, which reads the `TZ` environment variable (once, on first use, in
/// glibc). Falls back to UTC if the time cannot be represented.
pub fn format_local_time_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let fields = local_time_fields(secs).unwrap_or_else(|| utc_time_fields(secs));
    format_fields(fields, millis)
}

/// The local hour of day (0–23) at `ms` since the epoch (`localtime_r`; UTC if that fails).
pub fn local_hour(ms: i64) -> u32 {
    let secs = ms.div_euclid(1000);
    let fields = local_time_fields(secs).unwrap_or_else(|| utc_time_fields(secs));
    fields.3 as u32
}

/// Milliseconds since the Unix epoch by the wall clock (negative before 1970).
///
/// Read on every put: `clock_gettime` straight into whole milliseconds, without `SystemTime`'s
/// checked subtraction and 128-bit division (about half the cost of the read through std).
#[cfg(unix)]
pub fn now_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call; CLOCK_REALTIME
    // always exists, so the call cannot fail with valid arguments.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    if rc != 0 {
        return now_ms_std();
    }
    // tv_nsec is in [0, 1e9): flooring division, also before 1970. (`time_t` and `c_long` are
    // i64 on 64-bit targets, i32 on some 32-bit ones.)
    #[allow(clippy::useless_conversion)]
    let (secs, nanos) = (i64::from(ts.tv_sec), i64::from(ts.tv_nsec));
    secs.saturating_mul(1000).saturating_add(nanos / 1_000_000)
}

/// Milliseconds since the Unix epoch by the wall clock (negative before 1970).
#[cfg(not(unix))]
pub fn now_ms() -> i64 {
    now_ms_std()
}

/// [`now_ms`] through `SystemTime`.
fn now_ms_std() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(err) => i64::try_from(err.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// Calendar fields: year, month (1–12), day (1–31), hour, minute, second.
type TimeFields = (i64, i64, i64, i64, i64, i64);

fn format_fields((year, month, day, hour, minute, second): TimeFields, millis: i64) -> String {
    format!("{year:04}{month:02}{day:02}{hour:02}{minute:02}{second:02}{millis:03}")
}

fn local_time_fields(secs: i64) -> Option<TimeFields> {
    let time = libc::time_t::try_from(secs).ok()?;
    let mut tm = MaybeUninit::<libc::tm>::uninit();
    // SAFETY: both pointers are valid for the duration of the call: `time` is a live local and
    // `tm` is writable memory the size of a `struct tm`. localtime_r is the reentrant variant:
    // it touches no shared buffer.
    let result = unsafe { libc::localtime_r(&time, tm.as_mut_ptr()) };
    if result.is_null() {
        return None;
    }
    // SAFETY: localtime_r returned non-null, so it filled in the whole `struct tm`.
    let tm = unsafe { tm.assume_init() };
    Some((
        i64::from(tm.tm_year) + 1900,
        i64::from(tm.tm_mon) + 1,
        i64::from(tm.tm_mday),
        i64::from(tm.tm_hour),
        i64::from(tm.tm_min),
        i64::from(tm.tm_sec),
    ))
}

/// UTC calendar fields of `secs` since the epoch (proleptic Gregorian; Howard Hinnant's
/// `civil_from_days`). Total: no libc, no failure.
fn utc_time_fields(secs: i64) -> TimeFields {
    let days = secs.div_euclid(86_400);
    let second_of_day = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
    )
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

/// `fallocate(2)`, retried on `EINTR`.
#[cfg(target_os = "linux")]
fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    let offset = libc::off_t::try_from(offset)
        .map_err(|_| invalid_input("fallocate: offset does not fit off_t"))?;
    let len = libc::off_t::try_from(len)
        .map_err(|_| invalid_input("fallocate: len does not fit off_t"))?;
    loop {
        // SAFETY: fallocate only reads its integer arguments; the descriptor is owned by `file`,
        // which is borrowed for the duration of the call, so it is open.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Whether `err` says the file system does not implement a `fallocate` mode.
#[cfg(target_os = "linux")]
fn is_unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
    )
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
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn temp_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn blocks_bytes(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().blocks() * 512
    }

    #[test]
    fn allocate_makes_a_non_sparse_file_of_the_requested_length() {
        let dir = temp_dir();
        let path = dir.path().join("seg");
        let file = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap();
        let len = 3 * 1024 * 1024 + 4096;
        file.allocate(len).unwrap();
        assert_eq!(file.len().unwrap(), len);
        assert!(blocks_bytes(&path) >= len, "blocks {}", blocks_bytes(&path));
    }

    #[test]
    fn allocate_by_writing_zeros_fills_holes_and_keeps_data() {
        let dir = temp_dir();
        let path = dir.path().join("sparse");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let len: u64 = 4 * 1024 * 1024;
        // A sparse file with data in the middle of it.
        file.set_len(len / 2).unwrap();
        file.write_all_at(b"data", 1024 * 1024 + 10).unwrap();
        assert!(blocks_bytes(&path) < len / 2, "file should start sparse");

        allocate_by_writing_zeros(&file, len).unwrap();

        assert_eq!(file.metadata().unwrap().len(), len);
        assert!(blocks_bytes(&path) >= len, "blocks {}", blocks_bytes(&path));
        let mut all = vec![0u8; len as usize];
        file.read_exact_at(&mut all, 0).unwrap();
        assert_eq!(&all[1024 * 1024 + 10..1024 * 1024 + 14], b"data");
        let nonzero = all.iter().filter(|&&byte| byte != 0).count();
        assert_eq!(nonzero, 4);
    }

    #[test]
    fn zero_range_zeroes_exactly_the_range_and_keeps_length() {
        let dir = temp_dir();
        let path = dir.path().join("z");
        let file = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap();
        let len = 2 * 1024 * 1024 + 100;
        file.write_all_at(&vec![0xAB; len], 0).unwrap();
        file.zero_range(1000, 1024 * 1024 + 5).unwrap();
        assert_eq!(file.len().unwrap(), len as u64);
        let mut back = vec![0u8; len];
        file.read_exact_at(&mut back, 0).unwrap();
        assert!(back[..1000].iter().all(|&b| b == 0xAB));
        assert!(back[1000..1000 + 1024 * 1024 + 5].iter().all(|&b| b == 0));
        assert!(back[1000 + 1024 * 1024 + 5..].iter().all(|&b| b == 0xAB));
        let past_end = file.zero_range(len as u64 - 10, 11).unwrap_err();
        assert_eq!(past_end.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn zero_range_fallback_zeroes_and_skips_chunks_already_zero() {
        let dir = temp_dir();
        let path = dir.path().join("z");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let len = 3 * ZERO_CHUNK_BYTES + 17;
        file.write_all_at(&vec![0x5A; len], 0).unwrap();
        let (offset, zeroed) = (123usize, 2 * ZERO_CHUNK_BYTES + 7);

        zero_range_by_writing(&file, offset as u64, zeroed as u64).unwrap();

        let mut back = vec![0u8; len];
        file.read_exact_at(&mut back, 0).unwrap();
        assert!(back[..offset].iter().all(|&b| b == 0x5A));
        assert!(back[offset..offset + zeroed].iter().all(|&b| b == 0));
        assert!(back[offset + zeroed..].iter().all(|&b| b == 0x5A));

        // A second call finds every chunk zero and writes nothing: the modification time of a
        // file set far in the past stays where it was.
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        file.set_modified(old).unwrap();
        zero_range_by_writing(&file, offset as u64, zeroed as u64).unwrap();
        assert_eq!(file.metadata().unwrap().modified().unwrap(), old);
        // ...whereas a chunk with a stray byte does get written.
        file.write_all_at(&[1], (offset + 5) as u64).unwrap();
        file.set_modified(old).unwrap();
        zero_range_by_writing(&file, offset as u64, zeroed as u64).unwrap();
        assert_ne!(file.metadata().unwrap().modified().unwrap(), old);
        let mut byte = [9u8];
        file.read_exact_at(&mut byte, (offset + 5) as u64).unwrap();
        assert_eq!(byte, [0]);
    }

    #[test]
    fn allocate_and_zero_range_work_on_tmpfs() {
        // tmpfs lacks FALLOC_FL_ZERO_RANGE (and, on old kernels, fallocate), so this runs the
        // EOPNOTSUPP fallbacks through `OsFile`. Skipped where /dev/shm does not exist.
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        let path = dir.path().join("t");
        let file = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap();
        let len = 2 * ZERO_CHUNK_BYTES + 4096;
        file.allocate(len as u64).unwrap();
        assert_eq!(file.len().unwrap(), len as u64);
        assert!(blocks_bytes(&path) >= len as u64);
        file.write_all_at(&vec![0xCD; len], 0).unwrap();
        file.zero_range(10, (len - 20) as u64).unwrap();
        let mut back = vec![0u8; len];
        file.read_exact_at(&mut back, 0).unwrap();
        assert!(back[..10].iter().all(|&b| b == 0xCD));
        assert!(back[10..len - 10].iter().all(|&b| b == 0));
        assert!(back[len - 10..].iter().all(|&b| b == 0xCD));
    }

    #[test]
    fn map_longer_than_the_file_or_empty_is_refused() {
        let dir = temp_dir();
        let path = dir.path().join("m");
        let file = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap();
        file.allocate(8192).unwrap();
        let err = file.map(8193, true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = file.map(0, false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let region = file.map(8192, true).unwrap();
        assert_eq!(region.len(), 8192);
        assert_eq!(region.as_ptr() as usize % 4096, 0);
    }

    #[test]
    fn read_only_mapping_has_no_mut_ptr_and_ignores_prefault() {
        let dir = temp_dir();
        let path = dir.path().join("ro");
        OsVfs
            .open_file(&path, OpenMode::CreateNew)
            .unwrap()
            .allocate(4096)
            .unwrap();
        let file = OsVfs.open_file(&path, OpenMode::ReadOnly).unwrap();
        let region = file.map(4096, false).unwrap();
        assert!(region.as_mut_ptr().is_null());
        region.prefault_write().unwrap();
        region.advise_sequential().unwrap();
        region.flush_range(0, 4096).unwrap();
        assert!(
            file.map(4096, true).is_err(),
            "read-only file mapped writable"
        );
    }

    #[test]
    fn mapped_write_is_visible_through_read_exact_at_after_flush() {
        let dir = temp_dir();
        let path = dir.path().join("w");
        let file = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap();
        file.allocate(3 * 4096).unwrap();
        let region = file.map(3 * 4096, true).unwrap();
        region.prefault_write().unwrap();
        let payload = b"through the mapping";
        // SAFETY: the region is a live writable mapping of 3 pages; 5000 + payload.len() is
        // inside it, and nothing else accesses these bytes while we write.
        unsafe {
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                region.as_mut_ptr().add(5000),
                payload.len(),
            );
        }
        region.flush_range(5000, payload.len()).unwrap();
        let mut back = vec![0u8; payload.len()];
        file.read_exact_at(&mut back, 5000).unwrap();
        assert_eq!(&back, payload);
        let err = region.flush_range(3 * 4096 - 1, 2).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn lock_exclusive_refuses_a_second_holder_until_the_first_drops() {
        let dir = temp_dir();
        let path = dir.path().join("lock");
        let first = OsVfs.lock_exclusive(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"lock");
        let err = OsVfs.lock_exclusive(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(first);
        let again = OsVfs.lock_exclusive(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"lock");
        drop(again);
    }

    #[test]
    fn open_modes_create_open_and_refuse_as_documented() {
        let dir = temp_dir();
        let path = dir.path().join("f");
        let err = OsVfs.open_file(&path, OpenMode::Existing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let file = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap();
        file.write_all_at(b"abc", 0).unwrap();
        let err = OsVfs.open_file(&path, OpenMode::CreateNew).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        let file = OsVfs.open_file(&path, OpenMode::CreateOrOpen).unwrap();
        assert_eq!(file.len().unwrap(), 3, "CreateOrOpen must not truncate");
        let read_only = OsVfs.open_file(&path, OpenMode::ReadOnly).unwrap();
        assert!(read_only.write_all_at(b"x", 0).is_err());
    }

    #[test]
    fn read_dir_is_sorted_and_reports_kinds_without_following_symlinks() {
        let dir = temp_dir();
        let root = dir.path();
        std::fs::write(root.join("b"), b"12345").unwrap();
        std::fs::create_dir(root.join("a")).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("c")).unwrap();
        let entries = OsVfs.read_dir(root).unwrap();
        let summary: Vec<_> = entries.iter().map(|e| (e.name.as_str(), e.kind)).collect();
        assert_eq!(
            summary,
            [
                ("a", FileKind::Dir),
                ("b", FileKind::File),
                ("c", FileKind::Symlink)
            ]
        );
        assert_eq!(entries[1].len, 5);
        let meta = OsVfs.metadata(&root.join("c")).unwrap().unwrap();
        assert_eq!((meta.name.as_str(), meta.kind), ("c", FileKind::Symlink));
        assert_eq!(OsVfs.metadata(&root.join("nope")).unwrap(), None);
    }

    #[test]
    fn rename_remove_and_sync_dir_work() {
        let dir = temp_dir();
        let root = dir.path();
        let sub = root.join("x/y");
        OsVfs.create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("f"), b"1").unwrap();
        OsVfs.rename(&sub.join("f"), &sub.join("g")).unwrap();
        OsVfs.sync_dir(&sub).unwrap();
        assert_eq!(std::fs::read(sub.join("g")).unwrap(), b"1");
        OsVfs.remove_file(&sub.join("g")).unwrap();
        assert_eq!(OsVfs.metadata(&sub.join("g")).unwrap(), None);
        OsVfs.remove_dir_all(&root.join("x")).unwrap();
        assert_eq!(OsVfs.metadata(&root.join("x")).unwrap(), None);
    }

    #[test]
    fn disk_usage_reports_plausible_numbers() {
        let dir = temp_dir();
        let usage = OsVfs.disk_usage(dir.path()).unwrap();
        assert!(usage.total_bytes > 0);
        assert!(usage.available_bytes <= usage.total_bytes);
        assert!(OsVfs.disk_usage(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn utc_fields_match_known_dates() {
        assert_eq!(
            format_fields(utc_time_fields(1_700_000_000), 123),
            "20231114221320123"
        );
        assert_eq!(
            format_fields(utc_time_fields(951_782_400), 999),
            "20000229000000999"
        );
        assert_eq!(format_fields(utc_time_fields(-2), 500), "19691231235958500");
    }

    #[test]
    fn format_local_time_ms_agrees_with_the_local_utc_offset() {
        for ms in [
            0i64,
            1_700_000_000_123,
            951_782_400_999,
            1_719_792_000_001,
            -1_500,
        ] {
            let text = format_local_time_ms(ms);
            assert_eq!(text.len(), 17, "{text}");
            assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text}");
            let secs = ms.div_euclid(1000);
            let time = secs as libc::time_t;
            let mut tm = MaybeUninit::<libc::tm>::uninit();
            // SAFETY: valid pointers to a live time_t and to writable tm-sized memory.
            let result = unsafe { libc::localtime_r(&time, tm.as_mut_ptr()) };
            assert!(!result.is_null());
            // c_long is narrower than i64 on 32-bit targets.
            #[allow(clippy::unnecessary_cast)]
            // SAFETY: localtime_r succeeded, so it initialised the struct.
            let offset = unsafe { tm.assume_init() }.tm_gmtoff as i64;
            let expected = format_fields(utc_time_fields(secs + offset), ms.rem_euclid(1000));
            assert_eq!(text, expected, "ms {ms}");
        }
    }

    /// Child half of `format_local_time_ms_in_fixed_zones`: does nothing unless the parent set
    /// the variables.
    #[test]
    fn tz_child() {
        let Ok(expected) = std::env::var("ROCKETSTORE_TZ_CHILD_EXPECT") else {
            return;
        };
        let ms: i64 = std::env::var("ROCKETSTORE_TZ_CHILD_MS")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(format_local_time_ms(ms), expected);
        println!("tz_child checked {expected}");
    }

    #[test]
    fn format_local_time_ms_in_fixed_zones() {
        // Run in a child process so TZ is set before anything reads it, without racing the
        // other tests of this process.
        let exe = std::env::current_exe().unwrap();
        let cases = [
            ("UTC0", 1_700_000_000_123i64, "20231114221320123"),
            // POSIX zone string, needs no tzdata: UTC+8 like Asia/Shanghai.
            ("XST-8", 1_700_000_000_123, "20231115061320123"),
            ("UTC0", -1_500, "19691231235958500"),
        ];
        for (tz, ms, expected) in cases {
            let output = std::process::Command::new(&exe)
                .args(["--exact", "storage::os::tests::tz_child", "--nocapture"])
                .env("TZ", tz)
                .env("ROCKETSTORE_TZ_CHILD_MS", ms.to_string())
                .env("ROCKETSTORE_TZ_CHILD_EXPECT", expected)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "TZ={tz}: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(
                stdout.contains(&format!("tz_child checked {expected}")),
                "child did not run the check: {stdout}"
            );
        }
    }

    #[test]
    fn now_ms_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }

    #[test]
    fn now_ms_agrees_with_system_time() {
        let (before, fast, after) = (now_ms_std(), now_ms(), now_ms_std());
        assert!(
            before <= fast && fast <= after,
            "{before} <= {fast} <= {after}"
        );
    }
}
