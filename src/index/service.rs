//! All IndexFiles of a store, oldest first: build, roll, lookup, retention and the recovery cut.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::file::{Entry, Walk};
use super::{key_hash, EntryRecord, IndexFile};
use crate::error::{Error, Result};
use crate::format::dispatch_entry::DispatchEntry;
use crate::format::record::TRANSACTION_ROLLBACK;
use crate::format::root::StoreRoot;
use crate::segments::Tail;
use crate::storage::{self, FileKind, Vfs};

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
        let offset = entry.commitlog_offset;
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
    fn create_next(&self, vfs: &dyn Vfs, seed_ts: i64, seed_offset: u64) -> Result<IndexFile> {
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
        let f = IndexFile::create(
            vfs,
            &path,
            self.slots,
            self.max_entries,
            seed_ts,
            seed_offset,
        )?;
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
        let (seed_ts, seed_offset) =
            prev.map_or((ts, 0), |p| (p.end_timestamp(), p.end_phy_offset()));
        let standby = self.standby.lock().take();
        let f = match standby {
            Some(f) => {
                f.reseed(seed_ts, seed_offset);
                f
            }
            None => self.create_next(vfs, seed_ts, seed_offset)?,
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
                let begins_right = first.offset == f.commitlog_range().0
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
                        damaged.push(f.commitlog_range());
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
