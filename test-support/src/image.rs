//! Store images: a root held in memory, and the valid base image every fixture and
//! `recover_image` input starts from, built byte by byte with `rocketstore::format` (not by
//! running the engine), so it is deterministic and an independent check of the engine's reader.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::path::Path;
use std::sync::OnceLock;

use byteorder::{BigEndian, ByteOrder};

use rocketstore::format::checkpoint_layout::{Checkpoint, DerivedSummary, Trailer};
use rocketstore::format::cq_unit::{CqUnit, CQ_UNIT_SIZE};
use rocketstore::format::index_layout::{self, entry_pos, slot_pos, time_diff_secs};
use rocketstore::format::record::{self, EncodeOptions, RecordFields};
use rocketstore::format::{java_hash, properties};

use crate::{
    fixture_config, FIXTURE_CQ_UNITS_PER_FILE, FIXTURE_INDEX_ENTRIES, FIXTURE_INDEX_NAME,
    FIXTURE_INDEX_SLOTS, FIXTURE_SEGMENT_SIZE, FIXTURE_T0_MS, LONG_TOPIC,
};

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

    /// The selector byte that picks `path` in [`Mutation`](crate::Mutation)s applied to this image.
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

    pub(crate) fn select(&self, sel: u8) -> Option<String> {
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

/// The body of base record or model message `i`: `len` bytes derived from `i`.
pub(crate) fn body_of(i: usize, len: usize) -> Vec<u8> {
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
