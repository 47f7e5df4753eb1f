//! Retries and dead letters on a manual clock: RocketMQ's 16 retries (delay levels 3..=18,
//! 4 h 45 min 40 s of simulated time) run in milliseconds.
//!
//! Ten messages with `UNIQ_KEY`s go to topic `orders`; one clustering consumer of group `g`
//! fails message 3 every time (after 16 retries it lands in `%DLQ%g`) and message 5 twice (it
//! succeeds on its third attempt). The loop moves the clock to the next due time that
//! [`Store::schedule_stats`] reports and calls [`Store::deliver_due`], printing each retry as it
//! arrives. Every retry and the dead letter must keep the original's `UNIQ_KEY` (checked against
//! the first stored copy, found through `ORIGIN_MESSAGE_ID`); the example panics if not.
//!
//! ```text
//! cargo run --release --example retry_dlq
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use rocketstore::clock::{Clock, ManualClock, TimeSource};
use rocketstore::consumer::{ConsumerConfig, StartFrom};
use rocketstore::format::schedule::{retry_level, DelayLevels, DEFAULT_MAX_RECONSUME_TIMES};
use rocketstore::{Message, Store, StoreConfig};

const TOPIC: &str = "orders";
const GROUP: &str = "g";
/// 2023-11-14 22:13:20 UTC: any fixed start will do.
const START_MS: i64 = 1_700_000_000_000;

/// How many times the consumer fails message `i` before it succeeds (`u32::MAX`: always).
fn failures_of(i: usize) -> u32 {
    match i {
        3 => u32::MAX,
        5 => 2,
        _ => 0,
    }
}

/// `+4h 45m 40s`, `+10s`, `+0s`.
fn offset(ms: i64) -> String {
    let s = ms / 1000;
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = String::from("+");
    if h > 0 {
        out.push_str(&format!("{h}h "));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m "));
    }
    out.push_str(&format!("{sec}s"));
    out
}

/// Per message: the UNIQ_KEY, the first copy's message id, failures so far, when it failed
/// first and last (clock ms).
struct Tracked {
    uniq: String,
    msg_id: String,
    failed: u32,
    first_fail: Option<i64>,
    last_fail: i64,
    done: bool,
}

fn main() -> rocketstore::Result<()> {
    let wall = std::time::Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::new(START_MS);
    let store = Store::open(
        dir.path().join("store"),
        StoreConfig {
            clock: Clock::manual(clock.clone()),
            ..StoreConfig::small()
        },
    )?;
    let now = || clock.now_ms();
    let levels = DelayLevels::default();

    // Ten orders over 4 queues, each with its own UNIQ_KEY (the message id a client sees).
    let mut tracked: BTreeMap<String, Tracked> = BTreeMap::new();
    for i in 0..10usize {
        let uniq = format!("7F0000010001000000000000{i:08X}");
        let put = store.put(
            &Message::new(TOPIC, (i % 4) as i32, format!("order {i}").as_bytes())
                .with_tags("TagA")
                .with_property("UNIQ_KEY", uniq.as_str()),
        )?;
        let msg_id = store.read_at(put.commitlog_offset)?.view().msg_id();
        tracked.insert(
            format!("order {i}"),
            Tracked {
                uniq,
                msg_id,
                failed: 0,
                first_fail: None,
                last_fail: 0,
                done: false,
            },
        );
    }
    println!("put 10 messages into {TOPIC}; the consumer fails order 3 always, order 5 twice\n");

    let mut c = store.consumer(
        GROUP,
        TOPIC,
        ConsumerConfig {
            start_from: StartFrom::First,
            consumer_id: Some("c1".into()),
            ..ConsumerConfig::default()
        },
    )?;
    let mut retries_seen = 0u32;
    let mut dead_lettered_at = None;
    loop {
        let batch = c.poll(64, Duration::ZERO)?;
        for m in batch.messages() {
            let body = String::from_utf8(m.body().to_vec()).expect("utf-8 body");
            let i: usize = body["order ".len()..].parse().expect("order number");
            let t = tracked.get_mut(&body).expect("a message we put");
            let times = m.reconsume_times();
            assert_eq!(
                m.property("UNIQ_KEY"),
                Some(t.uniq.as_str()),
                "{body}: the UNIQ_KEY changed on attempt {}",
                times + 1
            );
            if times > 0 {
                retries_seen += 1;
                // A retry: in %RETRY%g, pointing back at the first copy, which has the same
                // UNIQ_KEY; due exactly its level's delay after the failure that sent it back.
                let origin = m.property("ORIGIN_MESSAGE_ID").expect("ORIGIN_MESSAGE_ID");
                assert_eq!(origin, t.msg_id);
                let first = store.read_by_msg_id(origin)?;
                assert_eq!(first.view().property("UNIQ_KEY"), m.property("UNIQ_KEY"));
                assert_eq!(m.topic(), format!("%RETRY%{GROUP}"));
                assert_eq!(m.property("RETRY_TOPIC"), Some(TOPIC));
                let level = retry_level(times - 1);
                assert_eq!(now() - t.last_fail, levels.delay_ms(level), "on time");
                println!(
                    "{body}: attempt {:>2} (retry {times:>2}) after delay level {level:>2} ({:>3} s) at {:>12} from its first failure, UNIQ_KEY {} kept",
                    times + 1,
                    levels.delay_ms(level) / 1000,
                    offset(now() - t.first_fail.expect("failed before")),
                    t.uniq,
                );
            }
            if t.failed < failures_of(i) {
                t.failed += 1;
                t.first_fail.get_or_insert(now());
                t.last_fail = now();
                c.fail(&m)?;
                if times >= DEFAULT_MAX_RECONSUME_TIMES {
                    println!(
                        "{body}: attempt {} failed: retries used up, sent to %DLQ%{GROUP}",
                        times + 1
                    );
                    dead_lettered_at = Some(now() - t.first_fail.expect("failed"));
                } else if times == 0 {
                    println!(
                        "{body}: attempt  1 failed at +0s: retry 1 at delay level {}",
                        retry_level(0)
                    );
                }
            } else {
                t.done = true;
                if times > 0 {
                    println!("{body}: attempt {} succeeded", times + 1);
                }
            }
        }
        if !batch.is_empty() {
            continue;
        }
        // Nothing to consume: move the clock to the next due time, deliver, poll again.
        let next_due = store
            .schedule_stats()
            .iter()
            .filter(|l| l.pending > 0)
            .filter_map(|l| l.next_due_ms)
            .min();
        let Some(due) = next_due else { break };
        clock.set(due.max(now()));
        while store.deliver_due()?.more {}
    }
    drop(c);

    // The dead letter: order 3, after 16 retries, with the original's UNIQ_KEY.
    let dlq = store.dlq(GROUP)?;
    println!(
        "\n{}: {} dead letter(s), offsets {}..{}",
        dlq.topic, dlq.size, dlq.purged_to, dlq.max_offset
    );
    assert_eq!(dlq.size, 1);
    let got = store.get(&dlq.topic, 0, dlq.purged_to, 16)?;
    for m in got.messages() {
        let body = String::from_utf8(m.body().to_vec()).expect("utf-8 body");
        let t = &tracked[&body];
        let origin = m.property("ORIGIN_MESSAGE_ID").expect("ORIGIN_MESSAGE_ID");
        let first = store.read_by_msg_id(origin)?;
        println!(
            "  {body:?}: UNIQ_KEY {}, reconsume times {}, RETRY_TOPIC {}, ORIGIN_MESSAGE_ID {origin}",
            m.property("UNIQ_KEY").unwrap_or("-"),
            m.reconsume_times(),
            m.property("RETRY_TOPIC").unwrap_or("-"),
        );
        assert_eq!(m.property("UNIQ_KEY"), Some(t.uniq.as_str()));
        assert_eq!(first.view().property("UNIQ_KEY"), Some(t.uniq.as_str()));
        assert_eq!(body, "order 3");
        assert_eq!(m.reconsume_times(), DEFAULT_MAX_RECONSUME_TIMES + 1);
    }
    assert!(tracked.iter().all(|(b, t)| t.done || b == "order 3"));
    assert_eq!(retries_seen, 16 + 2);

    let total = dead_lettered_at.expect("order 3 was dead-lettered");
    let expected: i64 = (3..=18).map(|l| levels.delay_ms(l)).sum();
    assert_eq!(total, expected);
    assert_eq!(total, 17_140_000);
    println!(
        "\nUNIQ_KEY of every retry and of the dead letter = the original's: checked ({retries_seen} retries)"
    );
    println!(
        "simulated time from order 3's first failure to its dead letter: {} ({} ms, levels 3..=18)",
        &offset(total)[1..],
        total
    );
    println!("wall time: {:.1} ms", wall.elapsed().as_secs_f64() * 1e3);
    store.close()?;
    Ok(())
}
