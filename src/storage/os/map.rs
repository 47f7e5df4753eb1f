//! Shared mappings of [`OsFile`](super::OsFile)s.
//!
//! [`VfsFile::map`](crate::storage::vfs::VfsFile::map) refuses to map past the end of the file,
//! and mappings are never remapped or resized, which is what makes [`OsMapRegion`] a sound
//! [`MapRegion`].

use std::io;

use memmap2::{Advice, MmapRaw};

use super::invalid_input;
use crate::storage::vfs::MapRegion;

/// A shared mapping made by [`OsFile::map`](crate::storage::vfs::VfsFile::map).
#[derive(Debug)]
pub struct OsMapRegion {
    pub(super) raw: MmapRaw,
    pub(super) writable: bool,
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
