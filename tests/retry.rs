//! Retries through `%RETRY%group` and the schedule, dead letters in `%DLQ%group`, on a manual
//! clock (the 16 retries of RocketMQ's schedule, about 4 h 46 min, run in milliseconds).

use std::time::Duration;

use rocketstore::clock::{Clock, ManualClock};
use rocketstore::consumer::{Consumer, ConsumerConfig, MessageModel, StartFrom};
use rocketstore::format::schedule::DelayLevels;
use rocketstore::{Error, Message, Store, StoreConfig};

const T: &str = "orders";

fn open(dir: &std::path::Path, clock: &ManualClock) -> Store {
    Store::open(
        dir,
        StoreConfig {
            clock: Clock::manual(clock.clone()),
            ..StoreConfig::small()
        },
    )
    .unwrap()
}

fn consumer(store: &Store) -> Consumer {
    store
        .consumer(
            "g",
            T,
            ConsumerConfig {
                start_from: StartFrom::First,
                consumer_id: Some("c1".into()),
                ..ConsumerConfig::default()
            },
        )
        .unwrap()
}

#[test]
fn a_failed_message_is_retried_on_rocketmqs_schedule_then_dead_lettered_with_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let store = open(dir.path(), &clock);
    let first = store
        .put(
            &Message::new(T, 1, b"pay order 7")
                .with_tags("TagA")
                .with_property("UNIQ_KEY", "UNIQ-7"),
        )
        .unwrap();
    let first_id = store
        .read_at(first.commitlog_offset)
        .unwrap()
        .view()
        .msg_id();
    let mut c = consumer(&store);
    let levels = DelayLevels::default();
    let mut waited = Vec::new();
    for n in 0..=16 {
        let batch = c.poll(10, Duration::ZERO).unwrap();
        let msgs: Vec<_> = batch.messages().collect();
        assert_eq!(msgs.len(), 1, "retry {n}");
        let m = &msgs[0];
        assert_eq!(m.body(), b"pay order 7");
        assert_eq!(m.property("UNIQ_KEY"), Some("UNIQ-7"), "the id stays");
        assert_eq!(m.reconsume_times(), n);
        if n > 0 {
            assert_eq!(m.topic(), "%RETRY%g");
            assert_eq!(m.property("RETRY_TOPIC"), Some(T));
            assert_eq!(m.property("ORIGIN_MESSAGE_ID"), Some(first_id.as_str()));
            assert_eq!(m.property("RECONSUME_TIME"), Some(n.to_string().as_str()));
            assert_eq!(m.tags(), Some("TagA"));
        }
        c.fail(m).unwrap();
        drop(msgs);
        drop(batch);
        if n == 16 {
            break;
        }
        // Not before its level's delay (level 3 + n), then delivered.
        let delay = levels.delay_ms(3 + n);
        clock.advance(Duration::from_millis(delay as u64 - 1));
        store.deliver_due().unwrap();
        assert!(
            c.poll(10, Duration::ZERO).unwrap().is_empty(),
            "retry {n} early"
        );
        clock.advance(Duration::from_millis(1));
        assert_eq!(store.deliver_due().unwrap().delivered, 1);
        waited.push(delay);
    }
    // 16 retries at levels 3..=18: 10 s, 30 s, 1 m, ... 1 h, 2 h = 4 h 45 min 40 s.
    assert_eq!(waited.iter().sum::<i64>(), 17_140_000);
    clock.advance(Duration::from_secs(3 * 3600));
    store.deliver_due().unwrap();
    assert!(
        c.poll(10, Duration::ZERO).unwrap().is_empty(),
        "no 17th retry"
    );
    let dlq = store.dlq("g").unwrap();
    assert_eq!((dlq.topic.as_str(), dlq.size), ("%DLQ%g", 1));
    let got = store.get("%DLQ%g", 0, 0, 1).unwrap();
    let dead = got.messages().next().unwrap();
    assert_eq!(dead.property("UNIQ_KEY"), Some("UNIQ-7"));
    assert_eq!(dead.reconsume_times(), 17);
    assert_eq!(dead.property("DELAY"), None);
    drop(got);

    // Re-driven to the original topic: the group reads it there again, as new.
    assert_eq!(store.dlq_redrive("g", 10).unwrap(), 1);
    assert_eq!(store.dlq("g").unwrap().size, 0);
    let batch = c.poll(10, Duration::ZERO).unwrap();
    let m = batch.messages().next().expect("re-driven");
    assert_eq!(m.topic(), T);
    assert_eq!(m.property("UNIQ_KEY"), Some("UNIQ-7"));
    assert_eq!(m.reconsume_times(), 0);
    assert_eq!(store.dlq_redrive("g", 10).unwrap(), 0, "once");
}

#[test]
fn send_back_levels_the_dlq_directly_and_purge() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let store = open(dir.path(), &clock);
    for i in 0..3 {
        store
            .put(&Message::new(T, 0, format!("m{i}").as_bytes()))
            .unwrap();
    }
    let mut c = consumer(&store);
    let batch = c.poll(10, Duration::ZERO).unwrap();
    let msgs: Vec<_> = batch.messages().collect();
    // An explicit level, a negative one (straight to the DLQ), a level past the table
    // (clamped to the last).
    let a = c.send_back(&msgs[0], 1).unwrap();
    assert_eq!((a.topic.as_str(), a.delay_level), ("%RETRY%g", Some(1)));
    let b = c.send_back(&msgs[1], -1).unwrap();
    assert_eq!((b.topic.as_str(), b.delay_level), ("%DLQ%g", None));
    let z = c.send_back(&msgs[2], 99).unwrap();
    assert_eq!(z.delay_level, Some(18));
    drop(msgs);
    drop(batch);
    clock.advance(Duration::from_secs(1));
    store.deliver_due().unwrap();
    let again = c.poll(10, Duration::ZERO).unwrap();
    assert_eq!(
        again
            .messages()
            .map(|m| m.body().to_vec())
            .collect::<Vec<_>>(),
        [b"m0".to_vec()]
    );
    assert_eq!(store.dlq("g").unwrap().size, 1);
    assert_eq!(store.dlq_purge("g").unwrap(), 1);
    assert_eq!(store.dlq("g").unwrap().size, 0);
    assert_eq!(
        store.dlq_redrive("g", 10).unwrap(),
        0,
        "purged letters are gone"
    );
}

#[test]
fn broadcasting_does_not_retry_and_ordered_retries_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let store = open(dir.path(), &clock);
    store.put(&Message::new(T, 0, b"x")).unwrap();
    let mut b = store
        .consumer(
            "g",
            T,
            ConsumerConfig {
                model: MessageModel::Broadcasting,
                start_from: StartFrom::First,
                consumer_id: Some("b1".into()),
                ..ConsumerConfig::default()
            },
        )
        .unwrap();
    let batch = b.poll(1, Duration::ZERO).unwrap();
    let m = batch.messages().next().unwrap();
    assert!(matches!(b.fail(&m), Err(Error::InvalidArgument(_))));
    drop(batch);
    let mut o = store
        .consumer(
            "go",
            T,
            ConsumerConfig {
                ordered: true,
                start_from: StartFrom::First,
                ..ConsumerConfig::default()
            },
        )
        .unwrap();
    let batch = o.poll(1, Duration::ZERO).unwrap();
    let m = batch.messages().next().unwrap();
    o.fail(&m).unwrap();
    drop(batch);
    assert!(
        store.queue_ids("%RETRY%go").is_empty(),
        "ordered: no retry topic"
    );
    assert!(store.schedule_stats().is_empty());
}

/// A retried message survives a restart of its consumer: the retry topic is read from its
/// oldest message by a consumer that never committed there.
#[test]
fn a_retry_sent_before_a_restart_is_consumed_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let store = open(dir.path(), &clock);
    store.put(&Message::new(T, 0, b"x")).unwrap();
    {
        let mut c = consumer(&store);
        let batch = c.poll(1, Duration::ZERO).unwrap();
        let m = batch.messages().next().unwrap();
        c.fail(&m).unwrap();
    }
    clock.advance(Duration::from_secs(10));
    store.deliver_due().unwrap();
    store.close().unwrap();
    let store = open(dir.path(), &clock);
    let mut c = consumer(&store);
    let batch = c.poll(10, Duration::ZERO).unwrap();
    let got: Vec<_> = batch
        .messages()
        .map(|m| (m.topic().to_owned(), m.reconsume_times()))
        .collect();
    assert_eq!(
        got,
        [("%RETRY%g".to_owned(), 1)],
        "the original is committed, the retry comes"
    );
}

/// One client id consuming two topics of a group (RocketMQ's one client, several
/// subscriptions): both consumers open, and the group's retries reach the one reading the
/// retry topic.
#[test]
fn one_consumer_id_on_two_topics_shares_the_groups_retry_topic() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let store = open(dir.path(), &clock);
    store.put(&Message::new("other", 0, b"from other")).unwrap();
    let mut a = consumer(&store);
    let mut b = store
        .consumer(
            "g",
            "other",
            ConsumerConfig {
                start_from: StartFrom::First,
                consumer_id: Some("c1".into()),
                ..ConsumerConfig::default()
            },
        )
        .unwrap();
    let batch = b.poll(1, Duration::ZERO).unwrap();
    let m = batch.messages().next().unwrap();
    b.fail(&m).unwrap();
    drop(batch);
    clock.advance(Duration::from_secs(10));
    store.deliver_due().unwrap();
    let got: Vec<_> = a
        .poll(10, Duration::ZERO)
        .unwrap()
        .messages()
        .map(|m| {
            (
                m.topic().to_owned(),
                m.property("RETRY_TOPIC").map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(got, [("%RETRY%g".to_owned(), Some("other".to_owned()))]);
}
