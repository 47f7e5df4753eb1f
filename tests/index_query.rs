//! Key queries through the IndexFile: rolls, hash collisions, ordering, caps, time ranges,
//! UNIQ_KEY, topic separation and persistence.

mod common;

use common::*;
use rocketstore::{Error, Message, Store, StoreConfig, MAX_QUERY_RESULTS};

/// Commitlog offsets of a query, in the order returned.
fn query(store: &Store, topic: &str, key: &str, begin: i64, end: i64, max: usize) -> Vec<u64> {
    let hits = store.query_by_key(topic, key, begin, end, max).unwrap();
    for h in &hits {
        let v = h.view();
        assert_eq!(v.topic(), topic);
        assert!(
            v.keys().any(|k| k == key) || v.property("UNIQ_KEY") == Some(key),
            "hit at {} does not carry key {key}",
            v.commitlog_offset()
        );
        assert!(v.store_timestamp() >= begin && v.store_timestamp() <= end);
    }
    hits.iter().map(|h| h.view().commitlog_offset()).collect()
}

fn all(store: &Store, topic: &str, key: &str) -> Vec<u64> {
    query(store, topic, key, 0, i64::MAX, MAX_QUERY_RESULTS)
}

const INDEX_FILE_LEN: u64 = 40 + INDEX_SLOTS as u64 * 4 + INDEX_ENTRIES as u64 * 20;

#[test]
fn every_key_is_found_across_index_file_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let mut offsets = Vec::new();
    let mut entries = 0u64;
    for i in 0..1000u32 {
        let key = format!("key-{i}");
        let uniq = format!("UNIQ{i:06}");
        let mut m = Message::new("idx", (i % 3) as i32, b"v").with_keys([key.as_str()]);
        entries += 1;
        if i % 3 == 0 {
            m = m.with_property("UNIQ_KEY", uniq.as_str());
            entries += 1;
        }
        offsets.push(store.put(&m).unwrap().commitlog_offset);
    }
    // Files: 17-digit names (yyyyMMddHHmmssSSS), strictly increasing, all the same size, 199
    // entries each but the last.
    let files = list_dir(&dir.path().join("index"));
    let per_file = INDEX_ENTRIES as u64 - 1;
    assert_eq!(files.len() as u64, entries.div_ceil(per_file), "{files:?}");
    for (k, (name, len)) in files.iter().enumerate() {
        assert_eq!(name.len(), 17, "{name}");
        assert!(name.bytes().all(|b| b.is_ascii_digit()), "{name}");
        assert_eq!(*len, INDEX_FILE_LEN, "{name}");
        let bytes = std::fs::read(dir.path().join("index").join(name)).unwrap();
        let index_count = u32::from_be_bytes(bytes[36..40].try_into().unwrap()) as u64;
        let want = if k + 1 < files.len() {
            INDEX_ENTRIES as u64
        } else {
            entries - per_file * (files.len() as u64 - 1) + 1
        };
        assert_eq!(index_count, want, "indexCount of {name}");
    }
    for (i, &off) in offsets.iter().enumerate() {
        assert_eq!(
            all(&store, "idx", &format!("key-{i}")),
            vec![off],
            "key-{i}"
        );
        if i % 3 == 0 {
            assert_eq!(all(&store, "idx", &format!("UNIQ{i:06}")), vec![off]);
        }
    }
    assert!(all(&store, "idx", "key-1000").is_empty());
    assert!(all(&store, "idx", "").is_empty());
}

/// Two groups of keys whose `t#key` strings collide: "Aa" and "BB" have one Java hash, and so do
/// the four 4-character concatenations of them.
const COLLIDING: [&str; 6] = ["Aa", "BB", "AaAa", "BBBB", "AaBB", "BBAa"];

#[test]
fn colliding_keys_never_return_each_other() {
    assert_eq!(java_hash("t#Aa"), java_hash("t#BB"));
    for k in &COLLIDING[3..] {
        assert_eq!(java_hash(&format!("t#{k}")), java_hash("t#AaAa"));
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let mut want: Vec<Vec<u64>> = vec![Vec::new(); COLLIDING.len()];
    for round in 0..5 {
        for (k, key) in COLLIDING.iter().enumerate() {
            if (round + k) % 2 == 0 {
                let r = store
                    .put(&Message::new("t", 0, b"c").with_keys([*key]))
                    .unwrap();
                want[k].insert(0, r.commitlog_offset);
            }
        }
    }
    for (k, key) in COLLIDING.iter().enumerate() {
        assert_eq!(all(&store, "t", key), want[k], "key {key}");
    }
}

#[test]
fn a_key_is_found_behind_many_newer_entries_of_a_colliding_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let aa = store
        .put(&Message::new("t", 0, b"a").with_keys(["Aa"]))
        .unwrap()
        .commitlog_offset;
    for _ in 0..100 {
        store
            .put(&Message::new("t", 0, b"b").with_keys(["BB"]))
            .unwrap();
    }
    assert_eq!(query(&store, "t", "Aa", 0, i64::MAX, 64), vec![aa]);
    assert_eq!(query(&store, "t", "Aa", 0, i64::MAX, 10), vec![aa]);
    assert_eq!(query(&store, "t", "Aa", 0, i64::MAX, 1), vec![aa]);
}

#[test]
fn with_one_hash_slot_every_key_shares_a_chain_and_results_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            index_hash_slots: 1,
            ..tiny()
        },
    )
    .unwrap();
    let mut want: Vec<Vec<u64>> = vec![Vec::new(); 50];
    for i in 0..600usize {
        let k = (i * 7) % 50;
        let r = store
            .put(&Message::new("one", 0, b"x").with_keys([format!("k{k}")]))
            .unwrap();
        want[k].insert(0, r.commitlog_offset);
    }
    assert!(list_dir(&dir.path().join("index")).len() >= 3);
    for (k, w) in want.iter().enumerate() {
        assert_eq!(all(&store, "one", &format!("k{k}")), *w, "k{k}");
    }
}

#[test]
fn results_are_newest_first_and_capped_at_64() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let mut hot = Vec::new();
    for i in 0..500u32 {
        let mut keys = vec![format!("other{i}")];
        if i % 4 == 1 {
            keys.push("hot".into());
        }
        let r = store
            .put(&Message::new("h", 0, &i.to_be_bytes()).with_keys(keys))
            .unwrap();
        if i % 4 == 1 {
            hot.push(r.commitlog_offset);
        }
    }
    hot.reverse();
    assert_eq!(hot.len(), 125);
    assert_eq!(MAX_QUERY_RESULTS, 64);
    assert_eq!(query(&store, "h", "hot", 0, i64::MAX, 1000), hot[..64]);
    assert_eq!(query(&store, "h", "hot", 0, i64::MAX, 64), hot[..64]);
    assert_eq!(query(&store, "h", "hot", 0, i64::MAX, 10), hot[..10]);
    assert_eq!(query(&store, "h", "hot", 0, i64::MAX, 1), hot[..1]);
    assert!(query(&store, "h", "hot", 0, i64::MAX, 0).is_empty());
}

#[test]
fn time_range_selects_by_store_timestamp_inclusively() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    // Three groups with distinct store times (the clock is spun past the previous group's
    // time); each message carries "tk". Other keys fill the index in between.
    let mut puts: Vec<(u64, i64)> = Vec::new();
    for g in 0..3u8 {
        if let Some(&(_, t)) = puts.last() {
            spin_past(t);
        }
        for i in 0..4u8 {
            let r = store
                .put(&Message::new("tr", 0, &[g, i]).with_keys(["tk"]))
                .unwrap();
            puts.push((r.commitlog_offset, r.store_timestamp));
            store
                .put(&Message::new("tr", 1, &[g, i]).with_keys([format!("noise{g}{i}")]))
                .unwrap();
        }
    }
    let mut times: Vec<i64> = puts.iter().map(|p| p.1).collect();
    times.dedup();
    assert!(times.len() >= 3, "{times:?}");
    let mut bounds: Vec<i64> = times.iter().flat_map(|&t| [t - 1, t, t + 1]).collect();
    bounds.extend([
        0,
        i64::MAX,
        times[0] - 10_000,
        times[times.len() - 1] + 10_000,
    ]);
    for &b in &bounds {
        for &e in &bounds {
            let want: Vec<u64> = puts
                .iter()
                .rev()
                .filter(|p| p.1 >= b && p.1 <= e)
                .map(|p| p.0)
                .collect();
            assert_eq!(
                query(&store, "tr", "tk", b, e, 64),
                want,
                "range [{b}, {e}]"
            );
        }
    }
}

#[test]
fn index_times_are_whole_seconds_but_queries_are_exact_to_the_millisecond() {
    // The IndexFile stores (store time - file begin) in whole seconds; the query must still
    // honour the exact millisecond bounds. Spin 1.5 s so the second message's entry has a
    // non-zero, truncated time difference.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let a = store
        .put(&Message::new("s", 0, b"a").with_keys(["k"]))
        .unwrap();
    spin_past(a.store_timestamp + 1500);
    let b = store
        .put(&Message::new("s", 0, b"b").with_keys(["k"]))
        .unwrap();
    let (ta, tb) = (a.store_timestamp, b.store_timestamp);
    assert!(tb - ta >= 1500);
    let (oa, ob) = (a.commitlog_offset, b.commitlog_offset);
    let q = |begin, end| query(&store, "s", "k", begin, end, 64);
    assert_eq!(q(0, i64::MAX), vec![ob, oa]);
    assert_eq!(q(tb, tb), vec![ob]);
    assert_eq!(q(tb, i64::MAX), vec![ob]);
    assert_eq!(q(ta, ta), vec![oa]);
    assert_eq!(q(0, ta), vec![oa]);
    assert_eq!(q(ta + 1, tb - 1), Vec::<u64>::new());
    assert_eq!(q(ta + 1000, tb - 1), Vec::<u64>::new());
    assert_eq!(q(tb + 1, i64::MAX), Vec::<u64>::new());
    assert_eq!(q(ta, tb), vec![ob, oa]);
}

#[test]
fn uniq_key_and_every_key_of_a_message_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let a = store
        .put(
            &Message::new("u", 0, b"a")
                .with_keys(["k1", "k2", "k3"])
                .with_property("UNIQ_KEY", "7F0000010001"),
        )
        .unwrap()
        .commitlog_offset;
    let b = store
        .put(&Message::new("u", 1, b"b").with_property("UNIQ_KEY", "other-uniq"))
        .unwrap()
        .commitlog_offset;
    for k in ["k1", "k2", "k3", "7F0000010001"] {
        assert_eq!(all(&store, "u", k), vec![a], "{k}");
    }
    assert_eq!(all(&store, "u", "other-uniq"), vec![b]);
    // A plain user property is not a key.
    store
        .put(&Message::new("u", 0, b"c").with_property("source", "web"))
        .unwrap();
    assert!(all(&store, "u", "web").is_empty());
}

#[test]
fn keys_of_another_topic_are_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    let x = store
        .put(&Message::new("x", 0, b"x").with_keys(["k"]))
        .unwrap()
        .commitlog_offset;
    let y = store
        .put(&Message::new("y", 0, b"y").with_keys(["k"]))
        .unwrap()
        .commitlog_offset;
    assert_eq!(all(&store, "x", "k"), vec![x]);
    assert_eq!(all(&store, "y", "k"), vec![y]);
    assert!(all(&store, "z", "k").is_empty());
    // Topics whose `topic#key` strings collide: "Aa#k" and "BB#k".
    assert_eq!(java_hash("Aa#k"), java_hash("BB#k"));
    let aa = store
        .put(&Message::new("Aa", 0, b"1").with_keys(["k"]))
        .unwrap()
        .commitlog_offset;
    let bb = store
        .put(&Message::new("BB", 0, b"2").with_keys(["k"]))
        .unwrap()
        .commitlog_offset;
    assert_eq!(all(&store, "Aa", "k"), vec![aa]);
    assert_eq!(all(&store, "BB", "k"), vec![bb]);
}

#[test]
fn queries_give_the_same_results_after_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), tiny()).unwrap();
    for i in 0..900u32 {
        let mut keys = vec![format!("r{}", i % 150)];
        if i % 10 == 0 {
            keys.push(COLLIDING[(i / 10) as usize % 6].into());
        }
        store
            .put(&Message::new("re", (i % 2) as i32, &i.to_be_bytes()).with_keys(keys))
            .unwrap();
    }
    let keys: Vec<String> = (0..150)
        .map(|k| format!("r{k}"))
        .chain(COLLIDING.iter().map(|k| k.to_string()))
        .collect();
    let before: Vec<Vec<u64>> = keys.iter().map(|k| all(&store, "re", k)).collect();
    assert!(before[..150].iter().all(|r| r.len() == 6));
    assert!(before[150..].iter().all(|r| r.len() == 15));
    store.close().unwrap();
    drop(store);
    let store = Store::open(dir.path(), tiny()).unwrap();
    assert!(store.recovery_report().clean_shutdown);
    let after: Vec<Vec<u64>> = keys.iter().map(|k| all(&store, "re", k)).collect();
    assert_eq!(after, before);
    // New entries after the reopen join the old ones.
    let n = store
        .put(&Message::new("re", 0, b"new").with_keys(["r0"]))
        .unwrap()
        .commitlog_offset;
    let r0 = all(&store, "re", "r0");
    assert_eq!(r0[0], n);
    assert_eq!(r0[1..], before[0][..]);
}

#[test]
fn query_with_the_index_disabled_is_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            index_enabled: false,
            ..tiny()
        },
    )
    .unwrap();
    store
        .put(&Message::new("n", 0, b"x").with_keys(["k"]))
        .unwrap();
    assert!(matches!(
        store.query_by_key("n", "k", 0, i64::MAX, 10),
        Err(Error::InvalidArgument(_))
    ));
    assert!(!dir.path().join("index").exists() || list_dir(&dir.path().join("index")).is_empty());
}
