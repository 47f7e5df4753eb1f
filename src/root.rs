//! What `open` learns about a root before recovery: whether a directory is a store root at all,
//! and the geometry of its files.
//!
//! A directory that holds entries but none of a root's (`commitlog/`, `consumequeue/`,
//! `index/`, `checkpoint`) is refused unless the configuration asks otherwise, so a mistyped
//! path never becomes a store. The entries a brand-new store may leave when it crashes before
//! writing any of those (`lock`, `abort`, the temporary files) and `lost+found` (a root that is
//! a mount point) are not evidence either way.
//!
//! Geometry: the `rocketstore-geometry` record ([`RootGeometry`]) when there is one; else the
//! length of the CommitLog segments and of the ConsumeQueue files when they all agree (a root
//! RocketMQ or an older rocketstore wrote). The IndexFile's length does not determine its slots
//! and entries, so without a record the index geometry is the configured one. Each field of the
//! configuration left at RocketMQ's default adopts the root's value; any other value must equal
//! it ([`Error::GeometryMismatch`]).

use std::path::{Path, PathBuf};

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::format::cq_unit::CQ_UNIT_SIZE;
use crate::format::geometry::RootGeometry;
use crate::format::index_layout;
use crate::format::record::END_FILE_MIN_BLANK_LENGTH;
use crate::format::root::{
    parse_file_name, StoreRoot, ABORT_FILE, CHECKPOINT_FILE, CHECKPOINT_TMP_FILE, COMMITLOG_DIR,
    CONSUME_QUEUE_DIR, GEOMETRY_FILE, GEOMETRY_TMP_FILE, INDEX_DIR, LOCK_FILE,
};
use crate::storage::{FileKind, OpenMode, Vfs};

/// Entries whose presence makes a directory a store root.
const ROOT_ENTRIES: [&str; 4] = [COMMITLOG_DIR, CONSUME_QUEUE_DIR, INDEX_DIR, CHECKPOINT_FILE];

/// Entries that say nothing about whether a directory is a store root: what a new store leaves
/// when it crashes before writing any of [`ROOT_ENTRIES`], and a file system's `lost+found`.
const NEUTRAL_ENTRIES: [&str; 6] = [
    LOCK_FILE,
    ABORT_FILE,
    CHECKPOINT_TMP_FILE,
    GEOMETRY_FILE,
    GEOMETRY_TMP_FILE,
    "lost+found",
];

/// How many unrelated entries [`Error::NotAStoreRoot`] names.
const ENTRIES_NAMED: usize = 5;

/// Room on top of the body a record may take (topic and properties), as in `config`.
const RECORD_HEADROOM: usize = 64 * 1024;

/// `Ok` if `root` is missing, empty, a store root, or `allow_foreign` is set;
/// [`Error::NotAStoreRoot`] otherwise. Only reads.
pub(crate) fn check_is_store_root(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    allow_foreign: bool,
) -> Result<()> {
    let dir = root.path();
    match vfs.metadata(dir).map_err(|e| Error::io(dir, e))? {
        Some(m) if m.kind == FileKind::Dir => {}
        // Missing: created as a new store. Not a directory: the lock step names it.
        _ => return Ok(()),
    }
    let entries = vfs.read_dir(dir).map_err(|e| Error::io(dir, e))?;
    if allow_foreign
        || entries
            .iter()
            .any(|e| ROOT_ENTRIES.contains(&e.name.as_str()))
    {
        return Ok(());
    }
    let mut unrelated: Vec<String> = entries
        .into_iter()
        .map(|e| e.name)
        .filter(|n| !NEUTRAL_ENTRIES.contains(&n.as_str()))
        .collect();
    if unrelated.is_empty() {
        return Ok(());
    }
    unrelated.sort();
    let total = unrelated.len();
    unrelated.truncate(ENTRIES_NAMED);
    Err(Error::NotAStoreRoot {
        path: dir.to_path_buf(),
        entries: unrelated,
        total,
    })
}

impl RootGeometry {
    /// The geometry a configuration gives a root.
    pub fn of_config(config: &StoreConfig) -> RootGeometry {
        RootGeometry {
            commitlog_segment_size: config.commitlog_segment_size as u64,
            consume_queue_units_per_file: config.consume_queue_units_per_file as u64,
            index_hash_slots: config.index_hash_slots,
            index_max_entries: config.index_max_entries,
        }
    }

    /// The geometry recorded in the `rocketstore-geometry` file of the root at `root`, read
    /// through `vfs` (read-only); `None` if the root has no such file. A file that does not
    /// parse is an [`Error::Layout`] naming it.
    pub fn read(vfs: &dyn Vfs, root: impl AsRef<Path>) -> Result<Option<RootGeometry>> {
        let path = StoreRoot::new(root.as_ref()).geometry();
        let Some(meta) = vfs.metadata(&path).map_err(|e| Error::io(&path, e))? else {
            return Ok(None);
        };
        if meta.kind != FileKind::File || meta.len > 4096 {
            return Err(Error::Layout {
                path,
                reason: "not a geometry record (expected a small regular file)".into(),
            });
        }
        let f = vfs
            .open_file(&path, OpenMode::ReadOnly)
            .map_err(|e| Error::io(&path, e))?;
        let mut buf = vec![0u8; meta.len as usize];
        f.read_exact_at(&mut buf, 0)
            .map_err(|e| Error::io(&path, e))?;
        RootGeometry::decode(&buf)
            .map(Some)
            .map_err(|reason| Error::Layout {
                path,
                reason: format!(
                "geometry record does not parse: {reason} (it holds the sizes of the root's files; \
                 remove it to have them taken from the files and the configuration)"
            ),
            })
    }
}

/// Writes `root/rocketstore-geometry` atomically (temporary file, sync, rename, directory sync).
pub(crate) fn write_geometry(vfs: &dyn Vfs, root: &StoreRoot, g: &RootGeometry) -> Result<()> {
    let tmp = root.geometry_tmp();
    let path = root.geometry();
    let f = vfs
        .open_file(&tmp, OpenMode::CreateOrOpen)
        .map_err(|e| Error::io(&tmp, e))?;
    f.set_len(0).map_err(|e| Error::io(&tmp, e))?;
    f.write_all_at(g.encode().as_bytes(), 0)
        .map_err(|e| Error::io(&tmp, e))?;
    f.sync_data().map_err(|e| Error::io(&tmp, e))?;
    drop(f);
    vfs.rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    vfs.sync_dir(root.path())
        .map_err(|e| Error::io(root.path(), e))
}

/// The configuration to open `root` with: `config` with its geometry fields taken from the
/// root where they are at the default, checked against the root where they are not. Also says
/// whether the root has a geometry record (if not, the caller writes one once the files have
/// been checked against the geometry).
pub(crate) fn resolve(
    vfs: &dyn Vfs,
    root: &StoreRoot,
    mut config: StoreConfig,
) -> Result<(StoreConfig, bool)> {
    let default = StoreConfig::default();
    let recorded = RootGeometry::read(vfs, root.path())?;
    let (segment, units, slots, entries) = match recorded {
        Some(g) => {
            let p = root.geometry();
            (
                Some((g.commitlog_segment_size, p.clone())),
                Some((g.consume_queue_units_per_file, p.clone())),
                Some((u64::from(g.index_hash_slots), p.clone())),
                Some((u64::from(g.index_max_entries), p)),
            )
        }
        None => {
            let segment = common_length(vfs, &root.commitlog_dir())?
                .filter(|(len, _)| (4096..=i32::MAX as u64).contains(len));
            let units = cq_common_length(vfs, &root.consume_queue_dir())?
                .filter(|(len, _)| len % CQ_UNIT_SIZE as u64 == 0 && *len <= i32::MAX as u64)
                .map(|(len, p)| (len / CQ_UNIT_SIZE as u64, p));
            (segment, units, None, None)
        }
    };
    let segment_before = config.commitlog_segment_size;
    config.commitlog_segment_size = adopt(
        "commitlog_segment_size",
        config.commitlog_segment_size as u64,
        default.commitlog_segment_size as u64,
        segment,
    )? as usize;
    config.consume_queue_units_per_file = adopt(
        "consume_queue_units_per_file",
        config.consume_queue_units_per_file as u64,
        default.consume_queue_units_per_file as u64,
        units,
    )? as usize;
    config.index_hash_slots = adopt(
        "index_hash_slots",
        u64::from(config.index_hash_slots),
        u64::from(default.index_hash_slots),
        slots,
    )? as u32;
    config.index_max_entries = adopt(
        "index_max_entries",
        u64::from(config.index_max_entries),
        u64::from(default.index_max_entries),
        entries,
    )? as u32;
    // Segments adopted from the root may be too small for 4 MiB records: a default body limit
    // becomes the largest body a segment holds, as records already in it fit.
    if config.commitlog_segment_size != segment_before
        && config.max_message_size == default.max_message_size
    {
        let fits = config
            .commitlog_segment_size
            .saturating_sub(RECORD_HEADROOM + END_FILE_MIN_BLANK_LENGTH);
        config.max_message_size = config.max_message_size.min(fits);
    }
    Ok((config, recorded.is_some()))
}

/// The root's value of a field if it has one and the configuration leaves the field at its
/// default or agrees; the configured value if the root has none.
fn adopt(
    field: &'static str,
    configured: u64,
    default: u64,
    found: Option<(u64, PathBuf)>,
) -> Result<u64> {
    match found {
        None => Ok(configured),
        Some((v, _)) if v == configured || configured == default => Ok(v),
        Some((found, path)) => Err(Error::GeometryMismatch {
            field,
            configured,
            found,
            path,
        }),
    }
}

/// The length shared by every non-empty file named by a 20-digit offset in `dir` (and the
/// first such file), `None` if there is none or they disagree (the load then names the odd
/// one).
fn common_length(vfs: &dyn Vfs, dir: &Path) -> Result<Option<(u64, PathBuf)>> {
    let mut found: Option<(u64, PathBuf)> = None;
    if !is_dir(vfs, dir)? {
        return Ok(None);
    }
    for e in vfs.read_dir(dir).map_err(|e| Error::io(dir, e))? {
        if e.kind != FileKind::File || e.len == 0 || parse_file_name(&e.name).is_none() {
            continue;
        }
        match &found {
            None => found = Some((e.len, dir.join(&e.name))),
            Some((len, _)) if *len == e.len => {}
            Some(_) => return Ok(None),
        }
    }
    Ok(found)
}

/// [`common_length`] over the files of every queue under `consumequeue/`.
fn cq_common_length(vfs: &dyn Vfs, dir: &Path) -> Result<Option<(u64, PathBuf)>> {
    let mut found: Option<(u64, PathBuf)> = None;
    if !is_dir(vfs, dir)? {
        return Ok(None);
    }
    for topic in vfs.read_dir(dir).map_err(|e| Error::io(dir, e))? {
        if topic.kind != FileKind::Dir {
            continue;
        }
        let tdir = dir.join(&topic.name);
        for q in vfs.read_dir(&tdir).map_err(|e| Error::io(&tdir, e))? {
            if q.kind != FileKind::Dir {
                continue;
            }
            match (common_length(vfs, &tdir.join(&q.name))?, &found) {
                (None, _) => {}
                (Some(f), None) => found = Some(f),
                (Some((len, _)), Some((have, _))) if len == *have => {}
                (Some(_), Some(_)) => return Ok(None),
            }
        }
    }
    Ok(found)
}

fn is_dir(vfs: &dyn Vfs, p: &Path) -> Result<bool> {
    Ok(vfs
        .metadata(p)
        .map_err(|e| Error::io(p, e))?
        .is_some_and(|m| m.kind == FileKind::Dir))
}

/// Whether every file in `index/` has the length of the given geometry (used before recording
/// a geometry the index files were not checked against).
pub(crate) fn index_files_fit(vfs: &dyn Vfs, root: &StoreRoot, g: &RootGeometry) -> Result<bool> {
    let dir = root.index_dir();
    if !is_dir(vfs, &dir)? {
        return Ok(true);
    }
    let size = index_layout::file_size(g.index_hash_slots, g.index_max_entries);
    Ok(vfs
        .read_dir(&dir)
        .map_err(|e| Error::io(&dir, e))?
        .iter()
        .all(|e| e.kind != FileKind::File || e.len == 0 || e.len == size))
}
