//! Read-only discovery of a store root: which CommitLog segments, ConsumeQueue files and
//! IndexFiles exist, the checkpoint and the `abort` marker.
//!
//! Everything here goes through [`Vfs`] read-only calls (`read_dir`, `metadata`, `open_file`
//! with [`OpenMode::ReadOnly`]); nothing is created, locked or written, so it is safe on a root
//! a running broker owns and on a root written by RocketMQ itself. Names that do not fit the
//! layout are not errors here: they are collected as `anomalies` for `stat` to show and
//! `verify` to report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rocketstore::format::checkpoint_layout::{self, Checkpoint, CHECKPOINT_SIZE, TRAILER_POS};
use rocketstore::format::root::GEOMETRY_FILE;
use rocketstore::vfs::{FileKind, OpenMode, OsVfs, Vfs};
use rocketstore::RootGeometry;

use crate::error::{CliError, CliResult};
use crate::index::Geometry;

/// One file of the root.
#[derive(Clone, Debug)]
pub struct FileInfo {
    /// File name.
    pub name: String,
    /// Full path.
    pub path: PathBuf,
    /// Start offset named by the file (CommitLog/ConsumeQueue: 20 digits; IndexFile: 0).
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// State of rocketstore's checkpoint trailer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrailerState {
    /// Magic, version and CRC check out.
    Valid,
    /// The trailer area is all zero: a RocketMQ-written checkpoint.
    Absent,
    /// Something is there but does not check out (damaged, or another version).
    Invalid,
    /// A version 1 or 2 trailer that does not check out: their CRC covered RocketMQ's
    /// timestamps, which a broker rewrites on every flush, so a broker touching the root voids
    /// it. Recovery ignores it (a full scan), as for [`Invalid`](Self::Invalid), but it is not
    /// evidence of damage.
    Outdated(u32),
}

/// The decoded `checkpoint` file.
#[derive(Clone, Debug)]
pub struct CheckpointInfo {
    /// File length (RocketMQ maps 4096 bytes).
    pub len: u64,
    /// The decoded fields.
    pub checkpoint: Checkpoint,
    /// Whether our trailer is there.
    pub trailer: TrailerState,
}

/// Files of one (topic, queue).
#[derive(Clone, Debug)]
pub struct QueueFiles {
    /// Topic (directory name).
    pub topic: String,
    /// Queue id (directory name).
    pub queue_id: i32,
    /// ConsumeQueue files sorted by start byte offset.
    pub files: Vec<FileInfo>,
}

/// Everything found in a store root.
#[derive(Debug)]
pub struct Layout {
    /// CommitLog segments sorted by start offset.
    pub commitlog: Vec<FileInfo>,
    /// ConsumeQueues by topic and queue id.
    pub queues: BTreeMap<String, BTreeMap<i32, QueueFiles>>,
    /// IndexFiles sorted by name (= creation time).
    pub index: Vec<FileInfo>,
    /// The checkpoint, if the file exists.
    pub checkpoint: Option<CheckpointInfo>,
    /// Contents of the `abort` marker if it exists (RocketMQ 5 and rocketstore write the PID).
    pub abort: Option<String>,
    /// Whether a `lock` file exists (it always does once a store has been opened).
    pub lock_present: bool,
    /// Names that do not fit the layout, with the reason.
    pub anomalies: Vec<(PathBuf, String)>,
}

impl Layout {
    /// All queues in (topic, queue id) order.
    pub fn all_queues(&self) -> impl Iterator<Item = &QueueFiles> {
        self.queues.values().flat_map(|qs| qs.values())
    }

    /// The files of one queue.
    pub fn queue(&self, topic: &str, queue_id: i32) -> Option<&QueueFiles> {
        self.queues.get(topic)?.get(&queue_id)
    }
}

/// A store root opened for reading.
#[derive(Debug)]
pub struct Root {
    /// The root directory.
    pub path: PathBuf,
    /// The file system (the real one; a trait object so the readers could run on another).
    pub vfs: Box<dyn Vfs>,
    /// The file geometry recorded in the root (`rocketstore-geometry`), if it has a readable
    /// record; a damaged one is an anomaly of [`Root::layout`].
    pub geometry: Option<RootGeometry>,
}

impl Root {
    /// Checks that `path` is a directory that looks like a store root (has at least one of
    /// `commitlog/`, `consumequeue/`, `index/`, `checkpoint`).
    pub fn open(path: &Path) -> CliResult<Root> {
        let vfs: Box<dyn Vfs> = Box::new(OsVfs);
        match vfs.metadata(path).map_err(|e| CliError::io(path, e))? {
            None => return Err(CliError::layout(path, "no such directory")),
            Some(m) if m.kind != FileKind::Dir => {
                return Err(CliError::layout(path, "not a directory"))
            }
            Some(_) => {}
        }
        let mut found = false;
        for name in ["commitlog", "consumequeue", "index", "checkpoint"] {
            let p = path.join(name);
            found |= vfs.metadata(&p).map_err(|e| CliError::io(&p, e))?.is_some();
        }
        if !found {
            return Err(CliError::layout(
                path,
                "not a store root (no commitlog/, consumequeue/, index/ or checkpoint)",
            ));
        }
        let geometry = RootGeometry::read(&*vfs, path).unwrap_or(None);
        Ok(Root {
            path: path.to_path_buf(),
            vfs,
            geometry,
        })
    }

    /// The index geometry recorded in the root, if any.
    pub fn index_geometry(&self) -> Option<Geometry> {
        self.geometry.map(|g| Geometry {
            slots: g.index_hash_slots,
            entries: g.index_max_entries,
        })
    }

    /// Lists the root's files.
    pub fn layout(&self) -> CliResult<Layout> {
        let mut anomalies = Vec::new();
        let commitlog = self.segment_dir(&self.path.join("commitlog"), &mut anomalies)?;
        let queues = self.queue_dirs(&mut anomalies)?;
        let index = self.index_dir(&mut anomalies)?;
        if let Err(e) = RootGeometry::read(&*self.vfs, &self.path) {
            anomalies.push((self.path.join(GEOMETRY_FILE), e.to_string()));
        }
        let checkpoint = self.checkpoint()?;
        let abort_path = self.path.join("abort");
        let abort = match self
            .vfs
            .metadata(&abort_path)
            .map_err(|e| CliError::io(&abort_path, e))?
        {
            None => None,
            Some(m) => {
                let bytes = self.read_prefix(&abort_path, m.len.min(64))?;
                Some(String::from_utf8_lossy(&bytes).trim().to_string())
            }
        };
        let lock_path = self.path.join("lock");
        let lock_present = self
            .vfs
            .metadata(&lock_path)
            .map_err(|e| CliError::io(&lock_path, e))?
            .is_some();
        Ok(Layout {
            commitlog,
            queues,
            index,
            checkpoint,
            abort,
            lock_present,
            anomalies,
        })
    }

    /// Reads `[offset, offset + len)` of a file.
    pub fn read_range(&self, path: &Path, offset: u64, len: usize) -> CliResult<Vec<u8>> {
        let f = self
            .vfs
            .open_file(path, OpenMode::ReadOnly)
            .map_err(|e| CliError::io(path, e))?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, offset)
            .map_err(|e| CliError::io(path, e))?;
        Ok(buf)
    }

    fn read_prefix(&self, path: &Path, len: u64) -> CliResult<Vec<u8>> {
        self.read_range(path, 0, len as usize)
    }

    /// Entries of `dir`, or `None` if it does not exist (an anomaly if it is not a directory).
    fn list(
        &self,
        dir: &Path,
        anomalies: &mut Vec<(PathBuf, String)>,
    ) -> CliResult<Option<Vec<rocketstore::vfs::DirEntry>>> {
        match self.vfs.metadata(dir).map_err(|e| CliError::io(dir, e))? {
            None => Ok(None),
            Some(m) if m.kind != FileKind::Dir => {
                anomalies.push((dir.to_path_buf(), "expected a directory".into()));
                Ok(None)
            }
            Some(_) => Ok(Some(
                self.vfs.read_dir(dir).map_err(|e| CliError::io(dir, e))?,
            )),
        }
    }

    /// Files named by a 20-digit start offset, sorted by it.
    fn segment_dir(
        &self,
        dir: &Path,
        anomalies: &mut Vec<(PathBuf, String)>,
    ) -> CliResult<Vec<FileInfo>> {
        let mut out = Vec::new();
        for e in self.list(dir, anomalies)?.unwrap_or_default() {
            let path = dir.join(&e.name);
            let start = (e.name.len() == 20 && e.name.bytes().all(|b| b.is_ascii_digit()))
                .then(|| e.name.parse::<u64>().ok())
                .flatten();
            match (start, e.kind) {
                (Some(start), FileKind::File) => out.push(FileInfo {
                    name: e.name,
                    path,
                    start,
                    len: e.len,
                }),
                (None, _) => anomalies.push((path, "name is not a 20-digit offset".into())),
                (Some(_), kind) => {
                    anomalies.push((path, format!("a {kind:?} where a file should be")))
                }
            }
        }
        out.sort_by_key(|f| f.start);
        Ok(out)
    }

    fn queue_dirs(
        &self,
        anomalies: &mut Vec<(PathBuf, String)>,
    ) -> CliResult<BTreeMap<String, BTreeMap<i32, QueueFiles>>> {
        let dir = self.path.join("consumequeue");
        let mut out: BTreeMap<String, BTreeMap<i32, QueueFiles>> = BTreeMap::new();
        for topic in self.list(&dir, anomalies)?.unwrap_or_default() {
            let tdir = dir.join(&topic.name);
            if topic.kind != FileKind::Dir {
                anomalies.push((tdir, "not a topic directory".into()));
                continue;
            }
            for q in self.list(&tdir, anomalies)?.unwrap_or_default() {
                let qdir = tdir.join(&q.name);
                // RocketMQ skips queue directories whose name is not an integer.
                let Ok(queue_id) = q.name.parse::<i32>() else {
                    anomalies.push((qdir, "queue directory name is not an integer".into()));
                    continue;
                };
                if q.kind != FileKind::Dir {
                    anomalies.push((qdir, "not a queue directory".into()));
                    continue;
                }
                let files = self.segment_dir(&qdir, anomalies)?;
                out.entry(topic.name.clone()).or_default().insert(
                    queue_id,
                    QueueFiles {
                        topic: topic.name.clone(),
                        queue_id,
                        files,
                    },
                );
            }
        }
        Ok(out)
    }

    fn index_dir(&self, anomalies: &mut Vec<(PathBuf, String)>) -> CliResult<Vec<FileInfo>> {
        let dir = self.path.join("index");
        let mut out = Vec::new();
        for e in self.list(&dir, anomalies)?.unwrap_or_default() {
            let path = dir.join(&e.name);
            if e.name.len() != 17 || !e.name.bytes().all(|b| b.is_ascii_digit()) {
                anomalies.push((path, "not an index file name (yyyyMMddHHmmssSSS)".into()));
            } else if e.kind != FileKind::File {
                anomalies.push((path, format!("a {:?} where a file should be", e.kind)));
            } else {
                out.push(FileInfo {
                    name: e.name,
                    path,
                    start: 0,
                    len: e.len,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn checkpoint(&self) -> CliResult<Option<CheckpointInfo>> {
        let path = self.path.join("checkpoint");
        let Some(m) = self
            .vfs
            .metadata(&path)
            .map_err(|e| CliError::io(&path, e))?
        else {
            return Ok(None);
        };
        let bytes = self.read_prefix(&path, m.len.min(CHECKPOINT_SIZE as u64))?;
        let checkpoint = Checkpoint::decode(&bytes);
        let trailer = if checkpoint.trailer.is_some() {
            TrailerState::Valid
        } else if bytes
            .get(TRAILER_POS..)
            .is_none_or(|t| t.iter().all(|&b| b == 0))
        {
            TrailerState::Absent
        } else {
            match checkpoint_layout::trailer_version(&bytes) {
                Some(v @ (1 | 2)) => TrailerState::Outdated(v),
                _ => TrailerState::Invalid,
            }
        };
        Ok(Some(CheckpointInfo {
            len: m.len,
            checkpoint,
            trailer,
        }))
    }
}
