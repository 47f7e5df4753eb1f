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

/// One file of a list and the absolute offset of its first byte.
#[derive(Clone, Debug)]
pub(crate) struct Segment {
    pub start: u64,
    pub file: Arc<MappedFile>,
}

impl Segment {}

/// RocketMQ's file name for a start offset: 20 zero-padded decimal digits.
pub(crate) fn file_name(start: u64) -> String {
    format!("{start:020}")
}

/// The start offset named by `name`, if it is exactly 20 ASCII digits.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Lists, checks and maps the files of `dir` (which may not exist: empty list).
///
/// A zero-length *last* file (a crash right after its creation) is deleted. Anything else that
/// does not fit the invariants is a [`Error::Layout`] naming the file.
pub(crate) fn load_dir(
    vfs: &dyn Vfs,
    dir: &Path,
    size: usize,
    writable: bool,
) -> Result<Vec<(u64, MappedFile)>> {
    let entries = match vfs.metadata(dir).map_err(|e| Error::io(dir, e))? {
        None => return Ok(Vec::new()),
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
    if let Some((_, path, 0)) = named.last() {
        if writable {
            vfs.remove_file(path)
                .map_err(|e| Error::io(path.clone(), e))?;
            vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
        }
        named.pop();
    }
    let mut out: Vec<(u64, MappedFile)> = Vec::with_capacity(named.len());
    for (start, path, _) in named {
        if start % size as u64 != 0 {
            return Err(Error::Layout {
                path,
                reason: format!("start offset {start} is not a multiple of the file size {size} (was the size changed?)"),
            });
        }
        if let Some((prev, _)) = out.last() {
            if start != prev + size as u64 {
                return Err(Error::Layout {
                    path,
                    reason: format!(
                        "gap: previous file starts at {prev}, expected {}",
                        prev + size as u64
                    ),
                });
            }
        }
        let file = MappedFile::open(vfs, &path, size, writable).map_err(|e| match e {
            OpenError::WrongLength { expected, found } => Error::Layout {
                path: path.clone(),
                reason: format!("length {found}, expected {expected}"),
            },
            OpenError::Io(io) => Error::io(path.clone(), io),
        })?;
        out.push((start, file));
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_twenty_digits() {
        assert_eq!(file_name(0), "00000000000000000000");
        assert_eq!(file_name(1_073_741_824), "00000000001073741824");
        assert_eq!(parse_file_name("00000000001073741824"), Some(1_073_741_824));
        assert_eq!(parse_file_name("1073741824"), None);
        assert_eq!(parse_file_name("0000000000107374182x"), None);
        assert_eq!(parse_file_name("+0000000001073741824"), None);
    }
}
