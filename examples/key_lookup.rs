//! Idempotent consumption by business key: a payment may be delivered twice (a producer retry
//! after a timeout), and the consumer must apply it once. Instead of keeping its own table of
//! processed ids, the consumer asks the store's IndexFile: `query_by_key` returns every message
//! carrying the payment id, and only the first one stored (the lowest CommitLog offset) is
//! applied; later copies are recognised as duplicates.
//!
//! ```text
//! cargo run --example key_lookup -- [STORE_ROOT]
//! ```

use std::path::PathBuf;

use rocketstore::{Message, Store, StoreConfig};

const TOPIC: &str = "payments";
const PAYMENTS: u64 = 300;

/// Every seventh payment is sent twice, as a producer retry would.
fn is_retried(id: u64) -> bool {
    id.is_multiple_of(7)
}

fn amount(id: u64) -> u64 {
    100 + id % 50
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
    let from = store.max_offset(TOPIC, 0)?;

    for id in 0..PAYMENTS {
        let key = format!("PAY-{id}");
        let body = format!("{key} {}", amount(id));
        let msg = Message::new(TOPIC, 0, body.as_bytes()).with_keys([key.as_str()]);
        store.put(&msg)?;
        if is_retried(id) {
            store.put(&msg)?; // the duplicate delivery
        }
    }

    // Consume everything; apply a payment only if this copy is the first one stored.
    let (mut applied, mut duplicates, mut balance) = (0u64, 0u64, 0u64);
    let mut offset = from;
    loop {
        let batch = store.get(TOPIC, 0, offset, 32)?;
        if batch.is_empty() {
            break;
        }
        for m in batch.messages() {
            let key = m.keys().next().expect("every payment has its id as key");
            let copies = store.query_by_key(TOPIC, key, 0, i64::MAX, 16)?;
            let first = copies
                .iter()
                .map(|c| c.view().commitlog_offset())
                .min()
                .expect("the message being consumed is indexed");
            if m.commitlog_offset() == first {
                let text = std::str::from_utf8(m.body())?;
                balance += text.rsplit(' ').next().expect("amount").parse::<u64>()?;
                applied += 1;
            } else {
                duplicates += 1;
            }
        }
        offset = batch.next_offset();
    }

    let expected_duplicates = (0..PAYMENTS).filter(|&id| is_retried(id)).count() as u64;
    let expected_balance: u64 = (0..PAYMENTS).map(amount).sum();
    assert_eq!(applied, PAYMENTS, "each payment applied exactly once");
    assert_eq!(duplicates, expected_duplicates);
    assert_eq!(balance, expected_balance);
    let copies = store.query_by_key(TOPIC, "PAY-14", 0, i64::MAX, 16)?;
    assert_eq!(copies.len(), 2, "PAY-14 was delivered twice");
    println!(
        "{applied} payments applied once, {duplicates} duplicate deliveries skipped, balance {balance}"
    );
    store.close()?;
    Ok(())
}
