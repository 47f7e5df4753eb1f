//! Helpers shared by the crash-recovery tests (`durability`, `torn_tail`, `kill9`): a small
//! configuration, file surgery on a closed store root, whole-directory snapshots and a content
//! image of an open store. Included with `#[path = "support/crash.rs"] mod crash;` so it does
//! not collide with `tests/common`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use rocketstore::{FlushMode, GetStatus, Message, Store, StoreConfig};

/// CommitLog segment size used by the crash tests: the smallest round size that validates with
/// a 4 KiB body limit (4096 + 64 KiB + 8 <= 128 KiB), so a few hundred records roll.
pub const CRASH_SEG: u64 = 128 * 1024;

/// Small files everywhere so that CommitLog, ConsumeQueue and IndexFile all roll in a short run.
pub fn crash_config(mode: FlushMode) -> StoreConfig {
    StoreConfig {
        commitlog_segment_size: CRASH_SEG as usize,
        max_message_size: 4096,
        consume_queue_units_per_file: 100,
        index_hash_slots: 64,
        index_max_entries: 400,
        max_queues_per_topic: 16,
        flush_mode: mode,
        ..StoreConfig::small()
    }
}

/// Deterministic xorshift generator for filler and garbage bytes.
pub struct CrashRng(u64);

impl CrashRng {
    pub fn new(seed: u64) -> Self {
        CrashRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 24) as u8).collect()
    }
}

/// A body that encodes `seq` and has a `seq`-dependent length and filler, so a record moved,
/// swapped or partially overwritten never reads back as the right one.
pub fn seq_body(seq: u64) -> Vec<u8> {
    let mut b = format!("seq={seq:012};").into_bytes();
    let mut r = CrashRng::new(seq + 1);
    let extra = 40 + (seq % 211) as usize;
    b.extend((0..extra).map(|_| b'a' + (r.next_u64() % 26) as u8));
    b
}

/// Parses the sequence number out of a [`seq_body`] body.
pub fn body_seq(body: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(body.get(4..16)?).ok()?;
    if !body.starts_with(b"seq=") || body.get(16) != Some(&b';') {
        return None;
    }
    s.parse().ok()
}

/// One acknowledged record: where it landed and its exact stored bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acked {
    pub topic: String,
    pub queue: i32,
    pub queue_offset: u64,
    pub offset: u64,
    pub bytes: Vec<u8>,
    pub keys: Vec<String>,
}

impl Acked {
    pub fn end(&self) -> u64 {
        self.offset + self.bytes.len() as u64
    }
}

/// Puts `msg` and returns where it landed with its stored bytes (read back right away).
pub fn put_acked(store: &Store, msg: &Message<'_>, keys: &[String]) -> Acked {
    let r = store.put(msg).expect("put");
    let m = store
        .read_at(r.commitlog_offset)
        .expect("read_at after put");
    let v = m.view();
    assert_eq!(
        v.as_bytes().len(),
        r.wrote_bytes,
        "wrote_bytes of a single put"
    );
    Acked {
        topic: msg.topic().to_owned(),
        queue: msg.queue_id(),
        queue_offset: r.queue_offset,
        offset: r.commitlog_offset,
        bytes: v.as_bytes().to_vec(),
        keys: keys.to_vec(),
    }
}

/// Asserts that `a` is in `store`, byte-identical, by CommitLog offset and by queue offset.
pub fn assert_acked_present(store: &Store, a: &Acked) {
    let m = store
        .read_at(a.offset)
        .unwrap_or_else(|e| panic!("acked record at {} unreadable: {e}", a.offset));
    assert!(
        m.view().as_bytes() == a.bytes.as_slice(),
        "acked record at {} changed",
        a.offset
    );
    let g = store.get(&a.topic, a.queue, a.queue_offset, 1).unwrap();
    assert_eq!(
        g.status(),
        GetStatus::Found,
        "acked {}:{}@{} not found by get",
        a.topic,
        a.queue,
        a.queue_offset
    );
    let v = g.messages().next().unwrap();
    assert_eq!(
        v.commitlog_offset(),
        a.offset,
        "queue unit points elsewhere"
    );
    assert!(
        v.as_bytes() == a.bytes.as_slice(),
        "get returned other bytes"
    );
}

/// Path of the CommitLog segment starting at `start`.
pub fn segment_path(root: &Path, start: u64) -> PathBuf {
    root.join("commitlog").join(format!("{start:020}"))
}

/// (start, path, len) of every file in `commitlog/`, sorted.
pub fn segments_on_disk(root: &Path) -> Vec<(u64, PathBuf, u64)> {
    let mut v: Vec<_> = fs::read_dir(root.join("commitlog"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            (
                name.parse::<u64>().expect("segment name"),
                e.path(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The segment file and in-file position of absolute CommitLog offset `offset`.
pub fn locate(root: &Path, offset: u64) -> (PathBuf, u64) {
    let start = offset - offset % CRASH_SEG;
    (segment_path(root, start), offset - start)
}

pub fn write_at(path: &Path, pos: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(pos)).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
}

pub fn read_at(path: &Path, pos: u64, len: usize) -> Vec<u8> {
    let mut f = fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(pos)).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact(&mut b).unwrap();
    b
}

pub fn zero_at(path: &Path, pos: u64, len: usize) {
    write_at(path, pos, &vec![0u8; len]);
}

/// Flips bit `bit` of the byte at absolute CommitLog offset `offset`.
pub fn flip_bit(root: &Path, offset: u64, bit: u8) {
    let (path, pos) = locate(root, offset);
    let b = read_at(&path, pos, 1)[0];
    write_at(&path, pos, &[b ^ (1 << bit)]);
}

/// Leaves the `abort` marker a crashed process would leave.
pub fn create_abort(root: &Path) {
    fs::write(root.join("abort"), b"12345").unwrap();
}

/// Every file under `root/<sub>` for each `sub`, by path relative to `root`, with its bytes.
pub fn snapshot_files(root: &Path, subs: &[&str]) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    for s in subs {
        walk(root, &root.join(s), &mut out);
    }
    out
}

/// Asserts two file snapshots are identical, naming the first difference.
pub fn assert_same_files(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
    ctx: &str,
) {
    let names_b: Vec<_> = before.keys().collect();
    let names_a: Vec<_> = after.keys().collect();
    assert_eq!(names_b, names_a, "{ctx}: file sets differ");
    for (p, b) in before {
        let a = &after[p];
        if a != b {
            let first = a.iter().zip(b).position(|(x, y)| x != y);
            panic!(
                "{ctx}: {} changed (len {} -> {}, first differing byte at {first:?})",
                p.display(),
                b.len(),
                a.len()
            );
        }
    }
}

/// A whole queue: (min offset, max offset, record bytes from min to max).
pub type QueueImage = (u64, u64, Vec<Vec<u8>>);
/// query_by_key hits: (commitlog offset, record bytes), newest first.
pub type KeyHits = Vec<(u64, Vec<u8>)>;

/// Everything a reader can observe of a store, for comparing two recoveries.
#[derive(Debug, PartialEq, Eq)]
pub struct StoreImage {
    pub commitlog_min: u64,
    pub commitlog_max: u64,
    /// (topic, queue) -> the queue
    pub queues: BTreeMap<(String, i32), QueueImage>,
    /// (topic, key) -> hits
    pub keys: BTreeMap<(String, String), KeyHits>,
}

/// Reads a whole queue from min to max, checking contiguity and agreement on the way.
pub fn read_whole_queue(store: &Store, topic: &str, queue: i32) -> QueueImage {
    let min = store.min_offset(topic, queue).unwrap();
    let max = store.max_offset(topic, queue).unwrap();
    let mut out = Vec::new();
    let mut next = min;
    while next < max {
        let g = store.get(topic, queue, next, 64).unwrap();
        assert_eq!(g.status(), GetStatus::Found, "{topic}:{queue}@{next}");
        for m in g.messages() {
            assert_eq!(m.queue_offset(), next, "{topic}:{queue} not contiguous");
            assert_eq!((m.topic(), m.queue_id()), (topic, queue));
            out.push(m.as_bytes().to_vec());
            next += 1;
        }
        assert_eq!(g.next_offset(), next);
    }
    (min, max, out)
}

/// The image of `store`, querying each of `keys` (topic, key).
pub fn store_image(store: &Store, keys: &[(String, String)]) -> StoreImage {
    let mut queues = BTreeMap::new();
    for t in store.topics() {
        for q in store.queue_ids(&t) {
            queues.insert((t.clone(), q), read_whole_queue(store, &t, q));
        }
    }
    let mut key_hits = BTreeMap::new();
    for (t, k) in keys {
        let hits = store
            .query_by_key(t, k, 0, i64::MAX, 64)
            .unwrap()
            .iter()
            .map(|m| (m.view().commitlog_offset(), m.view().as_bytes().to_vec()))
            .collect();
        key_hits.insert((t.clone(), k.clone()), hits);
    }
    StoreImage {
        commitlog_min: store.commitlog_min_offset(),
        commitlog_max: store.commitlog_max_offset(),
        queues,
        keys: key_hits,
    }
}

/// Asserts two images are equal, describing the first difference instead of dumping bytes.
pub fn assert_same_image(want: &StoreImage, got: &StoreImage, ctx: &str) {
    assert_eq!(
        (want.commitlog_min, want.commitlog_max),
        (got.commitlog_min, got.commitlog_max),
        "{ctx}: CommitLog range"
    );
    let wq: Vec<_> = want.queues.keys().collect();
    let gq: Vec<_> = got.queues.keys().collect();
    assert_eq!(wq, gq, "{ctx}: queue sets");
    for (k, (wmin, wmax, wrecs)) in &want.queues {
        let (gmin, gmax, grecs) = &got.queues[k];
        assert_eq!((wmin, wmax), (gmin, gmax), "{ctx}: {k:?} min/max");
        assert!(wrecs == grecs, "{ctx}: {k:?} record bytes differ");
    }
    for (k, w) in &want.keys {
        let g = &got.keys[k];
        let wo: Vec<u64> = w.iter().map(|x| x.0).collect();
        let go: Vec<u64> = g.iter().map(|x| x.0).collect();
        assert_eq!(wo, go, "{ctx}: query_by_key {k:?} offsets");
        assert!(w == g, "{ctx}: query_by_key {k:?} bytes");
    }
}
