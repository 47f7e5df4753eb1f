//! A mapped file accessed only as big-endian `u32` words through atomics: the IndexFile, whose
//! header counters and hash slots are updated in place while readers walk its chains.
//!
//! The IndexFile layout (40-byte header, 4-byte slots, 20-byte entries) puts every field
//! boundary at a multiple of 4 from the start of the file, so every field is one or two whole
//! words. Invariants:
//!
//! * Every access to the mapped bytes goes through [`AtomicU32`], so no plain reference ever
//!   aliases a byte that another thread may be writing. Values on disk are big-endian; the
//!   `*_be` helpers convert.
//! * A read-only mapping is never written: [`MappedWords::words`] returns `None` for it,
//!   [`MappedWords::store_be`] panics, and loads use `Relaxed` atomic loads (the only kind
//!   Rust allows on read-only memory) followed by an `Acquire` fence when asked for more.
//! * The file handle is private, so nothing writes these bytes except through the atomics,
//!   or [`MappedWords::zero_tail`], which takes `&mut self` (no atomic access in flight).
//!   The engine must map a given path through at most one `MappedWords` (or
//!   [`MappedFile`](super::mapped_file::MappedFile)) at a time.
//! * A `u64` is two words, high word first; the pair is not updated atomically, so the writer
//!   must publish it through some later `Release` store that readers `Acquire`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU32, Ordering};

use super::mapped_file::{FlushStrategy, OpenError};
use super::vfs::{MapRegion, OpenMode, Vfs, VfsFile};

const WORD_BYTES: usize = std::mem::size_of::<AtomicU32>();

/// A fixed-size mapped file of big-endian `u32` words.
#[derive(Debug)]
pub struct MappedWords {
    path: PathBuf,
    file: Box<dyn VfsFile>,
    map: Box<dyn MapRegion>,
    len_words: usize,
    writable: bool,
}

impl MappedWords {
    /// Creates a new file (fails with `AlreadyExists` if there is one), reserves `size` bytes
    /// on disk (all zero, not sparse) and maps it writable. `size` must be a positive multiple
    /// of 4 (`InvalidInput` otherwise). The new file is removed again if allocating or mapping
    /// fails. Does not sync the directory.
    pub fn create(vfs: &dyn Vfs, path: &Path, size: usize) -> io::Result<MappedWords> {
        check_size(size)?;
        let file = vfs.open_file(path, OpenMode::CreateNew)?;
        let map = match file
            .allocate(size as u64)
            .and_then(|()| file.map(size, true))
        {
            Ok(map) => map,
            Err(err) => {
                drop(file);
                // Best effort: the error that matters is the one that made us give up.
                let _ = vfs.remove_file(path);
                return Err(err);
            }
        };
        MappedWords::new(path, file, map, size, true)
    }

    /// Opens an existing file that must be exactly `size` bytes (else
    /// [`OpenError::WrongLength`], before mapping) and maps it writable or read-only.
    pub fn open(
        vfs: &dyn Vfs,
        path: &Path,
        size: usize,
        writable: bool,
    ) -> Result<MappedWords, OpenError> {
        check_size(size)?;
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
        Ok(MappedWords::new(path, file, map, size, writable)?)
    }

    fn new(
        path: &Path,
        file: Box<dyn VfsFile>,
        map: Box<dyn MapRegion>,
        size: usize,
        writable: bool,
    ) -> io::Result<MappedWords> {
        if map.len() != size || map.as_ptr().is_null() || map.as_mut_ptr().is_null() == writable {
            return Err(io::Error::other(format!(
                "mapping of {size} bytes (writable: {writable}) of {} came back as {} bytes",
                path.display(),
                map.len()
            )));
        }
        // Hash slots are touched at random: without read-around a fault brings in its page,
        // not megabytes of a fresh file zero-filled under the append lock (best effort).
        let _ = map.advise_random();
        // The `MapRegion` contract promises at least 8-byte alignment (a real mapping is
        // page-aligned); `words` relies on it, so check rather than trust.
        assert_eq!(
            map.as_ptr() as usize % std::mem::align_of::<AtomicU32>(),
            0,
            "mapping of {} is not aligned for AtomicU32",
            path.display()
        );
        Ok(MappedWords {
            path: path.to_path_buf(),
            file,
            map,
            len_words: size / WORD_BYTES,
            writable,
        })
    }

    /// The path the file was created or opened under.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size of the file in bytes.
    pub fn size(&self) -> usize {
        self.len_words * WORD_BYTES
    }

    /// The file as words (word `i` = bytes `[4i, 4i + 4)`, stored big-endian: use
    /// `u32::from_be`/`to_be`, or [`load_be`](Self::load_be)/[`store_be`](Self::store_be)).
    /// `None` for a read-only mapping, where only the load helpers may be used.
    pub fn words(&self) -> Option<&[AtomicU32]> {
        self.writable.then(|| self.all_words())
    }

    /// The big-endian word at `byte_pos`. Panics unless `byte_pos` is a multiple of 4 inside
    /// the file. `order` as for [`AtomicU32::load`] (a read-only mapping does a `Relaxed` load
    /// plus an `Acquire` fence for any stronger order).
    pub fn load_be(&self, byte_pos: usize, order: Ordering) -> u32 {
        let word = &self.all_words()[self.word_index(byte_pos)];
        let raw = if self.writable {
            word.load(order)
        } else {
            // Only Relaxed loads are allowed on read-only memory.
            let raw = word.load(Ordering::Relaxed);
            if order != Ordering::Relaxed {
                fence(Ordering::Acquire);
            }
            raw
        };
        u32::from_be(raw)
    }

    /// Stores `v` big-endian at `byte_pos`. Panics unless the mapping is writable and
    /// `byte_pos` is a multiple of 4 inside the file. `order` as for [`AtomicU32::store`].
    pub fn store_be(&self, byte_pos: usize, v: u32, order: Ordering) {
        assert!(
            self.writable,
            "store into read-only mapping of {}",
            self.path.display()
        );
        self.all_words()[self.word_index(byte_pos)].store(v.to_be(), order);
    }

    /// The big-endian `u64` at `byte_pos` (two words, high first, `Relaxed`).
    pub fn load_be_u64(&self, byte_pos: usize) -> u64 {
        let high = self.load_be(byte_pos, Ordering::Relaxed);
        let low = self.load_be(second_word(byte_pos), Ordering::Relaxed);
        (u64::from(high) << 32) | u64::from(low)
    }

    /// Stores `v` big-endian at `byte_pos` (two words, high first, `Relaxed`).
    pub fn store_be_u64(&self, byte_pos: usize, v: u64) {
        let second = second_word(byte_pos);
        // Check both words before writing either.
        self.word_index(second);
        self.store_be(byte_pos, (v >> 32) as u32, Ordering::Relaxed);
        self.store_be(second, v as u32, Ordering::Relaxed);
    }

    /// Forces the whole file to disk.
    pub fn flush(&self, strategy: FlushStrategy) -> io::Result<()> {
        match strategy {
            FlushStrategy::Msync => self.map.flush_range(0, self.size()),
            FlushStrategy::Fdatasync => self.file.sync_data(),
        }
    }

    /// Forces the bytes `[byte_pos, byte_pos + len)` to disk (`msync(MS_SYNC)` of the pages
    /// covering them). `InvalidInput` if the range is not inside the file.
    pub fn flush_range(&self, byte_pos: usize, len: usize) -> io::Result<()> {
        self.map.flush_range(byte_pos, len)
    }

    /// Zeroes the bytes from `byte_pos` to the end through the file (no page of the range is
    /// read or faulted in, so this is cheap for a large, mostly empty file) and syncs the file.
    /// Takes `&mut self`: no load or store through the mapping can be in flight, and the
    /// mapping shows the zeros afterwards (the page cache is shared). `byte_pos` must be a
    /// multiple of 4 and at most the size (`InvalidInput` otherwise).
    pub fn zero_tail(&mut self, byte_pos: usize) -> io::Result<()> {
        if !self.writable || !byte_pos.is_multiple_of(WORD_BYTES) || byte_pos > self.size() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "zero_tail at {byte_pos} of {} ({} bytes, writable: {})",
                    self.path.display(),
                    self.size(),
                    self.writable
                ),
            ));
        }
        self.file
            .zero_range(byte_pos as u64, (self.size() - byte_pos) as u64)?;
        self.file.sync_data()
    }

    fn all_words(&self) -> &[AtomicU32] {
        // SAFETY: the region maps `len_words * 4` bytes (checked in `new`) at an address
        // aligned for `AtomicU32` (asserted in `new`), and lives as long as `self`, which the
        // slice borrows. `AtomicU32` has the size and alignment of `u32` and every bit pattern
        // is valid. All accesses to these bytes in the process go through these atomics: the
        // file handle is private, and the engine maps each path once. A read-only mapping is
        // only ever loaded from with `Relaxed` (`words` hides it, `store_be` panics).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU32>(), self.len_words) }
    }

    fn word_index(&self, byte_pos: usize) -> usize {
        assert!(
            byte_pos.is_multiple_of(WORD_BYTES) && byte_pos / WORD_BYTES < self.len_words,
            "word position {byte_pos} is misaligned or outside the {} bytes of {}",
            self.size(),
            self.path.display()
        );
        byte_pos / WORD_BYTES
    }
}

fn second_word(byte_pos: usize) -> usize {
    byte_pos
        .checked_add(WORD_BYTES)
        .expect("u64 word position overflows")
}

fn check_size(size: usize) -> io::Result<()> {
    if size == 0 || !size.is_multiple_of(WORD_BYTES) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("mapped word file size {size} is not a positive multiple of 4"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::os::OsVfs;

    const SIZE: usize = 40 + 4 * 100 + 20 * 50;

    #[test]
    fn store_and_load_round_trip_big_endian() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("20240101000000000");
        let words = MappedWords::create(&OsVfs, &path, SIZE).unwrap();
        assert_eq!(words.size(), SIZE);
        assert_eq!(words.load_be(40, Ordering::Acquire), 0);
        words.store_be(40, 0x0102_0304, Ordering::Release);
        words.store_be_u64(8, 0x1122_3344_5566_7788);
        words.store_be(SIZE - 4, 7, Ordering::Relaxed);
        assert_eq!(words.load_be(40, Ordering::Acquire), 0x0102_0304);
        assert_eq!(words.load_be_u64(8), 0x1122_3344_5566_7788);
        assert_eq!(words.load_be(SIZE - 4, Ordering::Relaxed), 7);
        let raw = words.words().unwrap()[10].load(Ordering::Relaxed);
        assert_eq!(u32::from_be(raw), 0x0102_0304);

        words.flush(FlushStrategy::Msync).unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(&on_disk[40..44], &[1, 2, 3, 4]);
        assert_eq!(&on_disk[8..16], &0x1122_3344_5566_7788u64.to_be_bytes());
    }

    #[test]
    fn stores_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idx");
        {
            let words = MappedWords::create(&OsVfs, &path, SIZE).unwrap();
            for i in 0..SIZE / 4 {
                words.store_be(
                    i * 4,
                    (i as u32).wrapping_mul(2_654_435_761),
                    Ordering::Relaxed,
                );
            }
            words.flush(FlushStrategy::Fdatasync).unwrap();
        }
        let writable = MappedWords::open(&OsVfs, &path, SIZE, true).unwrap();
        let read_only = MappedWords::open(&OsVfs, &path, SIZE, false).unwrap();
        for i in 0..SIZE / 4 {
            let expected = (i as u32).wrapping_mul(2_654_435_761);
            assert_eq!(writable.load_be(i * 4, Ordering::Acquire), expected);
            assert_eq!(read_only.load_be(i * 4, Ordering::Acquire), expected);
        }
        assert!(read_only.words().is_none());
    }

    #[test]
    fn zero_tail_zeroes_the_mapping_and_the_file_and_checks_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idx");
        let mut words = MappedWords::create(&OsVfs, &path, SIZE).unwrap();
        for i in 0..SIZE / 4 {
            words.store_be(i * 4, 0xDEAD_BEEF, Ordering::Relaxed);
        }
        words.flush(FlushStrategy::Msync).unwrap();
        assert_eq!(
            words.zero_tail(6).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(words.zero_tail(SIZE + 4).is_err());
        words.zero_tail(408).unwrap();
        assert_eq!(words.load_be(404, Ordering::Relaxed), 0xDEAD_BEEF);
        for i in (408) / 4..SIZE / 4 {
            assert_eq!(words.load_be(i * 4, Ordering::Relaxed), 0, "word {i}");
        }
        drop(words);
        let on_disk = std::fs::read(&path).unwrap();
        assert!(on_disk[..408]
            .chunks(4)
            .all(|w| w == [0xDE, 0xAD, 0xBE, 0xEF]));
        assert!(on_disk[408..].iter().all(|&b| b == 0));
        // Idempotent, and a no-op at the end.
        let mut words = MappedWords::open(&OsVfs, &path, SIZE, true).unwrap();
        words.zero_tail(408).unwrap();
        words.zero_tail(SIZE).unwrap();
        drop(words);
        assert_eq!(std::fs::read(&path).unwrap(), on_disk);
    }

    #[test]
    #[should_panic(expected = "read-only")]
    fn store_into_a_read_only_mapping_panics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idx");
        drop(MappedWords::create(&OsVfs, &path, SIZE).unwrap());
        let read_only = MappedWords::open(&OsVfs, &path, SIZE, false).unwrap();
        read_only.store_be(0, 1, Ordering::Relaxed);
    }

    #[test]
    #[should_panic(expected = "misaligned or outside")]
    fn misaligned_position_panics() {
        let dir = tempfile::tempdir().unwrap();
        let words = MappedWords::create(&OsVfs, &dir.path().join("idx"), SIZE).unwrap();
        words.load_be(2, Ordering::Relaxed);
    }

    #[test]
    #[should_panic(expected = "misaligned or outside")]
    fn u64_straddling_the_end_panics_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let words = MappedWords::create(&OsVfs, &dir.path().join("idx"), SIZE).unwrap();
        words.store_be_u64(SIZE - 4, u64::MAX);
    }

    #[test]
    fn sizes_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("idx");
        let err = MappedWords::create(&OsVfs, &path, 42).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(!path.exists());
        std::fs::write(&path, vec![0u8; 44]).unwrap();
        match MappedWords::open(&OsVfs, &path, 48, true) {
            Err(OpenError::WrongLength { expected, found }) => {
                assert_eq!((expected, found), (48, 44));
            }
            other => panic!("expected WrongLength, got {other:?}"),
        }
    }
}
