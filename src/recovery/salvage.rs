//! Salvage's changes to disk, made once the walk is over: for every damaged span the walk
//! skipped, a copy of its bytes under the root's `salvaged/` directory, then filler records in
//! its place (see [`crate::format::filler`]).
//!
//! The order makes every crash harmless: the copy is synced (file and directory) before the
//! span is overwritten, and an existing copy of the same length is never rewritten, so a crash
//! half-way through the fillers leaves the original bytes in the copy while the next open sees
//! the same damage (or a torn filler) and salvages the same span again.

use std::path::PathBuf;

use super::Salvage;
use crate::error::{Error, Result};
use crate::format::filler;
use crate::format::record;
use crate::format::root::StoreRoot;
use crate::storage::{MappedFile, OpenMode, Vfs};

/// Directory under the root that holds the bytes of salvaged spans.
pub(super) const SALVAGED_DIR: &str = "salvaged";

/// Applies every skipped span of `salvaged` to `files` (segments of `size` bytes starting at
/// `first_start`), filling in [`Salvage::saved_to`].
pub(super) fn write_fillers(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    files: &mut [(u64, MappedFile)],
    size: usize,
    max_record: usize,
    salvaged: &mut [Salvage],
    store_timestamp: i64,
) -> Result<()> {
    let first_start = files.first().map_or(0, |(s, _)| *s);
    for s in salvaged.iter_mut() {
        let Some(to) = s.resumed_at else { continue };
        let idx = ((s.offset - first_start) / size as u64) as usize;
        let Some((seg_start, file)) = files.get_mut(idx) else {
            continue;
        };
        let (from, to) = ((s.offset - *seg_start) as usize, (to - *seg_start) as usize);
        let saved = save_copy(vfs, root, s.offset, &file.readable()[from..to])?;
        let filled = filler::filled_len(s.offset, s.offset + (to - from) as u64, size);
        let mut bytes = filler::fillers(s.offset, filled, max_record, store_timestamp)
            .expect("the walk skips only spans a filler fits");
        if filled < to - from {
            // The span ran to the segment's end: close it as a roll does.
            bytes.extend_from_slice(&record::blank_record(
                record::END_FILE_MIN_BLANK_LENGTH as u32,
            ));
        }
        file.overwrite(from, &bytes)
            .map_err(|e| Error::io(file.path(), e))?;
        s.saved_to = Some(saved);
    }
    Ok(())
}

/// Writes `bytes` (the span at CommitLog `offset`) to `salvaged/<offset>` unless a copy of that
/// length is there already, synced with its directory.
fn save_copy(vfs: &dyn Vfs, root: &StoreRoot, offset: u64, bytes: &[u8]) -> Result<PathBuf> {
    let dir = root.path().join(SALVAGED_DIR);
    let path = dir.join(format!("{offset:020}"));
    if let Some(existing) = vfs.metadata(&path).map_err(|e| Error::io(&path, e))? {
        if existing.len == bytes.len() as u64 {
            return Ok(path);
        }
    }
    vfs.create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let f = vfs
        .open_file(&path, OpenMode::CreateOrOpen)
        .map_err(|e| Error::io(&path, e))?;
    f.set_len(0).map_err(|e| Error::io(&path, e))?;
    f.write_all_at(bytes, 0).map_err(|e| Error::io(&path, e))?;
    f.sync_all().map_err(|e| Error::io(&path, e))?;
    vfs.sync_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    vfs.sync_dir(root.path())
        .map_err(|e| Error::io(root.path(), e))?;
    Ok(path)
}
