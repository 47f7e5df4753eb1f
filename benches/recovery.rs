//! Recovery throughput against a sequential read + CRC32 of the same bytes, measured in the same
//! run.
//!
//! The fixture is one store root with ~1 GiB of CommitLog (1 KiB bodies, tag `TagA`, one unique
//! key each, 8 queues, default config: one 1 GiB segment), closed cleanly. Then, per iteration:
//!
//! * `recovery/abnormal`: an `abort` file is left in the root (what a crashed run leaves; its
//!   presence at open is how an unclean shutdown is detected, see `src/recovery/`), and
//!   `Store::open` is timed: it validates every record from the start of the segment holding the
//!   checkpoint's durable offset (here the whole log: magic, lengths, body CRC and whole-record
//!   CRC) and, since the checkpoint vouches for all derived data, keeps ConsumeQueue and IndexFile
//!   after its checks (before incremental recovery it deleted and rebuilt them). The store is
//!   then closed cleanly (not timed).
//! * `recovery/unclean_tail16m`: the root is extended by 16 MiB of the same messages and closed
//!   cleanly, then each iteration puts back the checkpoint of the closed 1 GiB fixture and an
//!   `abort` file: what a crash leaves when the last checkpoint was taken 16 MiB of log earlier
//!   and every page reached the disk (derived data past the checkpoint present). `Store::open`
//!   is timed; the store is then closed cleanly (not timed) and the next iteration does it again.
//! * `recovery/cq_rebuild`: `consumequeue/` is deleted from the cleanly closed root and
//!   `Store::open` is timed: the derived data no longer matches the checkpoint, so ConsumeQueue and
//!   IndexFile are rebuilt from the whole CommitLog.
//! * `ceiling_read_crc/seq`: `read()` of the same bytes from the segment file in 1 MiB chunks with
//!   a crc32fast pass over them (page cache hot, like the recoveries).
//! * `ceiling_read_crc/seq_then_sync_derived`: the same, then the bytes a rebuild dirties
//!   (ConsumeQueue units, index entries, the index's hash slots) written with one `pwrite` into a
//!   fresh `fallocate`d file and `fdatasync`ed: what a rebuild must do at least before `open`
//!   returns, since open makes the rebuilt data durable before it writes the checkpoint that
//!   vouches for it.
//!
//! Run: `cargo bench --bench recovery`.

mod common;

use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    bench_custom, build_store, first_segment, fmt_bw, fmt_ns, print_summary, scale, stats, tempdir,
    where_line, Row, Timing,
};
use criterion::{SamplingMode, Throughput};
use rocketstore::internals::{OpenMode, OsVfs, Vfs};
use rocketstore::{RecoveryReport, Store, StoreConfig};

/// Opens `root`, timing only the open; closes cleanly afterwards. Returns the open time and the
/// recovery report.
fn timed_open(root: &Path) -> (Duration, RecoveryReport) {
    let t0 = Instant::now();
    let store = Store::open(root, StoreConfig::default()).unwrap();
    let t = t0.elapsed();
    let report = store.recovery_report().clone();
    store.close().unwrap();
    (t, report)
}

/// The ceiling's work: reads the first `len` bytes of `segment` in `buf`-sized chunks and runs
/// CRC32 over them.
fn read_crc(segment: &Path, len: u64, buf: &mut [u8]) {
    let mut f = std::fs::File::open(segment).unwrap();
    let mut h = crc32fast::Hasher::new();
    let mut left = len as usize;
    while left > 0 {
        let want = left.min(buf.len());
        f.read_exact(&mut buf[..want]).unwrap();
        h.update(&buf[..want]);
        left -= want;
    }
    std::hint::black_box(h.finalize());
}

/// Appends about `bytes` of the fixture's messages (keys continuing after the existing ones) and
/// closes cleanly; returns the number of records added.
fn extend_store(root: &Path, bytes: u64) -> u64 {
    use rocketstore::Message;
    let store = Store::open(root, StoreConfig::default()).unwrap();
    let body = vec![0x5Au8; 1024];
    let start = store.commitlog_max_offset();
    let mut n = 0u64;
    while store.commitlog_max_offset() < start + bytes {
        let key = format!("T{n:012}");
        store
            .put(
                &Message::new("bench", (n % 8) as i32, &body)
                    .with_tags("TagA")
                    .with_keys([key.as_str()]),
            )
            .unwrap();
        n += 1;
    }
    store.close().unwrap();
    n
}

fn main() {
    let mut c = common::criterion();
    let timing = Timing::new(0.001, 12.0, 10);
    let dir = tempdir();
    let root = dir.path().join("store");
    let target = scale((1u64 << 30) - (32 << 20), 128 << 20);
    let (messages, end) = build_store(&root, target);
    // The bytes a rebuild dirties: a 20-byte ConsumeQueue unit and a 20-byte index entry per
    // message (one key each), and the index's hash slots (4 bytes each; the keys' hashes
    // spread over every page of the slot table).
    let derived_bytes = messages * 40 + 4 * u64::from(StoreConfig::default().index_hash_slots);

    let mut reports: Vec<(&str, RecoveryReport)> = Vec::new();
    {
        const GROUP: &str = "recovery";
        let mut g = c.benchmark_group(GROUP);
        timing.apply(&mut g);
        g.sampling_mode(SamplingMode::Flat);
        g.throughput(Throughput::Bytes(end));
        let mut last = None;
        bench_custom(&mut g, GROUP, "abnormal", |iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::fs::write(root.join("abort"), b"12345").unwrap();
                let (t, report) = timed_open(&root);
                assert!(!report.clean_shutdown, "{report:?}");
                assert_eq!(report.scanned_bytes, end, "{report:?}");
                total += t;
                last = Some(report);
            }
            (total, Vec::new())
        });
        if let Some(r) = last.take() {
            reports.push(("abnormal", r));
        }
        if common::selected("recovery/unclean_tail16m") {
            // The checkpoint of the cleanly closed fixture, then 16 MiB more behind it.
            let checkpoint = std::fs::read(root.join("checkpoint")).unwrap();
            let tail = scale(16u64 << 20, 4 << 20);
            let tail_records = extend_store(&root, tail);
            bench_custom(&mut g, GROUP, "unclean_tail16m", |iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    std::fs::write(root.join("checkpoint"), &checkpoint).unwrap();
                    std::fs::write(root.join("abort"), b"12345").unwrap();
                    let (t, report) = timed_open(&root);
                    assert!(!report.clean_shutdown, "{report:?}");
                    assert!(report.records_dispatched >= tail_records, "{report:?}");
                    total += t;
                    last = Some(report);
                }
                (total, Vec::new())
            });
            if let Some(r) = last.take() {
                reports.push(("unclean_tail16m", r));
            }
        }
        bench_custom(&mut g, GROUP, "cq_rebuild", |iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                std::fs::remove_dir_all(root.join("consumequeue")).unwrap();
                let (t, report) = timed_open(&root);
                assert!(
                    report.clean_shutdown && report.derived_rebuilt,
                    "{report:?}"
                );
                total += t;
                last = Some(report);
            }
            (total, Vec::new())
        });
        if let Some(r) = last.take() {
            reports.push(("cq_rebuild", r));
        }
        g.finish();
    }
    {
        const GROUP: &str = "ceiling_read_crc";
        let mut g = c.benchmark_group(GROUP);
        timing.apply(&mut g);
        g.sampling_mode(SamplingMode::Flat);
        g.throughput(Throughput::Bytes(end));
        let segment = first_segment(&root);
        let mut buf = vec![0u8; 1 << 20];
        bench_custom(&mut g, GROUP, "seq", |iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                read_crc(&segment, end, &mut buf);
            }
            (t0.elapsed(), Vec::new())
        });
        // What a rebuild must do at least besides reading: make its derived data durable before
        // open returns. Written with `pwrite` into a fresh file allocated the way the store
        // allocates its files (`Vfs::allocate`, `fallocate` here), then `fdatasync`ed.
        let derived_file = dir.path().join("derived");
        let derived = vec![0x11u8; derived_bytes as usize];
        bench_custom(&mut g, GROUP, "seq_then_sync_derived", |iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_file(&derived_file);
                let out = OsVfs.open_file(&derived_file, OpenMode::CreateNew).unwrap();
                out.allocate(derived_bytes).unwrap();
                let t0 = Instant::now();
                read_crc(&segment, end, &mut buf);
                out.write_all_at(&derived, 0).unwrap();
                out.sync_data().unwrap();
                total += t0.elapsed();
            }
            (total, Vec::new())
        });
        g.finish();
    }
    c.final_summary();

    let n = timing.samples;
    let ceiling = stats("ceiling_read_crc/seq", n);
    let c_bw = ceiling.as_ref().map(|c| c.per_s() * end as f64);
    let mut rows = Vec::new();
    for (id, label) in [
        ("abnormal", "abnormal recovery (abort left)"),
        ("cq_rebuild", "rebuild of deleted consumequeue/"),
        (
            "unclean_tail16m",
            "unclean open, checkpoint 16 MiB before the end",
        ),
    ] {
        let s = stats(&format!("recovery/{id}"), n);
        let bw = s.as_ref().map(|s| s.per_s() * end as f64);
        let ratio = bw.zip(c_bw).map(|(b, c)| b / c);
        rows.push(
            Row::new(format!("{label}, {} MiB", end >> 20))
                .store(s.as_ref().map_or("-".into(), |s| {
                    format!(
                        "{} ({})",
                        fmt_bw(bw.unwrap_or(0.0)),
                        fmt_ns(s.median_s * 1e9)
                    )
                }))
                .ceiling(ceiling.as_ref().map_or("-".into(), |c| {
                    format!(
                        "{} ({}) read+crc32",
                        fmt_bw(c_bw.unwrap_or(0.0)),
                        fmt_ns(c.median_s * 1e9)
                    )
                }))
                .ratio(ratio)
                .target("≥ 0.6x", ratio.map(|x| x >= 0.6)),
        );
    }
    let sync_ceiling = stats("ceiling_read_crc/seq_then_sync_derived", n);
    if let (Some(s), Some(c)) = (stats("recovery/cq_rebuild", n), sync_ceiling.as_ref()) {
        let ratio = c.median_s / s.median_s;
        rows.push(
            Row::new(format!(
                "rebuild of deleted consumequeue/, {} MiB: vs read+crc32 and sync of the derived bytes",
                end >> 20
            ))
            .store(fmt_ns(s.median_s * 1e9))
            .ceiling(format!(
                "{} (read+crc32, then {} MiB written and fdatasync'd)",
                fmt_ns(c.median_s * 1e9),
                derived_bytes >> 20
            ))
            .ratio(Some(ratio)),
        );
    }
    let mut notes = vec![
        where_line(),
        format!(
            "{messages} messages, CommitLog end {end} B; both recoveries also rebuild the IndexFile ({messages} keys) and sync ConsumeQueue, IndexFile and checkpoint before open returns"
        ),
    ];
    for (id, r) in &reports {
        notes.push(format!(
            "{id}: scanned {} B from {}, dispatched {} records, clean_shutdown {}",
            r.scanned_bytes, r.scanned_from, r.records_dispatched, r.clean_shutdown
        ));
    }
    print_summary("recovery (benches/recovery.rs)", &notes, &rows);
}
