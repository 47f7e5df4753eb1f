//! The open files of a [`SimVfs`](super::SimVfs) and their mappings.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, MutexGuard};

use super::buffer::{Content, MapBuf};
use super::disk::{FileId, Shared, State};
use super::{enospc, invalid, FaultKind};
use crate::storage::vfs::{MapRegion, VfsFile};

/// An open file of a [`SimVfs`](super::SimVfs) (stays usable after the file is unlinked).
#[derive(Debug)]
pub(super) struct SimFile {
    pub(super) shared: Arc<Shared>,
    pub(super) id: FileId,
    pub(super) path: PathBuf,
    pub(super) writable: bool,
}

impl SimFile {
    fn state(&self) -> MutexGuard<'_, State> {
        State::lock(&self.shared)
    }

    fn check_writable(&self) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        Ok(())
    }

    fn resize(&self, len: u64, kind: FaultKind, only_grow: bool) -> io::Result<()> {
        self.check_writable()?;
        let mut st = self.state();
        st.alive()?;
        st.check_fault(kind)?;
        let len = usize::try_from(len).map_err(|_| enospc())?;
        let cur = st.file(self.id).cur.len();
        if !(only_grow && len <= cur) {
            st.check_space(len.saturating_sub(cur) as u64)?;
            st.file(self.id).cur.set_len(len)?;
        }
        st.done();
        Ok(())
    }
}

impl VfsFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        let mut st = self.state();
        st.alive()?;
        Ok(st.file(self.id).cur.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.resize(len, FaultKind::Allocate, false)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.resize(len, FaultKind::Allocate, true)
    }

    fn zero_range(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut st = self.state();
        st.alive()?;
        let cur = st.file(self.id).cur.len() as u64;
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= cur)
            .ok_or_else(|| {
                invalid(format!(
                    "zero_range [{offset}, +{len}) is not inside {} (length {cur})",
                    self.path.display()
                ))
            })?;
        st.check_fault(FaultKind::Write)?;
        if end > offset {
            let zeros = vec![0u8; (end - offset) as usize];
            st.file(self.id).cur.write(offset as usize, &zeros)?;
        }
        st.done();
        Ok(())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        let data = st.file(self.id);
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > data.cur.len() as u64) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("SimVfs: read past the end of {}", self.path.display()),
            ));
        }
        data.cur.read(offset as usize, buf);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut st = self.state();
        st.alive()?;
        st.check_fault(FaultKind::Write)?;
        let offset = usize::try_from(offset).map_err(|_| enospc())?;
        let cur = st.file(self.id).cur.len();
        st.check_space((offset + buf.len()).saturating_sub(cur) as u64)?;
        st.file(self.id).cur.write(offset, buf)?;
        st.done();
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.state();
        st.alive()?;
        st.check_fault(FaultKind::Sync)?;
        let data = st.file(self.id);
        let len = data.cur.len();
        data.make_durable(0, len);
        st.done();
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn map(&self, len: usize, writable: bool) -> io::Result<Box<dyn MapRegion>> {
        if writable {
            self.check_writable()?;
        }
        let mut st = self.state();
        st.alive()?;
        let data = st.file(self.id);
        let file_len = data.cur.len();
        if len == 0 || len > file_len {
            return Err(invalid(format!(
                "refusing to map {len} bytes of {} (length {file_len}): empty, or past the end",
                self.path.display()
            )));
        }
        let buf = match &data.cur {
            Content::Mapped(m) => m.clone(),
            Content::Plain(v) => {
                let m = Arc::new(MapBuf::new(v));
                data.cur = Content::Mapped(m.clone());
                m
            }
        };
        Ok(Box::new(SimMapRegion {
            shared: self.shared.clone(),
            id: self.id,
            buf,
            len,
            writable,
        }))
    }
}

/// A mapping of a [`SimVfs`](super::SimVfs) file: a view of its current image.
#[derive(Debug)]
struct SimMapRegion {
    shared: Arc<Shared>,
    id: FileId,
    buf: Arc<MapBuf>,
    len: usize,
    writable: bool,
}

// SAFETY: `buf` is held by this region through an `Arc`, so the allocation (aligned to 4096,
// `len <= buf.len` checked in `SimFile::map`, `len > 0`) is neither freed nor moved before the
// region drops; the file's buffer never changes size while a region holds it (`plain_mut`
// refuses while the `Arc` is shared). `as_mut_ptr` returns the same pointer only when writable.
// `flush_range`, `prefault_write` and `advise_sequential` only read the buffer. `MapBuf` is
// `Send + Sync`.
unsafe impl MapRegion for SimMapRegion {
    fn as_ptr(&self) -> *const u8 {
        self.buf.ptr.as_ptr()
    }

    fn as_mut_ptr(&self) -> *mut u8 {
        if self.writable {
            self.buf.ptr.as_ptr()
        } else {
            std::ptr::null_mut()
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn flush_range(&self, offset: usize, len: usize) -> io::Result<()> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                invalid(format!(
                    "flush_range [{offset}, +{len}) outside a mapping of {} bytes",
                    self.len
                ))
            })?;
        let mut st = State::lock(&self.shared);
        st.alive()?;
        st.check_fault(FaultKind::Sync)?;
        if let Some(data) = st.files.get_mut(&self.id) {
            data.make_durable(offset, end);
        }
        st.done();
        Ok(())
    }

    fn prefault_write_range(&self, offset: usize, len: usize) -> io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.len()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("prefault of [{offset}, +{len}) outside the mapping"),
            ));
        }
        Ok(())
    }

    fn advise_sequential(&self) -> io::Result<()> {
        Ok(())
    }
}
