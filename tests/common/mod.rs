//! Shared helpers for the integration tests: tiny configurations, a reference encoder for the
//! RocketMQ record layout (spec §1), CRC32, Java hashes, and snapshots of a whole store.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rocketstore::{Error, GetOptions, GetStatus, Message, MessageView, Store, StoreConfig};

/// CommitLog segment size of [`tiny`]: the smallest round size that validates with a 4 KiB
/// message limit (4096 + 64 KiB + 8 <= 128 KiB).
pub const SEG: u64 = 128 * 1024;
/// ConsumeQueue units per file of [`tiny`].
pub const CQ_UNITS: u64 = 100;
/// Index hash slots of [`tiny`].
pub const INDEX_SLOTS: u32 = 64;
/// Index entries per file of [`tiny`] (entry 0 reserved: 199 usable).
pub const INDEX_ENTRIES: u32 = 200;
/// Max body of [`tiny`].
pub const MAX_BODY: usize = 4096;

/// Tiny files so that every kind of roll happens within a few thousand messages.
pub fn tiny() -> StoreConfig {
    StoreConfig {
        commitlog_segment_size: SEG as usize,
        consume_queue_units_per_file: CQ_UNITS as usize,
        index_hash_slots: INDEX_SLOTS,
        index_max_entries: INDEX_ENTRIES,
        max_message_size: MAX_BODY,
        max_queues_per_topic: 8,
        // The host's disk must not decide a test: with the defaults (75% / 85% / 90%) a shared
        // disk that is ~78% full by statvfs (total - available) made the cleaner delete by disk
        // pressure, and at 90% every put would be refused. Disk-pressure behaviour has its own
        // tests on a simulated disk (tests/disk_full.rs).
        disk_max_used_space_ratio: 95,
        disk_space_clean_forcibly_ratio: 0.99,
        disk_space_warning_level_ratio: 0.99,
        ..StoreConfig::small()
    }
}

pub const MAGIC_V1: u32 = 0xDAA3_20A7;
pub const MAGIC_V2: u32 = 0xDAA3_20AB;
pub const MAGIC_BLANK: u32 = 0xCBD4_3194;

/// CRC-32/IEEE (zlib), bitwise.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Java's `UtilAll.crc32`: CRC32 with the top bit cleared.
pub fn masked_crc32(data: &[u8]) -> u32 {
    crc32(data) & 0x7FFF_FFFF
}

/// Java `String.hashCode`.
pub fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(u as i32))
}

/// Deterministic xorshift generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Everything a test puts into one message, owned, so the expected record can be rebuilt.
#[derive(Clone, Debug)]
pub struct Spec {
    pub topic: String,
    pub queue_id: i32,
    pub body: Vec<u8>,
    pub tags: Option<String>,
    pub keys: Vec<String>,
    pub props: Vec<(String, String)>,
    pub flag: i32,
    pub born_timestamp: Option<i64>,
    pub born_host: Option<SocketAddr>,
    pub reconsume_times: i32,
}

impl Spec {
    pub fn new(topic: &str, queue_id: i32, body: Vec<u8>) -> Self {
        Spec {
            topic: topic.into(),
            queue_id,
            body,
            tags: None,
            keys: Vec::new(),
            props: Vec::new(),
            flag: 0,
            born_timestamp: None,
            born_host: None,
            reconsume_times: 0,
        }
    }

    pub fn message(&self) -> Message<'_> {
        let mut m = Message::new(self.topic.as_str(), self.queue_id, self.body.as_slice())
            .with_flag(self.flag)
            .with_reconsume_times(self.reconsume_times);
        if let Some(t) = &self.tags {
            m = m.with_tags(t.as_str());
        }
        if !self.keys.is_empty() {
            m = m.with_keys(self.keys.iter().map(String::as_str));
        }
        for (n, v) in &self.props {
            m = m.with_property(n.as_str(), v.as_str());
        }
        if let Some(t) = self.born_timestamp {
            m = m.with_born_timestamp(t);
        }
        if let Some(h) = self.born_host {
            m = m.with_born_host(h);
        }
        m
    }

    /// The property text the store must write before its CRC property: TAGS, KEYS, then the user
    /// properties in insertion order, each `name 0x01 value 0x02`.
    pub fn props_text(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut add = |n: &str, v: &str| {
            out.extend_from_slice(n.as_bytes());
            out.push(1);
            out.extend_from_slice(v.as_bytes());
            out.push(2);
        };
        if let Some(t) = self.tags.as_deref().filter(|t| !t.is_empty()) {
            add("TAGS", t);
        }
        if !self.keys.is_empty() {
            add("KEYS", &self.keys.join(" "));
        }
        for (n, v) in &self.props {
            add(n, v);
        }
        out
    }

    /// The ConsumeQueue tags code: Java hash of the tag, sign-extended; 0 without a tag.
    pub fn tags_code(&self) -> i64 {
        match self.tags.as_deref() {
            Some(t) if !t.is_empty() => java_hash(t) as i64,
            _ => 0,
        }
    }

    /// Stored record size with the CRC property (spec §1.1: 74 + B + S + T + body + topic + props).
    pub fn record_len(&self, store_host: SocketAddr) -> usize {
        let host = |h: SocketAddr| if h.is_ipv6() { 20 } else { 8 };
        let t = if self.topic.len() > 127 { 2 } else { 1 };
        74 + host(self.born_host.unwrap_or(store_host))
            + host(store_host)
            + t
            + self.body.len()
            + self.topic.len()
            + self.props_text().len()
            + 20
    }
}

fn put_host(out: &mut Vec<u8>, h: SocketAddr) {
    match h {
        SocketAddr::V4(a) => out.extend_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => out.extend_from_slice(&a.ip().octets()),
    }
    out.extend_from_slice(&(h.port() as i32).to_be_bytes());
}

/// The exact bytes RocketMQ 5.2+ (with `enabledAppendPropCRC`) writes for `spec` (spec §1.1,
/// §1.5–§1.7), given what only the store decides.
pub fn expected_record(
    spec: &Spec,
    queue_offset: u64,
    physical_offset: u64,
    born_timestamp: i64,
    store_timestamp: i64,
    store_host: SocketAddr,
) -> Vec<u8> {
    let born_host = spec.born_host.unwrap_or(store_host);
    let total = spec.record_len(store_host);
    let v2 = spec.topic.len() > 127;
    let mut sys_flag = 0i32;
    if born_host.is_ipv6() {
        sys_flag |= 0x10;
    }
    if store_host.is_ipv6() {
        sys_flag |= 0x20;
    }
    let mut r = Vec::with_capacity(total);
    r.extend_from_slice(&(total as i32).to_be_bytes());
    r.extend_from_slice(&(if v2 { MAGIC_V2 } else { MAGIC_V1 }).to_be_bytes());
    r.extend_from_slice(&masked_crc32(&spec.body).to_be_bytes());
    r.extend_from_slice(&spec.queue_id.to_be_bytes());
    r.extend_from_slice(&spec.flag.to_be_bytes());
    r.extend_from_slice(&(queue_offset as i64).to_be_bytes());
    r.extend_from_slice(&(physical_offset as i64).to_be_bytes());
    r.extend_from_slice(&sys_flag.to_be_bytes());
    r.extend_from_slice(&born_timestamp.to_be_bytes());
    put_host(&mut r, born_host);
    r.extend_from_slice(&store_timestamp.to_be_bytes());
    put_host(&mut r, store_host);
    r.extend_from_slice(&spec.reconsume_times.to_be_bytes());
    r.extend_from_slice(&0i64.to_be_bytes());
    r.extend_from_slice(&(spec.body.len() as i32).to_be_bytes());
    r.extend_from_slice(&spec.body);
    if v2 {
        r.extend_from_slice(&(spec.topic.len() as i16).to_be_bytes());
    } else {
        r.push(spec.topic.len() as u8);
    }
    r.extend_from_slice(spec.topic.as_bytes());
    let props = spec.props_text();
    r.extend_from_slice(&((props.len() + 20) as i16).to_be_bytes());
    r.extend_from_slice(&props);
    // Whole-record CRC over everything before the 20-byte CRC property, digits LSD first.
    let mut crc = masked_crc32(&r);
    r.extend_from_slice(b"__CRC32#\x01");
    for _ in 0..10 {
        r.push(b'0' + (crc % 10) as u8);
        crc /= 10;
    }
    r.push(2);
    assert_eq!(r.len(), total, "reference encoder length");
    r
}

/// Asserts that `view` is exactly the record `spec` must produce and that every accessor agrees.
pub fn assert_view_matches(
    view: &MessageView<'_>,
    spec: &Spec,
    queue_offset: u64,
    physical_offset: u64,
    store_timestamp: i64,
    store_host: SocketAddr,
) {
    let ctx = format!("{}/{}@{}", spec.topic, spec.queue_id, queue_offset);
    assert_eq!(view.topic(), spec.topic, "{ctx}: topic");
    assert_eq!(view.queue_id(), spec.queue_id, "{ctx}: queue id");
    assert_eq!(view.queue_offset(), queue_offset, "{ctx}: queue offset");
    assert_eq!(
        view.commitlog_offset(),
        physical_offset,
        "{ctx}: commitlog offset"
    );
    assert_eq!(view.body(), spec.body.as_slice(), "{ctx}: body");
    assert_eq!(view.body_crc(), masked_crc32(&spec.body), "{ctx}: body crc");
    assert_eq!(
        view.tags(),
        spec.tags.as_deref().filter(|t| !t.is_empty()),
        "{ctx}: tags"
    );
    assert_eq!(
        view.keys().collect::<Vec<_>>(),
        spec.keys.iter().map(String::as_str).collect::<Vec<_>>(),
        "{ctx}: keys"
    );
    for (n, v) in &spec.props {
        assert_eq!(view.property(n), Some(v.as_str()), "{ctx}: property {n}");
    }
    let user_props: Vec<(&str, &str)> = view
        .properties()
        .filter(|(n, _)| !matches!(*n, "TAGS" | "KEYS" | "__CRC32#"))
        .collect();
    assert_eq!(
        user_props,
        spec.props
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        "{ctx}: user properties"
    );
    assert_eq!(view.flag(), spec.flag, "{ctx}: flag");
    assert_eq!(
        view.reconsume_times(),
        spec.reconsume_times,
        "{ctx}: reconsume"
    );
    if let Some(t) = spec.born_timestamp {
        assert_eq!(view.born_timestamp(), t, "{ctx}: born timestamp");
    } else {
        assert!(
            view.born_timestamp() <= store_timestamp
                && view.born_timestamp() > store_timestamp - 60_000,
            "{ctx}: default born timestamp {} vs store {}",
            view.born_timestamp(),
            store_timestamp
        );
    }
    assert_eq!(
        view.born_host(),
        spec.born_host.unwrap_or(store_host),
        "{ctx}: born host"
    );
    assert_eq!(view.store_host(), store_host, "{ctx}: store host");
    assert_eq!(
        view.store_timestamp(),
        store_timestamp,
        "{ctx}: store timestamp"
    );
    assert_eq!(
        view.stored_size(),
        spec.record_len(store_host),
        "{ctx}: size"
    );
    let expected = expected_record(
        spec,
        queue_offset,
        physical_offset,
        view.born_timestamp(),
        store_timestamp,
        store_host,
    );
    assert_bytes_eq(view.as_bytes(), &expected, &ctx);
}

/// Byte comparison that reports the first differing position instead of dumping both buffers.
pub fn assert_bytes_eq(got: &[u8], want: &[u8], ctx: &str) {
    if got != want {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        panic!(
            "{ctx}: record bytes differ at {at} (len got {} want {}): got {:02x?} want {:02x?}",
            got.len(),
            want.len(),
            &got[at..(at + 16).min(got.len())],
            &want[at..(at + 16).min(want.len())]
        );
    }
}

/// Epoch milliseconds by the wall clock (the clock the store stamps records with).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Spins until the wall clock is past `ms` (used only to make store timestamps distinct).
pub fn spin_past(ms: i64) {
    while now_ms() <= ms {
        std::hint::spin_loop();
    }
}

/// `(name, length)` of every entry in `dir`, sorted by name.
pub fn list_dir(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Reads every message of a queue with `get`, in queue order, checking the pagination contract.
pub fn read_queue(store: &Store, topic: &str, queue_id: i32) -> Vec<Vec<u8>> {
    let min = store.min_offset(topic, queue_id).unwrap();
    let max = store.max_offset(topic, queue_id).unwrap();
    let mut out = Vec::new();
    let mut next = min;
    while next < max {
        let g = store
            .get_with(
                topic,
                queue_id,
                next,
                &GetOptions {
                    verify_crc: true,
                    ..GetOptions::new(64)
                },
            )
            .unwrap();
        assert_eq!(g.status(), GetStatus::Found, "{topic}/{queue_id}@{next}");
        assert_eq!(g.next_offset(), next + g.len() as u64);
        for (i, m) in g.messages().enumerate() {
            assert_eq!(m.queue_offset(), next + i as u64);
            out.push(m.as_bytes().to_vec());
        }
        next = g.next_offset();
    }
    out
}

/// Walks the CommitLog record by record with `read_at`, hopping over each segment's BLANK tail.
/// Returns `(offset, record bytes)`.
pub fn walk_commitlog(store: &Store) -> Vec<(u64, Vec<u8>)> {
    let seg = store.config().commitlog_segment_size as u64;
    let max = store.commitlog_max_offset();
    let mut off = store.commitlog_min_offset();
    let mut out = Vec::new();
    while off < max {
        match store.read_at(off) {
            Ok(m) => {
                let v = m.view();
                assert_eq!(v.commitlog_offset(), off);
                out.push((off, v.as_bytes().to_vec()));
                off += v.stored_size() as u64;
            }
            Err(Error::NoRecordAt { .. }) => {
                let next = off - off % seg + seg;
                assert!(
                    next - off >= 8,
                    "record ends closer than 8 bytes to its segment end at {off}"
                );
                off = next;
            }
            Err(e) => panic!("read_at({off}): {e}"),
        }
    }
    assert_eq!(off, max, "walk overshot the CommitLog end");
    out
}

/// One queue as observed: (min offset, max offset, records in queue order).
pub type QueueContent = (u64, u64, Vec<Vec<u8>>);

/// Everything observable about a store's content.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub topics: Vec<String>,
    pub queues: BTreeMap<(String, i32), QueueContent>,
    pub commitlog_min: u64,
    pub commitlog_max: u64,
    pub records: Vec<(u64, Vec<u8>)>,
}

pub fn snapshot(store: &Store) -> Snapshot {
    let topics = store.topics();
    let mut queues = BTreeMap::new();
    for t in &topics {
        for q in store.queue_ids(t) {
            queues.insert(
                (t.clone(), q),
                (
                    store.min_offset(t, q).unwrap(),
                    store.max_offset(t, q).unwrap(),
                    read_queue(store, t, q),
                ),
            );
        }
    }
    Snapshot {
        topics,
        queues,
        commitlog_min: store.commitlog_min_offset(),
        commitlog_max: store.commitlog_max_offset(),
        records: walk_commitlog(store),
    }
}

/// Where the next record of `len` bytes must land given the CommitLog end `end`: right there if
/// it fits with 8 bytes to spare, else at the start of the next segment (spec §1.8).
pub fn expected_offset(end: u64, len: usize, seg: u64) -> u64 {
    let used = end % seg;
    if end > 0 && used == 0 {
        return end;
    }
    if used + len as u64 + 8 <= seg {
        end
    } else {
        end - used + seg
    }
}
