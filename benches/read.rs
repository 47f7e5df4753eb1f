//! Reading through the ConsumeQueue: `get_with` batches of 32 messages of 1 KiB, hot page cache,
//! with and without CRC verification, against a raw walk of the same files in the same run.
//!
//! * `read_cq/1KiB_batch32/{plain,crc}`: `Store::get_with(topic, 0, offset, 32 messages)` cycling
//!   over the first queue of a store holding 8 queues of 1 KiB messages (all written just before,
//!   so every page is cached and mapped); each returned view's body is handed to `black_box`.
//! * `ceiling_raw_walk/1KiB_batch32/{plain,crc}`: what a minimal zero-copy reader has to do for
//!   the same batch — read 32 units of 20 bytes from the ConsumeQueue file's mapping, slice the
//!   records out of the CommitLog segment's mapping and check their TOTALSIZE (plain); plus one
//!   crc32fast pass over each whole record (crc; the store's verification checks the body CRC
//!   and the whole-record CRC property, i.e. reads the body twice).
//!
//! Run: `cargo bench --bench read`.

mod common;

use std::time::Instant;

use common::{
    be_i32, be_i64, bench_custom, first_segment, fmt_bw, fmt_rate, map_ro, print_summary, scale,
    stats, tempdir, where_line, Row, Timing,
};
use criterion::{Criterion, Throughput};
use rocketstore::{GetOptions, GetStatus, Message, Store, StoreConfig};

const TOPIC: &str = "bench";
const QUEUES: u64 = 8;
const BATCH: u64 = 32;
const BODY: usize = 1024;
const CQ_UNIT: usize = 20;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    /// Messages in queue 0.
    per_queue: u64,
    record_bytes: usize,
}

fn fixture() -> Fixture {
    let per_queue = scale(32_768u64, 4_096);
    let dir = tempdir();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let body = vec![0x5Au8; BODY];
    let mut record_bytes = 0;
    for i in 0..per_queue * QUEUES {
        let r = store
            .put(&Message::new(TOPIC, (i % QUEUES) as i32, &body).with_tags("TagA"))
            .unwrap();
        record_bytes = r.wrote_bytes;
    }
    // Make the ConsumeQueue files hold every unit on disk too (the raw walk maps them).
    store.flush().unwrap();
    Fixture {
        _dir: dir,
        store,
        per_queue,
        record_bytes,
    }
}

fn bench_store(c: &mut Criterion, timing: &Timing, fx: &Fixture) {
    const GROUP: &str = "read_cq";
    let mut g = c.benchmark_group(GROUP);
    timing.apply(&mut g);
    g.throughput(Throughput::Elements(BATCH));
    for verify_crc in [false, true] {
        let opts = GetOptions {
            verify_crc,
            ..GetOptions::new(BATCH as usize)
        };
        let batches = fx.per_queue / BATCH;
        let mut next = 0u64;
        let name = format!("1KiB_batch32/{}", if verify_crc { "crc" } else { "plain" });
        bench_custom(&mut g, GROUP, &name, |iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let r = fx
                    .store
                    .get_with(TOPIC, 0, (next % batches) * BATCH, &opts)
                    .unwrap();
                debug_assert_eq!(r.status(), GetStatus::Found);
                debug_assert_eq!(r.len() as u64, BATCH);
                for m in r.messages() {
                    std::hint::black_box(m.body());
                }
                next += 1;
            }
            (t0.elapsed(), Vec::new())
        });
    }
    g.finish();
}

fn bench_ceiling(c: &mut Criterion, timing: &Timing, fx: &Fixture) {
    const GROUP: &str = "ceiling_raw_walk";
    let mut g = c.benchmark_group(GROUP);
    timing.apply(&mut g);
    g.throughput(Throughput::Elements(BATCH));
    let root = fx.store.root();
    let cq = map_ro(&root.join(format!("consumequeue/{TOPIC}/0/00000000000000000000")));
    let log = map_ro(&first_segment(root));
    assert!(cq.len() >= fx.per_queue as usize * CQ_UNIT);
    for crc in [false, true] {
        let batches = fx.per_queue / BATCH;
        let mut next = 0u64;
        let name = format!("1KiB_batch32/{}", if crc { "crc" } else { "plain" });
        bench_custom(&mut g, GROUP, &name, |iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                let first = ((next % batches) * BATCH) as usize;
                for u in first..first + BATCH as usize {
                    let unit = &cq[u * CQ_UNIT..(u + 1) * CQ_UNIT];
                    let (off, size) = (be_i64(unit, 0) as usize, be_i32(unit, 8) as usize);
                    let rec = &log[off..off + size];
                    assert_eq!(be_i32(rec, 0) as usize, size);
                    if crc {
                        std::hint::black_box(crc32fast::hash(rec));
                    } else {
                        std::hint::black_box(rec);
                    }
                }
                next += 1;
            }
            (t0.elapsed(), Vec::new())
        });
    }
    g.finish();
}

fn main() {
    let mut c = common::criterion();
    let timing = Timing::new(1.0, 3.0, 30);
    let fx = fixture();
    bench_ceiling(&mut c, &timing, &fx);
    bench_store(&mut c, &timing, &fx);
    c.final_summary();

    let n = timing.samples;
    let mut rows = Vec::new();
    for (kind, label) in [("plain", "no CRC check"), ("crc", "verify_crc")] {
        let s = stats(&format!("read_cq/1KiB_batch32/{kind}"), n);
        let c = stats(&format!("ceiling_raw_walk/1KiB_batch32/{kind}"), n);
        let rate = s.as_ref().map(|s| s.per_s() * BATCH as f64);
        let c_rate = c.as_ref().map(|c| c.per_s() * BATCH as f64);
        rows.push(
            Row::new(format!("get 32 × 1 KiB, hot, {label}"))
                .store(rate.map_or("-".into(), |r| {
                    format!("{} ({})", fmt_rate(r), fmt_bw(r * fx.record_bytes as f64))
                }))
                .ceiling(c_rate.map_or("-".into(), |r| {
                    format!(
                        "{} ({}) raw CQ walk{}",
                        fmt_rate(r),
                        fmt_bw(r * fx.record_bytes as f64),
                        if kind == "crc" { " + crc32fast" } else { "" }
                    )
                }))
                .ratio(rate.zip(c_rate).map(|(r, c)| r / c))
                .target(
                    if kind == "plain" {
                        "≥ 5 M msg/s"
                    } else {
                        "(the 5 M target is for plain reads)"
                    },
                    rate.filter(|_| kind == "plain").map(|r| r >= 5e6),
                ),
        );
    }
    let notes = vec![
        where_line(),
        format!(
            "8 queues × {} messages of {} B stored ({} MiB of CommitLog), reads cycle over queue 0",
            fx.per_queue,
            fx.record_bytes,
            (fx.per_queue * QUEUES * fx.record_bytes as u64) >> 20
        ),
        "MB/s counts stored record bytes; ratio = rocketstore / ceiling".into(),
    ];
    print_summary(
        "read through the ConsumeQueue (benches/read.rs)",
        &notes,
        &rows,
    );
    fx.store.close().unwrap();
}
