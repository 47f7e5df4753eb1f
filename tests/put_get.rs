//! Puts and gets: byte-exact records across CommitLog and ConsumeQueue rolls, batches, `read_at`,
//! every reachable `GetStatus`, budgets, tag filters and CRC verification.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use common::*;
use rocketstore::{
    Error, GetOptions, GetStatus, Message, PutStatus, Store, StoreConfig, TagFilter,
};

/// One put as the test remembers it.
#[derive(Clone, Debug)]
struct Put {
    spec: Spec,
    queue_offset: u64,
    commitlog_offset: u64,
    size: usize,
    store_timestamp: i64,
}

fn store_host() -> SocketAddr {
    StoreConfig::default().store_host
}

/// A varied message: bodies from 0 to 3000 bytes, four tag kinds, keys, user properties,
/// explicit or default born time/host (IPv4 and IPv6), flags and reconsume counts.
fn varied_spec(rng: &mut Rng, topic: &str, queue_id: i32, i: usize) -> Spec {
    let len = match i % 7 {
        0 => 0,
        1 => 1,
        _ => rng.below(3000) as usize,
    };
    let mut s = Spec::new(topic, queue_id, rng.bytes(len));
    s.tags = match i % 4 {
        0 => Some("TagA".into()),
        1 => Some("TagB".into()),
        2 => Some("TagC".into()),
        _ => None,
    };
    if !i.is_multiple_of(3) {
        s.keys = vec![format!("key-{topic}-{i}"), format!("k{}", i % 5)];
    }
    if i.is_multiple_of(2) {
        s.props = vec![
            ("source".into(), format!("web-{i}")),
            ("UNIQ_KEY".into(), format!("U{i:08}")),
        ];
    }
    s.flag = (i as i32).wrapping_mul(7919) - 1000;
    s.reconsume_times = (i % 17) as i32;
    if !i.is_multiple_of(5) {
        s.born_timestamp = Some(1_600_000_000_000 + i as i64);
    }
    s.born_host = match i % 6 {
        0 => None,
        1 => Some("[2001:db8::7]:4321".parse().unwrap()),
        _ => Some(
            format!("10.1.{}.{}:{}", i % 256, (i / 256) % 256, 1000 + i % 5000)
                .parse()
                .unwrap(),
        ),
    };
    s
}

fn put_all(store: &Store, specs: Vec<Spec>) -> Vec<Put> {
    let mut next_q: BTreeMap<(String, i32), u64> = BTreeMap::new();
    let mut end = store.commitlog_max_offset();
    let mut puts = Vec::new();
    for spec in specs {
        let q = next_q
            .entry((spec.topic.clone(), spec.queue_id))
            .or_insert_with(|| store.max_offset(&spec.topic, spec.queue_id).unwrap());
        let r = store.put(&spec.message()).unwrap();
        assert_eq!(r.status, PutStatus::Ok);
        assert_eq!(r.message_count, 1);
        assert_eq!(
            r.queue_offset, *q,
            "queue offsets are consecutive per queue"
        );
        let size = spec.record_len(store_host());
        assert_eq!(r.wrote_bytes, size, "record size 74+B+S+T+body+topic+props");
        assert_eq!(
            r.commitlog_offset,
            expected_offset(end, size, SEG),
            "record lands at the end or, if it does not fit with 8 spare bytes, at the next segment"
        );
        end = r.commitlog_offset + size as u64;
        assert_eq!(store.commitlog_max_offset(), end);
        *q += 1;
        puts.push(Put {
            spec,
            queue_offset: r.queue_offset,
            commitlog_offset: r.commitlog_offset,
            size,
            store_timestamp: r.store_timestamp,
        });
    }
    puts
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

fn check_commitlog_files(root: &Path, puts: &[Put], end: u64) {
    let files = list_dir(&root.join("commitlog"));
    let used = (end.div_ceil(SEG)) as usize;
    assert!(
        used >= 5,
        "the workload must roll the CommitLog several times"
    );
    assert!(
        files.len() == used || files.len() == used + 1,
        "{} segments hold data, found files {files:?}",
        used
    );
    for (i, (name, len)) in files.iter().enumerate() {
        assert_eq!(name, &format!("{:020}", i as u64 * SEG), "segment name");
        assert_eq!(*len, SEG, "segment {name} length");
    }
    // Each full segment ends with a BLANK record covering exactly the rest of the segment.
    for (i, (name, _)) in files.iter().enumerate().take(used - 1) {
        let seg_start = i as u64 * SEG;
        let last_end = puts
            .iter()
            .filter(|p| p.commitlog_offset / SEG == i as u64)
            .map(|p| p.commitlog_offset + p.size as u64)
            .max()
            .unwrap();
        let bytes = std::fs::read(root.join("commitlog").join(name)).unwrap();
        let pos = (last_end - seg_start) as usize;
        assert!(SEG as usize - pos >= 8);
        assert_eq!(
            u32_at(&bytes, pos),
            (SEG as usize - pos) as u32,
            "blank TOTALSIZE"
        );
        assert_eq!(u32_at(&bytes, pos + 4), MAGIC_BLANK, "blank magic");
    }
    // Records are where the puts said, byte for byte, in the files themselves.
    for p in puts.iter().step_by(37) {
        let seg = p.commitlog_offset / SEG;
        let bytes =
            std::fs::read(root.join("commitlog").join(format!("{:020}", seg * SEG))).unwrap();
        let pos = (p.commitlog_offset % SEG) as usize;
        let expected = expected_record(
            &p.spec,
            p.queue_offset,
            p.commitlog_offset,
            i64::from_be_bytes(bytes[pos + 40..pos + 48].try_into().unwrap()),
            p.store_timestamp,
            store_host(),
        );
        assert_bytes_eq(&bytes[pos..pos + p.size], &expected, "on-disk record");
    }
}

fn check_consume_queue_files(root: &Path, topic: &str, queue_id: i32, puts: &[&Put]) {
    let dir = root
        .join("consumequeue")
        .join(topic)
        .join(queue_id.to_string());
    let files = list_dir(&dir);
    let file_bytes = CQ_UNITS * 20;
    assert_eq!(
        files.len() as u64,
        (puts.len() as u64).div_ceil(CQ_UNITS),
        "{topic}/{queue_id}: ConsumeQueue files {files:?}"
    );
    let mut all = Vec::new();
    for (i, (name, len)) in files.iter().enumerate() {
        assert_eq!(name, &format!("{:020}", i as u64 * file_bytes));
        assert_eq!(*len, file_bytes);
        all.extend(std::fs::read(dir.join(name)).unwrap());
    }
    for (n, p) in puts.iter().enumerate() {
        let u = &all[n * 20..n * 20 + 20];
        assert_eq!(u64_at(u, 0), p.commitlog_offset, "unit {n} offset");
        assert_eq!(u32_at(u, 8), p.size as u32, "unit {n} size");
        assert_eq!(
            u64_at(u, 12) as i64,
            p.spec.tags_code(),
            "unit {n} tags code"
        );
    }
    assert!(
        all[puts.len() * 20..].iter().all(|&b| b == 0),
        "{topic}/{queue_id}: bytes after the last unit are zero"
    );
}

#[test]
fn every_message_reads_back_byte_identical_across_commitlog_and_consume_queue_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let mut rng = Rng::new(1);
    // Queue sizes deliberately not multiples of 100 so the last CQ file is partly filled.
    let layout: [(&str, i32, usize); 4] = [
        ("TopicA", 0, 437),
        ("TopicA", 3, 251),
        ("TopicB", 0, 130),
        ("T_b-%|x", 7, 12),
    ];
    let mut specs = Vec::new();
    let mut counters = [0usize; 4];
    let total: usize = layout.iter().map(|l| l.2).sum();
    let mut i = 0;
    while specs.len() < total {
        let k = rng.below(4) as usize;
        if counters[k] < layout[k].2 {
            specs.push(varied_spec(&mut rng, layout[k].0, layout[k].1, i));
            counters[k] += 1;
            i += 1;
        }
    }
    // A topic over 127 bytes is written with magic V2 and a 2-byte topic length.
    let long_topic = "L".repeat(200);
    specs.push(varied_spec(&mut rng, &long_topic, 1, 9999));
    let puts = put_all(&store, specs);
    let end = store.commitlog_max_offset();

    check_commitlog_files(dir.path(), &puts, end);
    for (topic, q, n) in layout {
        let of_queue: Vec<&Put> = puts
            .iter()
            .filter(|p| p.spec.topic == topic && p.spec.queue_id == q)
            .collect();
        assert_eq!(of_queue.len(), n);
        check_consume_queue_files(dir.path(), topic, q, &of_queue);
    }

    // Read every queue back through `get` in pages of 50 (pages straddle CQ file boundaries).
    let mut by_queue: BTreeMap<(String, i32), Vec<&Put>> = BTreeMap::new();
    for p in &puts {
        by_queue
            .entry((p.spec.topic.clone(), p.spec.queue_id))
            .or_default()
            .push(p);
    }
    for ((topic, q), expected) in &by_queue {
        assert_eq!(store.min_offset(topic, *q).unwrap(), 0);
        assert_eq!(store.max_offset(topic, *q).unwrap(), expected.len() as u64);
        let mut next = 0u64;
        while next < expected.len() as u64 {
            let g = store.get(topic, *q, next, 50).unwrap();
            assert_eq!(g.status(), GetStatus::Found);
            let want = (expected.len() as u64 - next).min(50);
            assert_eq!(g.len() as u64, want, "{topic}/{q}@{next}");
            assert_eq!(g.next_offset(), next + want);
            assert_eq!(g.min_offset(), 0);
            assert_eq!(g.max_offset(), expected.len() as u64);
            assert_eq!(
                g.total_bytes(),
                expected[next as usize..(next + want) as usize]
                    .iter()
                    .map(|p| p.size)
                    .sum::<usize>()
            );
            for (k, v) in g.messages().enumerate() {
                let p = expected[next as usize + k];
                assert_view_matches(
                    &v,
                    &p.spec,
                    p.queue_offset,
                    p.commitlog_offset,
                    p.store_timestamp,
                    store_host(),
                );
                if p.spec.topic == long_topic {
                    assert_eq!(u32_at(v.as_bytes(), 4), MAGIC_V2);
                }
            }
            next = g.next_offset();
        }
    }

    // Store timestamps never go backwards in CommitLog order.
    let mut by_offset: Vec<&Put> = puts.iter().collect();
    by_offset.sort_by_key(|p| p.commitlog_offset);
    assert!(by_offset
        .windows(2)
        .all(|w| w[0].store_timestamp <= w[1].store_timestamp));

    // read_at of every record start gives the same record.
    for p in &puts {
        let m = store.read_at(p.commitlog_offset).unwrap();
        assert_view_matches(
            &m.view(),
            &p.spec,
            p.queue_offset,
            p.commitlog_offset,
            p.store_timestamp,
            store_host(),
        );
        // Offset message id: store address, port, offset.
        assert_eq!(
            m.view().msg_id(),
            format!("7F00000100002A9F{:016X}", p.commitlog_offset)
        );
    }

    // A full walk of the CommitLog finds exactly the records put, in offset order.
    let walked: Vec<u64> = walk_commitlog(&store).into_iter().map(|(o, _)| o).collect();
    assert_eq!(
        walked,
        by_offset
            .iter()
            .map(|p| p.commitlog_offset)
            .collect::<Vec<_>>()
    );

    assert_eq!(
        store.topics(),
        vec![
            long_topic.clone(),
            "T_b-%|x".into(),
            "TopicA".into(),
            "TopicB".into()
        ]
    );
    assert_eq!(store.queue_ids("TopicA"), vec![0, 3]);
    assert_eq!(store.queue_ids("TopicB"), vec![0]);
    assert_eq!(store.queue_ids("T_b-%|x"), vec![7]);
    assert_eq!(store.queue_ids("Nope"), Vec::<i32>::new());
    assert_eq!(store.commitlog_min_offset(), 0);
    assert_eq!(store.commitlog_max_offset(), end);
    store.close().unwrap();
}

#[test]
fn ipv6_store_host_sets_both_v6_sysflags_and_a_56_digit_msg_id() {
    let dir = tempfile::tempdir().unwrap();
    let host: SocketAddr = "[fe80::1:2]:10911".parse().unwrap();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            store_host: host,
            ..tiny()
        },
    )
    .unwrap();
    let mut s = Spec::new("v6", 0, b"payload".to_vec());
    s.born_host = Some("[::1]:7".parse().unwrap());
    s.born_timestamp = Some(42);
    let r = store.put(&s.message()).unwrap();
    assert_eq!(r.wrote_bytes, s.record_len(host));
    let m = store.read_at(r.commitlog_offset).unwrap();
    let v = m.view();
    assert_eq!(v.sys_flag(), 0x30);
    assert_view_matches(&v, &s, 0, 0, r.store_timestamp, host);
    assert_eq!(
        v.msg_id(),
        "FE800000000000000000000000010002".to_string() + "00002A9F" + "0000000000000000"
    );
}

#[test]
fn empty_tag_is_stored_as_no_tag() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let mut s = Spec::new("t", 0, b"x".to_vec());
    s.tags = Some(String::new());
    let r = store.put(&s.message()).unwrap();
    let g = store.get("t", 0, 0, 1).unwrap();
    let v = g.messages().next().unwrap();
    assert_eq!(v.tags(), None);
    assert_view_matches(&v, &s, 0, 0, r.store_timestamp, store_host());
    // And an empty-tag message is not matched by a tag filter.
    let g = store
        .get_with(
            "t",
            0,
            0,
            &GetOptions {
                tag_filter: Some(TagFilter::parse("TagA")),
                ..GetOptions::new(1)
            },
        )
        .unwrap();
    assert_eq!(g.status(), GetStatus::NoMatchedMessage);
}

#[test]
fn put_batch_gives_consecutive_queue_offsets_contiguous_commitlog_offsets_and_one_store_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let mut rng = Rng::new(2);
    // Some singles first so the batch does not start at queue offset 0.
    put_all(
        &store,
        (0..3).map(|i| varied_spec(&mut rng, "bt", 1, i)).collect(),
    );
    let start = store.commitlog_max_offset();
    let specs: Vec<Spec> = (0..10)
        .map(|i| {
            let mut s = varied_spec(&mut rng, "bt", 1, 100 + i);
            s.body.truncate(300);
            s
        })
        .collect();
    let msgs: Vec<_> = specs.iter().map(Spec::message).collect();
    let r = store.put_batch(&msgs).unwrap();
    let sizes: Vec<usize> = specs.iter().map(|s| s.record_len(store_host())).collect();
    assert_eq!(r.status, PutStatus::Ok);
    assert_eq!(r.queue_offset, 3);
    assert_eq!(r.message_count, 10);
    assert_eq!(r.commitlog_offset, start);
    assert_eq!(r.wrote_bytes, sizes.iter().sum::<usize>());
    assert_eq!(store.max_offset("bt", 1).unwrap(), 13);
    assert_eq!(store.commitlog_max_offset(), start + r.wrote_bytes as u64);

    let g = store.get("bt", 1, 3, 100).unwrap();
    assert_eq!(g.len(), 10);
    assert_eq!(g.next_offset(), 13);
    let mut off = start;
    for (i, v) in g.messages().enumerate() {
        assert_view_matches(
            &v,
            &specs[i],
            3 + i as u64,
            off,
            r.store_timestamp,
            store_host(),
        );
        off += sizes[i] as u64;
    }
    store.close().unwrap();
}

/// Puts filler messages until exactly `target` bytes (>= 8) remain in the active segment.
fn fill_until_remaining(store: &Store, target: u64) {
    assert!(target >= 8);
    let base = Spec::new("fill", 0, Vec::new()).record_len(store_host()) as u64;
    let remaining = || SEG - store.commitlog_max_offset() % SEG;
    while remaining() - target - base > MAX_BODY as u64 {
        store
            .put(&Spec::new("fill", 0, vec![9u8; 3000]).message())
            .unwrap();
    }
    let pad = remaining() - target - base;
    store
        .put(&Spec::new("fill", 0, vec![8u8; pad as usize]).message())
        .unwrap();
    assert_eq!(remaining(), target);
}

#[test]
fn a_record_may_end_exactly_8_bytes_before_its_segment_end_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let s = Spec::new("edge", 0, vec![5u8; 100]);
    let len = s.record_len(store_host()) as u64;
    fill_until_remaining(&store, len + 8);
    let r = store.put(&s.message()).unwrap();
    assert_eq!(
        r.commitlog_offset,
        SEG - 8 - len,
        "fits with exactly 8 bytes to spare"
    );
    assert_eq!(store.commitlog_max_offset(), SEG - 8);
    let snap = snapshot(&store);
    store.close().unwrap();
    drop(store);
    let store = Store::open(dir.path(), tiny()).unwrap();
    assert_eq!(snapshot(&store), snap);
    let r = store.put(&s.message()).unwrap();
    assert_eq!(r.commitlog_offset, SEG, "the next record rolls");
    let seg0 = std::fs::read(dir.path().join("commitlog").join(format!("{:020}", 0))).unwrap();
    assert_eq!(u32_at(&seg0, (SEG - 8) as usize), 8, "8-byte BLANK");
    assert_eq!(u32_at(&seg0, (SEG - 4) as usize), MAGIC_BLANK);
    assert_eq!(walk_commitlog(&store).len(), snap.records.len() + 1);
}

#[test]
fn a_record_that_would_leave_7_bytes_goes_to_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let s = Spec::new("edge", 0, vec![5u8; 100]);
    let len = s.record_len(store_host()) as u64;
    fill_until_remaining(&store, len + 7);
    let r = store.put(&s.message()).unwrap();
    assert_eq!(r.commitlog_offset, SEG);
    let seg0 = std::fs::read(dir.path().join("commitlog").join(format!("{:020}", 0))).unwrap();
    let pos = (SEG - len - 7) as usize;
    assert_eq!(u32_at(&seg0, pos), (len + 7) as u32);
    assert_eq!(u32_at(&seg0, pos + 4), MAGIC_BLANK);
    assert!(seg0[pos + 8..].iter().all(|&b| b == 0));
}

#[test]
fn put_batch_that_does_not_fit_goes_whole_into_the_next_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    fill_until_remaining(&store, 1000);
    let before = store.commitlog_max_offset();
    assert_eq!(SEG - before, 1000);
    // Four 300-byte messages: about 1.6 KiB together, more than what is left, though the first
    // one alone would fit.
    let specs: Vec<Spec> = (0..4)
        .map(|i| Spec::new("b", 2, vec![i as u8; 300]))
        .collect();
    let one = specs[0].record_len(store_host()) as u64;
    assert!(before + one + 8 <= SEG, "the first record alone would fit");
    let msgs: Vec<_> = specs.iter().map(Spec::message).collect();
    let r = store.put_batch(&msgs).unwrap();
    assert_eq!(
        r.commitlog_offset, SEG,
        "the whole batch moved to segment 1"
    );
    assert_eq!(r.queue_offset, 0);
    // The old segment's tail is one BLANK record.
    let seg0 = std::fs::read(dir.path().join("commitlog").join(format!("{:020}", 0))).unwrap();
    let pos = before as usize;
    assert_eq!(u32_at(&seg0, pos), (SEG - before) as u32);
    assert_eq!(u32_at(&seg0, pos + 4), MAGIC_BLANK);
    for (i, v) in store.get("b", 2, 0, 10).unwrap().messages().enumerate() {
        assert_eq!(v.commitlog_offset(), SEG + i as u64 * one);
        assert_eq!(v.body(), &[i as u8; 300][..]);
    }
}

#[test]
fn put_batch_mixing_queues_or_topics_is_rejected_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    store
        .put(&Spec::new("m", 0, b"a".to_vec()).message())
        .unwrap();
    let end = store.commitlog_max_offset();
    let a = Spec::new("m", 0, b"x".to_vec());
    let other_queue = Spec::new("m", 1, b"y".to_vec());
    let other_topic = Spec::new("n", 0, b"z".to_vec());
    for bad in [&other_queue, &other_topic] {
        let err = store
            .put_batch(&[a.message(), a.message(), bad.message()])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }
    assert_eq!(store.commitlog_max_offset(), end);
    assert_eq!(store.max_offset("m", 0).unwrap(), 1);
    assert_eq!(store.queue_ids("m"), vec![0]);
    assert_eq!(store.topics(), vec!["m".to_string()]);
    let r = store.put(&a.message()).unwrap();
    assert_eq!((r.queue_offset, r.commitlog_offset), (1, end));
}

fn three_segment_store(dir: &Path) -> (Store, Vec<Put>) {
    let store = Store::open(dir, tiny()).unwrap();
    let mut rng = Rng::new(3);
    let specs = (0..200)
        .map(|i| {
            let mut s = varied_spec(&mut rng, "r", (i % 2) as i32, i);
            s.body = rng.bytes(1500 + i % 100);
            s
        })
        .collect();
    let puts = put_all(&store, specs);
    assert!(store.commitlog_max_offset() > 2 * SEG);
    (store, puts)
}

#[test]
fn read_at_returns_no_record_at_for_offsets_that_are_not_record_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (store, puts) = three_segment_store(dir.path());
    let end = store.commitlog_max_offset();
    let no_record = |off: u64| match store.read_at(off) {
        Err(Error::NoRecordAt { offset, min, max }) => {
            assert_eq!(
                (offset, min, max),
                (off, 0, end),
                "NoRecordAt fields for {off}"
            );
        }
        other => panic!("read_at({off}) = {other:?}, expected NoRecordAt"),
    };
    // At and past the end.
    no_record(end);
    no_record(end + 1);
    no_record(end + 10 * SEG);
    no_record(u64::MAX);
    // The BLANK record at the end of segment 0.
    let blank = puts
        .iter()
        .filter(|p| p.commitlog_offset < SEG)
        .map(|p| p.commitlog_offset + p.size as u64)
        .max()
        .unwrap();
    assert!(blank < SEG - 8);
    no_record(blank);
}

#[test]
fn read_at_inside_a_record_is_no_record_at() {
    let dir = tempfile::tempdir().unwrap();
    let (store, puts) = three_segment_store(dir.path());
    let p = &puts[5];
    for delta in [1u64, 4, 20, 28, 88, p.size as u64 - 1] {
        let off = p.commitlog_offset + delta;
        match store.read_at(off) {
            Err(Error::NoRecordAt { offset, .. }) => assert_eq!(offset, off),
            other => panic!("read_at({off}) (inside a record, +{delta}) = {other:?}"),
        }
    }
    // Inside the zero-filled part of segment 0's BLANK tail.
    match store.read_at(SEG - 8) {
        Err(Error::NoRecordAt { offset, .. }) => assert_eq!(offset, SEG - 8),
        other => panic!("read_at({}) (inside the BLANK tail) = {other:?}", SEG - 8),
    }
}

#[test]
fn get_statuses_for_unknown_queue_and_offsets_at_and_past_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    for i in 0..5u8 {
        store.put(&Spec::new("s", 2, vec![i]).message()).unwrap();
    }
    let check = |topic: &str, q: i32, off: u64, status, next, min, max, n| {
        let g = store.get(topic, q, off, 32).unwrap();
        assert_eq!(
            (
                g.status(),
                g.next_offset(),
                g.min_offset(),
                g.max_offset(),
                g.len()
            ),
            (status, next, min, max, n),
            "get({topic}, {q}, {off})"
        );
        assert_eq!(g.is_empty(), n == 0);
    };
    check("nope", 0, 0, GetStatus::NoMatchedLogicQueue, 0, 0, 0, 0);
    check("s", 0, 0, GetStatus::NoMatchedLogicQueue, 0, 0, 0, 0);
    check("s", 2, 5, GetStatus::OffsetOverflowOne, 5, 0, 5, 0);
    check("s", 2, 6, GetStatus::OffsetOverflowBadly, 5, 0, 5, 0);
    check("s", 2, u64::MAX, GetStatus::OffsetOverflowBadly, 5, 0, 5, 0);
    check("s", 2, 0, GetStatus::Found, 5, 0, 5, 5);
    check("s", 2, 3, GetStatus::Found, 5, 0, 5, 2);
    let g = store.get("s", 2, 3, 32).unwrap();
    let bodies: Vec<&[u8]> = g.messages().map(|m| m.body()).collect();
    assert_eq!(bodies, vec![&[3u8][..], &[4u8][..]]);
    assert_eq!(store.min_offset("nope", 0).unwrap(), 0);
    assert_eq!(store.max_offset("nope", 0).unwrap(), 0);
    // OffsetTooSmall needs retention (min > 0): not reachable through this API.
}

#[test]
fn get_on_an_existing_queue_without_messages_is_no_message_in_queue() {
    // A queue exists but never held a message: its directory is present with no files.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    store
        .put(&Spec::new("e", 0, b"x".to_vec()).message())
        .unwrap();
    store.close().unwrap();
    drop(store);
    std::fs::create_dir_all(dir.path().join("consumequeue/e/5")).unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    assert!(store.recovery_report().clean_shutdown);
    assert_eq!(store.queue_ids("e"), vec![0, 5]);
    let g = store.get("e", 5, 0, 32).unwrap();
    assert_eq!(
        (
            g.status(),
            g.next_offset(),
            g.min_offset(),
            g.max_offset(),
            g.len()
        ),
        (GetStatus::NoMessageInQueue, 0, 0, 0, 0)
    );
    let r = store
        .put(&Spec::new("e", 5, b"y".to_vec()).message())
        .unwrap();
    assert_eq!(r.queue_offset, 0);
    assert_eq!(store.get("e", 5, 0, 32).unwrap().status(), GetStatus::Found);
}

#[test]
fn get_pages_across_consume_queue_file_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    for i in 0..250u32 {
        store
            .put(&Spec::new("p", 0, i.to_be_bytes().to_vec()).message())
            .unwrap();
    }
    let g = store.get("p", 0, 95, 32).unwrap();
    assert_eq!(g.status(), GetStatus::Found);
    assert_eq!(g.len(), 32);
    assert_eq!(g.next_offset(), 127);
    for (i, m) in g.messages().enumerate() {
        assert_eq!(m.queue_offset(), 95 + i as u64);
        assert_eq!(m.body(), &(95 + i as u32).to_be_bytes());
    }
    let g = store.get("p", 0, 0, 1000).unwrap();
    assert_eq!(g.len(), 250, "one get may span several ConsumeQueue files");
}

#[test]
fn max_messages_and_max_bytes_bound_a_get_but_the_first_message_always_comes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let mut sizes = Vec::new();
    for i in 0..20usize {
        let s = Spec::new("b", 0, vec![1u8; 100 + i * 50]);
        sizes.push(store.put(&s.message()).unwrap().wrote_bytes);
    }
    let get = |off: u64, max_messages: usize, max_bytes: usize| {
        store
            .get_with(
                "b",
                0,
                off,
                &GetOptions {
                    max_messages,
                    max_bytes,
                    ..GetOptions::default()
                },
            )
            .unwrap()
    };
    let g = get(2, 3, usize::MAX);
    assert_eq!((g.len(), g.next_offset()), (3, 5));
    // A budget smaller than the first message still returns that message.
    let g = get(4, 32, 1);
    assert_eq!(
        (g.status(), g.len(), g.next_offset()),
        (GetStatus::Found, 1, 5)
    );
    assert_eq!(g.total_bytes(), sizes[4]);
    // Exactly two messages' worth: two; one byte less: one.
    let two = sizes[4] + sizes[5];
    let g = get(4, 32, two);
    assert_eq!((g.len(), g.next_offset(), g.total_bytes()), (2, 6, two));
    let g = get(4, 32, two - 1);
    assert_eq!((g.len(), g.next_offset()), (1, 5));
    // The default budget (256 KiB) does not cut 20 small messages.
    let g = store.get("b", 0, 0, 100).unwrap();
    assert_eq!((g.len(), g.next_offset()), (20, 20));
}

#[test]
fn a_get_of_zero_messages_returns_none_and_consumes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    for i in 0..5u32 {
        store
            .put(&Spec::new("z", 0, i.to_be_bytes().to_vec()).message())
            .unwrap();
    }
    let zero = |off: u64| {
        let g = store.get_with("z", 0, off, &GetOptions::new(0)).unwrap();
        assert!(
            g.is_empty(),
            "max_messages 0 at {off} returned {} message(s)",
            g.len()
        );
        assert_eq!(g.messages().count(), 0);
        assert_eq!(g.total_bytes(), 0);
        assert_eq!((g.min_offset(), g.max_offset()), (0, 5));
        (g.status(), g.next_offset())
    };
    // Within the queue: a message is there, none is read, next_offset stays put.
    assert_eq!(zero(0), (GetStatus::Found, 0));
    assert_eq!(zero(3), (GetStatus::Found, 3));
    // Outside it: the usual bounds statuses and where to continue.
    assert_eq!(zero(5), (GetStatus::OffsetOverflowOne, 5));
    assert_eq!(zero(9), (GetStatus::OffsetOverflowBadly, 5));
    // The plain `get` takes the same path.
    let g = store.get("z", 0, 2, 0).unwrap();
    assert_eq!(
        (g.status(), g.len(), g.next_offset()),
        (GetStatus::Found, 0, 2)
    );
    // Unknown queues and empty ones are unchanged.
    let g = store.get("z", 1, 0, 0).unwrap();
    assert_eq!((g.status(), g.len()), (GetStatus::NoMatchedLogicQueue, 0));
    // And one message is still one message.
    let g = store.get("z", 0, 2, 1).unwrap();
    assert_eq!(
        (g.status(), g.len(), g.next_offset()),
        (GetStatus::Found, 1, 3)
    );
}

fn tagged_store(dir: &Path, n: usize) -> Store {
    let store = Store::open(dir, tiny()).unwrap();
    let tags = [Some("TagA"), Some("TagB"), Some("TagC"), None];
    for i in 0..n {
        let mut s = Spec::new("tf", 0, (i as u32).to_be_bytes().to_vec());
        s.tags = tags[i % 4].map(Into::into);
        store.put(&s.message()).unwrap();
    }
    store
}

fn filtered(store: &Store, expr: &str, off: u64, max: usize) -> (GetStatus, u64, Vec<u32>) {
    let g = store
        .get_with(
            "tf",
            0,
            off,
            &GetOptions {
                tag_filter: Some(TagFilter::parse(expr)),
                ..GetOptions::new(max)
            },
        )
        .unwrap();
    let ids = g
        .messages()
        .map(|m| u32::from_be_bytes(m.body().try_into().unwrap()))
        .collect();
    (g.status(), g.next_offset(), ids)
}

#[test]
fn tag_filter_returns_only_matching_tags_and_advances_past_skipped_units() {
    let dir = tempfile::tempdir().unwrap();
    let store = tagged_store(dir.path(), 40);
    assert_eq!(
        filtered(&store, "TagA || TagB", 0, 4),
        (GetStatus::Found, 6, vec![0, 1, 4, 5])
    );
    assert_eq!(
        filtered(&store, " TagC||TagA ", 1, 3),
        (GetStatus::Found, 7, vec![2, 4, 6])
    );
    assert_eq!(
        filtered(&store, "*", 0, 100),
        (GetStatus::Found, 40, (0..40).collect())
    );
    assert_eq!(
        filtered(&store, "", 38, 100),
        (GetStatus::Found, 40, vec![38, 39])
    );
    // Nothing matches: NoMatchedMessage and the whole queue was skipped.
    assert_eq!(
        filtered(&store, "TagZ", 0, 32),
        (GetStatus::NoMatchedMessage, 40, vec![])
    );
    assert_eq!(
        filtered(&store, "TagZ", 17, 32),
        (GetStatus::NoMatchedMessage, 40, vec![])
    );
}

#[test]
fn tag_filter_with_no_match_in_a_long_queue_makes_progress_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = tagged_store(dir.path(), 2000);
    let mut off = 0;
    let mut rounds = 0;
    while off < 2000 {
        let (status, next, ids) = filtered(&store, "TagZ", off, 32);
        assert_eq!(status, GetStatus::NoMatchedMessage);
        assert!(ids.is_empty());
        assert!(next > off && next <= 2000, "next {next} after {off}");
        off = next;
        rounds += 1;
        assert!(rounds <= 2000);
    }
    assert_eq!(
        filtered(&store, "TagZ", 2000, 32).0,
        GetStatus::OffsetOverflowOne
    );
}

#[test]
fn tag_filter_does_not_confuse_tags_with_equal_java_hashes() {
    // "Aa" and "BB" have the same Java hashCode (2112), so the ConsumeQueue tags codes are equal.
    assert_eq!(java_hash("Aa"), java_hash("BB"));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    for (i, t) in ["Aa", "BB", "Aa", "BB", "BB"].iter().enumerate() {
        let mut s = Spec::new("tf", 0, (i as u32).to_be_bytes().to_vec());
        s.tags = Some((*t).into());
        store.put(&s.message()).unwrap();
    }
    assert_eq!(
        filtered(&store, "Aa", 0, 32),
        (GetStatus::Found, 5, vec![0, 2])
    );
    assert_eq!(
        filtered(&store, "BB", 0, 32),
        (GetStatus::Found, 5, vec![1, 3, 4])
    );
    assert_eq!(
        filtered(&store, "BB", 4, 32),
        (GetStatus::Found, 5, vec![4])
    );
    assert_eq!(
        filtered(&store, "Aa", 3, 32),
        (GetStatus::NoMatchedMessage, 5, vec![])
    );
}

#[test]
fn gets_detect_a_flipped_body_byte_unless_verification_is_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let (store, puts) = three_segment_store(dir.path());
    let verified = |off: u64| {
        store.get_with(
            "r",
            1,
            off,
            &GetOptions {
                verify_crc: true,
                ..GetOptions::new(1)
            },
        )
    };
    // Every record passes verification while intact.
    let mut off = 0;
    while off < store.max_offset("r", 1).unwrap() {
        let g = verified(off).unwrap();
        assert_eq!(g.status(), GetStatus::Found);
        off = g.next_offset();
    }
    // Flip one body byte of a record in segment 1 behind the store's back.
    let victim = puts
        .iter()
        .find(|p| p.spec.queue_id == 1 && p.commitlog_offset > SEG && !p.spec.body.is_empty())
        .unwrap();
    let host_len = |h: Option<SocketAddr>| {
        if h.is_some_and(|h| h.is_ipv6()) {
            20
        } else {
            8
        }
    };
    let body_pos = 72 + host_len(victim.spec.born_host) + 8;
    let path = dir
        .path()
        .join("commitlog")
        .join(format!("{:020}", victim.commitlog_offset / SEG * SEG));
    let at = victim.commitlog_offset % SEG + body_pos as u64;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[victim.spec.body[0] ^ 0xFF], at).unwrap();
    }
    match verified(victim.queue_offset) {
        Err(Error::CorruptRecord {
            path: p, offset, ..
        }) => {
            assert_eq!(p, path);
            assert_eq!(offset, victim.commitlog_offset);
        }
        other => panic!("verified get of a corrupted record: {other:?}"),
    }
    assert!(matches!(
        store.read_at(victim.commitlog_offset),
        Err(Error::CorruptRecord { .. })
    ));
    // The default get checks too.
    assert!(matches!(
        store.get("r", 1, victim.queue_offset, 1),
        Err(Error::CorruptRecord { offset, .. }) if offset == victim.commitlog_offset
    ));
    // A batch that starts before the damaged message returns the messages up to it, and the
    // next get, at the damaged one, fails.
    assert!(victim.queue_offset > 0, "the victim is in segment 1");
    let g = store.get("r", 1, victim.queue_offset - 1, 32).unwrap();
    assert_eq!(g.status(), GetStatus::Found);
    assert_eq!(g.len(), 1);
    assert_eq!(g.next_offset(), victim.queue_offset);
    // Without verification the (corrupted) bytes come back as stored.
    let unverified = GetOptions {
        verify_crc: false,
        ..GetOptions::new(1)
    };
    let g = store
        .get_with("r", 1, victim.queue_offset, &unverified)
        .unwrap();
    let v = g.messages().next().unwrap();
    assert_eq!(v.body()[0], victim.spec.body[0] ^ 0xFF);
    assert_eq!(v.body()[1..], victim.spec.body[1..]);
    // Neighbours are unaffected.
    assert_eq!(verified(victim.queue_offset + 1).unwrap().len(), 1);
}

/// `max_queues_per_topic` may be as large as `i32::MAX`: puts to huge and to small queue ids of
/// one topic each find their own queue (the put path indexes small ids and maps large ones; a
/// vector sized by the id would need gigabytes).
#[test]
fn puts_to_huge_queue_ids_find_their_queues() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        max_queues_per_topic: i32::MAX as u32,
        ..StoreConfig::small()
    };
    let store = Store::open(dir.path(), config).unwrap();
    let ids = [0, 4095, 4096, 1_000_000_000, i32::MAX - 1, 7];
    for round in 0..3u64 {
        for &q in &ids {
            let body = format!("{q}/{round}");
            let r = store
                .put(&Message::new("huge", q, body.as_bytes()))
                .unwrap();
            assert_eq!(r.queue_offset, round, "queue {q}");
        }
    }
    for &q in &ids {
        assert_eq!(store.max_offset("huge", q).unwrap(), 3, "queue {q}");
        let got = store.get("huge", q, 0, 8).unwrap();
        let bodies: Vec<Vec<u8>> = got.messages().map(|m| m.body().to_vec()).collect();
        let want: Vec<Vec<u8>> = (0..3).map(|r| format!("{q}/{r}").into_bytes()).collect();
        assert_eq!(bodies, want, "queue {q}");
    }
    store.close().unwrap();
}
