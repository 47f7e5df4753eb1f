//! Quickstart: write a store, crash a writer mid-stream with SIGKILL, recover, read back.
//!
//! ```text
//! cargo run --release --example quickstart -- [STORE_ROOT]
//! ```
//! Without a path the store goes to a fresh temporary directory, which is left in place for
//! inspection (the path is printed).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use rocketstore::{FlushMode, GetOptions, GetStatus, Message, Store, StoreConfig, TagFilter};

const CHILD_ENV: &str = "ROCKETSTORE_QUICKSTART_CHILD";
const TOPIC: &str = "orders";
const QUEUES: i32 = 4;

fn config(flush_mode: FlushMode) -> StoreConfig {
    // Small files so a short run crosses segment rolls; everything else at RocketMQ's defaults.
    StoreConfig {
        flush_mode,
        commitlog_segment_size: 4 << 20,
        ..StoreConfig::small()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if let Ok(root) = std::env::var(CHILD_ENV) {
        return child_writer(Path::new(&root));
    }
    let root: PathBuf = match std::env::args().nth(1) {
        Some(p) => p.into(),
        None => tempfile::Builder::new()
            .prefix("rocketstore-quickstart-")
            .tempdir()?
            .keep(),
    };
    println!("store root: {}", root.display());

    // 1. Write messages with tags and keys to several queues, read them back, close cleanly.
    let store = Store::open(&root, config(FlushMode::Async))?;
    let start: Vec<u64> = (0..QUEUES)
        .map(|q| store.max_offset(TOPIC, q))
        .collect::<Result<_, _>>()?;
    for i in 0..1000u32 {
        let tag = if i % 2 == 0 { "TagA" } else { "TagB" };
        let body = format!("order {i}");
        store.put(
            &Message::new(TOPIC, (i % 4) as i32, body.as_bytes())
                .with_tags(tag)
                .with_keys([format!("ORDER-{i}")]),
        )?;
    }
    let got = store.get(TOPIC, 1, start[1], 8)?;
    println!(
        "queue 1 from offset {}: {:?}, {} messages, next offset {}",
        start[1],
        got.status(),
        got.len(),
        got.next_offset()
    );
    for m in got.messages().take(3) {
        println!(
            "  offset {} tag {:?} body {:?}",
            m.queue_offset(),
            m.tags(),
            String::from_utf8_lossy(m.body())
        );
    }
    let only_a = store.get_with(
        TOPIC,
        0,
        start[0],
        &GetOptions {
            tag_filter: Some(TagFilter::parse("TagA")),
            ..GetOptions::new(32)
        },
    )?;
    assert!(only_a.messages().all(|m| m.tags() == Some("TagA")));
    let hit = store.query_by_key(TOPIC, "ORDER-42", 0, i64::MAX, 4)?;
    println!(
        "query ORDER-42: {} hit(s), body {:?}",
        hit.len(),
        hit.first()
            .map(|m| String::from_utf8_lossy(m.view().body()).into_owned())
    );
    store.close()?;
    drop(store);

    // 2. A child process writes in Sync mode from 4 threads; kill -9 it mid-stream.
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .env(CHILD_ENV, &root)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut acked = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        let f: Vec<u64> = line
            .split_whitespace()
            .map(|x| x.parse().expect("ack line"))
            .collect();
        acked.push((f[0], f[1] as i32, f[2], f[3]));
        if acked.len() == 2000 {
            child.kill()?; // SIGKILL: no close, no flush, `abort` stays behind
            break;
        }
    }
    child.wait()?;
    println!(
        "killed the writer after {} acknowledged sync puts",
        acked.len()
    );

    // 3. Reopen: recovery validates the CommitLog tail and rebuilds what it must.
    let store = Store::open(&root, config(FlushMode::Async))?;
    let r = store.recovery_report();
    println!(
        "recovered: clean_shutdown={} end_offset={} truncated_at={:?} derived_rebuilt={} records_dispatched={}",
        r.clean_shutdown, r.end_offset, r.truncated_at, r.derived_rebuilt, r.records_dispatched
    );
    for &(commitlog_offset, queue, queue_offset, seq) in &acked {
        let m = store.read_at(commitlog_offset)?;
        let v = m.view();
        assert_eq!(
            (v.queue_id(), v.queue_offset()),
            (queue, queue_offset),
            "acked message moved"
        );
        assert_eq!(
            v.body(),
            format!("sync {seq}").as_bytes(),
            "acked message changed"
        );
        let g = store.get(TOPIC, queue, queue_offset, 1)?;
        assert_eq!(g.status(), GetStatus::Found);
        assert_eq!(
            g.messages().next().map(|m| m.commitlog_offset()),
            Some(commitlog_offset)
        );
    }
    println!(
        "verified all {} acknowledged messages by commitlog offset and by queue offset",
        acked.len()
    );
    for q in 0..QUEUES {
        println!(
            "  queue {q}: offsets {}..{}",
            store.min_offset(TOPIC, q)?,
            store.max_offset(TOPIC, q)?
        );
    }
    store.close()?;
    println!("closed cleanly; the store is left at {}", root.display());
    Ok(())
}

/// The process that gets killed: 4 threads put in Sync mode and print one line per ack.
fn child_writer(root: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(Store::open(root, config(FlushMode::Sync))?);
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (store, out) = (store.clone(), out.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    let seq = i * 4 + t;
                    let body = format!("sync {seq}");
                    let r = store.put(
                        &Message::new(TOPIC, (seq % 4) as i32, body.as_bytes())
                            .with_keys([format!("SYNC-{seq}")]),
                    );
                    let Ok(r) = r else { return };
                    let mut o = out.lock().unwrap();
                    // Printed only after put returned, i.e. after the record is durable.
                    if writeln!(
                        o,
                        "{} {} {} {}",
                        r.commitlog_offset,
                        seq % 4,
                        r.queue_offset,
                        seq
                    )
                    .and_then(|_| o.flush())
                    .is_err()
                    {
                        return;
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
