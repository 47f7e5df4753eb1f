//! The single writer of a [`MappedFile`]: appends, zeros ahead, writes below the end of the file
//! and publishes what it wrote.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::MappedFile;

/// The single writer of a [`MappedFile`]; dropping it lets [`MappedFile::writer`] hand out a
/// new one.
#[derive(Debug)]
pub struct MappedWriter {
    pub(super) file: Arc<MappedFile>,
    /// [`write_zeros_ahead`](MappedWriter::write_zeros_ahead) wrote zeros up to here.
    pub(super) zeroed_until: usize,
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
    /// [`FlushStrategy::Fdatasync`](super::FlushStrategy::Fdatasync). `Ok(false)`, writing
    /// nothing, if the bytes do not fit; on `Err` nothing is published.
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
