//! The open files of [`OsVfs`](super::OsVfs).
//!
//! Invariants:
//!
//! * Files are only ever accessed positionally (`pread`/`pwrite`), never through a cursor, so
//!   one handle is safe to share between threads.
//! * [`VfsFile::allocate`] never leaves a hole in the allocated range and never changes a byte
//!   that was already there; [`VfsFile::zero_range`] never changes the file length.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use memmap2::MmapOptions;

use super::{allocate_by_writing_zeros, invalid_input, zero_range_by_writing, OsMapRegion};
use crate::storage::vfs::{MapRegion, VfsFile};

/// An open file of [`OsVfs`](super::OsVfs).
#[derive(Debug)]
pub struct OsFile {
    pub(super) file: File,
    pub(super) path: PathBuf,
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
