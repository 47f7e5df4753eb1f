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
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::format::index_layout::{self as layout, entry_pos, slot_pos, time_diff_secs};
use crate::format::java_hash;
use crate::format::record::{DispatchProperties, RecordView, TRANSACTION_ROLLBACK};
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
    fn put(&self, hash: i32, phy_offset: u64, store_ts: i64) -> bool {
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
        self.write_header();
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
}

impl IndexService {
    /// Loads `index/`. A file that cannot be opened or has an impossible header is an error; the
    /// caller then drops the whole directory and rebuilds it from the CommitLog.
    pub fn load(vfs: &dyn Vfs, root: &Path, slots: u32, max_entries: u32) -> Result<Self> {
        let dir = root.join("index");
        let mut files = Vec::new();
        if let Some(m) = vfs.metadata(&dir).map_err(|e| Error::io(&dir, e))? {
            if m.kind != FileKind::Dir {
                return Err(Error::Layout {
                    path: dir,
                    reason: "expected a directory".into(),
                });
            }
            for e in vfs.read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
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
        })
    }

    /// Deletes every index file (before a rebuild).
    pub fn remove_all(vfs: &dyn Vfs, root: &Path) -> Result<()> {
        let dir = root.join("index");
        if vfs
            .metadata(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .is_some()
        {
            vfs.remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            vfs.sync_dir(root).map_err(|e| Error::io(root, e))?;
        }
        Ok(())
    }

    /// Indexes the keys of one record (RocketMQ `buildIndex`, spec §4.4). Single writer.
    pub fn build(
        &self,
        vfs: &dyn Vfs,
        rec: &RecordView<'_>,
        props: &DispatchProperties<'_>,
    ) -> Result<()> {
        if rec.transaction_type() == TRANSACTION_ROLLBACK {
            return Ok(());
        }
        let offset = rec.physical_offset() as u64;
        if let Some(last) = self.files.read().last() {
            if offset < last.end_phy_offset() && last.entry_count() > 0 {
                return Ok(());
            }
        }
        let topic = rec.topic();
        let ts = rec.store_timestamp();
        if let Some(u) = props.uniq_key {
            self.put(vfs, key_hash(topic, u), offset, ts)?;
        }
        for k in props.keys() {
            self.put(vfs, key_hash(topic, k), offset, ts)?;
        }
        Ok(())
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
        if !file.put(hash, offset, ts) {
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
