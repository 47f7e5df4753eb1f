//! Torn and damaged CommitLog tails (TESTING.md §4): a store is written in Async mode and
//! closed, then its files are damaged with plain `std::fs` the way a crash or a bad disk would
//! leave them, `abort` is created so the open is an unclean one, and the store is reopened.
//!
//! The checkpoint trailer names the durable CommitLog offset `D`. Damage at or above `D` is a
//! torn tail: it is cut (and zeroed on disk) back to the last valid record. Damage below `D` is
//! acknowledged data gone bad: `Store::open` must fail with `Error::Corruption` and touch no
//! CommitLog byte. To put the last record above `D` the tests either delete the checkpoint
//! (nothing is known durable) or put back a checkpoint taken just before the last record was
//! written (a crash after the data reached the page cache but before the next checkpoint).

#[path = "support/crash.rs"]
mod crash;

use std::fs;
use std::path::{Path, PathBuf};

use crash::*;
use rocketstore::{Error, FlushMode, GetOptions, GetStatus, Message, Store, StoreConfig};
use rocketstore_test_support::copy_tree;

const TOPIC: &str = "torn";
const QUEUES: u64 = 4;
const RECORDS: u64 = 1000;

/// A closed store plus everything known about what was written.
struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    config: StoreConfig,
    records: Vec<Acked>,
    /// The checkpoint as written by a flush right before the last record was put: its durable
    /// offset is the start of the last record.
    stale_checkpoint: Vec<u8>,
}

impl Fixture {
    fn build(config: StoreConfig) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        let store = Store::open(&base, config.clone()).unwrap();
        let mut records = Vec::new();
        let mut stale_checkpoint = Vec::new();
        for seq in 0..RECORDS {
            if seq == RECORDS - 1 {
                store.flush().unwrap();
                stale_checkpoint = fs::read(base.join("checkpoint")).unwrap();
            }
            let body = seq_body(seq);
            let keys = vec![format!("K{seq}")];
            let msg = Message::new(TOPIC, (seq % QUEUES) as i32, &body)
                .with_tags(if seq % 2 == 0 { "even" } else { "odd" })
                .with_keys(keys.clone())
                .with_property("seq", seq.to_string());
            records.push(put_acked(&store, &msg, &keys));
        }
        store.close().unwrap();
        drop(store);
        let fx = Fixture {
            _dir: dir,
            base,
            config,
            records,
            stale_checkpoint,
        };
        let last = fx.last();
        assert!(
            !last.offset.is_multiple_of(CRASH_SEG) && last.offset >= CRASH_SEG,
            "the last record should sit after others in a later segment"
        );
        fx
    }

    fn last(&self) -> &Acked {
        self.records.last().unwrap()
    }

    fn end(&self) -> u64 {
        self.last().end()
    }

    /// A fresh copy of the closed store to damage.
    fn copy(&self, name: &str) -> PathBuf {
        let root = self._dir.path().join(name);
        copy_tree(&self.base, &root).unwrap();
        root
    }

    fn open(&self, root: &Path) -> rocketstore::Result<Store> {
        Store::open(root, self.config.clone())
    }
}

/// Where the last record's variable fields are.
struct Layout {
    body_len: u64,
    topic_len_pos: u64,
    props_pos: u64,
}

fn layout(a: &Acked) -> Layout {
    let b = &a.bytes;
    let body_len = u32::from_be_bytes(b[84..88].try_into().unwrap()) as u64;
    let topic_len_pos = 88 + body_len;
    let topic_len = b[topic_len_pos as usize] as u64;
    assert_eq!(topic_len, TOPIC.len() as u64);
    Layout {
        body_len,
        topic_len_pos,
        props_pos: topic_len_pos + 1 + topic_len + 2,
    }
}

/// Ways to damage the last record.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// Zero the second half (the write never finished).
    CutMidRecord,
    /// Zero the whole record (its page never reached the disk).
    ZeroedTail,
    /// Random bytes over the record and past it.
    GarbageTail,
    FlipSizeLowBit,
    FlipSizeSignBit,
    WrongMagic,
    FlipQueueId,
    FlipQueueOffset,
    FlipPhysicalOffset,
    FlipTopicLength,
    FlipBody,
    FlipPropertyByte,
    FlipCrcProperty,
}

impl Damage {
    fn apply(self, root: &Path, a: &Acked) {
        let o = a.offset;
        let s = a.bytes.len() as u64;
        let l = layout(a);
        let (path, pos) = locate(root, o);
        match self {
            Damage::CutMidRecord => zero_at(&path, pos + s / 2, (s - s / 2) as usize),
            Damage::ZeroedTail => zero_at(&path, pos, s as usize),
            Damage::GarbageTail => {
                let len = (s + 300).min(CRASH_SEG - pos) as usize;
                let mut g = CrashRng::new(o).bytes(len);
                g[4] = 0x5A; // never a valid magic
                write_at(&path, pos, &g)
            }
            Damage::FlipSizeLowBit => flip_bit(root, o + 3, 0),
            Damage::FlipSizeSignBit => flip_bit(root, o, 7),
            Damage::WrongMagic => flip_bit(root, o + 7, 0),
            Damage::FlipQueueId => flip_bit(root, o + 15, 1),
            Damage::FlipQueueOffset => flip_bit(root, o + 27, 0),
            Damage::FlipPhysicalOffset => flip_bit(root, o + 35, 0),
            Damage::FlipTopicLength => flip_bit(root, o + l.topic_len_pos, 0),
            Damage::FlipBody => flip_bit(root, o + 88 + l.body_len / 2, 3),
            Damage::FlipPropertyByte => flip_bit(root, o + l.props_pos + 1, 1),
            // A digit of the `__CRC32#` value (the property ends the record: digit digit ... 0x02).
            Damage::FlipCrcProperty => flip_bit(root, o + s - 3, 0),
        }
        let after = read_at(&path, pos, s as usize);
        assert_ne!(after, a.bytes, "{self:?} changed nothing");
    }
}

/// How the damaged record is put above the durable point.
#[derive(Clone, Copy, Debug)]
enum Durable {
    /// No checkpoint: nothing is known durable.
    NoCheckpoint,
    /// The checkpoint from just before the last put: durable = start of the last record.
    StaleCheckpoint,
}

fn set_durable(fx: &Fixture, root: &Path, d: Durable) {
    match d {
        Durable::NoCheckpoint => fs::remove_file(root.join("checkpoint")).unwrap(),
        Durable::StaleCheckpoint => {
            fs::write(root.join("checkpoint"), &fx.stale_checkpoint).unwrap()
        }
    }
}

/// No segment file after the one holding `end` (checked on a closed store: an open one keeps a
/// prepared, all-zero next segment).
fn assert_no_segment_after(root: &Path, end: u64, ctx: &str) {
    assert_eq!(
        segments_on_disk(root).last().unwrap().0,
        end - end % CRASH_SEG,
        "{ctx}: segment after the end"
    );
}

/// Everything that must hold after the last record was cut at `cut`. `torn` says whether
/// non-zero bytes were left at the cut (a wholly zeroed record looks like the ordinary end of
/// data, so recovery reports no truncation for it).
fn assert_cut_to_last_valid(fx: &Fixture, root: &Path, store: &Store, torn: bool, ctx: &str) {
    let last = fx.last();
    let cut = last.offset;
    let r = store.recovery_report();
    assert!(!r.clean_shutdown, "{ctx}: {r:?}");
    assert_eq!(r.truncated_at, torn.then_some(cut), "{ctx}: {r:?}");
    assert_eq!(r.end_offset, cut, "{ctx}: {r:?}");
    assert_eq!(r.segments_removed, 0, "{ctx}: {r:?}");
    if r.checkpoint_trusted {
        // The checkpoint from just before the damaged record: derived data below it is kept,
        // and the only record after it is the one cut.
        assert!(!r.derived_rebuilt, "{ctx}: {r:?}");
        assert_eq!(r.dispatched_from, cut, "{ctx}: {r:?}");
        assert_eq!(r.records_dispatched, 0, "{ctx}: {r:?}");
    } else {
        assert!(r.derived_rebuilt, "{ctx}: {r:?}");
        assert_eq!(r.records_dispatched, RECORDS - 1, "{ctx}: {r:?}");
    }
    assert_eq!(store.commitlog_max_offset(), cut, "{ctx}");
    assert_eq!(store.durable_offset(), cut, "{ctx}");
    // Queue of the damaged record lost exactly it; the others lost nothing.
    for q in 0..QUEUES as i32 {
        let n = fx.records.iter().filter(|a| a.queue == q).count() as u64;
        let want = if q == last.queue { n - 1 } else { n };
        assert_eq!(
            store.max_offset(TOPIC, q).unwrap(),
            want,
            "{ctx}: queue {q}"
        );
        assert_eq!(store.min_offset(TOPIC, q).unwrap(), 0, "{ctx}: queue {q}");
    }
    for a in &fx.records[..fx.records.len() - 1] {
        assert_acked_present(store, a);
    }
    assert!(
        matches!(store.read_at(cut), Err(Error::NoRecordAt { .. })),
        "{ctx}"
    );
    let g = store.get(TOPIC, last.queue, last.queue_offset, 1).unwrap();
    assert_eq!(g.status(), GetStatus::OffsetOverflowOne, "{ctx}");
    assert!(store
        .query_by_key(TOPIC, &last.keys[0], 0, i64::MAX, 4)
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .query_by_key(TOPIC, &fx.records[0].keys[0], 0, i64::MAX, 4)
            .unwrap()
            .len(),
        1
    );
    // On disk: the segment holding the cut is zero from the cut to its end; nothing follows it.
    let (path, pos) = locate(root, cut);
    let on_disk = fs::read(&path).unwrap();
    assert_eq!(on_disk.len() as u64, CRASH_SEG);
    if let Some(i) = on_disk[pos as usize..].iter().position(|&b| b != 0) {
        panic!(
            "{ctx}: byte {} of {} after the cut is not zero",
            pos as usize + i,
            path.display()
        );
    }
    // The next put lands exactly at the cut and reads back.
    let body = seq_body(9_999_999);
    let r = store
        .put(&Message::new(TOPIC, last.queue, &body).with_keys(["AFTER-CUT"]))
        .unwrap();
    assert_eq!(r.commitlog_offset, cut, "{ctx}");
    assert_eq!(r.queue_offset, last.queue_offset, "{ctx}");
    let g = store.get(TOPIC, last.queue, last.queue_offset, 1).unwrap();
    assert_eq!(g.messages().next().unwrap().body(), &body[..]);
    assert_eq!(store.read_at(cut).unwrap().view().body(), &body[..]);
}

/// Damage the last record, put it above the durable point, create `abort`, reopen.
fn torn_last_record(damage: Damage) {
    let fx = Fixture::build(crash_config(FlushMode::Async));
    for d in [Durable::NoCheckpoint, Durable::StaleCheckpoint] {
        let ctx = format!("{damage:?}/{d:?}");
        let root = fx.copy(&ctx.replace('/', "-"));
        damage.apply(&root, fx.last());
        set_durable(&fx, &root, d);
        create_abort(&root);
        let store = fx
            .open(&root)
            .unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
        let r = store.recovery_report().clone();
        assert_eq!(
            r.checkpoint_trusted,
            matches!(d, Durable::StaleCheckpoint),
            "{ctx}: {r:?}"
        );
        let torn = !matches!(damage, Damage::ZeroedTail);
        assert_cut_to_last_valid(&fx, &root, &store, torn, &ctx);
        store.close().unwrap();
        drop(store);
        assert_no_segment_after(&root, fx.last().offset, &ctx);
        // And the repaired store reopens cleanly with the new record in place.
        let store = fx.open(&root).unwrap();
        assert!(store.recovery_report().clean_shutdown);
        assert_eq!(store.recovery_report().truncated_at, None);
        assert_eq!(
            store
                .read_at(fx.last().offset)
                .unwrap()
                .view()
                .keys()
                .next(),
            Some("AFTER-CUT")
        );
        for a in &fx.records[..fx.records.len() - 1] {
            assert_acked_present(&store, a);
        }
        store.close().unwrap();
    }
}

#[test]
fn cut_mid_record() {
    torn_last_record(Damage::CutMidRecord);
}

#[test]
fn zeroed_tail() {
    torn_last_record(Damage::ZeroedTail);
}

#[test]
fn garbage_over_last_record() {
    torn_last_record(Damage::GarbageTail);
}

#[test]
fn bit_flip_in_size() {
    torn_last_record(Damage::FlipSizeLowBit);
}

#[test]
fn bit_flip_making_size_negative() {
    torn_last_record(Damage::FlipSizeSignBit);
}

#[test]
fn wrong_magic() {
    torn_last_record(Damage::WrongMagic);
}

#[test]
fn bit_flip_in_queue_id() {
    torn_last_record(Damage::FlipQueueId);
}

#[test]
fn bit_flip_in_queue_offset() {
    torn_last_record(Damage::FlipQueueOffset);
}

#[test]
fn bit_flip_in_physical_offset() {
    torn_last_record(Damage::FlipPhysicalOffset);
}

#[test]
fn bit_flip_in_topic_length() {
    torn_last_record(Damage::FlipTopicLength);
}

#[test]
fn bit_flip_in_body() {
    torn_last_record(Damage::FlipBody);
}

#[test]
fn bit_flip_in_property() {
    torn_last_record(Damage::FlipPropertyByte);
}

#[test]
fn bit_flip_in_crc_property() {
    torn_last_record(Damage::FlipCrcProperty);
}

/// Without the whole-record CRC property, damage to the header fields is still caught by the
/// structural checks (physical offset = position, next queue offset, usable queue id) and by
/// the body CRC.
#[test]
fn structural_checks_catch_header_damage_without_record_crc() {
    let config = StoreConfig {
        append_crc_property: false,
        ..crash_config(FlushMode::Async)
    };
    let fx = Fixture::build(config);
    let o = fx.last().offset;
    type Flip = fn(&Path, u64);
    let cases: [(&str, Flip); 5] = [
        ("queue offset + 1", |r, o| flip_bit(r, o + 27, 0)),
        ("physical offset + 1", |r, o| flip_bit(r, o + 35, 0)),
        ("negative queue id", |r, o| flip_bit(r, o + 12, 7)),
        ("queue id out of range", |r, o| flip_bit(r, o + 14, 0)),
        ("body", |r, o| flip_bit(r, o + 90, 2)),
    ];
    for (name, apply) in cases {
        let root = fx.copy(&name.replace(' ', "_"));
        apply(&root, o);
        fs::remove_file(root.join("checkpoint")).unwrap();
        create_abort(&root);
        let store = fx
            .open(&root)
            .unwrap_or_else(|e| panic!("{name}: open failed: {e}"));
        assert_cut_to_last_valid(&fx, &root, &store, true, name);
        store.close().unwrap();
        drop(store);
        assert_no_segment_after(&root, o, name);
    }
}

/// Bytes past the recorded end (never acknowledged, never durable): cut, nothing lost, with or
/// without `abort`.
#[test]
fn garbage_past_the_recorded_end_is_cut_and_nothing_is_lost() {
    let fx = Fixture::build(crash_config(FlushMode::Async));
    let end = fx.end();
    for with_abort in [true, false] {
        for (gi, garbage) in [
            CrashRng::new(3).bytes(500),
            // A BLANK header whose size does not reach the segment end.
            [100u32.to_be_bytes(), 0xCBD4_3194u32.to_be_bytes()].concat(),
            // A copy of the last (valid) record: its physical offset is wrong here.
            fx.last().bytes.clone(),
        ]
        .into_iter()
        .enumerate()
        {
            let ctx = format!("abort={with_abort} garbage={:02x?}", &garbage[..8]);
            let root = fx.copy(&format!("past-{with_abort}-{gi}"));
            let (path, pos) = locate(&root, end);
            write_at(&path, pos, &garbage);
            if with_abort {
                create_abort(&root);
            }
            let store = fx.open(&root).unwrap_or_else(|e| panic!("{ctx}: {e}"));
            let r = store.recovery_report().clone();
            assert_eq!(r.clean_shutdown, !with_abort, "{ctx}: {r:?}");
            assert!(r.checkpoint_trusted, "{ctx}: {r:?}");
            assert_eq!(r.truncated_at, Some(end), "{ctx}: {r:?}");
            assert_eq!(store.commitlog_max_offset(), end, "{ctx}");
            for a in &fx.records {
                assert_acked_present(&store, a);
            }
            let on_disk = fs::read(&path).unwrap();
            assert!(
                on_disk[pos as usize..].iter().all(|&b| b == 0),
                "{ctx}: garbage not zeroed"
            );
            let r = store.put(&Message::new(TOPIC, 0, b"next")).unwrap();
            assert_eq!(r.commitlog_offset, end, "{ctx}");
            store.close().unwrap();
        }
    }
}

/// The end-of-segment BLANK record of the first segment, with its size changed.
fn damage_first_blank(fx: &Fixture, root: &Path) -> u64 {
    let blank = fx
        .records
        .iter()
        .filter(|a| a.end() <= CRASH_SEG)
        .map(Acked::end)
        .max()
        .unwrap();
    let (path, pos) = locate(root, blank);
    let hdr = read_at(&path, pos, 8);
    assert_eq!(
        hdr[4..8],
        0xCBD4_3194u32.to_be_bytes(),
        "BLANK magic at {blank}"
    );
    assert_eq!(
        u32::from_be_bytes(hdr[..4].try_into().unwrap()) as u64,
        CRASH_SEG - pos,
        "BLANK covers the rest of the segment"
    );
    write_at(&path, pos, &((CRASH_SEG - pos - 1) as u32).to_be_bytes());
    blank
}

/// A BLANK record whose size is not the rest of its segment, with nothing known durable, is
/// not a torn tail while later segments hold valid records: the open fails and changes
/// nothing; with salvage the damaged BLANK is replaced and every later segment is kept.
#[test]
fn blank_with_wrong_size_before_later_segments_is_corruption_not_a_cut() {
    let fx = Fixture::build(crash_config(FlushMode::Async));
    let root = fx.copy("blank-cut");
    let blank = damage_first_blank(&fx, &root);
    fs::remove_file(root.join("checkpoint")).unwrap();
    create_abort(&root);
    let before = snapshot_files(&root, &["commitlog"]);
    let Err(err) = fx.open(&root) else {
        panic!("open must refuse")
    };
    match &err {
        Error::Corruption {
            path,
            offset,
            reason,
        } => {
            assert_eq!(*offset, blank, "{err}");
            assert!(path.ends_with(format!("{:020}", 0)), "{err}");
            assert!(reason.contains("later segment"), "{err}");
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    assert_same_files(
        &before,
        &snapshot_files(&root, &["commitlog"]),
        "failed open",
    );

    let config = StoreConfig {
        salvage_corrupt_log: true,
        ..fx.config.clone()
    };
    let store = Store::open(&root, config).unwrap();
    let r = store.recovery_report().clone();
    assert_eq!(r.salvaged.len(), 1, "{r:?}");
    assert_eq!(r.salvaged[0].offset, blank);
    assert_eq!(r.segments_removed, 0, "{r:?}");
    assert_eq!(store.commitlog_max_offset(), fx.end());
    for a in &fx.records {
        assert_acked_present(&store, a);
    }
    store.close().unwrap();
}

/// Damage below the checkpoint's durable offset after a crash is an error, not a silent cut,
/// and the failed open leaves every CommitLog byte as it was.
#[test]
fn corruption_below_the_durable_offset_is_an_error_and_changes_nothing() {
    let fx = Fixture::build(crash_config(FlushMode::Async));
    let early = &fx.records[5];
    let in_last_segment = &fx.records[fx.records.len() - 3];
    assert_eq!(
        in_last_segment.offset / CRASH_SEG,
        fx.last().offset / CRASH_SEG
    );
    type Apply<'a> = Box<dyn Fn(&Path) -> u64 + 'a>;
    let cases: Vec<(&str, Apply<'_>)> = vec![
        (
            // An unclean open with usable derived data validates from the segment holding the
            // durable offset on; a rebuild reads every record, so this damage is found when the
            // ConsumeQueue is gone too.
            "body of record 5 (first segment), ConsumeQueue gone",
            Box::new(|r: &Path| {
                flip_bit(r, early.offset + 90, 4);
                fs::remove_dir_all(r.join("consumequeue")).unwrap();
                early.offset
            }),
        ),
        (
            "magic of a record in the last segment",
            Box::new(|r: &Path| {
                flip_bit(r, in_last_segment.offset + 6, 0);
                in_last_segment.offset
            }),
        ),
        (
            "zeroed last record",
            Box::new(|r: &Path| {
                let (p, pos) = locate(r, fx.last().offset);
                zero_at(&p, pos, fx.last().bytes.len());
                fx.last().offset
            }),
        ),
        (
            "BLANK size at the end of the first segment, ConsumeQueue gone",
            Box::new(|r: &Path| {
                fs::remove_dir_all(r.join("consumequeue")).unwrap();
                damage_first_blank(&fx, r)
            }),
        ),
    ];
    for (name, apply) in cases {
        let root = fx.copy(&name.replace(' ', "_"));
        let bad = apply(&root);
        create_abort(&root);
        let before = snapshot_files(&root, &["commitlog"]);
        for attempt in 0..2 {
            match fx.open(&root) {
                Err(Error::Corruption { offset, path, .. }) => {
                    assert_eq!(offset, bad, "{name}: {path:?}");
                }
                Err(e) => panic!("{name}: expected Error::Corruption, got {e:?}"),
                Ok(s) => panic!(
                    "{name}: open succeeded over damaged acknowledged data: {:?}",
                    s.recovery_report()
                ),
            }
            assert_same_files(
                &before,
                &snapshot_files(&root, &["commitlog"]),
                &format!("{name}: attempt {attempt}"),
            );
            assert!(root.join("abort").exists(), "{name}: abort must stay");
        }
    }
}

/// With `salvage_corrupt_log` the same damage (valid records follow it) is skipped instead: the
/// damaged record's bytes are kept under `salvaged/`, a filler takes its place, its queue offset
/// reads as removed, and every other record stays where it was.
#[test]
fn salvage_skips_damage_below_the_durable_offset_and_keeps_what_follows() {
    let fx = Fixture::build(crash_config(FlushMode::Async));
    // Not the last of its queue: the later one of its queue makes the queue skip its offset.
    let victim = &fx.records[fx.records.len() - 6];
    let root = fx.copy("salvage");
    flip_bit(&root, victim.offset + 90, 4);
    let (path, pos) = locate(&root, victim.offset);
    let damaged = read_at(&path, pos, victim.bytes.len());
    create_abort(&root);
    let config = StoreConfig {
        salvage_corrupt_log: true,
        ..fx.config.clone()
    };
    let store = Store::open(&root, config.clone()).unwrap();
    let report = store.recovery_report().clone();
    assert_eq!(report.salvaged.len(), 1, "{report:?}");
    let salvage = &report.salvaged[0];
    assert_eq!(salvage.offset, victim.offset);
    assert_eq!(salvage.len, victim.bytes.len() as u64);
    assert_eq!(salvage.resumed_at, Some(victim.end()));
    assert_eq!(salvage.durable_offset, fx.last().end());
    assert_eq!(salvage.path, path);
    let saved = salvage.saved_to.as_ref().expect("damaged bytes saved");
    assert!(saved.starts_with(root.join("salvaged")));
    assert_eq!(
        fs::read(saved).unwrap(),
        damaged,
        "the copy holds the damaged bytes as they were"
    );
    assert_eq!(report.end_offset, fx.last().end());
    assert_eq!(store.commitlog_max_offset(), fx.last().end());
    for a in fx.records.iter().filter(|a| a.offset != victim.offset) {
        assert_acked_present(&store, a);
    }
    // The lost message's queue offset is skipped: a read there finds the next message of its
    // queue (or nothing, if it was the last).
    let g = store
        .get(TOPIC, victim.queue, victim.queue_offset, 1)
        .unwrap();
    let next = fx
        .records
        .iter()
        .find(|a| a.queue == victim.queue && a.queue_offset == victim.queue_offset + 1);
    match next {
        Some(n) => {
            assert_eq!(g.status(), GetStatus::Found);
            assert_eq!(g.messages().next().unwrap().commitlog_offset(), n.offset);
        }
        None => assert_ne!(g.status(), GetStatus::Found),
    }
    for q in 0..QUEUES as i32 {
        let n = fx.records.iter().filter(|a| a.queue == q).count() as u64;
        assert_eq!(
            store.max_offset(TOPIC, q).unwrap(),
            n,
            "queue {q} keeps its length"
        );
    }
    // New messages continue every queue.
    let r = store
        .put(&Message::new(TOPIC, victim.queue, b"after"))
        .unwrap();
    assert_eq!(r.commitlog_offset, fx.last().end());
    store.close().unwrap();
    drop(store);
    // The salvaged store is an ordinary store now: a second open, clean or after a crash with
    // a full rebuild, salvages nothing more and loses nothing.
    for rebuild in [false, true] {
        if rebuild {
            fs::remove_file(root.join("checkpoint")).unwrap();
            create_abort(&root);
        }
        let store = Store::open(&root, fx.config.clone()).unwrap();
        let r = store.recovery_report();
        assert!(r.salvaged.is_empty(), "rebuild {rebuild}: {r:?}");
        for a in fx.records.iter().filter(|a| a.offset != victim.offset) {
            assert_acked_present(&store, a);
        }
        let q = victim.queue;
        let n = fx.records.iter().filter(|a| a.queue == q).count() as u64 + 1;
        assert_eq!(store.max_offset(TOPIC, q).unwrap(), n, "rebuild {rebuild}");
        store.close().unwrap();
    }
}

/// Damage below the durable offset with nothing valid after it cannot be skipped: salvage cuts
/// the log there and reports the acknowledged bytes given up.
#[test]
fn salvage_cuts_damage_below_the_durable_offset_that_nothing_valid_follows() {
    let fx = Fixture::build(crash_config(FlushMode::Async));
    let victim = &fx.records[fx.records.len() - 3];
    let root = fx.copy("salvage-cut");
    let (path, pos) = locate(&root, victim.offset);
    zero_at(
        &path,
        pos + 90,
        (fx.last().end() - victim.offset - 90) as usize,
    );
    create_abort(&root);
    let config = StoreConfig {
        salvage_corrupt_log: true,
        ..fx.config.clone()
    };
    let store = Store::open(&root, config).unwrap();
    let report = store.recovery_report().clone();
    assert_eq!(report.salvaged.len(), 1, "{report:?}");
    let salvage = &report.salvaged[0];
    assert_eq!(salvage.offset, victim.offset);
    assert_eq!(salvage.resumed_at, None);
    assert_eq!(salvage.len, fx.last().end() - victim.offset);
    assert_eq!(salvage.durable_offset, fx.last().end());
    assert_eq!(report.end_offset, victim.offset);
    for a in fx.records.iter().filter(|a| a.end() <= victim.offset) {
        assert_acked_present(&store, a);
    }
    assert!(fs::read(&path).unwrap()[pos as usize..]
        .iter()
        .all(|&b| b == 0));
    store.close().unwrap();
}

/// After a clean shutdown recovery trusts the checkpoint and does not re-read what lies below
/// it: damage there is found by CRC-verifying reads, not at open.
#[test]
fn clean_open_trusts_the_checkpoint_and_reads_verify_crc() {
    let fx = Fixture::build(crash_config(FlushMode::Async));
    let root = fx.copy("clean");
    let victim = &fx.records[10];
    flip_bit(&root, victim.offset + 90, 4);
    let store = fx.open(&root).unwrap();
    assert!(store.recovery_report().clean_shutdown);
    assert_eq!(store.recovery_report().scanned_bytes, 0);
    assert!(matches!(
        store.read_at(victim.offset),
        Err(Error::CorruptRecord { offset, .. }) if offset == victim.offset
    ));
    let verified = store.get_with(
        TOPIC,
        victim.queue,
        victim.queue_offset,
        &GetOptions {
            verify_crc: true,
            ..GetOptions::new(1)
        },
    );
    assert!(
        matches!(verified, Err(Error::CorruptRecord { offset, .. }) if offset == victim.offset),
        "{verified:?}"
    );
    store.close().unwrap();
}

#[test]
fn non_last_segment_of_wrong_length_is_a_layout_error() {
    let fx = Fixture::build(crash_config(FlushMode::Async));
    assert!(segments_on_disk(&fx.base).len() >= 3);
    for (name, len) in [("longer", CRASH_SEG + 1), ("shorter", CRASH_SEG - 4096)] {
        for with_abort in [false, true] {
            let root = fx.copy(&format!("{name}-{with_abort}"));
            let seg = segment_path(&root, 0);
            fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .unwrap()
                .set_len(len)
                .unwrap();
            if with_abort {
                create_abort(&root);
            }
            let before = snapshot_files(&root, &["commitlog"]);
            match fx.open(&root) {
                Err(Error::Layout { path, .. }) => assert_eq!(path, seg, "{name}"),
                Err(e) => panic!("{name}: expected Error::Layout, got {e:?}"),
                Ok(_) => panic!("{name}: opened a store with a segment of length {len}"),
            }
            assert_same_files(&before, &snapshot_files(&root, &["commitlog"]), name);
        }
    }
}

#[test]
fn missing_middle_segment_is_a_segment_gap_error() {
    let fx = Fixture::build(crash_config(FlushMode::Async));
    let root = fx.copy("gap");
    fs::remove_file(segment_path(&root, CRASH_SEG)).unwrap();
    create_abort(&root);
    match fx.open(&root) {
        Err(Error::SegmentGap {
            missing_from,
            missing_to,
            ..
        }) => assert_eq!((missing_from, missing_to), (CRASH_SEG, 2 * CRASH_SEG)),
        Err(e) => panic!("expected Error::SegmentGap, got {e:?}"),
        Ok(_) => panic!("opened a store with a missing segment"),
    }
}

/// A crash right after a new segment file was created leaves it empty: it is removed and the
/// store opens with its content unchanged.
#[test]
fn zero_length_last_segment_is_removed() {
    let fx = Fixture::build(crash_config(FlushMode::Async));
    let keys: Vec<(String, String)> = fx
        .records
        .iter()
        .step_by(50)
        .map(|a| (TOPIC.to_string(), a.keys[0].clone()))
        .collect();
    let want = {
        let s = fx.open(&fx.copy("reference")).unwrap();
        let img = store_image(&s, &keys);
        s.close().unwrap();
        img
    };
    let next = segments_on_disk(&fx.base).last().unwrap().0 + CRASH_SEG;
    for (with_abort, preallocate) in [(false, false), (true, false), (false, true), (true, true)] {
        let ctx = format!("abort={with_abort} preallocate={preallocate}");
        let root = fx.copy(&format!("empty-{with_abort}-{preallocate}"));
        let empty = segment_path(&root, next);
        fs::File::create(&empty).unwrap();
        if with_abort {
            create_abort(&root);
        }
        let config = StoreConfig {
            preallocate_next_segment: preallocate,
            ..fx.config.clone()
        };
        let store = Store::open(&root, config).unwrap();
        if !preallocate {
            // (With preallocation the next segment is prepared under this very name.)
            assert!(!empty.exists(), "{ctx}: empty last segment left in place");
        }
        let r = store.recovery_report().clone();
        assert_eq!(r.truncated_at, None, "{r:?}");
        assert_eq!(r.end_offset, fx.end(), "{r:?}");
        assert_eq!(r.clean_shutdown, !with_abort, "{r:?}");
        assert_same_image(&want, &store_image(&store, &keys), "empty last segment");
        let p = store.put(&Message::new(TOPIC, 1, b"after")).unwrap();
        assert_eq!(p.commitlog_offset, fx.end(), "{ctx}");
        store.close().unwrap();
        drop(store);
        assert!(
            !empty.exists(),
            "{ctx}: empty segment still there after close"
        );
        assert_no_segment_after(&root, fx.end(), &ctx);
    }
}

/// Without the record CRC, a damaged queue offset in the first record of a queue must not
/// create a queue that starts past 0 while the CommitLog still starts at 0 (nothing was ever
/// deleted, so the queue would have a gap `0..n`).
#[test]
fn damaged_queue_offset_of_a_queues_first_record_is_cut() {
    let config = StoreConfig {
        append_crc_property: false,
        ..crash_config(FlushMode::Async)
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let store = Store::open(&root, config.clone()).unwrap();
    let mut recs = Vec::new();
    for seq in 0..50u64 {
        let body = seq_body(seq);
        recs.push(put_acked(&store, &Message::new(TOPIC, 0, &body), &[]));
    }
    let body = seq_body(50);
    let first_of_q5 = put_acked(&store, &Message::new(TOPIC, 5, &body), &[]);
    assert_eq!(first_of_q5.queue_offset, 0);
    store.close().unwrap();
    drop(store);
    flip_bit(&root, first_of_q5.offset + 27, 2); // queue offset 0 -> 4
    fs::remove_file(root.join("checkpoint")).unwrap();
    create_abort(&root);
    let store = Store::open(&root, config).unwrap();
    let r = store.recovery_report().clone();
    let (min, max) = (
        store.min_offset(TOPIC, 5).unwrap(),
        store.max_offset(TOPIC, 5).unwrap(),
    );
    assert_eq!(
        (r.truncated_at, min, max),
        (Some(first_of_q5.offset), 0, 0),
        "queue 5 recovered as {min}..{max}; {r:?}"
    );
    for a in &recs {
        assert_acked_present(&store, a);
    }
}

/// A checkpoint that names more durable data than the segments hold (the last segment file is
/// gone) is ignored: a full scan recovers what is there. The loss is only logged.
#[test]
fn checkpoint_newer_than_the_data_is_ignored() {
    let fx = Fixture::build(crash_config(FlushMode::Async));
    let segs = segments_on_disk(&fx.base);
    for with_abort in [false, true] {
        let root = fx.copy(&format!("newer-{with_abort}"));
        fs::remove_file(segment_path(&root, segs.last().unwrap().0)).unwrap();
        if with_abort {
            create_abort(&root);
        }
        let store = fx.open(&root).unwrap();
        let r = store.recovery_report().clone();
        let kept_end = segs.last().unwrap().0;
        assert!(!r.checkpoint_trusted, "{r:?}");
        assert!(!r.clean_shutdown, "{r:?}");
        assert!(r.derived_rebuilt, "{r:?}");
        assert_eq!(r.end_offset, kept_end, "{r:?}");
        assert_eq!(r.truncated_at, None, "{r:?}");
        for a in fx.records.iter().filter(|a| a.end() <= kept_end) {
            assert_acked_present(&store, a);
        }
        let lost = fx.records.iter().filter(|a| a.end() > kept_end).count() as u64;
        let total: u64 = (0..QUEUES as i32)
            .map(|q| store.max_offset(TOPIC, q).unwrap())
            .sum();
        assert_eq!(total, RECORDS - lost);
        store.close().unwrap();
    }
}

/// Issue 14's reproduction and its variants: one flipped byte with the checkpoint gone or
/// untrusted. Valid records follow the damage (in its segment, or in later segments), so it is
/// not a torn tail: the open fails with `Error::Corruption` naming the file and offset, and no
/// CommitLog byte changes; with salvage only the damaged record is given up.
#[test]
fn one_flipped_byte_without_a_trusted_checkpoint_is_corruption_not_a_cut() {
    let fx = Fixture::build(crash_config(FlushMode::Async));
    let first_segment = &fx.records[5];
    let last_segment = &fx.records[fx.records.len() - 3];
    assert_eq!(first_segment.offset / CRASH_SEG, 0);
    assert!(last_segment.offset / CRASH_SEG > 1);
    for (name, victim, checkpoint) in [
        ("missing checkpoint, first segment", first_segment, "remove"),
        ("damaged trailer, first segment", first_segment, "damage"),
        ("missing checkpoint, last segment", last_segment, "remove"),
    ] {
        let root = fx.copy(&name.replace([' ', ','], "-"));
        // Inside the body: only the CRCs can tell.
        flip_bit(&root, victim.offset + 120, 3);
        match checkpoint {
            "remove" => fs::remove_file(root.join("checkpoint")).unwrap(),
            _ => {
                let cp = root.join("checkpoint");
                let mut bytes = fs::read(&cp).unwrap();
                bytes[3968 + 20] ^= 0x10; // inside the trailer (CHECKPOINT trailer at 3968)
                fs::write(&cp, bytes).unwrap();
            }
        }
        create_abort(&root);
        let before = snapshot_files(&root, &["commitlog"]);
        let err = fx
            .open(&root)
            .err()
            .unwrap_or_else(|| panic!("{name}: open must refuse"));
        let Error::Corruption {
            path,
            offset,
            reason,
        } = &err
        else {
            panic!("{name}: expected Corruption, got {err:?}")
        };
        assert_eq!(*offset, victim.offset, "{name}: {err}");
        assert_eq!(*path, locate(&root, victim.offset).0, "{name}: {err}");
        assert!(reason.contains("followed by valid data"), "{name}: {err}");
        assert_same_files(&before, &snapshot_files(&root, &["commitlog"]), name);

        let config = StoreConfig {
            salvage_corrupt_log: true,
            ..fx.config.clone()
        };
        let store = Store::open(&root, config).unwrap();
        let r = store.recovery_report().clone();
        assert_eq!(r.salvaged.len(), 1, "{name}: {r:?}");
        assert_eq!(r.salvaged[0].offset, victim.offset, "{name}");
        assert_eq!(r.salvaged[0].resumed_at, Some(victim.end()), "{name}");
        assert_eq!(store.commitlog_max_offset(), fx.end(), "{name}");
        for a in fx.records.iter().filter(|a| a.offset != victim.offset) {
            assert_acked_present(&store, a);
        }
        store.close().unwrap();
    }
}
