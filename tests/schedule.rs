//! Scheduled delivery (RocketMQ's delay levels, and exact delivery times) on a manual clock:
//! a 2 h level is tested in microseconds.

#[path = "support/crash.rs"]
mod crash;

use std::time::Duration;

use rocketstore::clock::{Clock, ManualClock};
use rocketstore::format::schedule::SCHEDULE_TOPIC;
use rocketstore::{Error, Message, Store, StoreConfig};
use rocketstore_test_support::copy_tree;

const T: &str = "orders";
const START: i64 = 1_700_000_000_000;

fn config(clock: &ManualClock) -> StoreConfig {
    StoreConfig {
        clock: Clock::manual(clock.clone()),
        ..StoreConfig::small()
    }
}

/// Bodies in queue `q` of `T`.
fn bodies(store: &Store, q: i32) -> Vec<String> {
    let got = store.get(T, q, 0, 1000).unwrap();
    got.messages()
        .map(|m| String::from_utf8(m.body().to_vec()).unwrap())
        .collect()
}

#[test]
fn a_delayed_message_is_delivered_when_its_level_is_due_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let store = Store::open(dir.path(), config(&clock)).unwrap();
    let put = store
        .put(
            &Message::new(T, 2, b"in 10 s")
                .with_tags("TagA")
                .with_keys(["K1"])
                .with_property("UNIQ_KEY", "ID-1")
                .with_delay_level(3),
        )
        .unwrap();
    // Stored in the schedule topic's queue for level 3, due 10 s after its store time.
    let stored = store.read_at(put.commitlog_offset).unwrap();
    assert_eq!(stored.view().topic(), SCHEDULE_TOPIC);
    assert_eq!(stored.view().queue_id(), 2);
    assert_eq!(stored.view().property("REAL_TOPIC"), Some(T));
    assert_eq!(stored.view().property("REAL_QID"), Some("2"));
    assert!(bodies(&store, 2).is_empty());
    let stats = store.schedule_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].level, stats[0].pending), (3, 1));
    assert_eq!(stats[0].next_due_ms, Some(START + 10_000));

    clock.advance(Duration::from_millis(9_999));
    assert_eq!(store.deliver_due().unwrap().delivered, 0);
    assert!(bodies(&store, 2).is_empty(), "not before its time");
    clock.advance(Duration::from_millis(1));
    let pass = store.deliver_due().unwrap();
    assert_eq!((pass.delivered, pass.next_due_ms), (1, None));
    let got = store.get(T, 2, 0, 10).unwrap();
    let m = got.messages().next().unwrap();
    assert_eq!(m.body(), b"in 10 s");
    assert_eq!(m.tags(), Some("TagA"));
    assert_eq!(m.property("UNIQ_KEY"), Some("ID-1"), "the message id stays");
    assert_eq!(m.property("DELAY"), None);
    assert_eq!(
        m.property("REAL_TOPIC"),
        Some(T),
        "kept, as RocketMQ keeps it"
    );
    assert_eq!(m.store_timestamp(), START + 10_000, "a new store time");
    assert_eq!(
        store.query_by_key(T, "K1", 0, i64::MAX, 8).unwrap().len(),
        1
    );
    assert_eq!(store.schedule_stats()[0].pending, 0);
    assert_eq!(store.deliver_due().unwrap().delivered, 0, "delivered once");
}

#[test]
fn the_two_hour_level_and_every_level_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let store = Store::open(dir.path(), config(&clock)).unwrap();
    for level in [18, 1, 5] {
        store
            .put(&Message::new(T, 0, format!("level {level}").as_bytes()).with_delay_level(level))
            .unwrap();
    }
    clock.advance(Duration::from_secs(1));
    store.deliver_due().unwrap();
    assert_eq!(bodies(&store, 0), ["level 1"]);
    clock.advance(Duration::from_secs(59));
    store.deliver_due().unwrap();
    assert_eq!(bodies(&store, 0), ["level 1", "level 5"]);
    clock.advance(Duration::from_secs(7200 - 61));
    assert_eq!(store.deliver_due().unwrap().delivered, 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(store.deliver_due().unwrap().delivered, 1);
    assert_eq!(bodies(&store, 0), ["level 1", "level 5", "level 18"]);
}

#[test]
fn an_exact_delivery_time_hops_through_the_levels_and_arrives_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let store = Store::open(dir.path(), config(&clock)).unwrap();
    let at = START + 95_500;
    store
        .put(&Message::new(T, 1, b"at 95.5 s").with_deliver_time_ms(at))
        .unwrap();
    let mut hops = 0;
    // Step the clock 250 ms at a time: it must arrive at its time, never earlier.
    while bodies(&store, 1).is_empty() {
        assert!(clock_now(&clock) <= at, "late");
        let pass = store.deliver_due().unwrap();
        hops += pass.hops;
        if pass.delivered == 1 {
            assert_eq!(
                clock_now(&clock),
                at,
                "delivered when due, not before or after"
            );
            break;
        }
        clock.advance(Duration::from_millis(250));
    }
    // 60 s (level 5), then 30 s (level 4), then 5 s (level 2), then 0.5 s within level 1.
    assert_eq!(hops, 3);
    let got = store.get(T, 1, 0, 1).unwrap();
    let m = got.messages().next().unwrap();
    assert_eq!(m.property("TIMER_DELIVER_MS"), None);
    assert_eq!(m.store_timestamp(), at);
}

fn clock_now(c: &ManualClock) -> i64 {
    use rocketstore::clock::TimeSource;
    c.now_ms()
}

#[test]
fn bad_schedules_are_typed_errors_and_a_past_time_delivers_now() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let store = Store::open(dir.path(), config(&clock)).unwrap();
    let bad = [
        Message::new(T, 0, b"x").with_delay_level(0),
        Message::new(T, 0, b"x").with_delay_level(-2),
        Message::new(T, 0, b"x").with_property("DELAY", "soon"),
        Message::new(T, 0, b"x").with_delay_level(19),
        Message::new(T, 0, b"x").with_deliver_time_ms(START + 4 * 24 * 3600 * 1000),
        Message::new(T, 0, b"x")
            .with_delay_level(1)
            .with_deliver_time_ms(START + 5),
        Message::new(SCHEDULE_TOPIC, 0, b"x"),
    ];
    for m in &bad {
        let e = store.put(m).unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidProperty { .. }
                    | Error::InvalidArgument(_)
                    | Error::InvalidTopic { .. }
            ),
            "{m:?}: {e}"
        );
    }
    let batch = [
        Message::new(T, 0, b"a"),
        Message::new(T, 0, b"b").with_delay_level(1),
    ];
    assert!(matches!(
        store.put_batch(&batch),
        Err(Error::InvalidArgument(_))
    ));
    // A time already past: delivered now, without the property.
    store
        .put(&Message::new(T, 0, b"late").with_deliver_time_ms(START - 1))
        .unwrap();
    let got = store.get(T, 0, 0, 1).unwrap();
    let m = got.messages().next().unwrap();
    assert_eq!(m.body(), b"late");
    assert_eq!(m.property("TIMER_DELIVER_MS"), None);
    assert!(store.schedule_stats().is_empty(), "nothing was scheduled");
}

#[test]
fn progress_survives_a_crash_and_a_close_and_is_written_as_delay_offset_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    let clock = ManualClock::new(START);
    let store = Store::open(&root, config(&clock)).unwrap();
    for i in 0..3 {
        store
            .put(&Message::new(T, 0, format!("m{i}").as_bytes()).with_delay_level(2))
            .unwrap();
        clock.advance(Duration::from_secs(1));
    }
    // Due: m0 (stored at +0 s, due +5 s) once the clock reads +5 s.
    clock.set(START + 5_000);
    assert_eq!(store.deliver_due().unwrap().delivered, 1);
    store.flush().unwrap();
    // A crash: the root as the process leaves it, copied while open.
    let crashed = dir.path().join("crashed");
    copy_tree(&root, &crashed).unwrap();
    store.close().unwrap();
    let text = std::fs::read_to_string(root.join("config/delayOffset.json")).unwrap();
    assert_eq!(text, "{\n\t\"offsetTable\":{2:1}\n}");
    for r in [&root, &crashed] {
        let c = ManualClock::new(START + 7_000);
        let _ = std::fs::remove_file(r.join("lock"));
        let store = Store::open(r, config(&c)).unwrap();
        assert_eq!(store.schedule_stats()[0].pending, 2, "{}", r.display());
        assert_eq!(
            store.deliver_due().unwrap().delivered,
            2,
            "m1 and m2, not m0 again"
        );
        let got = store.get(T, 0, 0, 10).unwrap();
        let b: Vec<_> = got.messages().map(|m| m.body().to_vec()).collect();
        assert_eq!(b, [b"m0".to_vec(), b"m1".to_vec(), b"m2".to_vec()]);
        store.close().unwrap();
    }
}

#[test]
fn a_root_with_only_rocketmqs_delay_offset_json_resumes_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let store = Store::open(dir.path(), config(&clock)).unwrap();
    for i in 0..3 {
        store
            .put(&Message::new(T, 0, format!("m{i}").as_bytes()).with_delay_level(1))
            .unwrap();
    }
    store.close().unwrap();
    // As a broker leaves it: its progress file says level 1 delivered one message; no
    // commit records of ours.
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("delayOffset.json"),
        "{\"offsetTable\":{1:1}}",
    )
    .unwrap();
    let store = Store::open(dir.path(), config(&ManualClock::new(START + 2_000))).unwrap();
    assert_eq!(store.deliver_due().unwrap().delivered, 2);
    assert_eq!(bodies(&store, 0), ["m1", "m2"]);
    store.close().unwrap();
    // A corrupt file and no .bak: a typed error naming it, nothing delivered again silently.
    std::fs::write(config_dir.join("delayOffset.json"), "{\"offsetTable\":{1:").unwrap();
    let _ = std::fs::remove_file(config_dir.join("delayOffset.json.bak"));
    match Store::open(dir.path(), config(&clock)) {
        Err(Error::CorruptConfig { path, .. }) => {
            assert!(
                path.ends_with("config/delayOffset.json"),
                "{}",
                path.display()
            )
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// With the system clock the store's own thread delivers (no `deliver_due` call).
#[test]
fn the_delivery_thread_delivers_on_the_system_clock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::small()).unwrap();
    let put = store
        .put(&Message::new(T, 0, b"soon").with_delay_level(1))
        .unwrap();
    let r = store
        .get_waiting(
            T,
            0,
            0,
            &rocketstore::GetOptions::new(1),
            Duration::from_secs(5),
        )
        .unwrap();
    let m = r.messages().next().expect("delivered within 5 s");
    assert_eq!(m.body(), b"soon");
    assert!(m.store_timestamp() >= put.store_timestamp + 1000);
    store.close().unwrap();
}

/// A pass re-puts runs bound for one queue as batches: interleaved destinations keep each
/// queue's order, a pass stops at `MAX_PASS` and says so, and batches never outgrow a segment.
#[test]
fn a_pass_batches_runs_keeps_each_queues_order_and_stops_at_max_pass() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START);
    let store = Store::open(
        dir.path(),
        StoreConfig {
            commitlog_segment_size: 128 << 10,
            max_message_size: 16 << 10,
            ..config(&clock)
        },
    )
    .unwrap();
    let n = rocketstore::MAX_PASS + 904;
    for i in 0..n {
        // Runs of 1..=5 messages per destination, over two topics and three queues.
        let dest = (i / (1 + i % 5)) % 6;
        let topic = if dest < 3 { "a" } else { "b" };
        store
            .put(
                &Message::new(topic, (dest % 3) as i32, format!("{i:05}").as_bytes())
                    .with_keys([format!("K{i}")])
                    .with_delay_level(1),
            )
            .unwrap();
    }
    clock.advance(Duration::from_secs(1));
    let first = store.deliver_due().unwrap();
    assert_eq!((first.delivered, first.more), (rocketstore::MAX_PASS, true));
    let second = store.deliver_due().unwrap();
    assert_eq!((second.delivered, second.more), (904, false));
    let mut total = 0;
    for topic in ["a", "b"] {
        for q in 0..3 {
            let mut last = None;
            let mut at = 0;
            loop {
                let got = store.get(topic, q, at, 256).unwrap();
                if got.is_empty() {
                    break;
                }
                for m in got.messages() {
                    let i: usize = std::str::from_utf8(m.body()).unwrap().parse().unwrap();
                    assert!(last < Some(i), "{topic}:{q} out of order at {i}");
                    assert_eq!(m.keys().collect::<Vec<_>>(), [format!("K{i}")]);
                    last = Some(i);
                    total += 1;
                }
                at = got.next_offset();
            }
        }
    }
    assert_eq!(total, n, "every message once");
    assert!(
        store.stats().commitlog_segments > 1,
        "the batches rolled segments"
    );
}
