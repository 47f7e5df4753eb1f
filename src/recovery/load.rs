//! Reading what a root holds, for every phase: the ConsumeQueues and IndexFile as found on disk,
//! and single CommitLog records that derived data or a checkpoint points at (checked by the
//! recovery decode options, see [`point_check_options`]).

use std::collections::HashMap;

use crate::config::StoreConfig;
use crate::consume_queue::ConsumeQueue;
use crate::error::{Error, Result};
use crate::format::record::{self, DecodeOptions, Decoded, RecordView};
use crate::format::root::StoreRoot;
use crate::format::topic::check_topic;
use crate::index::IndexService;
use crate::segments::Tail;
use crate::storage::{FileKind, MappedFile, Vfs};

/// Every ConsumeQueue of the root, by topic and queue id.
pub(super) type Queues = HashMap<String, HashMap<i32, ConsumeQueue>>;

/// Loads every ConsumeQueue under `consumequeue/`.
pub(super) fn load_queues(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    config: &StoreConfig,
    tail: Tail,
) -> Result<HashMap<String, HashMap<i32, ConsumeQueue>>> {
    let dir = root.consume_queue_dir();
    let mut out: HashMap<String, HashMap<i32, ConsumeQueue>> = HashMap::new();
    let Some(meta) = vfs.metadata(&dir).map_err(|e| Error::io(&dir, e))? else {
        return Ok(out);
    };
    if meta.kind != FileKind::Dir {
        return Err(Error::Layout {
            path: dir,
            reason: "expected a directory".into(),
        });
    }
    for topic in vfs.read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let tdir = dir.join(&topic.name);
        if topic.kind != FileKind::Dir || check_topic(&topic.name).is_err() {
            return Err(Error::Layout {
                path: tdir,
                reason: "not a topic directory".into(),
            });
        }
        for q in vfs.read_dir(&tdir).map_err(|e| Error::io(&tdir, e))? {
            // RocketMQ skips queue directories whose name is not an integer.
            let Ok(qid) = q.name.parse::<i32>() else {
                continue;
            };
            if q.kind != FileKind::Dir || qid < 0 || qid as u32 >= config.max_queues_per_topic {
                return Err(Error::Layout {
                    path: tdir.join(&q.name),
                    reason: "not a queue directory".into(),
                });
            }
            let cq = ConsumeQueue::load(
                vfs,
                root,
                &topic.name,
                qid,
                config.consume_queue_file_size(),
                tail,
            )?;
            out.entry(topic.name.clone()).or_default().insert(qid, cq);
        }
    }
    Ok(out)
}

/// Loads the IndexFile, `None` when the index is disabled.
pub(super) fn index_load(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    config: &StoreConfig,
) -> Result<Option<IndexService>> {
    if !config.index_enabled {
        return Ok(None);
    }
    IndexService::load(vfs, root, config.index_hash_slots, config.index_max_entries).map(Some)
}

/// Reads the record starting at CommitLog `offset` (checked by the recovery decode options).
pub(super) fn record_at<'a>(
    files: &'a [(u64, MappedFile)],
    size: usize,
    offset: u64,
    config: &StoreConfig,
) -> Option<RecordView<'a>> {
    let data = bytes_at(files, size, offset)?;
    match record::decode(data, &point_check_options(config)) {
        Ok(Decoded::Record(r)) if r.physical_offset() as u64 == offset => Some(r),
        _ => None,
    }
}

/// The loaded CommitLog bytes from `offset` to the end of its segment.
pub(super) fn bytes_at(files: &[(u64, MappedFile)], size: usize, offset: u64) -> Option<&[u8]> {
    let first_start = files.first().map_or(0, |(s, _)| *s);
    let idx = usize::try_from(offset.checked_sub(first_start)? / size as u64).ok()?;
    let (start, f) = files.get(idx)?;
    f.readable().get(usize::try_from(offset - start).ok()?..)
}

/// How recovery checks a single record that derived data points at.
pub(super) fn point_check_options(config: &StoreConfig) -> DecodeOptions {
    DecodeOptions {
        verify_body_crc: config.check_crc_on_recover,
        verify_record_crc: config.check_crc_on_recover,
        max_record_size: config.max_record_size(),
    }
}
