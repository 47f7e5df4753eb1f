//! Per-group retry limits from RocketMQ's `config/subscriptionGroup.json`: read at open (a
//! broker-written file, its `.bak` when the file is damaged, a typed error naming it when both
//! are), set through `Store::set_subscription_group` (written atomically, kept over reopen), and
//! a group's `retryMaxTimes` deciding when a failed message goes to `%DLQ%group`.

use std::path::Path;
use std::time::Duration;

use rocketstore::clock::{Clock, ManualClock};
use rocketstore::consumer::{ConsumerConfig, StartFrom};
use rocketstore::format::subscription_group::SubscriptionGroupConfig;
use rocketstore::{Error, Message, Store, StoreConfig};

const T: &str = "orders";

/// What a RocketMQ 5 broker writes (fastjson, pretty, fields sorted): group `g` with
/// `retryMaxTimes` 2, and a group left at its defaults but for `consumeEnable`.
const BROKER_FILE: &str = "{\n\t\"dataVersion\":{\n\t\t\"counter\":3,\n\t\t\"stateVersion\":0,\n\t\t\"timestamp\":1700000000000\n\t},\n\t\"forbiddenTable\":{},\n\t\"subscriptionGroupTable\":{\n\t\t\"g\":{\n\t\t\t\"attributes\":{},\n\t\t\t\"brokerId\":0,\n\t\t\t\"consumeBroadcastEnable\":true,\n\t\t\t\"consumeEnable\":true,\n\t\t\t\"consumeFromMinEnable\":true,\n\t\t\t\"consumeMessageOrderly\":false,\n\t\t\t\"consumeTimeoutMinute\":15,\n\t\t\t\"groupName\":\"g\",\n\t\t\t\"groupRetryPolicy\":{\n\t\t\t\t\"type\":\"CUSTOMIZED\"\n\t\t\t},\n\t\t\t\"groupSysFlag\":0,\n\t\t\t\"notifyConsumerIdsChangedEnable\":true,\n\t\t\t\"retryMaxTimes\":2,\n\t\t\t\"retryQueueNums\":1,\n\t\t\t\"whichBrokerWhenConsumeSlowly\":1\n\t\t},\n\t\t\"SELF_TEST_C_GROUP\":{\n\t\t\t\"consumeEnable\":false,\n\t\t\t\"groupName\":\"SELF_TEST_C_GROUP\"\n\t\t}\n\t}\n}";

fn config(clock: &ManualClock) -> StoreConfig {
    StoreConfig {
        clock: Clock::manual(clock.clone()),
        ..StoreConfig::small()
    }
}

/// A root that exists (opened and closed once), with `file`'s text as
/// `config/subscriptionGroup.json` and `bak`'s as its `.bak`.
fn root_with(dir: &Path, clock: &ManualClock, file: Option<&str>, bak: Option<&str>) {
    Store::open(dir, config(clock)).unwrap().close().unwrap();
    let cfg = dir.join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    if let Some(text) = file {
        std::fs::write(cfg.join("subscriptionGroup.json"), text).unwrap();
    }
    if let Some(text) = bak {
        std::fs::write(cfg.join("subscriptionGroup.json.bak"), text).unwrap();
    }
}

/// Puts one message, then fails it with a consumer of `group` (whose own limit is
/// `consumer_max`) until it is in the group's dead-letter topic; returns how many failures
/// that took. Panics after 20.
fn failures_until_dlq(store: &Store, clock: &ManualClock, group: &str, consumer_max: i32) -> i32 {
    store.put(&Message::new(T, 0, b"pay order 7")).unwrap();
    let mut c = store
        .consumer(
            group,
            T,
            ConsumerConfig {
                start_from: StartFrom::First,
                consumer_id: Some("c1".into()),
                max_reconsume_times: consumer_max,
                ..ConsumerConfig::default()
            },
        )
        .unwrap();
    for failures in 1..=20 {
        let batch = c.poll(10, Duration::ZERO).unwrap();
        let m = batch.messages().next().expect("the message or its retry");
        assert_eq!(m.body(), b"pay order 7");
        c.fail(&m).unwrap();
        drop(batch);
        if store.dlq(group).unwrap().size == 1 {
            let got = store.get(&format!("%DLQ%{group}"), 0, 0, 1).unwrap();
            let dead = got.messages().next().unwrap();
            assert_eq!(dead.reconsume_times(), failures);
            return failures;
        }
        clock.advance(Duration::from_secs(3 * 3600));
        while store.deliver_due().unwrap().more {}
    }
    panic!("not dead-lettered after 20 failures");
}

#[test]
fn a_broker_written_file_is_read_and_retry_max_times_2_dead_letters_on_the_third_failure() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    root_with(dir.path(), &clock, Some(BROKER_FILE), None);
    let store = Store::open(dir.path(), config(&clock)).unwrap();
    let g = store.subscription_group("g").expect("g has an entry");
    assert_eq!((g.retry_max_times, g.retry_queue_nums), (2, 1));
    let other = store.subscription_group("SELF_TEST_C_GROUP").unwrap();
    assert!(!other.consume_enable);
    assert_eq!(other.retry_max_times, 16, "Java's default");
    assert_eq!(store.subscription_groups().len(), 2);
    // The group's entry wins over the consumer's own limit (16).
    assert_eq!(failures_until_dlq(&store, &clock, "g", 16), 3);
}

#[test]
fn a_group_without_an_entry_uses_the_consumer_config() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    root_with(dir.path(), &clock, Some(BROKER_FILE), None);
    let store = Store::open(dir.path(), config(&clock)).unwrap();
    assert!(store.subscription_group("h").is_none());
    assert_eq!(failures_until_dlq(&store, &clock, "h", 1), 2);
}

#[test]
fn a_set_group_config_is_written_atomically_and_kept_over_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let store = Store::open(dir.path(), config(&clock)).unwrap();
    store
        .set_subscription_group(SubscriptionGroupConfig::new("g").with_retry_max_times(5))
        .unwrap();
    let file = dir.path().join("config/subscriptionGroup.json");
    let first = std::fs::read_to_string(&file).unwrap();
    assert!(first.contains("\"retryMaxTimes\": 5"), "{first}");
    store
        .set_subscription_group(SubscriptionGroupConfig::new("g").with_retry_max_times(2))
        .unwrap();
    // The previous version is the .bak; no .tmp is left.
    let bak =
        std::fs::read_to_string(dir.path().join("config/subscriptionGroup.json.bak")).unwrap();
    assert_eq!(bak, first);
    assert!(!dir
        .path()
        .join("config/subscriptionGroup.json.tmp")
        .exists());
    assert!(matches!(
        store.set_subscription_group(SubscriptionGroupConfig::new("bad group")),
        Err(Error::InvalidGroup { .. })
    ));
    store.close().unwrap();

    let store = Store::open(dir.path(), config(&clock)).unwrap();
    assert_eq!(store.subscription_group("g").unwrap().retry_max_times, 2);
    assert!(store.subscription_group("bad group").is_none());
    assert_eq!(failures_until_dlq(&store, &clock, "g", 16), 3);
}

#[test]
fn a_corrupt_file_is_a_typed_error_naming_it_and_its_bak_is_used_when_good() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000_000);
    let corrupt = "{\"subscriptionGroupTable\":{\"g\":{\"retryMaxTimes\":";
    root_with(dir.path(), &clock, Some(corrupt), None);
    match Store::open(dir.path(), config(&clock)) {
        Err(Error::CorruptConfig { path, .. }) => {
            assert!(path.ends_with("config/subscriptionGroup.json"), "{path:?}")
        }
        other => panic!("expected CorruptConfig, got {:?}", other.map(|_| ())),
    }
    // A wrong shape is as bad as broken JSON.
    let wrong = "{\"subscriptionGroupTable\":{\"g\":{\"retryMaxTimes\":\"two\"}}}";
    std::fs::write(dir.path().join("config/subscriptionGroup.json"), wrong).unwrap();
    assert!(matches!(
        Store::open(dir.path(), config(&clock)),
        Err(Error::CorruptConfig { .. })
    ));

    // With a good .bak (the previous version), the store opens on it.
    let dir = tempfile::tempdir().unwrap();
    root_with(dir.path(), &clock, Some(corrupt), Some(BROKER_FILE));
    let store = Store::open(dir.path(), config(&clock)).unwrap();
    assert_eq!(store.subscription_group("g").unwrap().retry_max_times, 2);
    // And with only the .bak (a crash between the two renames of a write).
    let dir = tempfile::tempdir().unwrap();
    root_with(dir.path(), &clock, None, Some(BROKER_FILE));
    let store = Store::open(dir.path(), config(&clock)).unwrap();
    assert_eq!(store.subscription_group("g").unwrap().retry_max_times, 2);
}
