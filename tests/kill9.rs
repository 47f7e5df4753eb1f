//! kill -9 of a writer process: a child process (this test binary re-executed to run the
//! ignored `child_writer` test) puts from 4 threads and prints one line per acknowledged put;
//! the parent reads N lines, SIGKILLs it, recovers the store and checks every acknowledged
//! message byte for byte (TESTING.md §3 oracle: durability, prefix, agreement). Several rounds
//! run on the same root: each child recovers the previous child's crash itself, and the parent
//! checks every round on a copy of the crashed root so the original stays crashed.

#[path = "support/crash.rs"]
mod crash;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crash::*;
use rocketstore::{FlushMode, GetOptions, GetStatus, Message, PutStatus, Store};
use rocketstore_test_support::copy_tree;

const ENV_ROOT: &str = "ROCKETSTORE_KILL9_ROOT";
const ENV_SEQ_BASE: &str = "ROCKETSTORE_KILL9_SEQ_BASE";
const ENV_MODE: &str = "ROCKETSTORE_KILL9_MODE";
const TOPIC: &str = "k9";
const QUEUES: u64 = 4;
const THREADS: u64 = 4;
/// A child stops by itself after this many puts per thread (it is normally killed long before).
const CHILD_PUT_LIMIT: u64 = 100_000;
const CHILD_DEADLINE: Duration = Duration::from_secs(60);

fn queue_of(seq: u64) -> i32 {
    (seq.wrapping_mul(0x9E37_79B9) >> 5) as i32 & (QUEUES as i32 - 1)
}

fn mode_from_env() -> FlushMode {
    match std::env::var(ENV_MODE).as_deref() {
        Ok("async") => FlushMode::Async,
        _ => FlushMode::Sync,
    }
}

/// The process that gets killed. Does nothing unless spawned by a parent test.
#[test]
#[ignore = "child process of the kill9 tests; only does something when they spawn it"]
fn child_writer() {
    let Ok(root) = std::env::var(ENV_ROOT) else {
        return;
    };
    let base: u64 = std::env::var(ENV_SEQ_BASE).unwrap().parse().unwrap();
    let mode = mode_from_env();
    let store = Arc::new(Store::open(&root, crash_config(mode)).unwrap());
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, out) = (store.clone(), out.clone());
            std::thread::spawn(move || {
                for i in 0..CHILD_PUT_LIMIT {
                    let seq = base + i * THREADS + t;
                    let body = seq_body(seq);
                    let r = store
                        .put(
                            &Message::new(TOPIC, queue_of(seq), &body)
                                .with_keys([format!("K{seq}")]),
                        )
                        .unwrap();
                    if r.status != PutStatus::Ok {
                        continue; // not acknowledged as durable
                    }
                    let mut o = out.lock().unwrap();
                    // Printed only after put returned, i.e. after the record is durable.
                    let line = format!(
                        "ACK {} {} {} {}",
                        r.commitlog_offset,
                        queue_of(seq),
                        r.queue_offset,
                        seq
                    );
                    if writeln!(o, "{line}").and_then(|_| o.flush()).is_err() {
                        return; // the parent is gone
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[derive(Clone, Copy, Debug)]
struct Ack {
    offset: u64,
    queue: i32,
    queue_offset: u64,
    seq: u64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let f: Vec<u64> = line
        .strip_prefix("ACK ")?
        .split_whitespace()
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    Some(Ack {
        offset: f[0],
        queue: f[1] as i32,
        queue_offset: f[2],
        seq: f[3],
    })
}

/// Runs a child writer on `root` until it has acknowledged at least `n` puts, SIGKILLs it and
/// returns every ack it printed (including any printed between the n-th and the kill).
fn run_and_kill(root: &Path, seq_base: u64, mode: &str, n: usize) -> Vec<Ack> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writer",
            "--nocapture",
            "--ignored",
            "--test-threads=1",
        ])
        .env(ENV_ROOT, root)
        .env(ENV_SEQ_BASE, seq_base.to_string())
        .env(ENV_MODE, mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(a) = parse_ack(&line) {
                if tx.send(a).is_err() {
                    break;
                }
            }
        }
    });
    let deadline = Instant::now() + CHILD_DEADLINE;
    let mut acks = Vec::with_capacity(n + 64);
    while acks.len() < n {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(a) => acks.push(a),
            Err(RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "child produced only {} of {n} acks within {CHILD_DEADLINE:?}",
                    acks.len()
                );
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = child.wait().unwrap();
                panic!("child exited ({status}) after {} of {n} acks", acks.len());
            }
        }
    }
    child.kill().unwrap(); // SIGKILL: no close, no flush, `abort` stays behind
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "child was not killed: {status}");
    reader.join().unwrap();
    acks.extend(rx.try_iter());
    acks
}

/// Checks the recovered store against every ack so far; returns the number of records.
fn verify(store: &Store, acks: &[Ack]) -> usize {
    let r = store.recovery_report();
    assert!(!r.clean_shutdown, "{r:?}");
    // The child's open wrote a checkpoint: recovery keeps the derived data it vouches for (or
    // says why it rebuilt everything).
    assert!(r.checkpoint_trusted, "{r:?}");
    assert_eq!(r.derived_rebuilt, r.derived_fallback.is_some(), "{r:?}");
    // Durability: every acked message, byte for byte, where the ack said.
    for a in acks {
        let m = store
            .read_at(a.offset)
            .unwrap_or_else(|e| panic!("acked seq {} at {}: {e}", a.seq, a.offset));
        let v = m.view();
        assert_eq!(
            (v.topic(), v.queue_id(), v.queue_offset()),
            (TOPIC, a.queue, a.queue_offset),
            "acked seq {} moved",
            a.seq
        );
        assert_eq!(
            v.body(),
            &seq_body(a.seq)[..],
            "acked seq {} changed",
            a.seq
        );
        assert_eq!(v.keys().collect::<Vec<_>>(), [format!("K{}", a.seq)]);
        let g = store
            .get_with(
                TOPIC,
                a.queue,
                a.queue_offset,
                &GetOptions {
                    verify_crc: true,
                    ..GetOptions::new(1)
                },
            )
            .unwrap();
        assert_eq!(g.status(), GetStatus::Found, "seq {}", a.seq);
        let gv = g.messages().next().unwrap();
        assert_eq!(gv.commitlog_offset(), a.offset);
        assert!(gv.as_bytes() == v.as_bytes());
    }
    for a in acks.iter().step_by(97) {
        let hits = store
            .query_by_key(TOPIC, &format!("K{}", a.seq), 0, i64::MAX, 4)
            .unwrap();
        assert_eq!(hits.len(), 1, "key of seq {}", a.seq);
        assert_eq!(hits[0].view().commitlog_offset(), a.offset);
    }
    // Prefix and agreement: each queue is contiguous from 0, every record in it is one this
    // writer produced (no garbage, no phantom), and no message is stored twice.
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for q in 0..QUEUES as i32 {
        let (min, max, recs) = read_whole_queue(store, TOPIC, q);
        assert_eq!(min, 0, "queue {q}");
        assert_eq!(recs.len() as u64, max, "queue {q}");
        for (i, bytes) in recs.iter().enumerate() {
            let body_len = u32::from_be_bytes(bytes[84..88].try_into().unwrap()) as usize;
            let body = &bytes[88..88 + body_len];
            let seq = body_seq(body)
                .unwrap_or_else(|| panic!("queue {q} offset {i}: not a writer record"));
            assert_eq!(body, &seq_body(seq)[..], "queue {q} offset {i}");
            assert_eq!(queue_of(seq), q, "seq {seq} in the wrong queue");
            assert!(seen.insert(seq), "seq {seq} stored twice");
        }
        total += recs.len();
    }
    for a in acks {
        assert!(seen.contains(&a.seq));
    }
    total
}

fn kill9_rounds(mode: &str, rounds: usize, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut all: Vec<Ack> = Vec::new();
    let mut seq_base = 0u64;
    for round in 0..rounds {
        let acks = run_and_kill(&root, seq_base, mode, n);
        assert!(acks.len() >= n);
        // Each thread acks its own seqs in order, and seqs never repeat.
        let mut per_thread: BTreeMap<u64, u64> = BTreeMap::new();
        for a in &acks {
            assert!(a.seq >= seq_base);
            let t = a.seq % THREADS;
            if let Some(prev) = per_thread.insert(t, a.seq) {
                assert!(a.seq > prev, "thread {t} acked {} after {prev}", a.seq);
            }
        }
        all.extend(&acks);
        seq_base = all.iter().map(|a| a.seq).max().unwrap() + 1_000_000;
        seq_base -= seq_base % THREADS;
        // Check a copy, so the original root stays crashed for the next child to recover.
        let copy = dir.path().join(format!("check-{round}"));
        copy_tree(&root, &copy).unwrap();
        let store = Store::open(&copy, crash_config(FlushMode::Sync)).unwrap();
        let total = verify(&store, &all);
        eprintln!(
            "kill9 {mode} round {round}: acks={} (this round {}), recovered records={total}, {:?}",
            all.len(),
            acks.len(),
            store.recovery_report()
        );
        assert!(
            total >= all.len(),
            "round {round}: {total} records < {} acks",
            all.len()
        );
        store.close().unwrap();
        drop(store);
        std::fs::remove_dir_all(&copy).unwrap();
    }
    assert!(segments_on_disk(&root).len() >= 3, "segments should roll");
    // Finally recover the original root itself, twice (the second open is clean).
    let store = Store::open(&root, crash_config(FlushMode::Sync)).unwrap();
    verify(&store, &all);
    store.close().unwrap();
    drop(store);
    let store = Store::open(&root, crash_config(FlushMode::Sync)).unwrap();
    assert!(store.recovery_report().clean_shutdown);
    for a in all.iter().step_by(13) {
        assert_eq!(
            store.read_at(a.offset).unwrap().view().body(),
            &seq_body(a.seq)[..]
        );
    }
    store.close().unwrap();
}

#[test]
fn kill9_sync_writer_three_rounds() {
    kill9_rounds("sync", 3, 1500);
}

/// Async mode acknowledges once the record is in the page cache; a process crash (unlike a
/// power loss) loses none of it.
#[test]
fn kill9_async_writer_loses_nothing_acknowledged() {
    kill9_rounds("async", 2, 3000);
}
