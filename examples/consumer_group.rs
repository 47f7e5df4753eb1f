//! A consumer group on one store: 4 producer threads write 8 queues while a group of 3
//! (ordered) consumers splits them; one consumer is killed mid-stream (dropped between processing a batch
//! and committing it, as a crash would) and restarted. Every message is processed at least
//! once, each queue in order with no gap, and the duplicates are bounded by what the killed
//! consumer had not committed.
//!
//! ```text
//! cargo run --release --example consumer_group
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rocketstore::consumer::{ConsumerConfig, StartFrom};
use rocketstore::{Message, Store, StoreConfig};

const TOPIC: &str = "orders";
const QUEUES: i32 = 8;
const PER_PRODUCER: u64 = 20_000;
const PRODUCERS: u64 = 4;

/// What the consumers processed: per queue, every offset in processing order.
type Seen = Arc<Mutex<BTreeMap<i32, Vec<u64>>>>;

fn main() -> rocketstore::Result<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("store"), StoreConfig::small())?;
    let seen: Seen = Arc::default();
    let done = AtomicBool::new(false);
    let config = || ConsumerConfig {
        start_from: StartFrom::First,
        // Commit by hand after each processed batch: a kill between the two loses the commit.
        auto_commit: false,
        // One consumer per queue at a time: a queue changes hands (when c is killed, when c'
        // joins) only once its previous owner let go at its next poll, after its last commit,
        // so a handover itself delivers nothing twice.
        ordered: true,
        ..ConsumerConfig::default()
    };
    let mut uncommitted_at_kill = 0usize;
    std::thread::scope(|s| -> rocketstore::Result<()> {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let store = &store;
                s.spawn(move || -> rocketstore::Result<()> {
                    for i in 0..PER_PRODUCER {
                        let q = ((p * PER_PRODUCER + i) % QUEUES as u64) as i32;
                        store.put(&Message::new(TOPIC, q, format!("{p}:{i}").as_bytes()))?;
                    }
                    Ok(())
                })
            })
            .collect();
        let consume = |name: &'static str, stop_after: Option<usize>| {
            let (store, seen, done) = (&store, seen.clone(), &done);
            s.spawn(move || -> rocketstore::Result<usize> {
                let mut c = store.consumer("billing", TOPIC, config())?;
                let mut batches = 0;
                loop {
                    let batch = c.poll(64, Duration::from_millis(50))?;
                    if batch.is_empty() && done.load(Ordering::Acquire) {
                        c.commit()?;
                        return Ok(0);
                    }
                    {
                        let mut seen = seen.lock().unwrap();
                        for m in batch.messages() {
                            seen.entry(m.queue_id()).or_default().push(m.queue_offset());
                        }
                    }
                    batches += 1;
                    if stop_after == Some(batches) {
                        // Killed: processed, not committed.
                        println!(
                            "{name}: killed after {batches} batches with {} messages uncommitted",
                            batch.len()
                        );
                        return Ok(batch.len());
                    }
                    c.commit()?;
                }
            })
        };
        let a = consume("a", None);
        let b = consume("b", None);
        let victim = consume("c", Some(40));
        uncommitted_at_kill = victim.join().unwrap()?;
        let restarted = consume("c'", None);
        for p in producers {
            p.join().unwrap()?;
        }
        // Let the consumers drain what is left, then stop them.
        loop {
            let total: usize = seen.lock().unwrap().values().map(Vec::len).sum();
            if total as u64 >= PRODUCERS * PER_PRODUCER {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done.store(true, Ordering::Release);
        for c in [a, b, restarted] {
            c.join().unwrap()?;
        }
        Ok(())
    })?;

    // Every queue: processed in order, no gap, each offset at least once.
    let seen = seen.lock().unwrap();
    let (mut messages, mut duplicates) = (0u64, 0u64);
    for (q, offsets) in seen.iter() {
        let max = store.max_offset(TOPIC, *q)?;
        let mut next = 0u64;
        for &o in offsets {
            assert!(
                o <= next,
                "queue {q}: offset {o} processed before {next} (gap)"
            );
            if o < next {
                duplicates += 1;
            } else {
                next += 1;
                messages += 1;
            }
        }
        assert_eq!(next, max, "queue {q}: processed up to {next} of {max}");
    }
    assert_eq!(messages, PRODUCERS * PER_PRODUCER);
    println!(
        "messages {messages}, processed {} times in all, duplicates after the restart {duplicates} (bound: the {uncommitted_at_kill} the killed consumer had not committed)",
        messages + duplicates
    );
    assert!(duplicates <= uncommitted_at_kill as u64);
    store.close()
}
