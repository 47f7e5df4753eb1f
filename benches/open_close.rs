//! Open and close of an empty and of a large (~1 GiB CommitLog) store, both closed cleanly
//! before, against mapping the same files in the same run.
//!
//! * `open_close/<empty|large>/open`: `Store::open` of a cleanly closed root (lock, checkpoint,
//!   load segments, ConsumeQueues and IndexFile, write `abort`, first flush, start the flusher);
//!   the close that follows is not timed.
//! * `open_close/<empty|large>/close`: `Store::close` right after an (untimed) open: stop the
//!   flusher, final flush, checkpoint, remove `abort`, unlock.
//! * `open_close/rocketmq_large/open`: the same large root as RocketMQ's broker leaves it at a
//!   clean shutdown: a checkpoint with RocketMQ's three timestamps and nothing of ours (no
//!   trailer, no geometry record), no `abort`. Before each open the previous close's trailer and
//!   geometry record are taken away again (untimed). Target (issue 19): at most 2× the open of
//!   the same root closed by rocketstore.
//! * `ceiling_map_files/<empty|large>`: open and `mmap` every regular file under the root, then
//!   unmap and close them all — the least an open that maps its files has to do.
//!
//! Run: `cargo bench --bench open_close`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    bench_custom, build_store, fmt_ns, print_summary, scale, stats, tempdir, where_line, Row,
    Timing,
};
use criterion::SamplingMode;
use rocketstore::{Store, StoreConfig};
use rocketstore_test_support::copy_tree;

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            files_under(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

fn map_all(root: &Path) {
    let mut files = Vec::new();
    files_under(root, &mut files);
    let maps: Vec<_> = files
        .iter()
        .filter_map(|p| {
            let f = std::fs::File::open(p).ok()?;
            if f.metadata().ok()?.len() == 0 {
                return None;
            }
            // SAFETY: read-only map of a file of a closed store this bench owns; nothing
            // resizes it while mapped.
            Some(unsafe { memmap2::Mmap::map(&f).unwrap() })
        })
        .collect();
    std::hint::black_box(&maps);
}

/// Makes a cleanly closed rocketstore root look as a RocketMQ broker leaves one: only
/// RocketMQ's 24 bytes of checkpoint (our trailer zeroed) and no geometry record.
fn as_rocketmq_root(root: &Path) {
    let cp = root.join("checkpoint");
    let mut bytes = std::fs::read(&cp).unwrap();
    bytes[24..].fill(0);
    std::fs::write(&cp, &bytes).unwrap();
    let geometry = root.join("rocketstore-geometry");
    if geometry.exists() {
        std::fs::remove_file(geometry).unwrap();
    }
}

fn main() {
    let mut c = common::criterion();
    let timing = Timing::new(0.5, 4.0, 10);
    let dir = tempdir();
    let empty = dir.path().join("empty");
    Store::open(&empty, StoreConfig::default())
        .unwrap()
        .close()
        .unwrap();
    let large = dir.path().join("large");
    let (messages, end) = build_store(&large, scale((1u64 << 30) - (32 << 20), 128 << 20));
    let rocketmq = dir.path().join("rocketmq_large");
    copy_tree(&large, &rocketmq).unwrap();

    const GROUP: &str = "open_close";
    let mut g = c.benchmark_group(GROUP);
    timing.apply(&mut g);
    g.sampling_mode(SamplingMode::Flat);
    for (name, root) in [("empty", &empty), ("large", &large)] {
        bench_custom(&mut g, GROUP, &format!("{name}/open"), |iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = Instant::now();
                let store = Store::open(root, StoreConfig::default()).unwrap();
                total += t0.elapsed();
                assert!(store.recovery_report().clean_shutdown);
                store.close().unwrap();
            }
            (total, Vec::new())
        });
        if name == "large" {
            bench_custom(&mut g, GROUP, "rocketmq_large/open", |iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    as_rocketmq_root(&rocketmq);
                    let t0 = Instant::now();
                    let store = Store::open(&rocketmq, StoreConfig::default()).unwrap();
                    total += t0.elapsed();
                    let r = store.recovery_report();
                    assert!(r.rocketmq_normal_recovery && !r.derived_rebuilt, "{r:?}");
                    assert_eq!(r.end_offset, end);
                    store.close().unwrap();
                }
                (total, Vec::new())
            });
        }
        bench_custom(&mut g, GROUP, &format!("{name}/close"), |iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let store = Store::open(root, StoreConfig::default()).unwrap();
                let t0 = Instant::now();
                store.close().unwrap();
                total += t0.elapsed();
            }
            (total, Vec::new())
        });
    }
    g.finish();

    const CEILING: &str = "ceiling_map_files";
    let mut g = c.benchmark_group(CEILING);
    timing.apply(&mut g);
    g.sampling_mode(SamplingMode::Flat);
    for (name, root) in [("empty", &empty), ("large", &large)] {
        bench_custom(&mut g, CEILING, name, |iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                map_all(root);
            }
            (t0.elapsed(), Vec::new())
        });
    }
    g.finish();
    c.final_summary();

    let n = timing.samples;
    let mut rows = Vec::new();
    for name in ["empty", "large"] {
        let ceiling = stats(&format!("{CEILING}/{name}"), n);
        for op in ["open", "close"] {
            let s = stats(&format!("{GROUP}/{name}/{op}"), n);
            let ratio = if op == "open" {
                s.as_ref()
                    .zip(ceiling.as_ref())
                    .map(|(s, c)| s.median_s / c.median_s)
            } else {
                None
            };
            rows.push(
                Row::new(format!("{op} {name} store"))
                    .store(s.as_ref().map_or("-".into(), |s| fmt_ns(s.median_s * 1e9)))
                    .ceiling(if op == "open" {
                        ceiling.as_ref().map_or("-".into(), |c| {
                            format!("{} map all files", fmt_ns(c.median_s * 1e9))
                        })
                    } else {
                        "-".into()
                    })
                    .ratio(ratio),
            );
        }
    }
    let clean = stats(&format!("{GROUP}/large/open"), n);
    let rocketmq_open = stats(&format!("{GROUP}/rocketmq_large/open"), n);
    let ratio = rocketmq_open
        .as_ref()
        .zip(clean.as_ref())
        .map(|(r, c)| r.median_s / c.median_s);
    rows.push(
        Row::new("open large RocketMQ root (clean shutdown)")
            .store(
                rocketmq_open
                    .as_ref()
                    .map_or("-".into(), |s| fmt_ns(s.median_s * 1e9)),
            )
            .ceiling(clean.as_ref().map_or("-".into(), |c| {
                format!(
                    "{} open of the same root closed by rocketstore",
                    fmt_ns(c.median_s * 1e9)
                )
            }))
            .ratio(ratio)
            .target("≤ 2× (issue 19)", ratio.map(|r| r <= 2.0)),
    );
    let mut files = Vec::new();
    files_under(&large, &mut files);
    let notes = vec![
        where_line(),
        format!(
            "large store: {messages} messages of 1 KiB with one key each, CommitLog end {end} B, {} files; both roots closed cleanly, so open trusts the checkpoint",
            files.len()
        ),
        "medians; ratio = open time / ceiling time (lower is better)".into(),
    ];
    print_summary("open and close (benches/open_close.rs)", &notes, &rows);
}
