//! Tailing a queue: a consumer thread follows a producer with `get` from its next offset,
//! waiting briefly whenever it has caught up (`OffsetOverflowOne`: nothing new yet), until it
//! has every message, in order.
//!
//! ```text
//! cargo run --example tail -- [STORE_ROOT]
//! ```

use std::path::PathBuf;
use std::time::Duration;

use rocketstore::{GetStatus, Message, Store, StoreConfig};

const TOPIC: &str = "ticks";
const MESSAGES: u64 = 5_000;

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
    let start = store.max_offset(TOPIC, 0)?;

    let (received, waits) = std::thread::scope(|s| {
        let producer = s.spawn(|| -> rocketstore::Result<()> {
            for i in 0..MESSAGES {
                store.put(&Message::new(TOPIC, 0, format!("tick {i}").as_bytes()))?;
                if i.is_multiple_of(500) {
                    // Pauses let the consumer catch up and wait.
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Ok(())
        });
        let consumer = s.spawn(|| -> rocketstore::Result<(u64, u64)> {
            let (mut next, mut received, mut waits) = (start, 0u64, 0u64);
            while received < MESSAGES {
                let batch = store.get(TOPIC, 0, next, 64)?;
                match batch.status() {
                    GetStatus::Found => {
                        for m in batch.messages() {
                            assert_eq!(m.queue_offset(), start + received, "gap or reorder");
                            assert_eq!(m.body(), format!("tick {received}").as_bytes());
                            received += 1;
                        }
                        next = batch.next_offset();
                    }
                    // Caught up, or the queue has nothing yet: wait for the producer.
                    GetStatus::OffsetOverflowOne
                    | GetStatus::NoMessageInQueue
                    | GetStatus::NoMatchedLogicQueue => {
                        waits += 1;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    other => panic!("unexpected get status {other:?} at offset {next}"),
                }
            }
            Ok((received, waits))
        });
        producer.join().expect("producer")?;
        consumer.join().expect("consumer")
    })?;

    assert_eq!(received, MESSAGES);
    assert_eq!(store.max_offset(TOPIC, 0)?, start + MESSAGES);
    println!("tailed {received} messages in order, caught up with the producer {waits} times");
    store.close()?;
    Ok(())
}
