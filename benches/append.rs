//! Append throughput against the machine's ceiling, measured in the same run.
//!
//! * `append_async/<size>`: `Store::put` of one message (8 queues round-robin, Async mode, 1 GiB
//!   segments created and prefaulted in the background), one producer.
//! * `ceiling_mmap_copy/<size>`: copying the same number of bytes into a fresh, prefaulted,
//!   preallocated shared mapping — what an append cannot beat.
//!
//! The ratio of the two is printed after the run (absolute times drift on shared machines,
//! ratios hold). Run: `cargo bench --bench append`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rocketstore::{Message, Store, StoreConfig};

const SIZES: [usize; 3] = [128, 1024, 16 * 1024];

fn store_config() -> StoreConfig {
    StoreConfig {
        commitlog_segment_size: 256 << 20,
        ..StoreConfig::default()
    }
}

fn bench_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_async");
    for size in SIZES {
        g.throughput(Throughput::Elements(1));
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), store_config()).unwrap();
        let body = vec![0x5Au8; size];
        let mut i = 0u32;
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                i = i.wrapping_add(1);
                store
                    .put(&Message::new("bench", (i % 8) as i32, &body).with_tags("TagA"))
                    .unwrap()
            })
        });
        store.close().unwrap();
    }
    g.finish();
}

fn bench_ceiling(c: &mut Criterion) {
    let mut g = c.benchmark_group("ceiling_mmap_copy");
    for size in SIZES {
        g.throughput(Throughput::Elements(1));
        // The record adds ~120 bytes of header, topic and properties to the body.
        let rec = vec![0x5Au8; size + 120];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let len = 256usize << 20;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(len as u64).unwrap();
        // SAFETY: the file is private to this benchmark and never resized while mapped.
        let mut map = unsafe { memmap2::MmapMut::map_mut(&f).unwrap() };
        for p in (0..len).step_by(4096) {
            map[p] = 0;
        }
        let mut pos = 0usize;
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    if pos + rec.len() > len {
                        pos = 0;
                    }
                    map[pos..pos + rec.len()].copy_from_slice(&rec);
                    pos += rec.len();
                }
                t.elapsed()
            })
        });
    }
    g.finish();
}

/// One producer in Sync mode: each put waits for its own fdatasync (nothing to group with).
/// Ceiling: `pwrite` of the same bytes into an already written file + `fdatasync`.
fn bench_sync(c: &mut Criterion) {
    use std::os::unix::fs::FileExt;
    let mut g = c.benchmark_group("append_sync_1_producer");
    g.throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        flush_mode: rocketstore::FlushMode::Sync,
        ..store_config()
    };
    let store = Store::open(dir.path(), config).unwrap();
    let body = vec![0x5Au8; 1024];
    g.bench_function("put_1KiB", |b| {
        b.iter(|| store.put(&Message::new("bench", 0, &body)).unwrap())
    });
    store.close().unwrap();

    let path = dir.path().join("ceiling");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.write_all_at(&vec![0u8; 64 << 20], 0).unwrap();
    f.sync_all().unwrap();
    let rec = vec![0x5Au8; 1024 + 120];
    let mut pos = 0u64;
    g.bench_function("ceiling_pwrite_fdatasync_1KiB", |b| {
        b.iter(|| {
            if pos + rec.len() as u64 > 64 << 20 {
                pos = 0;
            }
            f.write_all_at(&rec, pos).unwrap();
            f.sync_data().unwrap();
            pos += rec.len() as u64;
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(30);
    targets = bench_append, bench_ceiling, bench_sync
}
criterion_main!(benches);
