//! Ordered messages: every event of one order goes to the queue chosen by hashing the order id
//! (RocketMQ's `SelectMessageQueueByHash`), so a consumer reading that queue sees the order's
//! events in the order they were produced, even with several producers writing at once.
//!
//! ```text
//! cargo run --example ordered -- [STORE_ROOT]
//! ```
//! Four producer threads each own a set of orders and emit `created`, `paid`, `shipped` for
//! them, interleaving orders. One consumer per queue then reads its queue front to back and
//! asserts that every order's events arrive complete and in order, and only in its own queue.

use std::collections::HashMap;
use std::path::PathBuf;

use rocketstore::{Message, Store, StoreConfig};

const TOPIC: &str = "order-events";
const QUEUES: i32 = 8;
const ORDERS: u32 = 200;
const PRODUCERS: u32 = 4;
const STEPS: [&str; 3] = ["created", "paid", "shipped"];

/// The queue of an order, as RocketMQ's `SelectMessageQueueByHash` picks it.
fn queue_of(order_id: &str) -> i32 {
    rocketstore::queue_for_key(order_id, QUEUES as u32)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp;
    let root: PathBuf = match std::env::args().nth(1) {
        Some(p) => p.into(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let store = Store::open(&root, StoreConfig::small())?;
    let start: Vec<u64> = (0..QUEUES)
        .map(|q| store.max_offset(TOPIC, q))
        .collect::<Result<_, _>>()?;

    // Producers: each walks its orders step by step, so orders interleave in the log.
    std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let store = &store;
            s.spawn(move || -> rocketstore::Result<()> {
                for step in STEPS {
                    for order in (p..ORDERS).step_by(PRODUCERS as usize) {
                        let id = format!("ORDER-{order}");
                        let body = format!("{id}:{step}");
                        store.put(
                            &Message::new(TOPIC, queue_of(&id), body.as_bytes())
                                .with_keys([id.as_str()]),
                        )?;
                    }
                }
                Ok(())
            });
        }
    });

    // Consumers: one per queue, each checking the per-order sequence it sees.
    let consumed: u32 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..QUEUES)
            .map(|q| {
                let (store, from) = (&store, start[q as usize]);
                s.spawn(move || consume_queue(store, q, from))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("consumer"))
            .sum()
    });
    assert_eq!(consumed, ORDERS * STEPS.len() as u32);
    println!(
        "{ORDERS} orders x {} events over {QUEUES} queues: every order consumed in order",
        STEPS.len()
    );
    store.close()?;
    Ok(())
}

/// Reads queue `q` from `from` to its end; asserts each order's events are in step order and
/// complete. Returns the number of events read.
fn consume_queue(store: &Store, q: i32, from: u64) -> u32 {
    let mut next_step: HashMap<String, usize> = HashMap::new();
    let mut offset = from;
    let mut count = 0;
    loop {
        let batch = store.get(TOPIC, q, offset, 64).expect("get");
        if batch.is_empty() {
            break;
        }
        for m in batch.messages() {
            let text = std::str::from_utf8(m.body()).expect("utf-8 body");
            let (id, step) = text.split_once(':').expect("id:step");
            assert_eq!(queue_of(id), q, "{id} landed in the wrong queue");
            let expected = next_step.entry(id.to_string()).or_insert(0);
            assert_eq!(step, STEPS[*expected], "{id}: events out of order");
            *expected += 1;
            count += 1;
        }
        offset = batch.next_offset();
    }
    assert!(
        next_step.values().all(|&n| n == STEPS.len()),
        "an order of queue {q} is incomplete"
    );
    count
}
