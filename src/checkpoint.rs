//! Reading and writing the `checkpoint` file (layout in `format::checkpoint_layout`), and the
//! summary of derived data its trailer records.
//!
//! Written as `checkpoint.tmp`, synced, renamed over `checkpoint`, directory synced: a crash
//! leaves the old or the new file, never a torn one. (The trailer CRC would catch a torn one
//! anyway, and an unreadable checkpoint only costs a longer recovery.)

use crate::consume_queue::ConsumeQueue;
use crate::error::{Error, Result};
use crate::format::checkpoint_layout::{self, Checkpoint, DerivedSummary, CHECKPOINT_SIZE};
use crate::format::root::StoreRoot;
use crate::index::IndexService;
use crate::storage::{OpenMode, Vfs};

/// Reads `root/checkpoint`; a missing file reads as the default (no trailer).
pub(crate) fn read(vfs: &dyn Vfs, root: &StoreRoot) -> Result<Checkpoint> {
    let path = root.checkpoint();
    let Some(meta) = vfs.metadata(&path).map_err(|e| Error::io(&path, e))? else {
        return Ok(Checkpoint::default());
    };
    let len = meta.len.min(CHECKPOINT_SIZE as u64) as usize;
    let mut buf = vec![0u8; len];
    let f = vfs
        .open_file(&path, OpenMode::ReadOnly)
        .map_err(|e| Error::io(&path, e))?;
    f.read_exact_at(&mut buf, 0)
        .map_err(|e| Error::io(&path, e))?;
    Ok(Checkpoint::decode(&buf))
}

/// Whether `root/checkpoint` is one RocketMQ wrote (see
/// [`checkpoint_layout::written_by_rocketmq`]); `false` when it is missing.
pub(crate) fn written_by_rocketmq(vfs: &dyn Vfs, root: &StoreRoot) -> Result<bool> {
    let path = root.checkpoint();
    let Some(meta) = vfs.metadata(&path).map_err(|e| Error::io(&path, e))? else {
        return Ok(false);
    };
    if meta.len != CHECKPOINT_SIZE as u64 {
        return Ok(false);
    }
    let mut buf = vec![0u8; CHECKPOINT_SIZE];
    let f = vfs
        .open_file(&path, OpenMode::ReadOnly)
        .map_err(|e| Error::io(&path, e))?;
    f.read_exact_at(&mut buf, 0)
        .map_err(|e| Error::io(&path, e))?;
    Ok(checkpoint_layout::written_by_rocketmq(&buf))
}

/// Atomically replaces `root/checkpoint`.
pub(crate) fn write(vfs: &dyn Vfs, root: &StoreRoot, cp: &Checkpoint) -> Result<()> {
    let tmp = root.checkpoint_tmp();
    let path = root.checkpoint();
    let f = vfs
        .open_file(&tmp, OpenMode::CreateOrOpen)
        .map_err(|e| Error::io(&tmp, e))?;
    f.set_len(CHECKPOINT_SIZE as u64)
        .map_err(|e| Error::io(&tmp, e))?;
    f.write_all_at(&cp.encode(), 0)
        .map_err(|e| Error::io(&tmp, e))?;
    f.sync_data().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    vfs.rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    vfs.sync_dir(root.path())
        .map_err(|e| Error::io(root.path(), e))?;
    Ok(())
}

/// The counts a checkpoint records about ConsumeQueue and IndexFile.
pub(crate) fn summarize<'a>(
    queues: impl Iterator<Item = &'a ConsumeQueue>,
    index: Option<&IndexService>,
) -> DerivedSummary {
    let mut s = DerivedSummary::default();
    for q in queues.filter(|q| q.max_offset() > 0) {
        s.queues += 1;
        s.units += q.max_offset();
    }
    if let Some(i) = index {
        (s.index_files, s.index_entries) = i.summary();
    }
    s
}
