//! The current image of a file: a plain vector, or a page-aligned heap buffer once mapped.
//!
//! Invariants:
//!
//! * A mapped file's current image lives in one heap buffer allocated at the file's full length
//!   when it is first mapped; it never moves or changes size while a region of it lives (a
//!   resize of such a file is refused with `InvalidInput`), so region pointers stay valid.
//! * The simulated disk reads mapped memory inside its own operations (sync, crash snapshot,
//!   `read_exact_at`). Like the kernel reading a page under a writer, a thread writing through
//!   the mapping into the very bytes a concurrent operation reads would race; the crash tests
//!   drive the store from one thread, and the engine only syncs bytes it has finished writing.

use std::alloc::{self, Layout};
use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

use super::mapped_resize;

/// Alignment of mapped buffers (a real mapping is page-aligned).
pub(super) const MAP_ALIGN: usize = 4096;

/// A fixed-size, page-aligned, zero-initialised heap buffer: the current image of a mapped file.
pub(super) struct MapBuf {
    pub(super) ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `MapBuf` owns its allocation exclusively; the pointer is never reallocated or freed
// before drop. Concurrent access through it follows the rules of the module docs (the mapping
// contract of `MapRegion`), exactly as for a real shared mapping, which is `Send + Sync` too.
unsafe impl Send for MapBuf {}
// SAFETY: see the `Send` impl: shared access goes through raw pointers only.
unsafe impl Sync for MapBuf {}

impl MapBuf {
    fn layout(len: usize) -> Layout {
        Layout::from_size_align(len.max(1), MAP_ALIGN).expect("mapping layout")
    }

    pub(super) fn new(content: &[u8]) -> MapBuf {
        let layout = MapBuf::layout(content.len());
        // SAFETY: the layout has a non-zero size (`max(1)`).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        // SAFETY: `ptr` is a fresh allocation of at least `content.len()` bytes that cannot
        // overlap `content`.
        unsafe { std::ptr::copy_nonoverlapping(content.as_ptr(), ptr.as_ptr(), content.len()) };
        MapBuf {
            ptr,
            len: content.len(),
        }
    }

    fn read(&self, offset: usize, buf: &mut [u8]) {
        assert!(offset + buf.len() <= self.len, "MapBuf read out of range");
        // SAFETY: the range is inside the allocation (checked above) and `buf` is a distinct
        // Rust buffer. The bytes may be written through a mapping by another thread only under
        // the single-writer discipline described in the module docs.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(offset),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
    }

    fn write(&self, offset: usize, src: &[u8]) {
        assert!(offset + src.len() <= self.len, "MapBuf write out of range");
        // SAFETY: the range is inside the allocation (checked above); `src` is a distinct Rust
        // buffer. Writing the file's bytes is the file's own data changing, which the
        // `MapRegion` contract allows under a live mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len())
        };
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len];
        self.read(0, &mut v);
        v
    }
}

impl Drop for MapBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout and not freed before.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), MapBuf::layout(self.len)) };
    }
}

impl fmt::Debug for MapBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MapBuf({} bytes at {:p})", self.len, self.ptr)
    }
}

/// The current image of a file: a plain vector, or the mapped buffer once mapped.
#[derive(Debug)]
pub(super) enum Content {
    Plain(Vec<u8>),
    Mapped(Arc<MapBuf>),
}

impl Content {
    pub(super) fn len(&self) -> usize {
        match self {
            Content::Plain(v) => v.len(),
            Content::Mapped(m) => m.len,
        }
    }

    pub(super) fn to_vec(&self) -> Vec<u8> {
        match self {
            Content::Plain(v) => v.clone(),
            Content::Mapped(m) => m.to_vec(),
        }
    }

    pub(super) fn read(&self, offset: usize, buf: &mut [u8]) {
        match self {
            Content::Plain(v) => buf.copy_from_slice(&v[offset..offset + buf.len()]),
            Content::Mapped(m) => m.read(offset, buf),
        }
    }

    /// The plain vector, converting an unused mapped buffer back; `None` while a region lives.
    fn plain_mut(&mut self) -> Option<&mut Vec<u8>> {
        if let Content::Mapped(m) = self {
            if Arc::strong_count(m) > 1 {
                return None;
            }
            *self = Content::Plain(m.to_vec());
        }
        match self {
            Content::Plain(v) => Some(v),
            Content::Mapped(_) => None,
        }
    }

    /// Writes `src` at `offset` (inside the current length for a mapped file).
    pub(super) fn write(&mut self, offset: usize, src: &[u8]) -> io::Result<()> {
        let end = offset + src.len();
        if let Content::Mapped(m) = self {
            if end <= m.len {
                m.write(offset, src);
                return Ok(());
            }
        }
        let v = self.plain_mut().ok_or_else(mapped_resize)?;
        if v.len() < end {
            v.resize(end, 0);
        }
        v[offset..end].copy_from_slice(src);
        Ok(())
    }

    pub(super) fn set_len(&mut self, len: usize) -> io::Result<()> {
        if len == self.len() {
            return Ok(());
        }
        self.plain_mut().ok_or_else(mapped_resize)?.resize(len, 0);
        Ok(())
    }
}
