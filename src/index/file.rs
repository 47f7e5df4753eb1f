//! One IndexFile (spec §4).
//!
//! Concurrency: the single writer (the dispatcher) writes an entry, then publishes it by storing
//! its number into the hash slot with Release; readers load the slot with Acquire and walk the
//! chain of `prev` numbers, which only ever point at older, already published entries. The file
//! is accessed as 32-bit words only (see `storage::MappedWords`), so no reader ever holds a
//! plain reference to bytes the writer changes. Chain walks require strictly decreasing entry
//! numbers, so a damaged file cannot make a walk loop.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::format::index_layout::{self as layout, entry_pos, slot_pos, time_diff_secs};
use crate::storage::{FlushStrategy, MappedWords, OpenError, Vfs};

/// One IndexFile.
#[derive(Debug)]
pub(crate) struct IndexFile {
    pub(super) words: MappedWords,
    slots: u32,
    pub(super) max_entries: u32,
    begin_timestamp: AtomicI64,
    end_timestamp: AtomicI64,
    begin_phy_offset: AtomicU64,
    end_phy_offset: AtomicU64,
    pub(super) hash_slot_count: AtomicU32,
    /// Next entry number; entries `1..index_count` are published.
    pub(super) index_count: AtomicU32,
    /// Entries below this number were synced by [`flush_entries`](Self::flush_entries).
    entries_synced: AtomicU32,
}

impl IndexFile {
    pub(super) fn create(
        vfs: &dyn Vfs,
        path: &Path,
        slots: u32,
        max_entries: u32,
        seed_ts: i64,
        seed_offset: u64,
    ) -> Result<Self> {
        let size = layout::file_size(slots, max_entries) as usize;
        let words = MappedWords::create(vfs, path, size).map_err(|e| Error::io(path, e))?;
        let f = IndexFile::from_words(words, slots, max_entries);
        // A new file starts where the previous one ended (RocketMQ seeds the header so).
        f.begin_timestamp.store(seed_ts, Ordering::Relaxed);
        f.end_timestamp.store(seed_ts, Ordering::Relaxed);
        f.begin_phy_offset.store(seed_offset, Ordering::Relaxed);
        f.end_phy_offset.store(seed_offset, Ordering::Relaxed);
        f.index_count.store(1, Ordering::Relaxed);
        f.write_header();
        Ok(f)
    }

    /// Sets the header of a file that has no entries yet to start where `prev` ended (a standby
    /// file becoming the active one).
    pub(super) fn reseed(&self, seed_ts: i64, seed_offset: u64) {
        debug_assert_eq!(self.index_count.load(Ordering::Relaxed), 1);
        self.begin_timestamp.store(seed_ts, Ordering::Relaxed);
        self.end_timestamp.store(seed_ts, Ordering::Relaxed);
        self.begin_phy_offset.store(seed_offset, Ordering::Relaxed);
        self.end_phy_offset.store(seed_offset, Ordering::Release);
        self.write_header();
    }

    fn from_words(words: MappedWords, slots: u32, max_entries: u32) -> Self {
        IndexFile {
            words,
            slots,
            max_entries,
            begin_timestamp: AtomicI64::new(0),
            end_timestamp: AtomicI64::new(0),
            begin_phy_offset: AtomicU64::new(0),
            end_phy_offset: AtomicU64::new(0),
            hash_slot_count: AtomicU32::new(0),
            index_count: AtomicU32::new(1),
            entries_synced: AtomicU32::new(1),
        }
    }

    /// Opens and checks an existing file; `Err` reason if its header is impossible.
    pub(super) fn open(vfs: &dyn Vfs, path: &Path, slots: u32, max_entries: u32) -> Result<Self> {
        let size = layout::file_size(slots, max_entries) as usize;
        let words = MappedWords::open(vfs, path, size, true).map_err(|e| match e {
            OpenError::WrongLength { expected, found } => Error::Layout {
                path: path.to_path_buf(),
                reason: format!("index file length {found}, expected {expected}"),
            },
            OpenError::Io(io) => Error::io(path, io),
        })?;
        let f = IndexFile::from_words(words, slots, max_entries);
        let w = &f.words;
        let count = w.load_be(layout::POS_INDEX_COUNT, Ordering::Relaxed) as i32;
        let used = w.load_be(layout::POS_HASH_SLOT_COUNT, Ordering::Relaxed) as i32;
        // RocketMQ treats a count <= 0 as 1 (fresh file).
        let count = count.max(1) as u32;
        if count > max_entries || used < 0 || used as u32 > slots {
            return Err(Error::Layout {
                path: path.to_path_buf(),
                reason: format!(
                    "index header impossible: index_count {count}, hash_slot_count {used}"
                ),
            });
        }
        f.begin_timestamp.store(
            w.load_be_u64(layout::POS_BEGIN_TIMESTAMP) as i64,
            Ordering::Relaxed,
        );
        f.end_timestamp.store(
            w.load_be_u64(layout::POS_END_TIMESTAMP) as i64,
            Ordering::Relaxed,
        );
        f.begin_phy_offset.store(
            w.load_be_u64(layout::POS_BEGIN_PHY_OFFSET),
            Ordering::Relaxed,
        );
        f.end_phy_offset
            .store(w.load_be_u64(layout::POS_END_PHY_OFFSET), Ordering::Relaxed);
        f.hash_slot_count.store(used as u32, Ordering::Relaxed);
        f.index_count.store(count, Ordering::Release);
        Ok(f)
    }

    pub(super) fn write_header(&self) {
        let w = &self.words;
        w.store_be_u64(
            layout::POS_BEGIN_TIMESTAMP,
            self.begin_timestamp.load(Ordering::Relaxed) as u64,
        );
        w.store_be_u64(
            layout::POS_END_TIMESTAMP,
            self.end_timestamp.load(Ordering::Relaxed) as u64,
        );
        w.store_be_u64(
            layout::POS_BEGIN_PHY_OFFSET,
            self.begin_phy_offset.load(Ordering::Relaxed),
        );
        w.store_be_u64(
            layout::POS_END_PHY_OFFSET,
            self.end_phy_offset.load(Ordering::Relaxed),
        );
        w.store_be(
            layout::POS_HASH_SLOT_COUNT,
            self.hash_slot_count.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        w.store_be(
            layout::POS_INDEX_COUNT,
            self.index_count.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }

    pub fn is_full(&self) -> bool {
        self.index_count.load(Ordering::Acquire) >= self.max_entries
    }

    pub fn end_phy_offset(&self) -> u64 {
        self.end_phy_offset.load(Ordering::Acquire)
    }

    pub fn end_timestamp(&self) -> i64 {
        self.end_timestamp.load(Ordering::Acquire)
    }

    pub fn begin_timestamp(&self) -> i64 {
        self.begin_timestamp.load(Ordering::Acquire)
    }

    pub fn entry_count(&self) -> u32 {
        self.index_count.load(Ordering::Acquire) - 1
    }

    /// RocketMQ `putKey` (spec §4.3). Single writer only. False when the file is full.
    /// Without `header`, the header's bytes are left to a later
    /// [`write_header`](Self::write_header) (its values are kept in memory all the same).
    pub(super) fn put(
        &self,
        hash: i32,
        commitlog_offset: u64,
        store_ts: i64,
        header: bool,
    ) -> bool {
        let count = self.index_count.load(Ordering::Relaxed);
        if count >= self.max_entries {
            return false;
        }
        let slot = slot_pos(hash as u32 % self.slots);
        let mut prev = self.words.load_be(slot, Ordering::Relaxed) as i32;
        if prev <= 0 || prev as u32 > count {
            prev = 0;
        }
        if count <= 1 {
            self.begin_phy_offset
                .store(commitlog_offset, Ordering::Relaxed);
            self.begin_timestamp.store(store_ts, Ordering::Relaxed);
        }
        let diff = time_diff_secs(self.begin_timestamp.load(Ordering::Relaxed), store_ts);
        let e = entry_pos(self.slots, count);
        self.words
            .store_be(e + layout::ENTRY_KEY_HASH, hash as u32, Ordering::Relaxed);
        self.words
            .store_be_u64(e + layout::ENTRY_COMMITLOG_OFFSET, commitlog_offset);
        self.words
            .store_be(e + layout::ENTRY_TIME_DIFF, diff as u32, Ordering::Relaxed);
        self.words
            .store_be(e + layout::ENTRY_PREV_INDEX, prev as u32, Ordering::Relaxed);
        // Publishes the entry to chain walkers.
        self.words.store_be(slot, count, Ordering::Release);
        if prev == 0 {
            self.hash_slot_count.fetch_add(1, Ordering::Relaxed);
        }
        self.end_phy_offset
            .store(commitlog_offset, Ordering::Release);
        self.end_timestamp.store(store_ts, Ordering::Release);
        self.index_count.store(count + 1, Ordering::Release);
        if header {
            self.write_header();
        }
        true
    }

    /// Offsets of entries with `hash` whose time is within `[begin, end]`, newest first
    /// (spec §4.5 step 4). Bounded: each step goes to a strictly older entry.
    /// Calls `visit` with each matching offset until it returns false; returns false if it did.
    pub(super) fn lookup(
        &self,
        hash: i32,
        begin: i64,
        end: i64,
        visit: &mut dyn FnMut(u64) -> bool,
    ) -> Walk {
        let mut k =
            self.words
                .load_be(slot_pos(hash as u32 % self.slots), Ordering::Acquire) as i32;
        let count = self.index_count.load(Ordering::Acquire) as i32;
        let file_begin = self.begin_timestamp();
        // A slot or prev pointer outside the written entries, a negative time, or a prev that
        // does not point strictly backwards cannot come from `put`: the file is damaged.
        // (A new entry's number equals the count read before its own increment, hence `<=`.)
        if k < 0 || k > count || (k as u32) >= self.max_entries {
            return Walk::Damaged;
        }
        while k > 0 {
            let e = entry_pos(self.slots, k as u32);
            let entry_hash =
                self.words
                    .load_be(e + layout::ENTRY_KEY_HASH, Ordering::Relaxed) as i32;
            let offset = self.words.load_be_u64(e + layout::ENTRY_COMMITLOG_OFFSET);
            let diff =
                self.words
                    .load_be(e + layout::ENTRY_TIME_DIFF, Ordering::Relaxed) as i32;
            let prev = self
                .words
                .load_be(e + layout::ENTRY_PREV_INDEX, Ordering::Relaxed)
                as i32;
            if diff < 0 || prev < 0 || (prev >= k && prev != 0) {
                return Walk::Damaged;
            }
            let t = file_begin.saturating_add(diff as i64 * 1000);
            // Entries store whole seconds: widen the check by the truncated part.
            if entry_hash == hash && t <= end && t.saturating_add(999) >= begin && !visit(offset) {
                return Walk::Stopped;
            }
            if t.saturating_add(999) < begin {
                break;
            }
            k = prev;
        }
        Walk::Done
    }

    /// CommitLog offsets of the first and last record this file indexes.
    pub fn commitlog_range(&self) -> (u64, u64) {
        (
            self.begin_phy_offset.load(Ordering::Acquire),
            self.end_phy_offset(),
        )
    }

    pub(super) fn flush(&self) -> Result<()> {
        self.words
            .flush(FlushStrategy::Msync)
            .map_err(|e| Error::io(self.words.path(), e))
    }

    pub(super) fn path(&self) -> &Path {
        self.words.path()
    }

    /// Syncs the entries written since the last call: not the header or the hash slots, which
    /// later entries keep changing (each sync would make their next write fault again).
    pub(super) fn flush_entries(&self) -> Result<()> {
        let synced = &self.entries_synced;
        let count = self.index_count.load(Ordering::Acquire);
        let from = synced.load(Ordering::Relaxed).max(1);
        if count <= from {
            return Ok(());
        }
        let (start, end) = (entry_pos(self.slots, from), entry_pos(self.slots, count));
        self.words
            .flush_range(start, end - start)
            .map_err(|e| Error::io(self.words.path(), e))?;
        synced.store(count, Ordering::Relaxed);
        Ok(())
    }
}

/// One index entry as stored.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    pub(super) hash: i32,
    pub(super) offset: u64,
    pub(super) diff: i32,
    pub(super) prev: i32,
}

/// What recovery found at the CommitLog offset an index entry points at.
pub(crate) enum EntryRecord {
    /// The offset lies below the CommitLog's first segment (deleted by retention): nothing left
    /// to check the entry against.
    Gone,
    /// No valid record starts there.
    Missing,
    /// The record there.
    Found {
        /// Its store timestamp.
        store_timestamp: i64,
        /// Its end (offset + size).
        end: u64,
        /// The hashes [`IndexService::build`](super::IndexService::build) puts for it, in order.
        hashes: Vec<i32>,
    },
}

/// Entry `i` read straight from the file's words (`words` from [`MappedWords::words`]): what
/// [`IndexFile::entry`] reads, without a mapping lookup and bounds assertion per word, for the
/// recovery loops over every entry. `None` if the entry lies outside `words`.
fn entry_in(words: &[AtomicU32], slots: u32, i: u32) -> Option<Entry> {
    let first = entry_pos(slots, i) / 4;
    let e = words.get(first..first + layout::ENTRY_SIZE / 4)?;
    let word = |pos: usize| u32::from_be(e[pos / 4].load(Ordering::Relaxed));
    Some(Entry {
        hash: word(layout::ENTRY_KEY_HASH) as i32,
        offset: (u64::from(word(layout::ENTRY_COMMITLOG_OFFSET)) << 32)
            | u64::from(word(layout::ENTRY_COMMITLOG_OFFSET + 4)),
        diff: word(layout::ENTRY_TIME_DIFF) as i32,
        prev: word(layout::ENTRY_PREV_INDEX) as i32,
    })
}

impl IndexFile {
    pub(super) fn entry(&self, i: u32) -> Entry {
        let e = entry_pos(self.slots, i);
        let w = &self.words;
        Entry {
            hash: w.load_be(e + layout::ENTRY_KEY_HASH, Ordering::Relaxed) as i32,
            offset: w.load_be_u64(e + layout::ENTRY_COMMITLOG_OFFSET),
            diff: w.load_be(e + layout::ENTRY_TIME_DIFF, Ordering::Relaxed) as i32,
            prev: w.load_be(e + layout::ENTRY_PREV_INDEX, Ordering::Relaxed) as i32,
        }
    }

    /// Whether `e` can be an entry `put` wrote for `rec`: one of its key hashes, and the time
    /// difference `put` computes from this file's begin time. A record that is gone passes.
    pub(super) fn entry_matches(&self, e: &Entry, rec: &EntryRecord) -> bool {
        match rec {
            EntryRecord::Gone => true,
            EntryRecord::Missing => false,
            EntryRecord::Found {
                store_timestamp,
                hashes,
                ..
            } => {
                hashes.contains(&e.hash)
                    && e.diff == time_diff_secs(self.begin_timestamp(), *store_timestamp)
            }
        }
    }

    /// Checks a file recovery keeps whole: full, indexing only records below `dd`, following
    /// the previous kept file (whose last entry points at `prev_end`), and its header agreeing
    /// with its first and last entries and their records (`put` sets the begin fields from the
    /// first record and the end fields from the last one).
    pub(super) fn check_full_below(
        &self,
        dd: u64,
        prev_end: u64,
        record: &dyn Fn(u64) -> EntryRecord,
    ) -> std::result::Result<(), String> {
        let count = self.index_count.load(Ordering::Relaxed);
        let (begin, end) = self.commitlog_range();
        if count < self.max_entries {
            return Err(format!("not full ({} entries)", count - 1));
        }
        if end >= dd {
            return Err(format!("indexes records up to {end}, not all below {dd}"));
        }
        let (first, last) = (self.entry(1), self.entry(self.max_entries - 1));
        if first.offset != begin || last.offset != end || begin < prev_end || begin > end {
            return Err(format!(
                "header range {begin}..={end} disagrees with its entries ({}..={}) or with the previous file (ending at {prev_end})",
                first.offset, last.offset
            ));
        }
        let timestamp_is = |rec: &EntryRecord, want: i64| match rec {
            EntryRecord::Found {
                store_timestamp, ..
            } => *store_timestamp == want,
            _ => true,
        };
        let first_rec = record(first.offset);
        if !self.entry_matches(&first, &first_rec)
            || !timestamp_is(&first_rec, self.begin_timestamp())
        {
            return Err(format!(
                "its first entry does not match the record at {}",
                first.offset
            ));
        }
        let last_rec = record(last.offset);
        if !self.entry_matches(&last, &last_rec) || !timestamp_is(&last_rec, self.end_timestamp()) {
            return Err(format!(
                "its last entry does not match the record at {}",
                last.offset
            ));
        }
        Ok(())
    }

    /// The number of leading entries that index records below `dd`: entries up to the header's
    /// count, in CommitLog order from `prev_end` on, with possible time and chain fields.
    pub(super) fn entries_below(&self, dd: u64, prev_end: u64) -> u32 {
        let count = self
            .index_count
            .load(Ordering::Relaxed)
            .min(self.max_entries);
        let words = self.words.words();
        let mut last = prev_end;
        let mut kept = 0;
        for i in 1..count {
            let e = match words.and_then(|w| entry_in(w, self.slots, i)) {
                Some(e) => e,
                None => self.entry(i),
            };
            if e.offset >= dd || e.offset < last || e.diff < 0 || e.prev < 0 || e.prev as u32 >= i {
                break;
            }
            last = e.offset;
            kept = i;
        }
        kept
    }

    /// Makes entries `1..=kept` the whole file: hash slots rebuilt from those entries (their
    /// `prev` links were written before any later entry existed, so they are right), every byte
    /// after them zeroed, and the header set to what `put` would have left after entry `kept`.
    /// Synced before returning; the header is written last, so a crash in between leaves a file
    /// the next recovery salvages the same way.
    pub(super) fn keep_entries(&mut self, kept: u32, end_timestamp: i64) -> Result<()> {
        debug_assert!(kept >= 1 && kept < self.max_entries);
        let path = self.path().to_path_buf();
        let slots = self.slots as usize;
        // The words of the slot table and of entries `1..=kept`, taken once: these loops touch
        // millions of words.
        let first_slot = slot_pos(0) / 4;
        let words = self
            .words
            .words()
            .filter(|w| w.len() >= entry_pos(self.slots, kept + 1) / 4)
            .ok_or_else(|| Error::Io {
                path: path.clone(),
                source: std::io::Error::other(
                    "index file not writable or shorter than its entries",
                ),
            })?;
        let mut heads = vec![0u32; slots];
        for i in 1..=kept {
            let hash = u32::from_be(
                words[entry_pos(self.slots, i) / 4 + layout::ENTRY_KEY_HASH / 4]
                    .load(Ordering::Relaxed),
            );
            heads[(hash % self.slots) as usize] = i;
        }
        let mut used = 0;
        for (word, &head) in words[first_slot..first_slot + slots].iter().zip(&heads) {
            used += u32::from(head != 0);
            // Unchanged words are not rewritten: a second recovery changes no byte.
            if u32::from_be(word.load(Ordering::Relaxed)) != head {
                word.store(head.to_be(), Ordering::Relaxed);
            }
        }
        self.words
            .zero_tail(entry_pos(self.slots, kept + 1))
            .map_err(|e| Error::io(&path, e))?;
        self.flush()?;
        self.end_phy_offset
            .store(self.entry(kept).offset, Ordering::Relaxed);
        self.end_timestamp.store(end_timestamp, Ordering::Relaxed);
        self.hash_slot_count.store(used, Ordering::Relaxed);
        self.index_count.store(kept + 1, Ordering::Release);
        self.write_header();
        self.flush()
    }
}

/// How a chain walk in one file ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Walk {
    /// The chain ended (or left the time range).
    Done,
    /// The visitor asked to stop.
    Stopped,
    /// The file's pointers are impossible: hits may be missing.
    Damaged,
}
