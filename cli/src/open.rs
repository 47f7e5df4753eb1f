//! The `StoreConfig` for the subcommands that open the store (`recover`, `bench`,
//! `check-acks`): file geometry and record format are taken from the files already in the
//! root, so an existing root is never opened with a geometry that would make it a layout error
//! or a record format that recovery would cut.

use std::path::Path;

use clap::{Args, ValueEnum};
use rocketstore::format::cq_unit::CQ_UNIT_SIZE;
use rocketstore::StoreConfig;

use crate::commitlog::{CommitLog, Entry};
use crate::error::{CliError, CliResult};
use crate::index::Geometry;
use crate::root::Root;

/// Room RocketMQ allows on top of the body for topic and properties.
const RECORD_HEADROOM: usize = 64 * 1024;
/// RocketMQ's default `maxMessageSize`.
const DEFAULT_MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// Whether records carry the whole-record `__CRC32#` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CrcProperty {
    /// As the existing records do (first record of every segment); on for a new root.
    Auto,
    /// Write and require it (rocketstore's default).
    On,
    /// Neither write nor require it (a root written by RocketMQ).
    Off,
}

/// Geometry and format options of a store the command opens.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// CommitLog segment size in bytes (default: as the existing segments, else 1 GiB).
    #[arg(long)]
    pub segment_size: Option<usize>,
    /// Units per ConsumeQueue file (default: as the existing files, else 300000).
    #[arg(long)]
    pub cq_units: Option<usize>,
    /// Hash slots per IndexFile (default: as the existing files, else 5000000).
    #[arg(long)]
    pub index_slots: Option<u32>,
    /// Entries per IndexFile (default: as the existing files, else 20000000).
    #[arg(long)]
    pub index_entries: Option<u32>,
    /// Largest body in bytes (default: 4 MiB, or less if the segment cannot hold it).
    #[arg(long)]
    pub max_message_size: Option<usize>,
    /// Whether records carry the whole-record CRC property.
    #[arg(long, value_enum, default_value_t = CrcProperty::Auto)]
    pub crc_property: CrcProperty,
}

/// The configuration to open `root` with, and a note per value that was inferred.
pub fn config(root: &Path, args: &StoreArgs) -> CliResult<(StoreConfig, Vec<String>)> {
    let mut cfg = StoreConfig {
        // A tool run must never delete data behind the operator's back.
        cleaner_enabled: false,
        ..StoreConfig::default()
    };
    let mut notes = Vec::new();
    let existing = match Root::open(root) {
        Ok(r) => Some(r),
        // A new root, or a directory that is not one: the library decides whether it may
        // become a store (it refuses a directory of unrelated files with NotAStoreRoot).
        Err(CliError::Layout { .. }) if !root.exists() || root.is_dir() => None,
        Err(e) => return Err(e),
    };
    let layout = existing.as_ref().map(|r| r.layout()).transpose()?;

    cfg.commitlog_segment_size = match (args.segment_size, &layout) {
        (Some(s), _) => s,
        (None, Some(l)) if !l.commitlog.is_empty() => {
            let s = l.commitlog[0].len as usize;
            notes.push(format!("segment size {s} (from {})", l.commitlog[0].name));
            s
        }
        _ => cfg.commitlog_segment_size,
    };
    if let Some(l) = &layout {
        if let Some(f) = l.all_queues().find_map(|q| q.files.first()) {
            if args.cq_units.is_none() {
                cfg.consume_queue_units_per_file = f.len as usize / CQ_UNIT_SIZE;
                notes.push(format!(
                    "{} units per ConsumeQueue file (from {})",
                    cfg.consume_queue_units_per_file,
                    f.path.display()
                ));
            }
        }
        if let Some(max_qid) = l.all_queues().map(|q| q.queue_id).max() {
            let needed = u32::try_from(max_qid).unwrap_or(0).saturating_add(1);
            cfg.max_queues_per_topic = cfg.max_queues_per_topic.max(needed);
        }
        if let Some(f) = l.index.first() {
            let recorded = existing.as_ref().and_then(Root::index_geometry);
            let g = Geometry::resolve(f, recorded, args.index_slots, args.index_entries)?;
            cfg.index_hash_slots = g.slots;
            cfg.index_max_entries = g.entries;
            if args.index_slots.is_none() || args.index_entries.is_none() {
                let from = if recorded == Some(g) {
                    rocketstore::format::root::GEOMETRY_FILE
                } else {
                    &f.name
                };
                notes.push(format!(
                    "index geometry {} slots / {} entries (from {from})",
                    g.slots, g.entries
                ));
            }
        }
    }
    if let Some(u) = args.cq_units {
        cfg.consume_queue_units_per_file = u;
    }
    if let Some(s) = args.index_slots {
        cfg.index_hash_slots = s;
    }
    if let Some(e) = args.index_entries {
        cfg.index_max_entries = e;
    }
    cfg.max_message_size = match args.max_message_size {
        Some(m) => m,
        // Every record that fits a segment must stay acceptable to recovery.
        None => DEFAULT_MAX_MESSAGE.min(cfg.commitlog_segment_size.saturating_sub(
            RECORD_HEADROOM + rocketstore::format::record::END_FILE_MIN_BLANK_LENGTH,
        )),
    };
    cfg.append_crc_property = match args.crc_property {
        CrcProperty::On => true,
        CrcProperty::Off => false,
        CrcProperty::Auto => match (&existing, &layout) {
            (Some(r), Some(l)) => {
                let detected = records_carry_crc(r, l)?;
                if let Some(on) = detected {
                    notes.push(format!(
                        "records {} the __CRC32# property",
                        if on { "carry" } else { "do not carry" }
                    ));
                }
                detected.unwrap_or(true)
            }
            _ => true,
        },
    };
    cfg.validate().map_err(|e| {
        CliError::Usage(format!(
            "{e} (adjust --segment-size / --max-message-size / --cq-units / --index-slots / --index-entries)"
        ))
    })?;
    Ok((cfg, notes))
}

/// `Some(false)` if the first record of any segment lacks the CRC property (recovery would
/// otherwise cut the log there), `Some(true)` if all have it, `None` if there are no records.
fn records_carry_crc(root: &Root, layout: &crate::root::Layout) -> CliResult<Option<bool>> {
    let log = CommitLog::new(&*root.vfs, &layout.commitlog);
    let mut seen = None;
    for seg in &layout.commitlog {
        let mut r = log.open(seg)?;
        if let Entry::Record(rec) = r.entry_at(0)? {
            if rec.record_crc().is_none() {
                return Ok(Some(false));
            }
            seen = Some(true);
        }
    }
    Ok(seen)
}
