//! Consumer groups' committed offsets: derived data of the CommitLog, like the ConsumeQueue.
//!
//! A commit is a record of the system topic [`offset_commit::TOPIC`] (queue 0), appended
//! through the ordinary put path: in Sync mode it is durable when `commit` returns, and one
//! sync makes a batch of messages and the offsets committed after them durable together. The
//! table in memory is updated when the record is dispatched, under the append lock, so it
//! changes in CommitLog order. The CommitLog is durable as a prefix (recovery cuts only a
//! suffix), and a consumer commits an offset only after reading the messages before it, which
//! were appended earlier: so after any crash a group's recovered offset is a value it
//! committed, and never ahead of the messages the store still holds.
//!
//! `config/consumerOffset.json` (RocketMQ's `ConsumerOffsetManager` file) is a snapshot: every
//! checkpoint writes the table with the CommitLog offset its records reach, and an open loads
//! it and replays the commit records from that offset on (found through the system topic's
//! ConsumeQueue). Retention never deletes a segment holding commits past the snapshot: a
//! cleanup pass writes the snapshot first.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::format::offset_commit::{self, OffsetCommit};
use crate::format::root::StoreRoot;
use crate::storage::{OpenMode, Vfs};

/// Committed offsets by `(topic, group)`, then queue id.
pub(crate) type Table = crate::format::offset_table::OffsetTable;

#[derive(Default)]
struct Inner {
    table: Table,
    /// End of the last commit record applied: the snapshot's CommitLog offset.
    applied_end: u64,
    /// `applied_end` of the last snapshot written (or loaded).
    persisted_end: u64,
    /// When the last snapshot was written (`None`: not since open).
    persisted_at: Option<std::time::Instant>,
}

/// The committed-offset table of one engine (see the module docs).
#[derive(Default)]
pub(crate) struct Offsets {
    inner: Mutex<Inner>,
}

impl Offsets {
    /// Starts from a loaded snapshot whose records reach `end`.
    pub(crate) fn from_snapshot(table: Table, end: u64) -> Offsets {
        Offsets {
            inner: Mutex::new(Inner {
                table,
                applied_end: end,
                persisted_end: end,
                persisted_at: None,
            }),
        }
    }

    /// Applies the commit record `body` that ends at CommitLog offset `end`. A body that does
    /// not decode is logged and skipped: it cannot have come from this store's `commit`.
    pub(crate) fn apply(&self, body: &[u8], end: u64) {
        match offset_commit::decode(body) {
            Ok(c) => self.apply_commit(&c, end),
            Err(e) => log::warn!(
                "skipping a record of {} ending at {end}: {e}",
                offset_commit::TOPIC
            ),
        }
    }

    fn apply_commit(&self, c: &OffsetCommit<'_>, end: u64) {
        let mut inner = self.inner.lock();
        let queues = queues_mut(&mut inner.table, c.topic, c.group);
        for &(queue_id, offset) in &c.entries {
            queues.insert(queue_id, offset);
        }
        inner.applied_end = inner.applied_end.max(end);
    }

    /// Sets an offset without a commit record (progress read from a RocketMQ config file; the
    /// file stays the source until a commit record supersedes it).
    pub(crate) fn seed(&self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        let mut inner = self.inner.lock();
        queues_mut(&mut inner.table, topic, group).insert(queue_id, offset);
    }

    /// The offset `group` committed for `topic:queue_id`, if any.
    pub(crate) fn get(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        let inner = self.inner.lock();
        inner
            .table
            .get(&(topic, group) as &dyn TopicGroup)?
            .get(&queue_id)
            .copied()
    }

    /// A copy of the table and the CommitLog offset its records reach.
    pub(crate) fn snapshot(&self) -> (Table, u64) {
        let inner = self.inner.lock();
        (inner.table.clone(), inner.applied_end)
    }

    /// Whether commits were applied since the last snapshot was written, and (with
    /// `min_interval`) that snapshot is at least that old: the periodic checkpoint writes the
    /// snapshot at most that often (each costs two fsyncs and two renames per file); close,
    /// open and retention write it whenever it is behind.
    pub(crate) fn dirty(&self, min_interval: Option<std::time::Duration>) -> bool {
        let inner = self.inner.lock();
        inner.applied_end > inner.persisted_end
            && min_interval.is_none_or(|i| inner.persisted_at.is_none_or(|t| t.elapsed() >= i))
    }

    /// Records that the snapshot reaching `end` is on disk.
    pub(crate) fn persisted(&self, end: u64) {
        let mut inner = self.inner.lock();
        inner.persisted_end = inner.persisted_end.max(end);
        inner.persisted_at = Some(std::time::Instant::now());
    }
}

/// A `(topic, group)` key of [`Table`] as borrowed strings, so a lookup builds no owned
/// pair (two allocations per call before). `(String, String)` borrows as it, and both order
/// as the tuple does (topic, then group), so the table's order is unchanged.
pub(crate) trait TopicGroup {
    /// The topic and the group.
    fn pair(&self) -> (&str, &str);
}

impl TopicGroup for (String, String) {
    fn pair(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}

impl TopicGroup for (&str, &str) {
    fn pair(&self) -> (&str, &str) {
        (self.0, self.1)
    }
}

impl<'a> std::borrow::Borrow<dyn TopicGroup + 'a> for (String, String) {
    fn borrow(&self) -> &(dyn TopicGroup + 'a) {
        self
    }
}

impl PartialEq for dyn TopicGroup + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.pair() == other.pair()
    }
}

impl Eq for dyn TopicGroup + '_ {}

impl PartialOrd for dyn TopicGroup + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn TopicGroup + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.pair().cmp(&other.pair())
    }
}

/// The queues of `(topic, group)` in `table`, created empty if missing (owned names built
/// only then).
fn queues_mut<'t>(
    table: &'t mut Table,
    topic: &str,
    group: &str,
) -> &'t mut std::collections::BTreeMap<i32, i64> {
    if !table.contains_key(&(topic, group) as &dyn TopicGroup) {
        table.insert((topic.to_owned(), group.to_owned()), Default::default());
    }
    table
        .get_mut(&(topic, group) as &dyn TopicGroup)
        .expect("inserted above")
}

impl super::Engine {
    /// Applies the commit records from CommitLog offset `from` on (the snapshot's end), read
    /// through the system topic's ConsumeQueue: at open, after recovery.
    pub(super) fn replay_offsets(&self, from: u64) -> Result<usize> {
        let Some(q) = self.queue(offset_commit::TOPIC, 0) else {
            return Ok(0);
        };
        // The first unit whose record starts at or after `from` (units are in CommitLog order).
        let (mut lo, mut hi) = (q.min_offset(), q.max_offset());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match q.unit(mid) {
                Some(u) if (u.commitlog_offset as u64) < from => lo = mid + 1,
                _ => hi = mid,
            }
        }
        if lo == q.min_offset() && lo < hi && from < self.commitlog.min_offset() {
            log::warn!(
                "offset commits between CommitLog offset {from} and {} are gone (retention ran past the last snapshot of consumer offsets): those groups may consume some messages again",
                self.commitlog.min_offset()
            );
        }
        let (mut next, mut applied) = (lo, 0);
        let opts = crate::results::GetOptions::new(256);
        while next < q.max_offset() {
            let got = self.get(offset_commit::TOPIC, 0, next, &opts)?;
            for m in got.messages() {
                self.offsets
                    .apply(m.body(), m.commitlog_offset() + m.stored_size() as u64);
                applied += 1;
            }
            if got.next_offset() <= next {
                break;
            }
            next = got.next_offset();
        }
        Ok(applied)
    }

    /// The offset `group` committed for `topic:queue_id` (`None`: never committed, RocketMQ's
    /// `-1`). One below the queue's min offset (retention deleted the messages it pointed at)
    /// is corrected forward to the min, with a log line.
    pub(crate) fn committed_offset(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
    ) -> Result<Option<u64>> {
        self.check_open()?;
        let Some(offset) = self.offsets.get(group, topic, queue_id) else {
            return Ok(None);
        };
        let Ok(offset) = u64::try_from(offset) else {
            return Ok(None);
        };
        let min = self.queue(topic, queue_id).map_or(0, |q| q.min_offset());
        if offset < min {
            log::info!(
                "group {group}: committed offset {offset} of {topic}:{queue_id} is below the queue's min offset {min} (retention): consuming from {min}"
            );
            return Ok(Some(min));
        }
        Ok(Some(offset))
    }

    /// Every committed offset, by topic and group (for `stats` and tools).
    pub(crate) fn all_committed(&self) -> Table {
        self.offsets.snapshot().0
    }
}

/// Reads the snapshot: `config/consumerOffset.json`, or its `.bak` when it is missing, empty or
/// unreadable (RocketMQ's `ConfigManager` fallback; a crash between the two renames of
/// [`write_config`] leaves only the `.bak`). Returns the table and the CommitLog offset from
/// which commit records must be replayed: the file's `rocketstoreCommitLogOffset`, or, in a
/// file without it (written by RocketMQ), the end of the log: its offsets are taken as they are.
/// Neither file: an empty table, replay from 0.
pub(super) fn load_snapshot(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    log_end: u64,
) -> Result<(Offsets, u64)> {
    let loaded = load_config(
        vfs,
        &root.consumer_offsets(""),
        &root.consumer_offsets(".bak"),
        snapshot_codec::decode,
    )?;
    let (table, end) = loaded.unwrap_or((Table::new(), Some(0)));
    let from = end.unwrap_or(log_end);
    Ok((Offsets::from_snapshot(table, from), from))
}

/// Loads a RocketMQ config file, falling back to its `.bak` when it is missing, empty or does
/// not decode (with a log line); `None` if neither exists; [`Error::CorruptConfig`] naming the
/// file when neither decodes.
pub(super) fn load_config<T>(
    vfs: &dyn Vfs,
    main: &Path,
    bak: &Path,
    decode: fn(&str) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    let why = match read_config(vfs, main, decode)? {
        Some(Ok(t)) => return Ok(Some(t)),
        Some(Err(e)) => Some(e),
        None => None,
    };
    match (read_config(vfs, bak, decode)?, why) {
        (Some(Ok(t)), why) => {
            log::warn!(
                "{}: {}; using {} (the previous version)",
                main.display(),
                why.as_deref().unwrap_or("missing"),
                bak.display()
            );
            Ok(Some(t))
        }
        (None, None) => Ok(None),
        (bak_state, Some(why)) => {
            let bak_why = match bak_state {
                Some(Err(e)) => e,
                _ => "missing".into(),
            };
            Err(Error::CorruptConfig {
                path: main.to_path_buf(),
                reason: format!("{why}; and {}: {bak_why}", bak.display()),
            })
        }
        (Some(Err(e)), None) => Err(Error::CorruptConfig {
            path: bak.to_path_buf(),
            reason: format!("{e} ({} is missing)", main.display()),
        }),
    }
}

/// A snapshot's table and the CommitLog offset its commits reach (if it says).
type Snapshot = (Table, Option<u64>);

/// `None`: no such file; `Some(Err(why))`: empty or does not decode.
fn read_config<T>(
    vfs: &dyn Vfs,
    path: &Path,
    decode: fn(&str) -> std::result::Result<T, String>,
) -> Result<Option<std::result::Result<T, String>>> {
    let Some(meta) = vfs.metadata(path).map_err(|e| Error::io(path, e))? else {
        return Ok(None);
    };
    if meta.len == 0 {
        return Ok(Some(Err("empty".into())));
    }
    let f = vfs
        .open_file(path, OpenMode::ReadOnly)
        .map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; meta.len as usize];
    f.read_exact_at(&mut buf, 0)
        .map_err(|e| Error::io(path, e))?;
    let Ok(text) = String::from_utf8(buf) else {
        return Ok(Some(Err("not UTF-8".into())));
    };
    Ok(Some(decode(&text)))
}

/// Writes the consumer offset snapshot ([`write_config`]).
pub(super) fn write_snapshot(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    table: &Table,
    end: u64,
) -> Result<()> {
    let text = snapshot_codec::encode(table, end);
    write_config(vfs, root, |s| root.consumer_offsets(s), &text)
}

/// Writes a config file as RocketMQ persists one, and at least as safely: the new version goes
/// to `.tmp` (synced), the current file becomes `.bak`, `.tmp` becomes the file, and the
/// directory is synced. `path(suffix)` names the file and its `.bak` / `.tmp`.
pub(super) fn write_config(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    path: impl Fn(&str) -> PathBuf,
    text: &str,
) -> Result<()> {
    let dir = root.config_dir();
    if vfs
        .metadata(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .is_none()
    {
        vfs.create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        vfs.sync_dir(root.path())
            .map_err(|e| Error::io(root.path(), e))?;
    }
    let (main, bak, tmp) = (path(""), path(".bak"), path(".tmp"));
    let f = vfs
        .open_file(&tmp, OpenMode::CreateOrOpen)
        .map_err(|e| Error::io(&tmp, e))?;
    f.set_len(0).map_err(|e| Error::io(&tmp, e))?;
    f.write_all_at(text.as_bytes(), 0)
        .map_err(|e| Error::io(&tmp, e))?;
    f.sync_data().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    if vfs
        .metadata(&main)
        .map_err(|e| Error::io(&main, e))?
        .is_some()
    {
        vfs.rename(&main, &bak).map_err(|e| Error::io(&bak, e))?;
    }
    vfs.rename(&tmp, &main).map_err(|e| Error::io(&main, e))?;
    vfs.sync_dir(&dir).map_err(|e| Error::io(&dir, e))
}

/// The JSON of the snapshot ([`crate::format::offset_table`]).
mod snapshot_codec {
    use super::Table;
    use crate::format::offset_table;

    pub(super) fn encode(table: &Table, end: u64) -> String {
        offset_table::encode(table, Some(end))
    }

    pub(super) fn decode(text: &str) -> Result<super::Snapshot, String> {
        offset_table::parse(text).map_err(|e| e.to_string())
    }
}
