//! Fuzz entry points as library code (feature `internals`), so that the cargo-fuzz targets under
//! `fuzz/` and the corpus replay in `tests/fuzz_corpus.rs` run exactly the same checks.
//!
//! Every entry point accepts any byte string and panics only when a property it states is
//! violated (the fuzzer reports the panic):
//!
//! * `record_decode`: the record decoder and the property, hash and checkpoint parsers never
//!   panic, never read outside their input, and round-trip what they accept.
//! * `cq_index_decode`: ConsumeQueue units and IndexFile header/slot/entry walks over arbitrary
//!   bytes stay in bounds and terminate.
//! * `recover_image`: the bytes are a list of `Mutation`s applied to a copy of a small valid
//!   store image (`base_image`); `Store::open` on the result gives `Ok` or a typed error naming
//!   a file inside the root, never a panic; an opened store answers every read with `Ok` or
//!   `Err`, accepts a put, closes, and reopens with everything it served before.
//! * `ops_model`: the bytes are a short sequence of put / get / flush / reopen / close / crash
//!   (copy of the files of a running store) / read / query operations, checked against an
//!   in-memory model.
//!
//! The base image is built byte by byte with the `format` module (not by running the engine), so
//! it is deterministic and an independent check of the engine's own reader. The hostile-file
//! fixtures of `tests/hostile_files.rs` are this image with a `Mutation` list applied, and the
//! same list, encoded with `encode_mutations`, is their seed in the `recover_image` corpus.
//!
//! Scratch stores live in `/dev/shm` when it exists (tmpfs: syncs cost nothing), otherwise in
//! the system temporary directory, and are removed when an entry point returns or unwinds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use byteorder::{BigEndian, ByteOrder};

use crate::format::checkpoint_layout::{
    Checkpoint, DerivedSummary, Trailer, CHECKPOINT_SIZE, POS_CRC, TRAILER_POS,
};
use crate::format::cq_unit::{CqUnit, CQ_UNIT_SIZE};
use crate::format::index_layout::{self, entry_pos, slot_pos, time_diff_secs};
use crate::format::record::{
    self, DecodeOptions, Decoded, EncodeOptions, RecordFields, RecordView,
};
use crate::format::{java_hash, properties};
use crate::{Error, FlushMode, GetOptions, GetStatus, Message, PutStatus, Store, StoreConfig};

/// CommitLog segment size of [`fixture_config`]: the smallest page multiple that holds the
/// largest record (`max_message_size` + 64 KiB + the 8-byte BLANK).
pub const FIXTURE_SEGMENT_SIZE: usize = 68 * 1024;
/// ConsumeQueue units per file in [`fixture_config`] (80-byte files, so queues span files).
pub const FIXTURE_CQ_UNITS_PER_FILE: usize = 4;
/// Hash slots per IndexFile in [`fixture_config`] (few, so keys share chains).
pub const FIXTURE_INDEX_SLOTS: u32 = 4;
/// Entries per IndexFile in [`fixture_config`].
pub const FIXTURE_INDEX_ENTRIES: u32 = 32;
/// Name of the base image's IndexFile (any 17 digits are a valid name).
pub const FIXTURE_INDEX_NAME: &str = "20231114221320000";
/// Store timestamp of the base image's first record; record `i` is stored at `+ i` seconds.
pub const FIXTURE_T0_MS: i64 = 1_700_000_000_000;
/// The 130-byte topic of the base image's V2 record (V1 holds at most 127 bytes).
pub const LONG_TOPIC: &str = "long-topic-with-a-name-of-one-hundred-and-thirty-bytes-so-the-record-needs-magic-v2-and-a-two-byte-topic-length-field-xxxxxxxxxx";

/// Most mutations decoded from one input (bounds the work per fuzz execution).
const MAX_MUTATIONS: usize = 64;
/// Most bytes one [`Mutation::SetBytes`] writes.
const MAX_SET_BYTES: usize = 32;
/// Most operations decoded by [`ops_model`].
const MAX_MODEL_OPS: usize = 64;

/// The configuration every fixture and fuzz store uses: tiny files so that an image of three
/// CommitLog segments, multi-file ConsumeQueues and an IndexFile stays around 200 KiB, no
/// background preallocation, Async flush.
pub fn fixture_config() -> StoreConfig {
    StoreConfig {
        commitlog_segment_size: FIXTURE_SEGMENT_SIZE,
        consume_queue_units_per_file: FIXTURE_CQ_UNITS_PER_FILE,
        index_hash_slots: FIXTURE_INDEX_SLOTS,
        index_max_entries: FIXTURE_INDEX_ENTRIES,
        max_message_size: 2048,
        preallocate_next_segment: false,
        flush_mode: FlushMode::Async,
        ..StoreConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Store images
// ---------------------------------------------------------------------------------------------

/// A store root held in memory: files by path relative to the root (`/`-separated), plus
/// directories that exist without files (git cannot record those, so fixtures list them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreImage {
    /// File contents by relative path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Directories, relative paths (parents of files are implied and need not be listed).
    pub dirs: BTreeSet<String>,
}

impl StoreImage {
    /// Writes the image under `root` (which must not exist or be empty).
    pub fn write_to(&self, root: &Path) -> io::Result<()> {
        std::fs::create_dir_all(root)?;
        for d in &self.dirs {
            std::fs::create_dir_all(root.join(d))?;
        }
        for (rel, bytes) in &self.files {
            let path = root.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, bytes)?;
        }
        Ok(())
    }

    /// Reads every file and directory under `root`.
    pub fn read_from(root: &Path) -> io::Result<StoreImage> {
        fn walk(root: &Path, rel: &str, img: &mut StoreImage) -> io::Result<()> {
            let dir = if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(rel)
            };
            for e in std::fs::read_dir(&dir)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                if e.file_type()?.is_dir() {
                    img.dirs.insert(child.clone());
                    walk(root, &child, img)?;
                } else {
                    img.files.insert(child, std::fs::read(e.path())?);
                }
            }
            Ok(())
        }
        let mut img = StoreImage::default();
        walk(root, "", &mut img)?;
        Ok(img)
    }

    /// File paths in selector order (sorted).
    pub fn file_paths(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }

    /// The selector byte that picks `path` in [`Mutation`]s applied to this image.
    ///
    /// # Panics
    ///
    /// If the image has no such file or more than 256 files.
    pub fn selector(&self, path: &str) -> u8 {
        let i = self
            .files
            .keys()
            .position(|p| p == path)
            .unwrap_or_else(|| panic!("no file {path} in the image"));
        u8::try_from(i).expect("at most 256 files")
    }

    fn select(&self, sel: u8) -> Option<String> {
        if self.files.is_empty() {
            return None;
        }
        self.files
            .keys()
            .nth(sel as usize % self.files.len())
            .cloned()
    }
}

/// One record of the base image and where its fields are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseRecord {
    /// CommitLog offset.
    pub offset: u64,
    /// TOTALSIZE.
    pub size: usize,
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// Queue offset.
    pub queue_offset: u64,
    /// Body bytes.
    pub body: Vec<u8>,
    /// TAGS property.
    pub tags: Option<String>,
    /// KEYS property, split.
    pub keys: Vec<String>,
    /// UNIQ_KEY property.
    pub uniq_key: String,
    /// Store timestamp.
    pub store_timestamp: i64,
    /// Position of BODY LENGTH inside the record.
    pub body_len_pos: usize,
    /// Position of the topic-length field inside the record.
    pub topic_len_pos: usize,
    /// Width of the topic-length field (1 for V1, 2 for V2).
    pub topic_len_width: usize,
    /// Position of PROPERTIES LENGTH inside the record.
    pub properties_len_pos: usize,
    /// Position of STORETIMESTAMP inside the record.
    pub store_timestamp_pos: usize,
}

impl BaseRecord {
    /// CommitLog offset one past the record.
    pub fn end(&self) -> u64 {
        self.offset + self.size as u64
    }

    /// Relative path of the segment holding the record.
    pub fn segment_path(&self) -> String {
        segment_path(self.offset - self.offset % FIXTURE_SEGMENT_SIZE as u64)
    }

    /// Byte position of the record in its segment.
    pub fn segment_pos(&self) -> usize {
        (self.offset % FIXTURE_SEGMENT_SIZE as u64) as usize
    }
}

/// The valid image every fixture and `recover_image` input starts from, with its records.
#[derive(Clone, Debug)]
pub struct BaseImage {
    /// The files of a cleanly closed store (no `abort`, checkpoint trailer intact).
    pub image: StoreImage,
    /// Its records in CommitLog order.
    pub records: Vec<BaseRecord>,
    /// End of the CommitLog (offset of the next record).
    pub end: u64,
}

/// Relative path of the CommitLog segment starting at `start`.
pub fn segment_path(start: u64) -> String {
    format!("commitlog/{start:020}")
}

/// Relative path of a ConsumeQueue file.
pub fn cq_path(topic: &str, queue_id: i32, start: u64) -> String {
    format!("consumequeue/{topic}/{queue_id}/{start:020}")
}

/// Relative path of the base image's IndexFile.
pub fn index_path() -> String {
    format!("index/{FIXTURE_INDEX_NAME}")
}

/// What each base record is: segment, topic, queue, body length, tags, keys, IPv6 born host.
type RecordSpec = (
    u64,
    &'static str,
    i32,
    usize,
    Option<&'static str>,
    &'static [&'static str],
    bool,
);

const BASE_RECORDS: [RecordSpec; 13] = [
    (0, "alpha", 0, 0, Some("TagA"), &["k0"], false),
    (0, "alpha", 1, 1, None, &[], false),
    (0, "beta", 0, 100, Some("TagB"), &["k2", "shared"], false),
    (0, "alpha", 0, 300, None, &["shared"], true),
    (0, LONG_TOPIC, 0, 10, Some("TagC"), &["k4"], false),
    (1, "alpha", 0, 2048, None, &["k5"], false),
    (1, "beta", 0, 7, None, &["shared"], false),
    (1, "alpha", 1, 50, Some("TagA"), &[], true),
    (1, "alpha", 0, 0, None, &["k8"], false),
    (2, "alpha", 0, 20, Some("TagB"), &["k9"], false),
    (2, "beta", 0, 33, None, &["shared"], false),
    (2, "alpha", 1, 64, None, &["k11"], false),
    (2, "alpha", 0, 5, Some("TagA"), &["k12", "shared"], false),
];

/// The base image (built once per process).
pub fn base_image() -> &'static BaseImage {
    static BASE: OnceLock<BaseImage> = OnceLock::new();
    BASE.get_or_init(build_base_image)
}

fn body_of(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

fn build_base_image() -> BaseImage {
    let config = fixture_config();
    let seg = FIXTURE_SEGMENT_SIZE;
    let mut segments: Vec<Vec<u8>> = vec![vec![0u8; seg]; 3];
    let mut pos = [0usize; 3];
    let mut records = Vec::new();
    let mut next_queue_offset: HashMap<(&str, i32), u64> = HashMap::new();
    let mut buf = Vec::new();
    let opts = EncodeOptions {
        append_crc_property: true,
        max_body_size: config.max_message_size,
    };
    for (i, &(s, topic, queue_id, body_len, tags, keys, v6)) in BASE_RECORDS.iter().enumerate() {
        let s = s as usize;
        let body = body_of(i, body_len);
        let uniq_key = format!("U{i:02}");
        let mut props = Vec::new();
        if let Some(t) = tags {
            properties::append_property(&mut props, properties::TAGS, t);
        }
        if !keys.is_empty() {
            properties::append_property(&mut props, properties::KEYS, &keys.join(" "));
        }
        properties::append_property(&mut props, properties::UNIQ_KEY, &uniq_key);
        let born_host = if v6 {
            SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::LOCALHOST,
                5000 + i as u16,
                0,
                0,
            ))
        } else {
            SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::new(10, 0, 0, i as u8),
                5000 + i as u16,
            ))
        };
        let store_timestamp = FIXTURE_T0_MS + i as i64 * 1000;
        let fields = RecordFields {
            topic,
            queue_id,
            flag: i as i32,
            sys_flag: 0,
            born_timestamp: store_timestamp - 5,
            born_host,
            store_host: config.store_host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: &body,
            properties: &props,
        };
        let layout = record::encode(&mut buf, &fields, &opts).expect("base record encodes");
        let offset = (s * seg + pos[s]) as u64;
        let qo = next_queue_offset.entry((topic, queue_id)).or_insert(0);
        record::finalize(
            &mut buf,
            &layout,
            *qo as i64,
            offset as i64,
            store_timestamp,
        );
        segments[s][pos[s]..pos[s] + buf.len()].copy_from_slice(&buf);
        let born_len = if v6 { 20 } else { 8 };
        let body_len_pos = 48 + born_len + 8 + 8 + 4 + 8;
        let topic_len_pos = body_len_pos + 4 + body_len;
        let topic_len_width = if topic.len() > 127 { 2 } else { 1 };
        records.push(BaseRecord {
            offset,
            size: buf.len(),
            topic: topic.to_string(),
            queue_id,
            queue_offset: *qo,
            body,
            tags: tags.map(str::to_string),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            uniq_key,
            store_timestamp,
            body_len_pos,
            topic_len_pos,
            topic_len_width,
            properties_len_pos: topic_len_pos + topic_len_width + topic.len(),
            store_timestamp_pos: layout.store_timestamp_pos,
        });
        *qo += 1;
        pos[s] += buf.len();
    }
    // The first two segments are full: each ends with a BLANK covering the rest.
    for s in 0..2 {
        let blank = record::blank_record((seg - pos[s]) as u32);
        segments[s][pos[s]..pos[s] + 8].copy_from_slice(&blank);
    }
    let end = (2 * seg + pos[2]) as u64;

    let mut image = StoreImage::default();
    for (s, bytes) in segments.into_iter().enumerate() {
        image.files.insert(segment_path((s * seg) as u64), bytes);
    }

    // ConsumeQueues.
    let cq_file_size = FIXTURE_CQ_UNITS_PER_FILE * CQ_UNIT_SIZE;
    let mut queues: BTreeMap<(String, i32), Vec<CqUnit>> = BTreeMap::new();
    for r in &records {
        queues
            .entry((r.topic.clone(), r.queue_id))
            .or_default()
            .push(CqUnit {
                commitlog_offset: r.offset as i64,
                size: r.size as i32,
                tags_code: r.tags.as_deref().map_or(0, java_hash::tags_code),
            });
    }
    for ((topic, queue_id), units) in &queues {
        for (f, chunk) in units.chunks(FIXTURE_CQ_UNITS_PER_FILE).enumerate() {
            let mut file = vec![0u8; cq_file_size];
            for (u, unit) in chunk.iter().enumerate() {
                file[u * CQ_UNIT_SIZE..(u + 1) * CQ_UNIT_SIZE].copy_from_slice(&unit.encode());
            }
            image
                .files
                .insert(cq_path(topic, *queue_id, (f * cq_file_size) as u64), file);
        }
    }

    // IndexFile: RocketMQ's putKey for the UNIQ_KEY and then every key of every record.
    let slots = FIXTURE_INDEX_SLOTS;
    let mut index = vec![0u8; index_layout::file_size(slots, FIXTURE_INDEX_ENTRIES) as usize];
    let first_ts = records[0].store_timestamp;
    let (mut begin_ts, mut end_ts, mut begin_phy, mut end_phy) = (first_ts, first_ts, 0u64, 0u64);
    let (mut count, mut used) = (1u32, 0u32);
    for r in &records {
        let mut keys = vec![r.uniq_key.clone()];
        keys.extend(r.keys.iter().cloned());
        for k in keys {
            let hash = java_hash::index_topic_key_hash(&r.topic, &k);
            let slot = slot_pos(hash as u32 % slots);
            let mut prev = BigEndian::read_i32(&index[slot..]);
            if prev <= 0 || prev as u32 > count {
                prev = 0;
            }
            if count <= 1 {
                begin_phy = r.offset;
                begin_ts = r.store_timestamp;
            }
            let e = entry_pos(slots, count);
            BigEndian::write_i32(&mut index[e..], hash);
            BigEndian::write_u64(&mut index[e + 4..], r.offset);
            BigEndian::write_i32(
                &mut index[e + 12..],
                time_diff_secs(begin_ts, r.store_timestamp),
            );
            BigEndian::write_i32(&mut index[e + 16..], prev);
            BigEndian::write_u32(&mut index[slot..], count);
            if prev == 0 {
                used += 1;
            }
            end_phy = r.offset;
            end_ts = r.store_timestamp;
            count += 1;
        }
    }
    BigEndian::write_i64(&mut index[index_layout::POS_BEGIN_TIMESTAMP..], begin_ts);
    BigEndian::write_i64(&mut index[index_layout::POS_END_TIMESTAMP..], end_ts);
    BigEndian::write_u64(&mut index[index_layout::POS_BEGIN_PHY_OFFSET..], begin_phy);
    BigEndian::write_u64(&mut index[index_layout::POS_END_PHY_OFFSET..], end_phy);
    BigEndian::write_u32(&mut index[index_layout::POS_HASH_SLOT_COUNT..], used);
    BigEndian::write_u32(&mut index[index_layout::POS_INDEX_COUNT..], count);
    image.files.insert(index_path(), index);

    let last_ts = records.last().expect("records").store_timestamp;
    let cp = Checkpoint {
        physic_msg_timestamp: last_ts,
        logics_msg_timestamp: last_ts,
        index_msg_timestamp: last_ts,
        trailer: Some(Trailer {
            durable_commitlog_offset: end,
            derived_durable_offset: end,
            derived: DerivedSummary {
                queues: queues.len() as u64,
                units: records.len() as u64,
                index_files: 1,
                index_entries: u64::from(count - 1),
            },
            derived_damaged: false,
            rocketmq_timestamps: [last_ts; 3],
        }),
        ..Checkpoint::default()
    };
    image
        .files
        .insert("checkpoint".into(), cp.encode().to_vec());
    BaseImage {
        image,
        records,
        end,
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations (the recover_image input language)
// ---------------------------------------------------------------------------------------------

/// Record fields [`Mutation::SetRecordField`] can overwrite (value written big-endian in the
/// field's width; the topic length in 1 or 2 bytes as the record's magic says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordField {
    /// TOTALSIZE (4 bytes).
    TotalSize,
    /// MAGICCODE (4).
    Magic,
    /// BODYCRC (4).
    BodyCrc,
    /// QUEUEID (4).
    QueueId,
    /// QUEUEOFFSET (8).
    QueueOffset,
    /// PHYSICALOFFSET (8).
    PhysicalOffset,
    /// SYSFLAG (4).
    SysFlag,
    /// BODY LENGTH (4).
    BodyLength,
    /// TOPIC LENGTH (1 or 2).
    TopicLength,
    /// PROPERTIES LENGTH (2).
    PropertiesLength,
    /// STORETIMESTAMP (8).
    StoreTimestamp,
}

const RECORD_FIELDS: [RecordField; 11] = [
    RecordField::TotalSize,
    RecordField::Magic,
    RecordField::BodyCrc,
    RecordField::QueueId,
    RecordField::QueueOffset,
    RecordField::PhysicalOffset,
    RecordField::SysFlag,
    RecordField::BodyLength,
    RecordField::TopicLength,
    RecordField::PropertiesLength,
    RecordField::StoreTimestamp,
];

impl RecordField {
    fn code(self) -> u8 {
        RECORD_FIELDS
            .iter()
            .position(|&f| f == self)
            .expect("listed") as u8
    }

    /// (position in the record, width).
    fn span(self, r: &BaseRecord) -> (usize, usize) {
        match self {
            RecordField::TotalSize => (record::POS_TOTAL_SIZE, 4),
            RecordField::Magic => (record::POS_MAGIC, 4),
            RecordField::BodyCrc => (record::POS_BODY_CRC, 4),
            RecordField::QueueId => (record::POS_QUEUE_ID, 4),
            RecordField::QueueOffset => (record::POS_QUEUE_OFFSET, 8),
            RecordField::PhysicalOffset => (record::POS_PHYSICAL_OFFSET, 8),
            RecordField::SysFlag => (record::POS_SYS_FLAG, 4),
            RecordField::BodyLength => (r.body_len_pos, 4),
            RecordField::TopicLength => (r.topic_len_pos, r.topic_len_width),
            RecordField::PropertiesLength => (r.properties_len_pos, 2),
            RecordField::StoreTimestamp => (r.store_timestamp_pos, 8),
        }
    }
}

/// Checkpoint fields [`Mutation::SetCheckpointField`] can overwrite (8 bytes each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointField {
    /// `physicMsgTimestamp`.
    PhysicTimestamp,
    /// `logicsMsgTimestamp`.
    LogicsTimestamp,
    /// `indexMsgTimestamp`.
    IndexTimestamp,
    /// Trailer: durable CommitLog offset.
    DurableOffset,
    /// Trailer: derived-data durable offset.
    DerivedDurableOffset,
    /// Trailer: number of queues.
    Queues,
    /// Trailer: number of units.
    Units,
    /// Trailer: number of index files.
    IndexFiles,
    /// Trailer: number of index entries.
    IndexEntries,
}

const CHECKPOINT_FIELDS: [CheckpointField; 9] = [
    CheckpointField::PhysicTimestamp,
    CheckpointField::LogicsTimestamp,
    CheckpointField::IndexTimestamp,
    CheckpointField::DurableOffset,
    CheckpointField::DerivedDurableOffset,
    CheckpointField::Queues,
    CheckpointField::Units,
    CheckpointField::IndexFiles,
    CheckpointField::IndexEntries,
];

impl CheckpointField {
    fn code(self) -> u8 {
        CHECKPOINT_FIELDS
            .iter()
            .position(|&f| f == self)
            .expect("listed") as u8
    }

    fn pos(self) -> usize {
        match self {
            CheckpointField::PhysicTimestamp => 0,
            CheckpointField::LogicsTimestamp => 8,
            CheckpointField::IndexTimestamp => 16,
            CheckpointField::DurableOffset => TRAILER_POS + 16,
            CheckpointField::DerivedDurableOffset => TRAILER_POS + 24,
            CheckpointField::Queues => TRAILER_POS + 32,
            CheckpointField::Units => TRAILER_POS + 40,
            CheckpointField::IndexFiles => TRAILER_POS + 48,
            CheckpointField::IndexEntries => TRAILER_POS + 56,
        }
    }
}

/// Directories [`Mutation::AddFile`] and [`Mutation::AddDir`] can add to.
pub const ADD_DIRS: [&str; 5] = [
    "commitlog",
    "consumequeue",
    "consumequeue/alpha/0",
    "index",
    "",
];

/// Names [`Mutation::AddFile`] and [`Mutation::AddDir`] can use: `NEXT_SEGMENT` stands for the
/// 20-digit name of the segment after the last one of the base image.
pub const ADD_NAMES: [&str; 6] = [
    "junk",
    "NEXT_SEGMENT",
    "00000000000000000001",
    "20991231235959999",
    "00000000000000000080",
    "abort",
];

/// One change to a store image. File selectors pick from the image's current files in sorted
/// order (modulo their number); offsets and lengths are reduced modulo the file length, so every
/// mutation applies to any image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Flips bit `bit % 8` of byte `offset`.
    FlipBit {
        /// File selector.
        file: u8,
        /// Byte offset.
        offset: u32,
        /// Bit number.
        bit: u8,
    },
    /// Overwrites bytes starting at `offset` (clipped at the file end).
    SetBytes {
        /// File selector.
        file: u8,
        /// Byte offset.
        offset: u32,
        /// At most 32 bytes.
        bytes: Vec<u8>,
    },
    /// Cuts the file to `len % (file length + 1)` bytes.
    Truncate {
        /// File selector.
        file: u8,
        /// New length.
        len: u32,
    },
    /// Appends `by` zero bytes.
    Extend {
        /// File selector.
        file: u8,
        /// Bytes to add.
        by: u16,
    },
    /// Zeroes `len` bytes from `offset` (clipped).
    Zero {
        /// File selector.
        file: u8,
        /// Byte offset.
        offset: u32,
        /// Bytes to zero.
        len: u16,
    },
    /// Removes the file.
    Delete {
        /// File selector.
        file: u8,
    },
    /// Adds a file `ADD_DIRS[dir]/ADD_NAMES[name]` of `len` bytes of `fill` (replacing any).
    AddFile {
        /// Directory index (modulo).
        dir: u8,
        /// Name index (modulo).
        name: u8,
        /// Length.
        len: u16,
        /// Byte value of the content.
        fill: u8,
    },
    /// Adds a directory `ADD_DIRS[dir]/ADD_NAMES[name]`.
    AddDir {
        /// Directory index (modulo).
        dir: u8,
        /// Name index (modulo).
        name: u8,
    },
    /// Creates an empty `abort` file (the next open is an unclean one).
    CreateAbort,
    /// Writes `value` into a field of base record `record % 13`, at its base position (no-op if
    /// its segment is gone or too short).
    SetRecordField {
        /// Base record index (modulo).
        record: u8,
        /// Field code (modulo; see [`RecordField`]).
        field: u8,
        /// Value, truncated to the field's width.
        value: u64,
    },
    /// Recomputes BODYCRC and the `__CRC32#` property of base record `record % 13` over its base
    /// span, so field changes pass the CRC checks.
    ResealRecord {
        /// Base record index (modulo).
        record: u8,
    },
    /// Writes `value` into a checkpoint field (no-op if the checkpoint is too short).
    SetCheckpointField {
        /// Field code (modulo; see [`CheckpointField`]).
        field: u8,
        /// Value.
        value: u64,
    },
    /// Recomputes the checkpoint trailer CRC (no-op unless the checkpoint is 4096 bytes).
    ResealCheckpoint,
    /// Removes the `checkpoint` file (no-op if it is gone).
    DeleteCheckpoint,
    /// XORs byte `offset % 92` of our checkpoint trailer (`TRAILER_POS..POS_CRC + 4`: magic,
    /// version, flags, offsets, summary, timestamps, CRC) with `xor` (1 if zero), without
    /// resealing: the trailer no longer checks out (no-op if the checkpoint is too short).
    DamageCheckpointTrailer {
        /// Byte within the trailer (modulo its length).
        offset: u8,
        /// Bits to flip (zero flips bit 0).
        xor: u8,
    },
    /// XORs byte `offset % 24` of RocketMQ's three timestamps at the checkpoint's head with
    /// `xor` (1 if zero), as a broker rewriting them does; the trailer, whose CRC covers only
    /// itself, stays intact (no-op if the checkpoint is too short).
    DamageCheckpointHead {
        /// Byte within the head (modulo 24).
        offset: u8,
        /// Bits to flip (zero flips bit 0).
        xor: u8,
    },
}

/// Length of our checkpoint trailer, CRC included.
const CHECKPOINT_TRAILER_LEN: usize = POS_CRC + 4 - TRAILER_POS;
/// Length of RocketMQ's timestamps at the head of the checkpoint.
const CHECKPOINT_HEAD_LEN: usize = 24;

/// XORs byte `pos` of the image's checkpoint with `xor` (1 if zero), if it has that byte.
fn flip_checkpoint_byte(img: &mut StoreImage, pos: usize, xor: u8) {
    if let Some(b) = img
        .files
        .get_mut("checkpoint")
        .and_then(|cp| cp.get_mut(pos))
    {
        *b ^= xor.max(1);
    }
}

impl Mutation {
    /// A [`Mutation::SetRecordField`].
    pub fn set_record_field(record: usize, field: RecordField, value: u64) -> Mutation {
        Mutation::SetRecordField {
            record: record as u8,
            field: field.code(),
            value,
        }
    }

    /// A [`Mutation::SetCheckpointField`].
    pub fn set_checkpoint_field(field: CheckpointField, value: u64) -> Mutation {
        Mutation::SetCheckpointField {
            field: field.code(),
            value,
        }
    }

    /// Applies the mutation to `img`, whose records are those of `base`.
    pub fn apply(&self, img: &mut StoreImage, base: &BaseImage) {
        match self {
            Mutation::FlipBit { file, offset, bit } => {
                if let Some(f) = file_mut(img, *file) {
                    if !f.is_empty() {
                        let i = *offset as usize % f.len();
                        f[i] ^= 1 << (bit % 8);
                    }
                }
            }
            Mutation::SetBytes {
                file,
                offset,
                bytes,
            } => {
                if let Some(f) = file_mut(img, *file) {
                    if !f.is_empty() {
                        let start = *offset as usize % f.len();
                        let n = bytes.len().min(f.len() - start);
                        f[start..start + n].copy_from_slice(&bytes[..n]);
                    }
                }
            }
            Mutation::Truncate { file, len } => {
                if let Some(f) = file_mut(img, *file) {
                    let n = *len as usize % (f.len() + 1);
                    f.truncate(n);
                }
            }
            Mutation::Extend { file, by } => {
                if let Some(f) = file_mut(img, *file) {
                    f.resize(f.len() + *by as usize, 0);
                }
            }
            Mutation::Zero { file, offset, len } => {
                if let Some(f) = file_mut(img, *file) {
                    if !f.is_empty() {
                        let start = *offset as usize % f.len();
                        let end = start.saturating_add(*len as usize).min(f.len());
                        f[start..end].fill(0);
                    }
                }
            }
            Mutation::Delete { file } => {
                if let Some(p) = img.select(*file) {
                    img.files.remove(&p);
                }
            }
            Mutation::AddFile {
                dir,
                name,
                len,
                fill,
            } => {
                let path = added_path(*dir, *name, base);
                img.dirs.remove(&path);
                img.files.insert(path, vec![*fill; *len as usize]);
            }
            Mutation::AddDir { dir, name } => {
                let path = added_path(*dir, *name, base);
                img.files.remove(&path);
                img.dirs.insert(path);
            }
            Mutation::CreateAbort => {
                img.dirs.remove("abort");
                img.files.insert("abort".into(), Vec::new());
            }
            Mutation::SetRecordField {
                record,
                field,
                value,
            } => {
                let r = &base.records[*record as usize % base.records.len()];
                let f = RECORD_FIELDS[*field as usize % RECORD_FIELDS.len()];
                let (pos, width) = f.span(r);
                if let Some(seg) = img.files.get_mut(&r.segment_path()) {
                    let at = r.segment_pos() + pos;
                    if let Some(dst) = seg.get_mut(at..at + width) {
                        dst.copy_from_slice(&value.to_be_bytes()[8 - width..]);
                    }
                }
            }
            Mutation::ResealRecord { record } => {
                let r = &base.records[*record as usize % base.records.len()];
                if let Some(seg) = img.files.get_mut(&r.segment_path()) {
                    let at = r.segment_pos();
                    if let Some(rec) = seg.get_mut(at..at + r.size) {
                        let body_pos = r.body_len_pos + 4;
                        let crc = record::masked_crc32(&rec[body_pos..body_pos + r.body.len()]);
                        BigEndian::write_u32(&mut rec[record::POS_BODY_CRC..], crc);
                        let crc_pos = r.size - properties::CRC32_RESERVED_LEN;
                        let crc = record::masked_crc32(&rec[..crc_pos]);
                        properties::write_crc_property(&mut rec[crc_pos..], crc);
                    }
                }
            }
            Mutation::SetCheckpointField { field, value } => {
                let f = CHECKPOINT_FIELDS[*field as usize % CHECKPOINT_FIELDS.len()];
                if let Some(cp) = img.files.get_mut("checkpoint") {
                    if let Some(dst) = cp.get_mut(f.pos()..f.pos() + 8) {
                        dst.copy_from_slice(&value.to_be_bytes());
                    }
                }
            }
            Mutation::ResealCheckpoint => {
                if let Some(cp) = img.files.get_mut("checkpoint") {
                    if cp.len() == CHECKPOINT_SIZE {
                        crate::format::checkpoint_layout::reseal(cp);
                    }
                }
            }
            Mutation::DeleteCheckpoint => {
                img.files.remove("checkpoint");
            }
            Mutation::DamageCheckpointTrailer { offset, xor } => {
                let pos = TRAILER_POS + *offset as usize % CHECKPOINT_TRAILER_LEN;
                flip_checkpoint_byte(img, pos, *xor);
            }
            Mutation::DamageCheckpointHead { offset, xor } => {
                flip_checkpoint_byte(img, *offset as usize % CHECKPOINT_HEAD_LEN, *xor);
            }
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Mutation::FlipBit { file, offset, bit } => {
                out.push(0);
                out.push(*file);
                out.extend_from_slice(&offset.to_be_bytes());
                out.push(*bit);
            }
            Mutation::SetBytes {
                file,
                offset,
                bytes,
            } => {
                out.push(1);
                out.push(*file);
                out.extend_from_slice(&offset.to_be_bytes());
                let n = bytes.len().min(MAX_SET_BYTES);
                out.push(n as u8);
                out.extend_from_slice(&bytes[..n]);
            }
            Mutation::Truncate { file, len } => {
                out.push(2);
                out.push(*file);
                out.extend_from_slice(&len.to_be_bytes());
            }
            Mutation::Extend { file, by } => {
                out.push(3);
                out.push(*file);
                out.extend_from_slice(&by.to_be_bytes());
            }
            Mutation::Zero { file, offset, len } => {
                out.push(4);
                out.push(*file);
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
            }
            Mutation::Delete { file } => {
                out.push(5);
                out.push(*file);
            }
            Mutation::AddFile {
                dir,
                name,
                len,
                fill,
            } => {
                out.extend_from_slice(&[6, *dir, *name]);
                out.extend_from_slice(&len.to_be_bytes());
                out.push(*fill);
            }
            Mutation::AddDir { dir, name } => out.extend_from_slice(&[7, *dir, *name]),
            Mutation::CreateAbort => out.push(8),
            Mutation::SetRecordField {
                record,
                field,
                value,
            } => {
                out.extend_from_slice(&[9, *record, *field]);
                out.extend_from_slice(&value.to_be_bytes());
            }
            Mutation::ResealRecord { record } => out.extend_from_slice(&[10, *record]),
            Mutation::SetCheckpointField { field, value } => {
                out.extend_from_slice(&[11, *field]);
                out.extend_from_slice(&value.to_be_bytes());
            }
            Mutation::ResealCheckpoint => out.push(12),
            Mutation::DeleteCheckpoint => out.push(13),
            Mutation::DamageCheckpointTrailer { offset, xor } => {
                out.extend_from_slice(&[14, *offset, *xor]);
            }
            Mutation::DamageCheckpointHead { offset, xor } => {
                out.extend_from_slice(&[15, *offset, *xor]);
            }
        }
    }
}

fn file_mut(img: &mut StoreImage, sel: u8) -> Option<&mut Vec<u8>> {
    let p = img.select(sel)?;
    img.files.get_mut(&p)
}

fn added_path(dir: u8, name: u8, base: &BaseImage) -> String {
    let dir = ADD_DIRS[dir as usize % ADD_DIRS.len()];
    let name = match ADD_NAMES[name as usize % ADD_NAMES.len()] {
        "NEXT_SEGMENT" => {
            let next =
                base.end - base.end % FIXTURE_SEGMENT_SIZE as u64 + FIXTURE_SEGMENT_SIZE as u64;
            format!("{next:020}")
        }
        n => n.to_string(),
    };
    if dir.is_empty() {
        name
    } else {
        format!("{dir}/{name}")
    }
}

/// Encodes mutations as a `recover_image` input.
pub fn encode_mutations(mutations: &[Mutation]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in mutations {
        m.encode_into(&mut out);
    }
    out
}

/// Decodes a `recover_image` input: at most 64 mutations; an opcode byte (modulo 16) then its
/// fields, big-endian, missing bytes read as zero. Every byte string decodes.
///
/// Opcodes 0..=12 are those of the first version (modulo 13), so an old corpus file whose
/// opcode bytes are all below 13 decodes as it always did; 13..=15 are the checkpoint
/// mutations.
pub fn decode_mutations(data: &[u8]) -> Vec<Mutation> {
    let mut r = ByteReader::new(data);
    let mut out = Vec::new();
    while !r.is_empty() && out.len() < MAX_MUTATIONS {
        let m = match r.u8() % 16 {
            0 => Mutation::FlipBit {
                file: r.u8(),
                offset: r.u32(),
                bit: r.u8(),
            },
            1 => {
                let file = r.u8();
                let offset = r.u32();
                let n = r.u8() as usize % (MAX_SET_BYTES + 1);
                Mutation::SetBytes {
                    file,
                    offset,
                    bytes: (0..n).map(|_| r.u8()).collect(),
                }
            }
            2 => Mutation::Truncate {
                file: r.u8(),
                len: r.u32(),
            },
            3 => Mutation::Extend {
                file: r.u8(),
                by: r.u16(),
            },
            4 => Mutation::Zero {
                file: r.u8(),
                offset: r.u32(),
                len: r.u16(),
            },
            5 => Mutation::Delete { file: r.u8() },
            6 => Mutation::AddFile {
                dir: r.u8(),
                name: r.u8(),
                len: r.u16(),
                fill: r.u8(),
            },
            7 => Mutation::AddDir {
                dir: r.u8(),
                name: r.u8(),
            },
            8 => Mutation::CreateAbort,
            9 => Mutation::SetRecordField {
                record: r.u8(),
                field: r.u8(),
                value: r.u64(),
            },
            10 => Mutation::ResealRecord { record: r.u8() },
            11 => Mutation::SetCheckpointField {
                field: r.u8(),
                value: r.u64(),
            },
            12 => Mutation::ResealCheckpoint,
            13 => Mutation::DeleteCheckpoint,
            14 => Mutation::DamageCheckpointTrailer {
                offset: r.u8(),
                xor: r.u8(),
            },
            _ => Mutation::DamageCheckpointHead {
                offset: r.u8(),
                xor: r.u8(),
            },
        };
        out.push(m);
    }
    out
}

/// Reads fixed-width big-endian fields; past the end every byte reads as zero.
struct ByteReader<'a> {
    data: &'a [u8],
}

impl<'a> ByteReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        ByteReader { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn u64(&mut self) -> u64 {
        (u64::from(self.u32()) << 32) | u64::from(self.u32())
    }
}

// ---------------------------------------------------------------------------------------------
// Scratch directories
// ---------------------------------------------------------------------------------------------

/// A directory removed on drop; under `/dev/shm` when it exists.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a fresh, uniquely named directory.
    ///
    /// # Panics
    ///
    /// If it cannot be created (the fuzz harness cannot run without one).
    pub fn new(tag: &str) -> ScratchDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let shm = Path::new("/dev/shm");
        let parent = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = parent.join(format!(
            "rocketstore-{tag}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create scratch dir {}: {e}", path.display()));
        ScratchDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// record_decode
// ---------------------------------------------------------------------------------------------

/// Record decoding over arbitrary bytes: [`record::decode`] with several option sets, the
/// property parser, the Java hashes and the checkpoint decoder. Asserts that an accepted record
/// lies within the input, has fields that add up to its size, every accessor works, and that
/// re-encoding its fields gives a record that decodes to the same fields.
pub fn record_decode(data: &[u8]) {
    let limits = [
        usize::MAX,
        4 * 1024 * 1024 + 64 * 1024,
        2048 + 64 * 1024,
        200,
    ];
    for (i, &max_record_size) in limits.iter().enumerate() {
        let opts = DecodeOptions {
            verify_body_crc: i % 2 == 0,
            verify_record_crc: i == 0 || i == 3,
            max_record_size,
        };
        match record::decode(data, &opts) {
            Ok(Decoded::Record(v)) => check_record_view(&v, data, &opts),
            Ok(Decoded::Blank { total_size }) => {
                assert!(total_size as usize >= record::END_FILE_MIN_BLANK_LENGTH);
                assert_eq!(
                    record::blank_record(total_size)[..],
                    data[..record::END_FILE_MIN_BLANK_LENGTH]
                );
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    if let Some((size, magic)) = record::peek_header(data) {
        assert_eq!(size.to_be_bytes(), data[0..4]);
        assert_eq!(magic.to_be_bytes(), data[4..8]);
    }

    // Properties: every entry the iterator yields lies inside the input with non-empty name
    // and value, and `find` agrees with the last entry of that name.
    let mut last: HashMap<&[u8], &[u8]> = HashMap::new();
    for (name, value) in properties::iter(data) {
        assert!(!name.is_empty() && !value.is_empty());
        assert!(!name.contains(&properties::PROPERTY_SEPARATOR));
        assert!(!value.contains(&properties::PROPERTY_SEPARATOR));
        last.insert(name, value);
    }
    for (name, value) in &last {
        if let Ok(n) = std::str::from_utf8(name) {
            assert_eq!(properties::find(data, n), Some(*value));
        }
    }
    if let Some(crc) = properties::parse_crc_property(data) {
        let mut slot = [0u8; properties::CRC32_RESERVED_LEN];
        properties::write_crc_property(&mut slot, crc);
        assert_eq!(
            slot[..],
            data[data.len() - properties::CRC32_RESERVED_LEN..]
        );
    }

    // Hashes of arbitrary text: index hashes are never negative.
    let text = String::from_utf8_lossy(data);
    let _ = java_hash::tags_code(&text);
    assert!(java_hash::index_key_hash(&text) >= 0);
    let (topic, key) = text.split_at(
        text.char_indices()
            .nth(text.chars().count() / 2)
            .map_or(text.len(), |(i, _)| i),
    );
    assert!(java_hash::index_topic_key_hash(topic, key) >= 0);
    assert_eq!(
        java_hash::index_topic_key_hash(topic, key),
        java_hash::index_key_hash(&format!("{topic}#{key}"))
    );

    // Checkpoint: decoding never panics; an intact trailer round-trips.
    let cp = Checkpoint::decode(data);
    if cp.trailer.is_some() {
        assert_eq!(data.len(), CHECKPOINT_SIZE);
        assert_eq!(Checkpoint::decode(&cp.encode()), cp);
    }
    let _ = cp.min_timestamp();
}

fn check_record_view(v: &RecordView<'_>, data: &[u8], opts: &DecodeOptions) {
    let size = v.total_size();
    assert!(size <= data.len() && size <= opts.max_record_size);
    assert_eq!(v.as_bytes(), &data[..size]);
    assert_eq!(
        record::record_len(
            v.topic().len(),
            v.body().len(),
            v.properties().len(),
            v.born_host().is_ipv6(),
            v.store_host().is_ipv6()
        ) + usize::from(v.magic() == record::MAGIC_V2 && v.topic().len() <= 127),
        size,
        "fields add up to TOTALSIZE"
    );
    if opts.verify_record_crc {
        // The one CRC rule: a property is there, or the properties are a well-formed list
        // without one (the record then passed on its BODYCRC).
        assert_ne!(
            properties::crc_property(v.properties()),
            properties::CrcProperty::Damaged
        );
        if v.record_crc().is_none() && !v.body().is_empty() {
            assert_eq!(v.body_crc(), record::masked_crc32(v.body()));
        }
    }
    // Every accessor is total.
    let _ = (
        v.magic(),
        v.body_crc(),
        v.queue_id(),
        v.flag(),
        v.queue_offset(),
        v.physical_offset(),
        v.sys_flag(),
        v.transaction_type(),
        v.born_timestamp(),
        v.store_timestamp(),
        v.reconsume_times(),
        v.prepared_transaction_offset(),
        v.tags(),
        v.tags_code(),
        v.uniq_key(),
        v.property("KEYS"),
        format!("{v:?}"),
    );
    for k in v.keys() {
        assert!(!k.is_empty() && !k.contains(' '));
    }

    // Re-encode the decoded fields: the result decodes to the same record.
    if v.topic().is_empty() {
        return;
    }
    let fields = RecordFields {
        topic: v.topic(),
        queue_id: v.queue_id(),
        flag: v.flag(),
        sys_flag: v.sys_flag(),
        born_timestamp: v.born_timestamp(),
        born_host: v.born_host(),
        store_host: v.store_host(),
        reconsume_times: v.reconsume_times(),
        prepared_transaction_offset: v.prepared_transaction_offset(),
        body: v.body(),
        properties: v.properties(),
    };
    let enc = EncodeOptions {
        append_crc_property: false,
        max_body_size: usize::MAX / 4,
    };
    let mut buf = Vec::new();
    let Ok(layout) = record::encode(&mut buf, &fields, &enc) else {
        return;
    };
    record::finalize(
        &mut buf,
        &layout,
        v.queue_offset(),
        v.physical_offset(),
        v.store_timestamp(),
    );
    let again = DecodeOptions {
        verify_body_crc: true,
        verify_record_crc: false,
        max_record_size: usize::MAX,
    };
    match record::decode(&buf, &again) {
        Ok(Decoded::Record(w)) => {
            assert_eq!(w.total_size(), buf.len());
            assert_eq!(w.topic(), v.topic());
            assert_eq!(w.body(), v.body());
            assert_eq!(w.properties(), v.properties());
            assert_eq!(
                (w.queue_id(), w.flag(), w.sys_flag(), w.queue_offset()),
                (v.queue_id(), v.flag(), v.sys_flag(), v.queue_offset())
            );
            assert_eq!(
                (w.physical_offset(), w.born_timestamp(), w.store_timestamp()),
                (v.physical_offset(), v.born_timestamp(), v.store_timestamp())
            );
            assert_eq!(
                (w.born_host(), w.store_host(), w.reconsume_times()),
                (v.born_host(), v.store_host(), v.reconsume_times())
            );
            assert_eq!(
                w.prepared_transaction_offset(),
                v.prepared_transaction_offset()
            );
            assert_eq!(w.body_crc(), record::masked_crc32(v.body()));
        }
        other => panic!("re-encoded record does not decode: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// cq_index_decode
// ---------------------------------------------------------------------------------------------

/// ConsumeQueue and IndexFile decoding over arbitrary bytes.
///
/// The bytes are read as a ConsumeQueue file (units round-trip; the end of data is the first
/// invalid unit, as the engine's loader finds it) and as an IndexFile whose geometry comes from
/// the first two bytes (1..=64 slots, 2..=128 entries). The header is read with RocketMQ's
/// rules, then every slot's chain is walked with the engine's bounds (entry number within
/// `1..=count` and below the capacity, strictly decreasing): each walk stays inside the file and
/// ends within `entries` steps.
pub fn cq_index_decode(data: &[u8]) {
    // ConsumeQueue.
    let units: Vec<CqUnit> = data
        .chunks_exact(CQ_UNIT_SIZE)
        .filter_map(CqUnit::decode)
        .collect();
    assert_eq!(units.len(), data.len() / CQ_UNIT_SIZE);
    for (i, u) in units.iter().enumerate() {
        let raw = &data[i * CQ_UNIT_SIZE..(i + 1) * CQ_UNIT_SIZE];
        assert_eq!(u.encode()[..], raw[..]);
        assert_eq!(u.is_valid(), u.commitlog_offset >= 0 && u.size > 0);
        if u.is_pre_blank() {
            assert!(u.is_valid());
        }
        // The engine computes a unit's end as offset + size in u64: never overflows for a
        // valid unit.
        if u.is_valid() {
            assert!((u.commitlog_offset as u64)
                .checked_add(u.size as u64)
                .is_some());
        }
    }
    let end = units.iter().take_while(|u| u.is_valid()).count();
    let min = units[..end].iter().take_while(|u| u.is_pre_blank()).count();
    assert!(min <= end);
    assert!(CqUnit::decode(&data[data.len() - data.len() % CQ_UNIT_SIZE..]).is_none());

    // IndexFile.
    let (Some(&s), Some(&e)) = (data.first(), data.get(1)) else {
        return;
    };
    let slots = u32::from(s % 64) + 1;
    let entries = u32::from(e % 127) + 2;
    let size = index_layout::file_size(slots, entries) as usize;
    let mut file = data[2..].to_vec();
    file.resize(size, 0);
    assert_eq!(entry_pos(slots, entries), size);
    assert_eq!(slot_pos(slots), entry_pos(slots, 0));
    let count = BigEndian::read_i32(&file[index_layout::POS_INDEX_COUNT..]).max(1) as u32;
    let used = BigEndian::read_i32(&file[index_layout::POS_HASH_SLOT_COUNT..]);
    let header_ok = count <= entries && used >= 0 && used as u32 <= slots;
    let begin = BigEndian::read_i64(&file[index_layout::POS_BEGIN_TIMESTAMP..]);
    let _ = BigEndian::read_i64(&file[index_layout::POS_END_TIMESTAMP..]);
    for slot in 0..slots {
        let p = slot_pos(slot);
        assert!(p + index_layout::SLOT_SIZE <= entry_pos(slots, 0));
        let mut k = BigEndian::read_i32(&file[p..]);
        let mut steps = 0u32;
        while k > 0 && k as u32 <= count && (k as u32) < entries {
            steps += 1;
            assert!(
                steps <= entries,
                "chain walk of slot {slot} did not terminate"
            );
            let at = entry_pos(slots, k as u32);
            assert!(
                at + index_layout::ENTRY_SIZE <= size,
                "entry {k} outside the file"
            );
            let entry = &file[at..at + index_layout::ENTRY_SIZE];
            let hash = BigEndian::read_i32(&entry[index_layout::ENTRY_KEY_HASH..]);
            let _offset = BigEndian::read_u64(&entry[index_layout::ENTRY_COMMITLOG_OFFSET..]);
            let diff = BigEndian::read_i32(&entry[index_layout::ENTRY_TIME_DIFF..]);
            let prev = BigEndian::read_i32(&entry[index_layout::ENTRY_PREV_INDEX..]);
            if header_ok {
                let _ = hash as u32 % slots;
            }
            if diff < 0 {
                break;
            }
            let t = begin.saturating_add(i64::from(diff) * 1000);
            assert!(t >= begin || begin > i64::MAX - i64::from(i32::MAX) * 1000);
            if prev >= k {
                break;
            }
            k = prev;
        }
    }
    let ts = BigEndian::read_i64(&file[index_layout::POS_END_TIMESTAMP..]);
    let diff = time_diff_secs(begin, ts);
    assert!(diff >= 0);
}

// ---------------------------------------------------------------------------------------------
// recover_image
// ---------------------------------------------------------------------------------------------

/// What [`check_recovery`] saw.
#[derive(Debug)]
pub enum RecoveryOutcome {
    /// `Store::open` failed with this typed error.
    Refused(Error),
    /// The store opened; these are its recovery report and what it served.
    Opened {
        /// The report of the first open.
        report: crate::RecoveryReport,
        /// Messages read back, by (topic, queue, queue offset): (commitlog offset, bytes).
        served: BTreeMap<(String, i32, u64), (u64, Vec<u8>)>,
    },
}

/// Applies the mutations encoded in `data` to a copy of [`base_image`], writes it to a scratch
/// directory and runs [`check_recovery`] on it.
pub fn recover_image(data: &[u8]) {
    let base = base_image();
    let mut img = base.image.clone();
    for m in decode_mutations(data) {
        m.apply(&mut img, base);
    }
    let scratch = ScratchDir::new("recover");
    let root = scratch.path().join("store");
    img.write_to(&root).expect("write the mutated image");
    let _ = check_recovery(&root, base);
}

/// Opens the store at `root` with [`fixture_config`] and checks what any store image must give:
///
/// * `Store::open` returns `Ok` or a typed error; a layout or corruption error names a path
///   inside the root; when it fails, the CommitLog files are byte for byte what they were;
/// * when it opens, no base record that was intact in the image and lay at or past the
///   recovered end was dropped unless the report says so (salvaged, cut after lost writes, or
///   its segment deleted by a gap repair);
/// * when it opens: the report agrees with the store; every queue is read from min to max with
///   `Ok` or `Err` (served messages belong to their queue, at their offsets); `read_at` at
///   every base record offset and at odd offsets, key queries and time lookups return `Ok` or
///   `Err` (hits are re-checked);
/// * a put then succeeds or fails with a typed error; if it and `close` succeed, a reopen must
///   succeed and serve every message served before, plus the new one.
pub fn check_recovery(root: &Path, base: &BaseImage) -> RecoveryOutcome {
    let config = fixture_config();
    let before = StoreImage::read_from(root).expect("read the image before open");
    let commitlog_intact = commitlog_matches(&before, base);
    let store = match Store::open(root, config.clone()) {
        Ok(s) => s,
        Err(e) => {
            assert_error_names_root(&e, root);
            // An open that fails changes nothing in the CommitLog: the operator (or a later
            // version) must find the data as it was.
            let after = StoreImage::read_from(root).expect("read the image after open");
            let (was, now) = (commitlog_files(&before), commitlog_files(&after));
            let changed: Vec<String> = was
                .keys()
                .chain(now.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|p| was.get(*p) != now.get(*p))
                .map(|p| {
                    let len = |m: &BTreeMap<&str, &[u8]>| m.get(p).map(|b| b.len());
                    format!("{p} (length {:?} -> {:?})", len(&was), len(&now))
                })
                .collect();
            assert!(
                changed.is_empty(),
                "open failed ({e}) but changed the CommitLog files: {changed:?}"
            );
            return RecoveryOutcome::Refused(e);
        }
    };
    let report = store.recovery_report().clone();
    check_no_intact_record_dropped(&before, base, &report);
    assert_eq!(
        report.end_offset,
        store.commitlog_max_offset(),
        "{report:?}"
    );
    if let Some(t) = report.truncated_at {
        assert_eq!(t, report.end_offset, "{report:?}");
    }
    assert!(store.commitlog_min_offset() <= store.commitlog_max_offset());
    let served = serve_everything(&store, base);
    let put = store.put(&Message::new("alpha", 0, b"after recovery").with_keys(["after"]));
    let closed = store.close();
    drop(store);
    if let (Ok(p), Ok(())) = (&put, &closed) {
        let again = match Store::open(root, config) {
            Ok(s) => s,
            // The clean open trusted the CommitLog below the checkpoint's durable offset; if
            // the mutation damaged a record there and anything made the next open rebuild
            // derived data (a damaged unit or index chain met by a read marks it so), the
            // rebuild's full scan meets the damaged acknowledged record: the typed error
            // damage calls for. With an intact CommitLog the reopen must succeed.
            Err(Error::Corruption { .. }) if !commitlog_intact => {
                return RecoveryOutcome::Refused(Error::InvalidArgument(
                    "damage below the durable offset reported at the next open".into(),
                ));
            }
            Err(e) => panic!(
                "reopen after a successful open, put and close failed: {e}; first open {report:?}"
            ),
        };
        let served_again = serve_everything(&again, base);
        for (k, v) in &served {
            assert_eq!(
                served_again.get(k),
                Some(v),
                "message {k:?} served before the put and close is gone after reopen; first open {report:?}, second {:?}",
                again.recovery_report()
            );
        }
        let key = ("alpha".to_string(), 0, p.queue_offset);
        assert_eq!(
            served_again.get(&key).map(|(off, _)| *off),
            Some(p.commitlog_offset),
            "acknowledged put {p:?} missing after close and reopen; {:?}",
            again.recovery_report()
        );
        if commitlog_intact {
            // The CommitLog is the base image's (only derived data, checkpoint or markers were
            // damaged) plus one acknowledged put. After a crash, recovery keeps the derived
            // data the checkpoint vouches for (checked cheaply, not record by record), so it
            // serves at least what the reopen served; with the derived data gone it must get
            // all of it back, whatever the damage made the earlier opens do.
            again
                .close()
                .unwrap_or_else(|e| panic!("close after reopen failed: {e}"));
            drop(again);
            std::fs::write(root.join("abort"), b"").expect("write abort");
            let crashed = Store::open(root, fixture_config()).unwrap_or_else(|e| {
                panic!("unclean reopen of an intact CommitLog plus one put failed: {e}; first open {report:?}")
            });
            let served_crashed = serve_everything(&crashed, base);
            for (k, v) in &served_again {
                assert_eq!(
                    served_crashed.get(k),
                    Some(v),
                    "message {k:?} served before is gone after an unclean reopen; first open {report:?}, last {:?}",
                    crashed.recovery_report()
                );
            }
            crashed
                .close()
                .unwrap_or_else(|e| panic!("close after the unclean reopen failed: {e}"));
            drop(crashed);
            for derived in ["consumequeue", "index"] {
                let dir = root.join(derived);
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).expect("remove derived data");
                }
            }
            std::fs::write(root.join("abort"), b"").expect("write abort");
            let rebuilt = Store::open(root, fixture_config()).unwrap_or_else(|e| {
                panic!("unclean reopen of an intact CommitLog plus one put, derived data deleted, failed: {e}; first open {report:?}")
            });
            let served_rebuilt = serve_everything(&rebuilt, base);
            for r in &base.records {
                let key = (r.topic.clone(), r.queue_id, r.queue_offset);
                assert_eq!(
                    served_rebuilt.get(&key).map(|(off, _)| *off),
                    Some(r.offset),
                    "base record {key:?} not served after a rebuild; first open {report:?}, last {:?}",
                    rebuilt.recovery_report()
                );
            }
            assert_eq!(
                served_rebuilt
                    .get(&("alpha".to_string(), 0, p.queue_offset))
                    .map(|(off, _)| *off),
                Some(p.commitlog_offset),
                "acknowledged put {p:?} lost by a rebuild; first open {report:?}, last {:?}",
                rebuilt.recovery_report()
            );
            let _ = rebuilt.close();
        } else {
            let _ = again.close();
        }
    } else if let Err(e) = &put {
        assert_error_names_root(e, root);
    }
    RecoveryOutcome::Opened { report, served }
}

/// The files under `commitlog/` of an image, by path.
fn commitlog_files(img: &StoreImage) -> BTreeMap<&str, &[u8]> {
    img.files
        .iter()
        .filter(|(p, _)| p.starts_with("commitlog/"))
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect()
}

/// Whether the image's `commitlog/` holds exactly the base image's segments, byte for byte.
fn commitlog_matches(img: &StoreImage, base: &BaseImage) -> bool {
    let no_dirs = !img.dirs.iter().any(|d| d.starts_with("commitlog/"));
    no_dirs && commitlog_files(img) == commitlog_files(&base.image)
}

/// Whether base record `r` is in `img` byte for byte, at its base position.
fn record_is_intact(img: &StoreImage, base: &BaseImage, r: &BaseRecord) -> bool {
    let span = r.segment_pos()..r.segment_pos() + r.size;
    let path = r.segment_path();
    let (Some(seg), Some(orig)) = (img.files.get(&path), base.image.files.get(&path)) else {
        return false;
    };
    seg.get(span.clone()).is_some_and(|b| b == &orig[span])
}

/// A successful open never throws away silently an intact base record at or past its
/// recovered end: such a record was given up only if the report says how (a salvaged span,
/// a cut after lost writes, or a segment deleted by a gap repair).
fn check_no_intact_record_dropped(
    before: &StoreImage,
    base: &BaseImage,
    report: &crate::RecoveryReport,
) {
    for r in &base.records {
        if r.offset < report.end_offset || !record_is_intact(before, base, r) {
            continue;
        }
        let salvaged = report
            .salvaged
            .iter()
            .any(|s| s.offset <= r.offset && s.resumed_at.is_none_or(|resumed| r.offset < resumed));
        let cut_after_lost_write = report
            .cut_after_lost_write
            .is_some_and(|first| first <= r.offset);
        let segment = r.segment_path();
        let gap_repaired = report
            .gap_repaired
            .as_ref()
            .is_some_and(|g| g.removed.iter().any(|p| p.ends_with(Path::new(&segment))));
        assert!(
            salvaged || cut_after_lost_write || gap_repaired,
            "intact base record at {} (ends {}) lies past the recovered end and was dropped without a report saying why: {report:?}",
            r.offset,
            r.end()
        );
    }
}

fn assert_error_names_root(e: &Error, root: &Path) {
    let _ = e.to_string();
    let path = match e {
        Error::Layout { path, .. }
        | Error::Corruption { path, .. }
        | Error::CorruptRecord { path, .. }
        | Error::Io { path, .. }
        | Error::DiskFull { path, .. }
        | Error::FlushFailed { path, .. }
        | Error::Locked { path } => path,
        _ => return,
    };
    assert!(
        path.starts_with(root),
        "error names {} outside the store root {}: {e}",
        path.display(),
        root.display()
    );
}

/// Reads everything a store serves: each queue from min to max, `read_at` at base offsets and
/// odd ones, key queries and time lookups. Panics only on a violated property.
fn serve_everything(
    store: &Store,
    base: &BaseImage,
) -> BTreeMap<(String, i32, u64), (u64, Vec<u8>)> {
    let mut served = BTreeMap::new();
    let verify = GetOptions {
        verify_crc: true,
        ..GetOptions::new(8)
    };
    for topic in store.topics() {
        for q in store.queue_ids(&topic) {
            let (Ok(min), Ok(max)) = (store.min_offset(&topic, q), store.max_offset(&topic, q))
            else {
                panic!("min/max offset of an open store failed");
            };
            assert!(min <= max, "{topic}:{q} min {min} > max {max}");
            let mut next = min;
            let mut calls = 0;
            while next < max && calls < 1000 {
                calls += 1;
                let opts = if calls % 2 == 0 {
                    verify.clone()
                } else {
                    GetOptions::new(8)
                };
                let Ok(got) = store.get_with(&topic, q, next, &opts) else {
                    // A damaged unit or record: the messages after it are still servable.
                    next += 1;
                    continue;
                };
                if got.is_empty() {
                    assert!(got.next_offset() > next || got.status() != GetStatus::Found);
                    if got.next_offset() <= next {
                        break;
                    }
                }
                for (i, m) in got.messages().enumerate() {
                    assert_eq!(m.topic(), topic);
                    assert_eq!(m.queue_id(), q);
                    assert!(m.queue_offset() >= next + i as u64 && m.queue_offset() < max);
                    served.insert(
                        (topic.clone(), q, m.queue_offset()),
                        (m.commitlog_offset(), m.as_bytes().to_vec()),
                    );
                }
                assert!(
                    got.next_offset() > next,
                    "get made no progress at {topic}:{q}@{next}"
                );
                next = got.next_offset();
            }
            for t in [0, FIXTURE_T0_MS + 3_500, i64::MAX] {
                if let Ok(n) = store.offset_for_timestamp(&topic, q, t) {
                    assert!(
                        n >= min && n <= max,
                        "time lookup gave {n} outside {min}..={max}"
                    );
                }
            }
        }
    }
    let end = store.commitlog_max_offset();
    let odd = [
        0,
        1,
        end.saturating_sub(1),
        end,
        end + 1,
        u64::MAX,
        i64::MAX as u64,
    ];
    for off in base.records.iter().map(|r| r.offset).chain(odd) {
        if let Ok(m) = store.read_at(off) {
            assert_eq!(m.view().commitlog_offset(), off);
        }
    }
    for r in base.records.iter().step_by(3) {
        for key in r.keys.iter().chain([&r.uniq_key]) {
            if let Ok(hits) = store.query_by_key(&r.topic, key, 0, i64::MAX, 64) {
                assert!(hits.len() <= 64);
                for h in &hits {
                    let v = h.view();
                    assert_eq!(v.topic(), r.topic);
                    assert!(v.keys().any(|k| k == key) || v.property("UNIQ_KEY") == Some(key));
                }
            }
        }
    }
    served
}

// ---------------------------------------------------------------------------------------------
// ops_model
// ---------------------------------------------------------------------------------------------

const MODEL_TOPICS: [&str; 3] = ["alpha", "beta", LONG_TOPIC];
const MODEL_TAGS: [Option<&str>; 4] = [None, Some("TagA"), Some("TagB"), Some("TagC")];

#[derive(Clone, Debug)]
struct ModelMessage {
    seq: u64,
    body: Vec<u8>,
    tags: Option<&'static str>,
    keys: Vec<String>,
    commitlog_offset: u64,
}

/// One operation of [`ops_model`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelOp {
    /// Put a message; the body is `len` bytes derived from the message's sequence number.
    Put {
        /// Topic index (modulo 3: alpha, beta, a 130-byte V2 topic).
        topic: u8,
        /// Queue id (modulo 3).
        queue: u8,
        /// Body length (modulo 2049).
        len: u16,
        /// Tag index (modulo 4, 0 = none).
        tag: u8,
        /// Keys: bit 0 a unique key `m<seq>`, bit 1 the shared key `shared`.
        keys: u8,
    },
    /// Get up to `max % 20 + 1` messages from queue offset `offset`.
    Get {
        /// Topic index.
        topic: u8,
        /// Queue id (modulo 3).
        queue: u8,
        /// Queue offset.
        offset: u8,
        /// Message count.
        max: u8,
    },
    /// Flush everything.
    Flush,
    /// Close (if open) and open again: a clean shutdown.
    Reopen,
    /// Close; later calls get `Error::Closed` until a reopen.
    Close,
    /// Copy the files of the running store (what a process crash leaves), then open the copy.
    Crash,
    /// `read_at` the commitlog offset of message `pick` (modulo count) and one byte after it.
    ReadAt {
        /// Which message.
        pick: u8,
    },
    /// Query the unique key of message `pick` and the shared key.
    Query {
        /// Which message.
        pick: u8,
    },
}

/// Decodes an [`ops_model`] input: at most 64 operations, opcode byte modulo 10 (puts are
/// three times as likely), missing bytes read as zero.
pub fn decode_model_ops(data: &[u8]) -> Vec<ModelOp> {
    let mut r = ByteReader::new(data);
    let mut ops = Vec::new();
    while !r.is_empty() && ops.len() < MAX_MODEL_OPS {
        ops.push(match r.u8() % 10 {
            0..=2 => ModelOp::Put {
                topic: r.u8(),
                queue: r.u8(),
                len: r.u16(),
                tag: r.u8(),
                keys: r.u8(),
            },
            3 => ModelOp::Get {
                topic: r.u8(),
                queue: r.u8(),
                offset: r.u8(),
                max: r.u8(),
            },
            4 => ModelOp::Flush,
            5 => ModelOp::Reopen,
            6 => ModelOp::Close,
            7 => ModelOp::Crash,
            8 => ModelOp::ReadAt { pick: r.u8() },
            _ => ModelOp::Query { pick: r.u8() },
        });
    }
    ops
}

/// Encodes operations as an [`ops_model`] input.
pub fn encode_model_ops(ops: &[ModelOp]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            ModelOp::Put {
                topic,
                queue,
                len,
                tag,
                keys,
            } => {
                out.extend_from_slice(&[0, *topic, *queue]);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&[*tag, *keys]);
            }
            ModelOp::Get {
                topic,
                queue,
                offset,
                max,
            } => out.extend_from_slice(&[3, *topic, *queue, *offset, *max]),
            ModelOp::Flush => out.push(4),
            ModelOp::Reopen => out.push(5),
            ModelOp::Close => out.push(6),
            ModelOp::Crash => out.push(7),
            ModelOp::ReadAt { pick } => out.extend_from_slice(&[8, *pick]),
            ModelOp::Query { pick } => out.extend_from_slice(&[9, *pick]),
        }
    }
    out
}

struct Model {
    queues: BTreeMap<(&'static str, i32), Vec<ModelMessage>>,
    seq: u64,
    end: u64,
}

impl Model {
    fn all(&self) -> Vec<(&'static str, i32, u64, &ModelMessage)> {
        self.queues
            .iter()
            .flat_map(|(&(t, q), msgs)| {
                msgs.iter()
                    .enumerate()
                    .map(move |(i, m)| (t, q, i as u64, m))
            })
            .collect()
    }
}

/// Runs the operations decoded from `data` ([`decode_model_ops`]) on a fresh store and checks
/// it against an in-memory model after every step: puts get the next queue offset and
/// increasing CommitLog offsets; gets return exactly the model's messages (body, tags, keys,
/// offsets) with the right status; flush makes everything durable; a clean reopen recovers the
/// same end with nothing to repair; a crash copy loses nothing (the page cache survives a
/// process crash); calls after close give `Error::Closed`; key queries find exactly the
/// model's messages. At the end every message is read back once more.
pub fn ops_model(data: &[u8]) {
    let ops = decode_model_ops(data);
    let scratch = ScratchDir::new("ops");
    // Default flusher periods (1 s): with a faster background checkpoint, `flush` races it
    // (see `bug_flush_races_the_background_checkpoint` in tests/fuzz_corpus.rs) and the replay
    // of this target's corpus would be flaky until that is fixed.
    let config = fixture_config();
    let mut generation = 0;
    let mut root = scratch.path().join("s0");
    let mut store = Store::open(&root, config.clone()).expect("fresh store opens");
    let mut open = true;
    let mut model = Model {
        queues: BTreeMap::new(),
        seq: 0,
        end: 0,
    };
    for (step, op) in ops.iter().enumerate() {
        let ctx = format!("step {step} {op:?}");
        match *op {
            ModelOp::Put {
                topic,
                queue,
                len,
                tag,
                keys,
            } => {
                let topic = MODEL_TOPICS[topic as usize % MODEL_TOPICS.len()];
                let queue = i32::from(queue % 3);
                let seq = model.seq;
                let body = body_of(seq as usize + 7, len as usize % 2049);
                let tags = MODEL_TAGS[tag as usize % MODEL_TAGS.len()];
                let mut key_list = Vec::new();
                if keys & 1 != 0 {
                    key_list.push(format!("m{seq}"));
                }
                if keys & 2 != 0 {
                    key_list.push("shared".to_string());
                }
                let mut msg = Message::new(topic, queue, &body).with_keys(key_list.clone());
                if let Some(t) = tags {
                    msg = msg.with_tags(t);
                }
                let res = store.put(&msg);
                if !open {
                    assert!(matches!(res, Err(Error::Closed)), "{ctx}: {res:?}");
                    continue;
                }
                let r = res.unwrap_or_else(|e| panic!("{ctx}: put failed: {e}"));
                let q = model.queues.entry((topic, queue)).or_default();
                assert_eq!(r.status, PutStatus::Ok, "{ctx}");
                assert_eq!(r.queue_offset, q.len() as u64, "{ctx}");
                assert!(
                    r.commitlog_offset >= model.end,
                    "{ctx}: {r:?} end {}",
                    model.end
                );
                assert_eq!(r.message_count, 1, "{ctx}");
                model.end = r.commitlog_offset + r.wrote_bytes as u64;
                assert_eq!(store.commitlog_max_offset(), model.end, "{ctx}");
                q.push(ModelMessage {
                    seq,
                    body,
                    tags,
                    keys: key_list,
                    commitlog_offset: r.commitlog_offset,
                });
                model.seq += 1;
            }
            ModelOp::Get {
                topic,
                queue,
                offset,
                max,
            } => {
                let topic = MODEL_TOPICS[topic as usize % MODEL_TOPICS.len()];
                let queue = i32::from(queue % 3);
                let res = store.get(topic, queue, u64::from(offset), usize::from(max % 20) + 1);
                if !open {
                    assert!(matches!(res, Err(Error::Closed)), "{ctx}");
                    continue;
                }
                let got = res.unwrap_or_else(|e| panic!("{ctx}: get failed: {e}"));
                check_get(
                    &model,
                    topic,
                    queue,
                    u64::from(offset),
                    usize::from(max % 20) + 1,
                    &got,
                    &ctx,
                );
            }
            ModelOp::Flush => {
                let res = store.flush();
                if !open {
                    assert!(matches!(res, Err(Error::Closed)), "{ctx}");
                    continue;
                }
                res.unwrap_or_else(|e| panic!("{ctx}: flush failed: {e}"));
                assert_eq!(store.durable_offset(), model.end, "{ctx}");
            }
            ModelOp::Close => {
                let res = store.close();
                if open {
                    res.unwrap_or_else(|e| panic!("{ctx}: close failed: {e}"));
                } else {
                    assert!(matches!(res, Err(Error::Closed)), "{ctx}");
                }
                open = false;
            }
            ModelOp::Reopen => {
                if open {
                    store
                        .close()
                        .unwrap_or_else(|e| panic!("{ctx}: close failed: {e}"));
                }
                drop(store);
                store = Store::open(&root, config.clone())
                    .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
                open = true;
                let r = store.recovery_report();
                assert!(r.clean_shutdown && r.checkpoint_trusted, "{ctx}: {r:?}");
                assert!(!r.derived_rebuilt, "{ctx}: {r:?}");
                assert_eq!(
                    (r.end_offset, r.truncated_at),
                    (model.end, None),
                    "{ctx}: {r:?}"
                );
                check_all(&store, &model, &ctx);
            }
            ModelOp::Crash => {
                generation += 1;
                let copy = scratch.path().join(format!("s{generation}"));
                copy_tree(&root, &copy).unwrap_or_else(|e| panic!("{ctx}: copy failed: {e}"));
                let was_open = open;
                drop(store);
                root = copy;
                store = Store::open(&root, config.clone())
                    .unwrap_or_else(|e| panic!("{ctx}: open after crash failed: {e}"));
                open = true;
                let r = store.recovery_report();
                if was_open {
                    assert!(!r.clean_shutdown, "{ctx}: {r:?}");
                }
                assert_eq!(r.end_offset, model.end, "{ctx}: {r:?}");
                check_all(&store, &model, &ctx);
            }
            ModelOp::ReadAt { pick } => {
                let all = model.all();
                let Some(&(t, q, n, m)) = all.get(pick as usize % all.len().max(1)) else {
                    continue;
                };
                let res = store.read_at(m.commitlog_offset);
                if !open {
                    assert!(matches!(res, Err(Error::Closed)), "{ctx}");
                    continue;
                }
                let got = res.unwrap_or_else(|e| panic!("{ctx}: read_at failed: {e}"));
                check_message(&got.view(), t, q, n, m, &ctx);
                assert!(store.read_at(m.commitlog_offset + 1).is_err(), "{ctx}");
            }
            ModelOp::Query { pick } => {
                let all = model.all();
                let Some(&(t, q, n, m)) = all.get(pick as usize % all.len().max(1)) else {
                    continue;
                };
                let unique = format!("m{}", m.seq);
                let res = store.query_by_key(t, &unique, 0, i64::MAX, 64);
                if !open {
                    assert!(matches!(res, Err(Error::Closed)), "{ctx}");
                    continue;
                }
                let hits = res.unwrap_or_else(|e| panic!("{ctx}: query failed: {e}"));
                if m.keys.contains(&unique) {
                    assert_eq!(hits.len(), 1, "{ctx}");
                    check_message(&hits[0].view(), t, q, n, m, &ctx);
                } else {
                    assert!(hits.is_empty(), "{ctx}");
                }
                let shared = store
                    .query_by_key(t, "shared", 0, i64::MAX, 64)
                    .unwrap_or_else(|e| panic!("{ctx}: query failed: {e}"));
                let mut want: Vec<u64> = all
                    .iter()
                    .filter(|(tt, _, _, mm)| *tt == t && mm.keys.iter().any(|k| k == "shared"))
                    .map(|(_, _, _, mm)| mm.commitlog_offset)
                    .collect();
                want.sort_unstable_by(|a, b| b.cmp(a));
                want.truncate(64);
                let got: Vec<u64> = shared.iter().map(|h| h.view().commitlog_offset()).collect();
                assert_eq!(got, want, "{ctx}: shared-key hits, newest first");
            }
        }
    }
    if !open {
        drop(store);
        store = Store::open(&root, config).expect("final reopen");
    }
    check_all(&store, &model, "final");
    store.close().expect("final close");
}

fn check_message(
    v: &crate::MessageView<'_>,
    topic: &str,
    queue: i32,
    queue_offset: u64,
    m: &ModelMessage,
    ctx: &str,
) {
    assert_eq!(
        (
            v.topic(),
            v.queue_id(),
            v.queue_offset(),
            v.commitlog_offset()
        ),
        (topic, queue, queue_offset, m.commitlog_offset),
        "{ctx}"
    );
    assert_eq!(
        v.body(),
        &m.body[..],
        "{ctx}: body of {topic}:{queue}@{queue_offset}"
    );
    assert_eq!(v.tags(), m.tags, "{ctx}");
    assert_eq!(v.keys().collect::<Vec<_>>(), m.keys, "{ctx}");
}

#[allow(clippy::too_many_arguments)]
fn check_get(
    model: &Model,
    topic: &'static str,
    queue: i32,
    offset: u64,
    max: usize,
    got: &crate::GetResult,
    ctx: &str,
) {
    let Some(msgs) = model.queues.get(&(topic, queue)) else {
        assert_eq!(got.status(), GetStatus::NoMatchedLogicQueue, "{ctx}");
        assert!(got.is_empty(), "{ctx}");
        return;
    };
    let len = msgs.len() as u64;
    assert_eq!((got.min_offset(), got.max_offset()), (0, len), "{ctx}");
    let want_status = if offset < len {
        GetStatus::Found
    } else if offset == len {
        GetStatus::OffsetOverflowOne
    } else {
        GetStatus::OffsetOverflowBadly
    };
    assert_eq!(got.status(), want_status, "{ctx}");
    if offset >= len {
        assert!(got.is_empty(), "{ctx}");
        return;
    }
    // Bodies are at most 2 KiB, far under the 256 KiB budget: the count is max or the rest.
    let n = (max as u64).min(len - offset) as usize;
    assert_eq!(got.len(), n, "{ctx}");
    assert_eq!(got.next_offset(), offset + n as u64, "{ctx}");
    for (i, v) in got.messages().enumerate() {
        let qo = offset + i as u64;
        check_message(&v, topic, queue, qo, &msgs[qo as usize], ctx);
    }
}

fn check_all(store: &Store, model: &Model, ctx: &str) {
    let mut topics: Vec<String> = model.queues.keys().map(|(t, _)| t.to_string()).collect();
    topics.dedup();
    assert_eq!(store.topics(), topics, "{ctx}");
    assert_eq!(store.commitlog_max_offset(), model.end, "{ctx}");
    for (&(topic, queue), msgs) in &model.queues {
        let mut offset = 0;
        while offset < msgs.len() as u64 {
            let got = store
                .get(topic, queue, offset, 32)
                .unwrap_or_else(|e| panic!("{ctx}: get {topic}:{queue}@{offset}: {e}"));
            check_get(model, topic, queue, offset, 32, &got, ctx);
            offset = got.next_offset();
        }
    }
}

fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &dst)?;
        } else {
            match std::fs::copy(e.path(), &dst) {
                Ok(_) => {}
                // A file renamed or removed while we copy (the checkpoint's temporary file):
                // a crash at that moment would not have it either.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_round_trip_through_their_encoding() {
        let muts = vec![
            Mutation::FlipBit {
                file: 3,
                offset: 77,
                bit: 5,
            },
            Mutation::SetBytes {
                file: 1,
                offset: 9,
                bytes: vec![1, 2, 3],
            },
            Mutation::Truncate { file: 2, len: 100 },
            Mutation::Extend { file: 0, by: 300 },
            Mutation::Zero {
                file: 4,
                offset: 8,
                len: 16,
            },
            Mutation::Delete { file: 7 },
            Mutation::AddFile {
                dir: 1,
                name: 2,
                len: 3,
                fill: 4,
            },
            Mutation::AddDir { dir: 0, name: 1 },
            Mutation::CreateAbort,
            Mutation::set_record_field(5, RecordField::PhysicalOffset, 42),
            Mutation::ResealRecord { record: 5 },
            Mutation::set_checkpoint_field(CheckpointField::DurableOffset, 7),
            Mutation::ResealCheckpoint,
        ];
        assert_eq!(decode_mutations(&encode_mutations(&muts)), muts);
        let ops = vec![
            ModelOp::Put {
                topic: 1,
                queue: 2,
                len: 300,
                tag: 1,
                keys: 3,
            },
            ModelOp::Get {
                topic: 0,
                queue: 1,
                offset: 2,
                max: 3,
            },
            ModelOp::Flush,
            ModelOp::Reopen,
            ModelOp::Close,
            ModelOp::Crash,
            ModelOp::ReadAt { pick: 1 },
            ModelOp::Query { pick: 2 },
        ];
        assert_eq!(decode_model_ops(&encode_model_ops(&ops)), ops);
    }

    #[test]
    fn resealing_a_checkpoint_matches_the_layout() {
        let cp = Checkpoint {
            trailer: Some(Trailer::default()),
            ..Checkpoint::default()
        };
        let mut b = cp.encode();
        let crc_at = crate::format::checkpoint_layout::POS_CRC;
        b[crc_at..crc_at + 4].fill(0);
        crate::format::checkpoint_layout::reseal(&mut b);
        assert_eq!(b, cp.encode());
    }
}
