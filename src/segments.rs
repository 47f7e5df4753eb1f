//! Ordered lists of fixed-size mapped files named by their 20-digit start offset: the shape
//! shared by CommitLog segments and ConsumeQueue files (spec §2.1, §2.2).
//!
//! Invariants of a loaded list: every file is exactly `size` bytes, starts at a multiple of
//! `size`, and the starts are contiguous (`start[i+1] = start[i] + size`). Lookup by offset is
//! therefore one division.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::storage::{FileKind, MappedFile, OpenError, Vfs};

pub(crate) use crate::format::root::{file_name, parse_file_name};

/// What the bytes after the last written byte of a loaded file can hold: recovery's choice
/// between zeroing them (and syncing) and leaving them as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// The previous run shut down cleanly (no `abort` file: it is removed last, after every
    /// file was synced): nothing was written past the end, and whatever an earlier recovery
    /// found there it zeroed and synced.
    Clean,
    /// The previous run may have crashed: pages past the end may hold stale data whose earlier
    /// pages were lost; zero them so that appends filling the hole cannot make them reappear.
    MayHoldStale,
}

/// One file of a list and the absolute offset of its first byte.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    pub start: u64,
    pub file: Arc<MappedFile>,
}

/// Lists, checks and maps the files of `dir` (which may not exist: empty list), which must be
/// contiguous: a gap between two files is an [`Error::Layout`] naming the file after it.
///
/// A zero-length *last* file (a crash right after its creation) is deleted when `writable`,
/// once every other file passed the checks. Anything else that does not fit the invariants is
/// a [`Error::Layout`] naming the file.
pub(crate) fn load_dir(
    vfs: &dyn Vfs,
    dir: &Path,
    size: usize,
    writable: bool,
) -> Result<Vec<(u64, MappedFile)>> {
    let loaded = load_runs(vfs, dir, size, writable)?;
    let mut runs = loaded.runs.into_iter();
    let first = runs.next().unwrap_or_default();
    if let Some(after) = runs.next() {
        let prev = first.last().map_or(0, |(s, _)| *s);
        let (start, file) = after.into_iter().next().expect("runs are never empty");
        return Err(Error::Layout {
            path: file.path().to_path_buf(),
            reason: gap_reason(prev, start, size),
        });
    }
    if writable {
        if let Some(path) = &loaded.empty_last {
            remove_empty_last(vfs, dir, path)?;
        }
    }
    Ok(first)
}

/// What [`load_runs`] found in a directory.
#[derive(Debug, Default)]
pub(crate) struct Runs {
    /// The files as runs of contiguous starts, in order (no run is empty).
    pub runs: Vec<Vec<(u64, MappedFile)>>,
    /// A zero-length last file (a crash right after its creation), left out of `runs` and
    /// left in place: the caller deletes it ([`remove_empty_last`]) once it has decided to
    /// change the directory at all, so a load that fails later changes nothing.
    pub empty_last: Option<PathBuf>,
}

/// Deletes the zero-length last file [`load_runs`] left out, and makes that durable.
pub(crate) fn remove_empty_last(vfs: &dyn Vfs, dir: &Path, path: &Path) -> Result<()> {
    vfs.remove_file(path).map_err(|e| Error::io(path, e))?;
    vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))
}

fn gap_reason(prev: u64, start: u64, size: usize) -> String {
    format!(
        "gap: previous file starts at {prev}, expected {}, found {start}",
        prev + size as u64
    )
}

/// [`load_dir`] for a directory that may have gaps: the files as runs of contiguous starts, in
/// order (no run is empty; no runs for an empty or missing directory). The caller decides what
/// a gap means. Deletes nothing (see [`Runs::empty_last`]).
pub(crate) fn load_runs(vfs: &dyn Vfs, dir: &Path, size: usize, writable: bool) -> Result<Runs> {
    let entries = match vfs.metadata(dir).map_err(|e| Error::io(dir, e))? {
        None => return Ok(Runs::default()),
        Some(m) if m.kind != FileKind::Dir => {
            return Err(Error::Layout {
                path: dir.to_path_buf(),
                reason: "expected a directory".into(),
            })
        }
        Some(_) => vfs.read_dir(dir).map_err(|e| Error::io(dir, e))?,
    };
    let mut named = Vec::with_capacity(entries.len());
    for e in entries {
        let path = dir.join(&e.name);
        let Some(start) = parse_file_name(&e.name) else {
            return Err(Error::Layout {
                path,
                reason: "not a segment: name is not a 20-digit offset".into(),
            });
        };
        if e.kind != FileKind::File {
            return Err(Error::Layout {
                path,
                reason: format!("segment is a {:?}, expected a regular file", e.kind),
            });
        }
        named.push((start, path, e.len));
    }
    named.sort_by_key(|(s, _, _)| *s);
    let mut empty_last = None;
    if let Some((_, _, 0)) = named.last() {
        empty_last = named.pop().map(|(_, path, _)| path);
    }
    let mut runs: Vec<Vec<(u64, MappedFile)>> = Vec::new();
    for (start, path, _) in named {
        if start % size as u64 != 0 {
            return Err(Error::Layout {
                path,
                reason: format!("start offset {start} is not a multiple of the file size {size} (was the size changed?)"),
            });
        }
        let file = MappedFile::open(vfs, &path, size, writable).map_err(|e| match e {
            OpenError::WrongLength { expected, found } => Error::Layout {
                path: path.clone(),
                reason: format!("length {found}, expected {expected}"),
            },
            OpenError::Io(io) => Error::io(path.clone(), io),
        })?;
        match runs.last_mut() {
            Some(run)
                if run
                    .last()
                    .is_some_and(|(prev, _)| start == prev + size as u64) =>
            {
                run.push((start, file));
            }
            _ => runs.push(vec![(start, file)]),
        }
    }
    Ok(Runs { runs, empty_last })
}

/// Deletes the files of `files` after the first `keep`, newest first, making each removal
/// durable (a sync of `dir`) before the next: a crash at any point leaves a contiguous prefix of
/// the list, never a gap (a crash may undo any unsynced directory operation on its own).
/// Returns how many files were deleted.
pub(crate) fn remove_tail(
    vfs: &dyn Vfs,
    dir: &Path,
    files: &mut Vec<(u64, MappedFile)>,
    keep: usize,
) -> Result<usize> {
    let mut removed = 0;
    while files.len() > keep {
        let (_, f) = files.pop().expect("len > keep");
        f.delete(vfs).map_err(|e| Error::io(f.path(), e))?;
        vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        removed += 1;
    }
    Ok(removed)
}

/// A concurrently readable ordered list of segments. Appends and removals take the write lock
/// briefly; lookups take the read lock and clone an `Arc`.
#[derive(Debug)]
pub(crate) struct SegmentList {
    dir: PathBuf,
    size: usize,
    segments: RwLock<Vec<Segment>>,
}

impl SegmentList {
    pub fn new(dir: PathBuf, size: usize, segments: Vec<Segment>) -> Self {
        SegmentList {
            dir,
            size,
            segments: RwLock::new(segments),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn segment_size(&self) -> usize {
        self.size
    }

    /// The segment holding absolute offset `offset`.
    pub fn find(&self, offset: u64) -> Option<Segment> {
        let segs = self.segments.read();
        let first = segs.first()?.start;
        let idx = offset.checked_sub(first)? / self.size as u64;
        segs.get(usize::try_from(idx).ok()?).cloned()
    }

    pub fn first(&self) -> Option<Segment> {
        self.segments.read().first().cloned()
    }

    pub fn last(&self) -> Option<Segment> {
        self.segments.read().last().cloned()
    }

    pub fn len(&self) -> usize {
        self.segments.read().len()
    }

    pub fn snapshot(&self) -> Vec<Segment> {
        self.segments.read().clone()
    }

    pub fn push(&self, seg: Segment) {
        let mut segs = self.segments.write();
        debug_assert!(segs
            .last()
            .is_none_or(|l| l.start + self.size as u64 == seg.start));
        segs.push(seg);
    }

    /// Removes the first segment if it still starts at `start` (retention deletes from the
    /// front only, so the list never gets a hole).
    pub fn remove_first(&self, start: u64) -> Option<Segment> {
        let mut segs = self.segments.write();
        if segs.first()?.start != start {
            return None;
        }
        Some(segs.remove(0))
    }

    /// Puts back a segment taken by [`remove_first`](Self::remove_first).
    pub fn push_front(&self, seg: Segment) {
        let mut segs = self.segments.write();
        debug_assert!(segs
            .first()
            .is_none_or(|f| seg.start + self.size as u64 == f.start));
        segs.insert(0, seg);
    }

    /// Removes every segment, returning them (used when a derived queue is rebuilt).
    pub fn take_all(&self) -> Vec<Segment> {
        std::mem::take(&mut *self.segments.write())
    }
}
