//! IndexFile: an on-disk hash index from `topic#key` to CommitLog offsets, one file per time
//! range, rolled when full (spec §4).
//!
//! Concurrency: the single writer (the dispatcher) writes an entry, then publishes it by storing
//! its number into the hash slot with Release; readers load the slot with Acquire and walk the
//! chain of `prev` numbers, which only ever point at older, already published entries. The file
//! is accessed as 32-bit words only (see `storage::MappedWords`), so no reader ever holds a
//! plain reference to bytes the writer changes. Chain walks require strictly decreasing entry
//! numbers, so a damaged file cannot make a walk loop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::format::dispatch_entry::DispatchEntry;
use crate::format::index_layout::{self as layout, entry_pos, slot_pos, time_diff_secs};
use crate::format::java_hash;
use crate::format::record::TRANSACTION_ROLLBACK;
use crate::format::root::StoreRoot;
use crate::segments::Tail;
use crate::storage::{self, FileKind, FlushStrategy, MappedWords, OpenError, Vfs};

/// Java `String.hashCode` of `topic#key`, made non-negative as RocketMQ's `indexKeyHashMethod`.
pub(crate) fn key_hash(topic: &str, key: &str) -> i32 {
    java_hash::index_topic_key_hash(topic, key)
}

/// One IndexFile.
#[derive(Debug)]
pub(crate) struct IndexFile {
    words: MappedWords,
    slots: u32,
    max_entries: u32,
    begin_timestamp: AtomicI64,
    end_timestamp: AtomicI64,
    begin_phy_offset: AtomicU64,
    end_phy_offset: AtomicU64,
    hash_slot_count: AtomicU32,
    /// Next entry number; entries `1..index_count` are published.
    index_count: AtomicU32,
    /// Entries below this number were synced by [`flush_entries`](Self::flush_entries).
    entries_synced: AtomicU32,
}

impl IndexFile {
    fn create(
        vfs: &dyn Vfs,
        path: &Path,
        slots: u32,
        max_entries: u32,
        seed_ts: i64,
        seed_phy: u64,
    ) -> Result<Self> {
        let size = layout::file_size(slots, max_entries) as usize;
        let words = MappedWords::create(vfs, path, size).map_err(|e| Error::io(path, e))?;
        let f = IndexFile::from_words(words, slots, max_entries);
        // A new file starts where the previous one ended (RocketMQ seeds the header so).
        f.begin_timestamp.store(seed_ts, Ordering::Relaxed);
        f.end_timestamp.store(seed_ts, Ordering::Relaxed);
        f.begin_phy_offset.store(seed_phy, Ordering::Relaxed);
        f.end_phy_offset.store(seed_phy, Ordering::Relaxed);
        f.index_count.store(1, Ordering::Relaxed);
        f.write_header();
        Ok(f)
    }

    /// Sets the header of a file that has no entries yet to start where `prev` ended (a standby
    /// file becoming the active one).
    fn reseed(&self, seed_ts: i64, seed_phy: u64) {
        debug_assert_eq!(self.index_count.load(Ordering::Relaxed), 1);
        self.begin_timestamp.store(seed_ts, Ordering::Relaxed);
        self.end_timestamp.store(seed_ts, Ordering::Relaxed);
        self.begin_phy_offset.store(seed_phy, Ordering::Relaxed);
        self.end_phy_offset.store(seed_phy, Ordering::Release);
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
    fn open(vfs: &dyn Vfs, path: &Path, slots: u32, max_entries: u32) -> Result<Self> {
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

    fn write_header(&self) {
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
    fn put(&self, hash: i32, phy_offset: u64, store_ts: i64, header: bool) -> bool {
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
            self.begin_phy_offset.store(phy_offset, Ordering::Relaxed);
            self.begin_timestamp.store(store_ts, Ordering::Relaxed);
        }
        let diff = time_diff_secs(self.begin_timestamp.load(Ordering::Relaxed), store_ts);
        let e = entry_pos(self.slots, count);
        self.words
            .store_be(e + layout::ENTRY_KEY_HASH, hash as u32, Ordering::Relaxed);
        self.words
            .store_be_u64(e + layout::ENTRY_COMMITLOG_OFFSET, phy_offset);
        self.words
            .store_be(e + layout::ENTRY_TIME_DIFF, diff as u32, Ordering::Relaxed);
        self.words
            .store_be(e + layout::ENTRY_PREV_INDEX, prev as u32, Ordering::Relaxed);
        // Publishes the entry to chain walkers.
        self.words.store_be(slot, count, Ordering::Release);
        if prev == 0 {
            self.hash_slot_count.fetch_add(1, Ordering::Relaxed);
        }
        self.end_phy_offset.store(phy_offset, Ordering::Release);
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
    fn lookup(&self, hash: i32, begin: i64, end: i64, visit: &mut dyn FnMut(u64) -> bool) -> Walk {
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
    pub fn phy_range(&self) -> (u64, u64) {
        (
            self.begin_phy_offset.load(Ordering::Acquire),
            self.end_phy_offset(),
        )
    }

    fn flush(&self) -> Result<()> {
        self.words
            .flush(FlushStrategy::Msync)
            .map_err(|e| Error::io(self.words.path(), e))
    }

    fn path(&self) -> &Path {
        self.words.path()
    }

    /// Syncs the entries written since the last call: not the header or the hash slots, which
    /// later entries keep changing (each sync would make their next write fault again).
    fn flush_entries(&self) -> Result<()> {
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
struct Entry {
    hash: i32,
    offset: u64,
    diff: i32,
    prev: i32,
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
        /// The hashes [`IndexService::build`] puts for it, in order.
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
    fn entry(&self, i: u32) -> Entry {
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
    fn entry_matches(&self, e: &Entry, rec: &EntryRecord) -> bool {
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
    fn check_full_below(
        &self,
        dd: u64,
        prev_end: u64,
        record: &dyn Fn(u64) -> EntryRecord,
    ) -> std::result::Result<(), String> {
        let count = self.index_count.load(Ordering::Relaxed);
        let (begin, end) = self.phy_range();
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
    fn entries_below(&self, dd: u64, prev_end: u64) -> u32 {
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
    fn keep_entries(&mut self, kept: u32, end_timestamp: i64) -> Result<()> {
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
enum Walk {
    /// The chain ended (or left the time range).
    Done,
    /// The visitor asked to stop.
    Stopped,
    /// The file's pointers are impossible: hits may be missing.
    Damaged,
}

/// All IndexFiles of a store, oldest first.
#[derive(Debug)]
pub(crate) struct IndexService {
    dir: PathBuf,
    slots: u32,
    max_entries: u32,
    files: RwLock<Vec<Arc<IndexFile>>>,
    /// The next file, created ahead by [`reserve`](Self::reserve) so that a roll in the middle
    /// of a dispatch never needs new disk space. Deleted at close.
    standby: Mutex<Option<IndexFile>>,
    /// Puts leave the last file's header bytes alone (see
    /// [`defer_headers`](Self::defer_headers)).
    headers_deferred: AtomicBool,
}

impl IndexService {
    /// Loads `index/`, oldest file first. Zero-length newest files (a crash right after their
    /// creation) are deleted. A file that cannot be opened or has an impossible header is an
    /// error; the caller then drops the whole directory and rebuilds it from the CommitLog.
    pub fn load(vfs: &dyn Vfs, root: &StoreRoot, slots: u32, max_entries: u32) -> Result<Self> {
        let dir = root.index_dir();
        let mut files = Vec::new();
        if let Some(m) = vfs.metadata(&dir).map_err(|e| Error::io(&dir, e))? {
            if m.kind != FileKind::Dir {
                return Err(Error::Layout {
                    path: dir,
                    reason: "expected a directory".into(),
                });
            }
            let mut entries = vfs.read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            // Zero-length newest files: a crash right after their creation (nothing in them).
            let mut removed = false;
            while let Some(e) = entries.last() {
                if e.kind != FileKind::File || e.len != 0 {
                    break;
                }
                let path = dir.join(&e.name);
                vfs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
                entries.pop();
                removed = true;
            }
            if removed {
                vfs.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
            }
            for e in entries {
                let path = dir.join(&e.name);
                if e.name.len() != 17
                    || !e.name.bytes().all(|b| b.is_ascii_digit())
                    || e.kind != FileKind::File
                {
                    return Err(Error::Layout {
                        path,
                        reason: "not an index file (yyyyMMddHHmmssSSS)".into(),
                    });
                }
                files.push(Arc::new(IndexFile::open(vfs, &path, slots, max_entries)?));
            }
        }
        Ok(IndexService {
            dir,
            slots,
            max_entries,
            files: RwLock::new(files),
            standby: Mutex::new(None),
            headers_deferred: AtomicBool::new(false),
        })
    }

    /// Deletes every index file (before a rebuild).
    pub fn remove_all(vfs: &dyn Vfs, root: &StoreRoot) -> Result<()> {
        let dir = root.index_dir();
        if vfs
            .metadata(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .is_some()
        {
            vfs.remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            vfs.sync_dir(root.path())
                .map_err(|e| Error::io(root.path(), e))?;
        }
        Ok(())
    }

    /// Indexes the keys of one record (RocketMQ `buildIndex`, spec §4.4). Single writer.
    pub(crate) fn build(&self, vfs: &dyn Vfs, entry: &DispatchEntry<'_>) -> Result<()> {
        if entry.transaction_type == TRANSACTION_ROLLBACK
            || (entry.props.uniq_key.is_none() && entry.props.keys.is_none())
        {
            // Nothing to index (a record without keys, the common case, stops here).
            return Ok(());
        }
        let offset = entry.physical_offset;
        let ts = entry.store_timestamp;
        let header = !self.headers_deferred.load(Ordering::Relaxed);
        let mut hashes = Self::hashes_of(entry);
        {
            // The common case, every key into the last file, under one read lock.
            let files = self.files.read();
            if let Some(last) = files.last() {
                if offset < last.end_phy_offset() && last.entry_count() > 0 {
                    return Ok(());
                }
                for hash in hashes.by_ref() {
                    if !last.put(hash, offset, ts, header) {
                        // Full: this key goes through `put`, which rolls.
                        drop(files);
                        self.put(vfs, hash, offset, ts)?;
                        break;
                    }
                }
            }
        }
        for hash in hashes {
            self.put(vfs, hash, offset, ts)?;
        }
        Ok(())
    }

    /// The hashes [`build`](Self::build) puts for `entry`, in the order it puts them (unique
    /// key first, then each key); empty for a rolled-back transaction. Recovery compares them
    /// with the entries a kept IndexFile ends with.
    pub(crate) fn key_hashes(entry: &DispatchEntry<'_>) -> Vec<i32> {
        if entry.transaction_type == TRANSACTION_ROLLBACK {
            return Vec::new();
        }
        Self::hashes_of(entry).collect()
    }

    /// The key hashes of `entry`, unique key first (rolled-back transactions are the callers').
    fn hashes_of<'a>(entry: &DispatchEntry<'a>) -> impl Iterator<Item = i32> + 'a {
        let (topic, props) = (entry.topic, entry.props);
        props
            .uniq_key
            .into_iter()
            .chain(props.keys())
            .map(move |k| key_hash(topic, k))
    }

    /// Creates the next file ahead (the standby) when the last one has fewer than `entries`
    /// free, so a put finds out about a full disk before its record is in the CommitLog, and
    /// a roll during its dispatch just switches files. Files still fill up completely.
    pub fn reserve(&self, vfs: &dyn Vfs, entries: u32) -> Result<()> {
        // A file holds max_entries - 1 entries (the count starts at 1, as in RocketMQ).
        let want = entries.min(self.max_entries - 1).max(1);
        // Checked under the read lock: no Arc clone and drop per put.
        if self
            .files
            .read()
            .last()
            .is_some_and(|f| f.max_entries - f.index_count.load(Ordering::Acquire) >= want)
        {
            return Ok(());
        }
        let mut standby = self.standby.lock();
        if standby.is_none() {
            *standby = Some(self.create_next(vfs, 0, 0)?);
        }
        Ok(())
    }

    /// Deletes the standby file (at close: the checkpoint counts only files in use).
    pub fn discard_standby(&self, vfs: &dyn Vfs) -> Result<()> {
        if let Some(f) = self.standby.lock().take() {
            let path = f.path().to_path_buf();
            drop(f);
            vfs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
            vfs.sync_dir(&self.dir)
                .map_err(|e| Error::io(&self.dir, e))?;
        }
        Ok(())
    }

    /// Creates a new, empty file named by the current time (the next free millisecond if two
    /// are created in one) and makes its directory entry durable.
    fn create_next(&self, vfs: &dyn Vfs, seed_ts: i64, seed_phy: u64) -> Result<IndexFile> {
        vfs.create_dir_all(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        let mut ms = storage::now_ms();
        if let Some(last) = self.files.read().last() {
            // Names sort in creation order even if the clock stepped back.
            let last_name = last
                .path()
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            while storage::format_local_time_ms(ms).as_str() <= last_name {
                ms += 1;
            }
        }
        let path = loop {
            let p = self.dir.join(storage::format_local_time_ms(ms));
            if vfs.metadata(&p).map_err(|e| Error::io(&p, e))?.is_none() {
                break p;
            }
            ms += 1;
        };
        let f = IndexFile::create(vfs, &path, self.slots, self.max_entries, seed_ts, seed_phy)?;
        if let Err(e) = vfs.sync_dir(&self.dir) {
            // Not durable, not in use: remove it so the next attempt starts clean.
            drop(f);
            let _ = vfs.remove_file(&path);
            return Err(Error::io(&self.dir, e));
        }
        Ok(f)
    }

    fn put(&self, vfs: &dyn Vfs, hash: i32, offset: u64, ts: i64) -> Result<()> {
        let last = self.files.read().last().cloned();
        let file = match last {
            Some(f) if !f.is_full() => f,
            prev => self.roll(vfs, prev.as_deref(), ts)?,
        };
        if !file.put(
            hash,
            offset,
            ts,
            !self.headers_deferred.load(Ordering::Relaxed),
        ) {
            return Err(Error::Corruption {
                path: file.path().to_path_buf(),
                offset,
                reason: "fresh index file refused an entry".into(),
            });
        }
        Ok(())
    }

    fn roll(&self, vfs: &dyn Vfs, prev: Option<&IndexFile>, ts: i64) -> Result<Arc<IndexFile>> {
        if let Some(p) = prev {
            if self.headers_deferred.load(Ordering::Relaxed) {
                p.write_header();
            }
            p.flush()?;
        }
        // A new file starts where the previous one ended (RocketMQ seeds the header so).
        let (seed_ts, seed_phy) = prev.map_or((ts, 0), |p| (p.end_timestamp(), p.end_phy_offset()));
        let standby = self.standby.lock().take();
        let f = match standby {
            Some(f) => {
                f.reseed(seed_ts, seed_phy);
                f
            }
            None => self.create_next(vfs, seed_ts, seed_phy)?,
        };
        let f = Arc::new(f);
        self.files.write().push(f.clone());
        Ok(f)
    }

    /// Incremental recovery after an unclean shutdown: keeps what the checkpoint vouches for
    /// and drops the rest, so that re-indexing the records from the returned offset on gives the
    /// index a full rebuild would. `dd` is the checkpoint's derived-durable offset: every entry
    /// of every record below it was synced before the checkpoint was written.
    ///
    /// Why this is sound: a file is only written while it is the last one, and never again once
    /// full. So the files before the one that was last at the checkpoint were full and synced,
    /// and their header (synced with them) is full with an end below `dd`; they are kept whole
    /// after checking the header against the first and last entry and those records. The first
    /// file that is not such a file (the one that was last at the checkpoint, or a damaged
    /// one) is salvaged: its entries for records below `dd` were written, in CommitLog order,
    /// before the checkpoint and synced, so its leading entries in order below `dd` are kept
    /// (checked against their first and last record) and everything written after the
    /// checkpoint (hash slots, later entries, header counts, which a power loss may have left in
    /// any mix of states) is rebuilt from them or zeroed. Later files only index records from
    /// `dd` on and are deleted. Salvaging is linear in the kept entries of one file, which is
    /// cheap next to re-reading the CommitLog they cover.
    ///
    /// Returns `Ok(Ok(Some(offset)))`: re-index records from `offset` (the end of the last kept
    /// record, whose keys were all found at the end of the kept entries; 0 when that record is
    /// gone); `Ok(Ok(None))`: nothing kept, re-index the whole CommitLog; `Ok(Err(reason))`: the
    /// files are not what the checkpoint describes, the caller rebuilds everything.
    ///
    /// With `tail` [`Tail::Clean`] (the previous run shut down cleanly) a salvaged file whose
    /// header already counts exactly the kept entries, ends at the last one and has nothing
    /// written after it is kept as it is: its slot table was complete at the shutdown, and
    /// rebuilding it touches every page of it (most of a clean RocketMQ root's open).
    pub fn cut_for_recovery(
        &self,
        vfs: &dyn Vfs,
        dd: u64,
        record: &dyn Fn(u64) -> EntryRecord,
        tail: Tail,
    ) -> Result<std::result::Result<Option<u64>, String>> {
        let mut files = self.files.write();
        if self.max_entries < 2 {
            return Ok(Err("index files hold no entries".into()));
        }
        let mut kept = 0;
        let mut prev_end = 0;
        while let Some(f) = files.get(kept) {
            if let Err(why) = f.check_full_below(dd, prev_end, record) {
                log::debug!(
                    "recovery: IndexFile {} not kept whole: {why}",
                    f.path().display()
                );
                break;
            }
            prev_end = f.end_phy_offset();
            kept += 1;
        }
        if let Some(f) = files.get_mut(kept) {
            let n = f.entries_below(dd, prev_end);
            if n > 0 {
                let (first, last) = (f.entry(1), f.entry(n));
                let first_rec = record(first.offset);
                let begins_right = first.offset == f.phy_range().0
                    && match &first_rec {
                        EntryRecord::Found {
                            store_timestamp, ..
                        } => *store_timestamp == f.begin_timestamp(),
                        _ => true,
                    };
                if !begins_right || !f.entry_matches(&first, &first_rec) {
                    return Ok(Err(format!(
                        "IndexFile {}: its first entry does not match its header or the record at {}",
                        f.path().display(),
                        first.offset
                    )));
                }
                let last_rec = record(last.offset);
                if !f.entry_matches(&last, &last_rec) {
                    return Ok(Err(format!(
                        "IndexFile {}: entry {n} does not match the record at {}",
                        f.path().display(),
                        last.offset
                    )));
                }
                let end_ts = match last_rec {
                    EntryRecord::Found {
                        store_timestamp, ..
                    } => store_timestamp,
                    _ => f
                        .begin_timestamp()
                        .saturating_add(i64::from(last.diff) * 1000),
                };
                let untouched = |e: Entry| (e.hash, e.offset, e.diff, e.prev) == (0, 0, 0, 0);
                let intact = tail == Tail::Clean
                    && n == f.entry_count()
                    && f.end_phy_offset() == last.offset
                    && f.end_timestamp() == end_ts
                    && (n + 1 >= self.max_entries || untouched(f.entry(n + 1)));
                if !intact {
                    let path = f.path().to_path_buf();
                    Arc::get_mut(f)
                        .ok_or_else(|| Error::Io {
                            path,
                            source: std::io::Error::other(
                                "index file still shared during recovery",
                            ),
                        })?
                        .keep_entries(n, end_ts)?;
                }
                kept += 1;
            }
        }
        // Newest first, so a crash in between leaves a prefix of the files.
        let mut removed = false;
        while files.len() > kept {
            let f = files.pop().expect("len > kept");
            let path = f.path().to_path_buf();
            drop(f);
            vfs.remove_file(&path).map_err(|e| Error::io(&path, e))?;
            removed = true;
        }
        if removed {
            vfs.sync_dir(&self.dir)
                .map_err(|e| Error::io(&self.dir, e))?;
        }
        let Some(last_file) = files.last() else {
            return Ok(Ok(None));
        };
        let tail = last_file.entry(last_file.entry_count()).offset;
        match record(tail) {
            EntryRecord::Gone => Ok(Ok(Some(0))),
            EntryRecord::Missing => Ok(Err(format!(
                "the last kept index entry points at {tail}, where no record starts"
            ))),
            EntryRecord::Found { end, hashes, .. } => {
                // The kept entries must end with every key of that record (a record's keys may
                // straddle a file roll).
                let mut run = Vec::new();
                'files: for f in files.iter().rev() {
                    for i in (1..=f.entry_count()).rev() {
                        let e = f.entry(i);
                        if e.offset != tail || run.len() > hashes.len() {
                            break 'files;
                        }
                        run.push(e.hash);
                    }
                }
                run.reverse();
                if run != hashes {
                    return Ok(Err(format!(
                        "the kept index ends with {} entries for the record at {tail}, which has {} keys",
                        run.len(),
                        hashes.len()
                    )));
                }
                Ok(Ok(Some(end)))
            }
        }
    }

    /// Visits the CommitLog offsets of entries for `topic#key` stored within `[begin_ms, end_ms]`,
    /// newest file first, newest entry first within a file, until `visit` returns false. Hash
    /// matches only: `visit` re-checks the record. Every walk is bounded by the chain length.
    ///
    /// Returns the CommitLog ranges (first and last indexed record) of files whose chain turned
    /// out to be damaged: hits in them may be missing, the caller scans those ranges instead.
    pub fn lookup(
        &self,
        topic: &str,
        key: &str,
        begin_ms: i64,
        end_ms: i64,
        visit: &mut dyn FnMut(u64) -> bool,
    ) -> Vec<(u64, u64)> {
        let hash = key_hash(topic, key);
        let files = self.files.read().clone();
        let mut damaged = Vec::new();
        for f in files.iter().rev() {
            // Entry times are truncated to seconds: compare ranges with a second of slack.
            let overlaps =
                f.begin_timestamp() <= end_ms && f.end_timestamp().saturating_add(999) >= begin_ms;
            if overlaps || f.entry_count() == 0 {
                match f.lookup(hash, begin_ms, end_ms, visit) {
                    Walk::Done => {}
                    Walk::Stopped => return damaged,
                    Walk::Damaged => {
                        log::error!(
                            "IndexFile {} is damaged (impossible chain pointer); scanning the CommitLog it covers instead, rebuilding the index at the next open",
                            f.path().display()
                        );
                        damaged.push(f.phy_range());
                    }
                }
            }
            if f.begin_timestamp() < begin_ms && f.entry_count() > 0 {
                break;
            }
        }
        damaged
    }

    /// Retention (spec §4.6): deletes files from the front, never the last one, while every
    /// entry of the file points below `commitlog_min`. Returns the number deleted.
    pub fn delete_expired(&self, vfs: &dyn Vfs, commitlog_min: u64) -> Result<usize> {
        let mut deleted = 0;
        loop {
            let victim = {
                let mut files = self.files.write();
                match files.first() {
                    Some(f) if files.len() > 1 && f.end_phy_offset() < commitlog_min => {
                        files.remove(0)
                    }
                    _ => break,
                }
            };
            // Lookups that cloned the list keep their mapping until they finish.
            vfs.remove_file(victim.path())
                .map_err(|e| Error::io(victim.path(), e))?;
            deleted += 1;
        }
        if deleted > 0 {
            vfs.sync_dir(&self.dir)
                .map_err(|e| Error::io(&self.dir, e))?;
        }
        Ok(deleted)
    }

    /// Bytes of one index file.
    pub fn file_size(&self) -> u64 {
        crate::format::index_layout::file_size(self.slots, self.max_entries)
    }

    /// (number of files, total entries).
    pub fn summary(&self) -> (u64, u64) {
        let files = self.files.read();
        (
            files.len() as u64,
            files.iter().map(|f| f.entry_count() as u64).sum(),
        )
    }

    /// While `deferred`, puts keep the header of the file they write to in memory only, and it
    /// is written when the file is synced at a roll or when this is called with `false`, which
    /// a flush must follow. For recovery's dispatch loop, the only writer then, with no reader:
    /// rewriting the 40-byte header for every key cost ~2 % of a rebuild. The bytes a file ends
    /// up with are the same either way.
    pub fn defer_headers(&self, deferred: bool) {
        let was = self.headers_deferred.swap(deferred, Ordering::Relaxed);
        if was && !deferred {
            if let Some(f) = self.files.read().last() {
                f.write_header();
            }
        }
    }

    /// Syncs the entries the last file got since the last call, but not its header or hash
    /// slots (recovery writes a rebuild's entries back while it goes on; [`flush`](Self::flush)
    /// syncs the rest). Files before the last were synced when the next one took over.
    pub fn flush_entries(&self) -> Result<()> {
        let last = self.files.read().last().cloned();
        match last {
            Some(f) => f.flush_entries(),
            None => Ok(()),
        }
    }

    /// Syncs every index file.
    pub fn flush(&self) -> Result<()> {
        for f in self.files.read().iter() {
            f.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `keep_entries` leaves the slot table exactly as rebuilding it from entries `1..=kept`
    /// in order does (a slot holds the last of them that hashes to it, or 0), whatever the
    /// slots held before, rewrites no slot that already had its value, and zeroes the entries
    /// after `kept`.
    #[test]
    fn keep_entries_rebuilds_the_slot_table_from_the_kept_entries() {
        use crate::storage::OsVfs;
        let dir = tempfile::tempdir().unwrap();
        // 200 slots and 1000 entries: most slots have chains.
        let (slots, max_entries) = (200u32, 1200u32);
        let path = dir.path().join("idx");
        let mut f = IndexFile::create(&OsVfs, &path, slots, max_entries, 1_000, 0).unwrap();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for n in 0..1000u64 {
            // Hashes over a range of 150 slots only, so some slots stay empty.
            let hash = (next() % 150) as i32 + 50 * i32::from(n % 7 == 0);
            assert!(f.put(hash, n * 100, 1_000 + n as i64, true));
        }
        // Garbage in some slots, as a crash can leave them.
        for slot in (0..slots).step_by(3) {
            f.words
                .store_be(slot_pos(slot), next() as u32 % 5000, Ordering::Relaxed);
        }
        let kept = 600;
        let mut want = vec![0u32; slots as usize];
        for i in 1..=kept {
            want[(f.entry(i).hash as u32 % slots) as usize] = i;
        }
        f.keep_entries(kept, 1_000 + kept as i64).unwrap();
        let got: Vec<u32> = (0..slots)
            .map(|s| f.words.load_be(slot_pos(s), Ordering::Relaxed))
            .collect();
        assert_eq!(got, want);
        assert!(want.contains(&0), "the test should leave some slots empty");
        assert_eq!(
            f.hash_slot_count.load(Ordering::Relaxed),
            want.iter().filter(|&&h| h != 0).count() as u32
        );
        assert_eq!(f.entry_count(), kept);
        for i in kept + 1..max_entries {
            let e = f.entry(i);
            assert_eq!(
                (e.hash, e.offset, e.diff, e.prev),
                (0, 0, 0, 0),
                "entry {i}"
            );
        }
        // Again: nothing changes.
        let before = std::fs::read(&path).unwrap();
        f.keep_entries(kept, 1_000 + kept as i64).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    /// Puts with deferred headers leave every file, header included, byte for byte as puts
    /// that write the header each time, across rolls.
    #[test]
    fn deferred_headers_leave_the_same_bytes() {
        use crate::format::record::{DispatchProperties, TRANSACTION_NOT_TYPE};
        use crate::storage::OsVfs;
        let mut images = Vec::new();
        for deferred in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let service = IndexService::load(&OsVfs, &StoreRoot::new(dir.path()), 50, 40).unwrap();
            service.defer_headers(deferred);
            let keys: Vec<String> = (0..100).map(|n| format!("K{n}")).collect();
            for (n, key) in keys.iter().enumerate() {
                let entry = DispatchEntry {
                    topic: "t",
                    queue_id: 0,
                    queue_offset: n as u64,
                    physical_offset: n as u64 * 100,
                    size: 100,
                    store_timestamp: 1_000 + n as i64 * 700,
                    transaction_type: TRANSACTION_NOT_TYPE,
                    props: DispatchProperties {
                        uniq_key: Some(key.as_str()),
                        ..DispatchProperties::default()
                    },
                };
                service.build(&OsVfs, &entry).unwrap();
            }
            service.defer_headers(false);
            service.flush().unwrap();
            let mut names: Vec<_> = std::fs::read_dir(dir.path().join("index"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            assert_eq!(names.len(), 3, "the puts should roll files");
            images.push(
                names
                    .iter()
                    .map(|p| std::fs::read(p).unwrap())
                    .collect::<Vec<_>>(),
            );
        }
        assert!(images[0] == images[1], "deferred headers changed the files");
    }

    #[test]
    fn key_hash_is_java_hash_of_topic_hash_key() {
        for (t, k) in [("orders", "ORDER-100"), ("a", ""), ("Tópico", "ключ😀")] {
            assert_eq!(
                key_hash(t, k),
                java_hash::index_key_hash(&format!("{t}#{k}"))
            );
        }
    }
}
