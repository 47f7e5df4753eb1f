//! Append throughput and sync-put latency against the machine's ceilings, measured in the same
//! run; then the process's anonymous memory after 1M and 4M puts.
//!
//! * `append_async/<size>/<n>p`: `Store::put` of one message (topic `bench`, tag `TagA`, no keys,
//!   8 queues round-robin), Async flush, default config (1 GiB segments, the next one created and
//!   prefaulted in the background), `n` producer threads sharing the store. Each case starts on a
//!   new store that is first written (untimed) past its first segment, so the timed puts land in
//!   segments the store prepared in the background (the steady state).
//! * `append_async/1KiB/1p_first_segment`: the same into the first segment of a new store, which
//!   is created on the put path without prefault.
//! * `append_async/batch_32x128B/1p`: `Store::put_batch` of 32 × 128 B messages into one queue
//!   (queues round-robin per batch), steady state as above; one iteration = one message. Its
//!   ceiling is `ceiling_mmap_copy_crc/128B` per record (the same bytes); target ≥ 0.8×.
//! * `ceiling_mmap_copy/<size>`: copying the same record bytes (the length a put reports) into a
//!   preallocated, prefaulted 256 MiB shared file mapping, cyclically — one stream, because the
//!   CommitLog is one stream whatever the number of producers.
//! * `ceiling_mmap_copy_crc/<size>`: the same copy plus a CRC32 pass over the body and one over
//!   the copied record: the least a RocketMQ record with BODYCRC and the whole-record CRC property
//!   (`append_crc_property`, the default) costs.
//! * `append_sync/1KiB/<n>p`: Sync flush (group commit), `n` producers; every put's latency is
//!   recorded for p50/p99.
//! * `append_sync/1KiB/1p_pipelined_w<W>`: one producer thread, Sync flush, `W` puts in flight
//!   through `Store::put_with_ack` (each acknowledged by a callback once durable, instead of a
//!   blocked thread per put); the ratio is to the ideal group commit of 64 records.
//! * `ceiling_group_commit/1KiB/<n>p`: the ideal group commit — one `pwrite` of `n` records plus
//!   one `fdatasync` per iteration, into a pre-written (not growing) file on the same disk. Store
//!   and ceiling cases alternate per producer count, so each ratio compares neighbours in time.
//! * `ceiling_threaded_commit/{staged,pwrite_each}/<n>p` (4, 16, 64 producers): a minimal group
//!   commit with one blocked thread per put and none of the engine (see [`threaded_commit`]):
//!   what any design of that shape reaches on this machine, to tell the engine's cost from the
//!   cost of one thread per put.
//!
//! Run: `cargo bench --bench append` (`ROCKETSTORE_BENCH_QUICK=1` for a smoke run).

mod common;

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::{
    bench_custom, fmt_bw, fmt_ns, fmt_rate, print_summary, proc_status_kib, scale, split, stats,
    tempdir, where_line, Row, Timing,
};
use criterion::{Criterion, Throughput};
use rocketstore::{FlushMode, Message, PutStatus, Store, StoreConfig, WriteMode};

const SIZES: [usize; 3] = [128, 1024, 16 * 1024];
const ASYNC_THREADS: [usize; 2] = [1, 4];
const SYNC_THREADS: [usize; 4] = [1, 4, 16, 64];
const QUEUES: usize = 8;
const TOPIC: &str = "bench";
const RING_BYTES: usize = 256 << 20;

/// Sync puts that came back `FlushDiskTimeout` (reported in the summary; should be 0).
static SYNC_TIMEOUTS: AtomicU64 = AtomicU64::new(0);

fn size_name(size: usize) -> String {
    if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

fn message(queue: usize, body: &[u8]) -> Message<'_> {
    Message::new(TOPIC, (queue % QUEUES) as i32, body).with_tags("TagA")
}

/// Stored length of one record with this body (what the ceilings copy or write).
fn record_len(body_size: usize) -> usize {
    let dir = tempdir();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            commitlog_segment_size: 16 << 20,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let body = vec![0x5Au8; body_size];
    let len = store.put(&message(0, &body)).unwrap().wrote_bytes;
    store.close().unwrap();
    len
}

/// `iters` puts spread over `threads` producers, all started together; returns the wall time
/// and, if asked, every put's latency.
fn produce(
    store: &Store,
    threads: usize,
    iters: u64,
    body: &[u8],
    latencies: bool,
) -> (Duration, Vec<u64>) {
    timed_producers(threads, iters, latencies, &|q| {
        let r = store.put(&message(q, body)).unwrap();
        if latencies && r.status != PutStatus::Ok {
            SYNC_TIMEOUTS.fetch_add(1, Ordering::Relaxed);
        }
        std::hint::black_box(r);
    })
}

/// Runs `iters` calls of `one_put(i)` spread over `threads` threads (`i` counts each thread's
/// calls, offset by its number), all started together behind a barrier (one producer runs on
/// the caller's thread). Returns the wall time and, if `latencies`, every call's latency.
fn timed_producers(
    threads: usize,
    iters: u64,
    latencies: bool,
    one_put: &(dyn Fn(usize) + Sync),
) -> (Duration, Vec<u64>) {
    let run = |first: usize, n: u64| {
        let mut lat = Vec::with_capacity(if latencies { n as usize } else { 0 });
        for i in 0..n as usize {
            if latencies {
                let t0 = Instant::now();
                one_put(first + i);
                lat.push(t0.elapsed().as_nanos() as u64);
            } else {
                one_put(first + i);
            }
        }
        lat
    };
    if threads == 1 {
        let t0 = Instant::now();
        let lat = run(0, iters);
        return (t0.elapsed(), lat);
    }
    let parts = split(iters, threads);
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = parts
            .iter()
            .enumerate()
            .map(|(t, &n)| {
                let (barrier, run) = (&barrier, &run);
                s.spawn(move || {
                    barrier.wait();
                    run(t, n)
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let lat: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        (t0.elapsed(), lat)
    })
}

/// The store configuration of the append cases: the defaults, in the write mode named by
/// `ROCKETSTORE_BENCH_WRITE_MODE` (`auto`, the default, `mmap` or `write-buffer`), so the
/// modes can be compared run against run with the same ceilings.
fn store_config() -> StoreConfig {
    let write_mode = match std::env::var("ROCKETSTORE_BENCH_WRITE_MODE").as_deref() {
        Ok("write-buffer") => WriteMode::WriteBuffer,
        Ok("mmap") => WriteMode::Mmap,
        Ok("auto") | Err(_) => WriteMode::Auto,
        Ok(other) => {
            panic!("ROCKETSTORE_BENCH_WRITE_MODE={other}: expected auto, mmap or write-buffer")
        }
    };
    StoreConfig {
        write_mode,
        ..StoreConfig::default()
    }
}

fn bench_async(c: &mut Criterion, timing: &Timing) {
    const GROUP: &str = "append_async";
    let mut g = c.benchmark_group(GROUP);
    timing.apply(&mut g);
    g.throughput(Throughput::Elements(1));
    for size in SIZES {
        let body = vec![0x5Au8; size];
        for threads in ASYNC_THREADS {
            let name = format!("{}/{threads}p", size_name(size));
            if !common::selected(&format!("{GROUP}/{name}")) {
                continue;
            }
            // A fresh store per case, so every case starts at an empty log, after the previous
            // cases' dirty pages are written back (else the writeback throttles this one).
            common::wait_for_writeback();
            let dir = tempdir();
            let store = Store::open(dir.path(), store_config()).unwrap();
            warm_past_first_segment(&store, threads, &body);
            common::wait_for_writeback();
            bench_custom(&mut g, GROUP, &name, |iters| {
                produce(&store, threads, iters, &body, false)
            });
            store.close().unwrap();
        }
    }
    // The first segment of a new store is created on the put path without prefault (only the
    // segments after it are prepared in the background): measured separately, 1 KiB, 1 producer.
    if common::selected("append_async/1KiB/1p_first_segment") {
        let body = vec![0x5Au8; 1024];
        common::wait_for_writeback();
        let dir = tempdir();
        let store = Store::open(dir.path(), store_config()).unwrap();
        produce(&store, 1, 1000, &body, false);
        bench_custom(&mut g, GROUP, "1KiB/1p_first_segment", |iters| {
            produce(&store, 1, iters, &body, false)
        });
        store.close().unwrap();
    }
    if common::selected("append_async/batch_32x128B/1p") {
        const BATCH: u64 = 32;
        let body = vec![0x5Au8; 128];
        common::wait_for_writeback();
        let dir = tempdir();
        let store = Store::open(dir.path(), store_config()).unwrap();
        warm_past_first_segment(&store, 1, &body);
        common::wait_for_writeback();
        let mut q = 0usize;
        bench_custom(&mut g, GROUP, "batch_32x128B/1p", |iters| {
            let batches = iters.div_ceil(BATCH);
            let t0 = Instant::now();
            for _ in 0..batches {
                let msgs: [Message<'_>; BATCH as usize] =
                    std::array::from_fn(|_| message(q, &body));
                std::hint::black_box(store.put_batch(&msgs).unwrap());
                q += 1;
            }
            // Whole batches were timed: scaled to `iters` messages.
            let t = t0
                .elapsed()
                .mul_f64(iters as f64 / (batches * BATCH) as f64);
            (t, Vec::new())
        });
        store.close().unwrap();
    }
    g.finish();
}

/// Untimed puts until the log has rolled into its second segment, which the store prepared
/// (created and prefaulted) in the background: the steady state of a running store. The first
/// segment of a new store is created on the put path without prefault. Quick mode only writes
/// 20k messages (it measures the first segment).
fn warm_past_first_segment(store: &Store, threads: usize, body: &[u8]) {
    produce(store, threads, 20_000, body, false);
    if common::quick() {
        return;
    }
    let segment = store.config().commitlog_segment_size as u64;
    while store.commitlog_max_offset() < segment + (1 << 20) {
        produce(store, threads, 20_000, body, false);
    }
}

/// A preallocated, prefaulted shared mapping of a scratch file.
fn prefaulted_ring(dir: &std::path::Path) -> memmap2::MmapMut {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.join("ring"))
        .unwrap();
    f.set_len(RING_BYTES as u64).unwrap();
    // SAFETY: the file is private to this benchmark and never resized while mapped.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&f).unwrap() };
    // SAFETY: madvise on the whole of a live mapping we own; MADV_POPULATE_WRITE only faults
    // pages in (it does not change their contents).
    let rc = unsafe {
        libc::madvise(
            map.as_mut_ptr().cast(),
            RING_BYTES,
            libc::MADV_POPULATE_WRITE,
        )
    };
    if rc != 0 {
        for p in (0..RING_BYTES).step_by(4096) {
            map[p] = 0;
        }
    }
    map
}

fn bench_async_ceiling(c: &mut Criterion, timing: &Timing) {
    const GROUP: &str = "ceiling_mmap_copy";
    let mut g = c.benchmark_group(GROUP);
    timing.apply(&mut g);
    g.throughput(Throughput::Elements(1));
    let dir = tempdir();
    let mut map = prefaulted_ring(dir.path());
    for size in SIZES {
        let rec = vec![0x5Au8; record_len(size)];
        let mut pos = 0usize;
        bench_custom(&mut g, GROUP, &size_name(size), |iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                if pos + rec.len() > RING_BYTES {
                    pos = 0;
                }
                map[pos..pos + rec.len()].copy_from_slice(&rec);
                pos += rec.len();
            }
            let t = t0.elapsed();
            std::hint::black_box(map.as_ptr());
            (t, Vec::new())
        });
    }
    g.finish();

    // The least a RocketMQ record with the whole-record CRC property costs: the copy plus a
    // CRC32 pass over the body (BODYCRC) and one over the record (the CRC property).
    const CRC_GROUP: &str = "ceiling_mmap_copy_crc";
    let mut g = c.benchmark_group(CRC_GROUP);
    timing.apply(&mut g);
    g.throughput(Throughput::Elements(1));
    for size in SIZES {
        let rec = vec![0x5Au8; record_len(size)];
        let mut pos = 0usize;
        bench_custom(&mut g, CRC_GROUP, &size_name(size), |iters| {
            let t0 = Instant::now();
            let mut acc = 0u32;
            for _ in 0..iters {
                if pos + rec.len() > RING_BYTES {
                    pos = 0;
                }
                acc ^= crc32fast::hash(&rec[rec.len() - size..]);
                map[pos..pos + rec.len()].copy_from_slice(&rec);
                acc ^= crc32fast::hash(&map[pos..pos + rec.len()]);
                pos += rec.len();
            }
            let t = t0.elapsed();
            std::hint::black_box((map.as_ptr(), acc));
            (t, Vec::new())
        });
    }
    g.finish();
}

/// Sync puts and their ceiling, interleaved per producer count (store case, then ceiling case)
/// so that each pair sees the same disk: fdatasync latency on a shared virtual disk drifts by
/// 10x within minutes (MACHINE.md), and a ratio is only meaningful between neighbours in time.
fn bench_sync(c: &mut Criterion, timing: &Timing) {
    const GROUP: &str = "append_sync";
    const CEILING: &str = "ceiling_group_commit";
    const THREADED: &str = "ceiling_threaded_commit";
    const FILE_BYTES: u64 = 64 << 20;
    let dir = tempdir();
    let config = StoreConfig {
        flush_mode: FlushMode::Sync,
        ..store_config()
    };
    let store = Store::open(dir.path(), config).unwrap();
    let body = vec![0x5Au8; 1024];
    produce(&store, 1, 100, &body, false);

    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("ceiling"))
        .unwrap();
    // Pre-written and synced: the per-commit cost is the data write and the device flush, with
    // no file growth or block allocation (see MACHINE.md §4).
    let chunk = vec![0u8; 1 << 20];
    for i in 0..FILE_BYTES >> 20 {
        f.write_all_at(&chunk, i << 20).unwrap();
    }
    f.sync_all().unwrap();
    let rec_len = record_len(1024);
    let mut pos = 0u64;

    for threads in SYNC_THREADS {
        let name = format!("1KiB/{threads}p");
        let mut g = c.benchmark_group(GROUP);
        timing.apply(&mut g);
        g.throughput(Throughput::Elements(1));
        bench_custom(&mut g, GROUP, &name, |iters| {
            produce(&store, threads, iters, &body, true)
        });
        g.finish();

        let mut g = c.benchmark_group(CEILING);
        timing.apply(&mut g);
        let batch = vec![0x5Au8; rec_len * threads];
        g.throughput(Throughput::Elements(threads as u64));
        bench_custom(&mut g, CEILING, &name, |iters| {
            let mut lat = Vec::with_capacity(iters as usize);
            let t0 = Instant::now();
            for _ in 0..iters {
                let t = Instant::now();
                if pos + batch.len() as u64 > FILE_BYTES {
                    pos = 0;
                }
                f.write_all_at(&batch, pos).unwrap();
                f.sync_data().unwrap();
                pos += batch.len() as u64;
                lat.push(t.elapsed().as_nanos() as u64);
            }
            (t0.elapsed(), lat)
        });
        g.finish();

        if threads < 4 {
            continue;
        }
        let rec = vec![0x5Au8; rec_len];
        for (shape, label) in [
            (threaded_commit::Shape::Staged, "staged"),
            (threaded_commit::Shape::PwriteEach, "pwrite_each"),
        ] {
            let mut g = c.benchmark_group(THREADED);
            timing.apply(&mut g);
            g.throughput(Throughput::Elements(1));
            let path = dir.path().join(format!("threaded-{label}"));
            let mut reference = threaded_commit::RefCommit::new(&path, shape);
            bench_custom(&mut g, THREADED, &format!("{label}/{threads}p"), |iters| {
                if !reference.has_room(iters * rec_len as u64) {
                    reference = threaded_commit::RefCommit::new(&path, shape);
                }
                reference.run(threads, iters, &rec)
            });
            g.finish();
        }
    }

    // One producer thread with `window` puts in flight through `put_with_ack`: durability
    // without a blocked thread per put (compared with the 64-producer rows).
    for window in PIPELINE_WINDOWS {
        let name = format!("1KiB/1p_pipelined_w{window}");
        if !common::selected(&format!("{GROUP}/{name}")) {
            continue;
        }
        let mut g = c.benchmark_group(GROUP);
        timing.apply(&mut g);
        g.throughput(Throughput::Elements(1));
        bench_custom(&mut g, GROUP, &name, |iters| {
            pipelined(&store, iters, window, &body)
        });
        g.finish();
    }
    store.close().unwrap();
}

/// Puts in flight at once in the pipelined Sync cases.
const PIPELINE_WINDOWS: [u64; 2] = [64, 1024];

/// `iters` Sync puts from this thread through `put_with_ack`, at most `window` unacknowledged;
/// returns the time until the last acknowledgement and each put's latency (put to callback).
fn pipelined(store: &Store, iters: u64, window: u64, body: &[u8]) -> (Duration, Vec<u64>) {
    use std::sync::{Arc, Condvar, Mutex};
    struct Flight {
        inflight: u64,
        latencies: Vec<u64>,
    }
    let flight = Arc::new((
        Mutex::new(Flight {
            inflight: 0,
            latencies: Vec::with_capacity(iters as usize),
        }),
        Condvar::new(),
    ));
    let t0 = Instant::now();
    for i in 0..iters {
        {
            let (lock, cv) = &*flight;
            let mut f = lock.lock().unwrap();
            while f.inflight >= window {
                f = cv.wait(f).unwrap();
            }
            f.inflight += 1;
        }
        let f = flight.clone();
        let start = Instant::now();
        store
            .put_with_ack(&[message(i as usize, body)], move |r| {
                r.expect("acknowledged");
                let (lock, cv) = &*f;
                let mut f = lock.lock().unwrap();
                f.latencies.push(start.elapsed().as_nanos() as u64);
                f.inflight -= 1;
                cv.notify_one();
            })
            .unwrap();
    }
    let (lock, cv) = &*flight;
    let mut f = lock.lock().unwrap();
    while f.inflight > 0 {
        f = cv.wait(f).unwrap();
    }
    (t0.elapsed(), std::mem::take(&mut f.latencies))
}

/// The bound of thread-per-put group commit on this machine: a minimal one, none of the
/// engine (no encoding, no ConsumeQueue, no index, no flusher), so that `append_sync` can be
/// compared with what any design that blocks one thread per put reaches here.
///
/// `n` producers each append one record under a mutex and sleep on a futex until a sync thread
/// has made it durable; the sync thread syncs whatever was appended and wakes every sleeper
/// with one `FUTEX_WAKE` (the store's `WakeWord`, as in its group commit). Two shapes:
///
/// * [`Shape::Staged`]: producers copy into a shared buffer; the sync thread writes the whole
///   batch with one `pwrite` then `fdatasync`s, into a pre-written file. The best shape found
///   (the ideal group commit plus the threads).
/// * [`Shape::PwriteEach`]: every producer `pwrite`s its own record (the store's WriteBuffer
///   mode) into a fresh `fallocate`d file, keeping 256 KiB of written zeros ahead of the records
///   like the store (`ZERO_AHEAD` in `src/commitlog.rs`): the store's own I/O pattern.
mod threaded_commit {
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::time::Duration;

    use parking_lot::Mutex;
    // The store's own futex word: sleepers and the one wake per sync cost what they cost it.
    use rocketstore::internals::{OpenMode, OsVfs, Vfs, VfsFile, WakeWord};

    /// See the module docs.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Shape {
        Staged,
        PwriteEach,
    }

    const FILE_BYTES: u64 = 1 << 30;
    const ZERO_AHEAD: u64 = 256 << 10;

    /// The log: its end, the batch not yet written (Staged) and the zeroed frontier
    /// (PwriteEach).
    struct Log {
        end: u64,
        staged: Vec<u8>,
        zeroed: u64,
    }

    /// One file and its group commit; reused across a case's iterations.
    pub struct RefCommit {
        file: Box<dyn VfsFile>,
        shape: Shape,
        log: Mutex<Log>,
        requested: AtomicU64,
        durable: AtomicU64,
        idle: AtomicBool,
        work: WakeWord,
        done: WakeWord,
        stop: AtomicBool,
    }

    /// A new file at `path`: Staged, 64 MiB written and synced; PwriteEach, 1 GiB allocated the
    /// way the store allocates a segment (`Vfs::allocate`, `fallocate` here: unwritten extents).
    fn fresh_file(path: &Path, shape: Shape) -> Box<dyn VfsFile> {
        let _ = std::fs::remove_file(path);
        let f = OsVfs.open_file(path, OpenMode::CreateNew).unwrap();
        match shape {
            Shape::Staged => {
                let chunk = vec![0u8; 1 << 20];
                for i in 0..(64 << 20) >> 20 {
                    f.write_all_at(&chunk, i << 20).unwrap();
                }
            }
            Shape::PwriteEach => f.allocate(FILE_BYTES).unwrap(),
        }
        f.sync_all().unwrap();
        f
    }

    impl RefCommit {
        pub fn new(path: &Path, shape: Shape) -> RefCommit {
            RefCommit {
                file: fresh_file(path, shape),
                shape,
                log: Mutex::new(Log {
                    end: 0,
                    staged: Vec::with_capacity(1 << 20),
                    zeroed: 0,
                }),
                requested: AtomicU64::new(0),
                durable: AtomicU64::new(0),
                idle: AtomicBool::new(false),
                work: WakeWord::default(),
                done: WakeWord::default(),
                stop: AtomicBool::new(false),
            }
        }

        /// One put: append `rec`, wait until it is durable.
        fn put(&self, rec: &[u8], zeros: &[u8]) {
            let end = {
                let mut log = self.log.lock();
                let at = log.end;
                match self.shape {
                    Shape::Staged => log.staged.extend_from_slice(rec),
                    Shape::PwriteEach => {
                        let end = at + rec.len() as u64;
                        if end + ZERO_AHEAD / 2 > log.zeroed && end + ZERO_AHEAD <= FILE_BYTES {
                            let len = (at + ZERO_AHEAD - end) as usize;
                            self.file.write_all_at(&zeros[..len], end).unwrap();
                            log.zeroed = at + ZERO_AHEAD;
                        }
                        self.file.write_all_at(rec, at).unwrap();
                    }
                }
                log.end = at + rec.len() as u64;
                log.end
            };
            self.requested.fetch_max(end, SeqCst);
            if self.idle.load(SeqCst) {
                self.work.advance();
            }
            loop {
                let seen = self.done.current();
                if self.durable.load(SeqCst) >= end {
                    return;
                }
                self.done.wait(seen, Duration::from_secs(1));
            }
        }

        /// The sync thread, until `stop`. Staged batches go one after the other into the
        /// pre-written 64 MiB, from its start again when the next would not fit (where they
        /// land does not matter, only that the blocks are written ones).
        fn run_sync(&self) {
            let mut pos = 0u64;
            loop {
                let seen = self.work.current();
                self.idle.store(true, SeqCst);
                if self.stop.load(SeqCst) {
                    return;
                }
                if self.requested.load(SeqCst) <= self.durable.load(SeqCst) {
                    self.work.wait(seen, Duration::from_secs(1));
                    continue;
                }
                self.idle.store(false, SeqCst);
                let target = match self.shape {
                    Shape::Staged => {
                        let (target, batch) = {
                            let mut log = self.log.lock();
                            let batch =
                                std::mem::replace(&mut log.staged, Vec::with_capacity(1 << 20));
                            (log.end, batch)
                        };
                        if pos + batch.len() as u64 > 64 << 20 {
                            pos = 0;
                        }
                        self.file.write_all_at(&batch, pos).unwrap();
                        pos += batch.len() as u64;
                        target
                    }
                    Shape::PwriteEach => self.log.lock().end,
                };
                self.file.sync_data().unwrap();
                self.durable.fetch_max(target, SeqCst);
                self.done.advance();
            }
        }

        /// `iters` puts of `rec` over `threads` producers; the wall time and each put's latency.
        /// The caller checks [`has_room`](Self::has_room) first.
        pub fn run(&self, threads: usize, iters: u64, rec: &[u8]) -> (Duration, Vec<u64>) {
            let zeros = vec![0u8; ZERO_AHEAD as usize];
            self.stop.store(false, SeqCst);
            std::thread::scope(|s| {
                s.spawn(|| self.run_sync());
                let timed = super::timed_producers(threads, iters, true, &|_| {
                    self.put(rec, &zeros);
                });
                self.stop.store(true, SeqCst);
                self.work.advance();
                timed
            })
        }

        /// Whether `more` bytes still fit before a PwriteEach file would have to wrap.
        pub fn has_room(&self, more: u64) -> bool {
            self.shape == Shape::Staged || self.log.lock().end + more + ZERO_AHEAD <= FILE_BYTES
        }
    }
}

/// RssAnon (KiB) before and after 1M and 4M puts into one store: the engine's own memory must
/// not grow with the number of messages (mapped segment pages are file-backed, not anonymous).
struct MemoryProbe {
    warm_kib: u64,
    after_small_kib: u64,
    after_large_kib: u64,
    small: u64,
    large: u64,
    rss_file_kib: u64,
}

fn memory_probe() -> MemoryProbe {
    let (small, large) = scale((1_000_000u64, 4_000_000u64), (100_000, 400_000));
    let dir = tempdir();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let body = vec![0x5Au8; 128];
    // Every message carries a unique key, so the IndexFile grows too.
    let put_range = |from: u64, to: u64| {
        for i in from..to {
            let key = format!("KEY-{i:010}");
            store
                .put(&message(i as usize, &body).with_keys([key.as_str()]))
                .unwrap();
        }
    };
    put_range(0, 10_000);
    let warm_kib = proc_status_kib("RssAnon");
    put_range(10_000, small);
    let after_small_kib = proc_status_kib("RssAnon");
    put_range(small, large);
    let after_large_kib = proc_status_kib("RssAnon");
    let rss_file_kib = proc_status_kib("RssFile");
    store.close().unwrap();
    MemoryProbe {
        warm_kib,
        after_small_kib,
        after_large_kib,
        small,
        large,
        rss_file_kib,
    }
}

/// Runs the memory probe unless a criterion filter was given that does not name it.
fn wants_memory_probe() -> bool {
    common::selected("memory_rss")
}

fn summary(n_async: usize, n_sync: usize, mem: Option<MemoryProbe>) {
    let n = n_async;
    let mut rows = Vec::new();
    let mut notes = vec![where_line()];
    notes.push(format!(
        "write mode: {:?} (ROCKETSTORE_BENCH_WRITE_MODE=auto|mmap|write-buffer)",
        store_config().write_mode
    ));
    for size in SIZES {
        let rec = record_len(size);
        notes.push(format!(
            "{} body = {rec} B stored record; MB/s below is payload (body) bytes",
            size_name(size)
        ));
        let ceiling = stats(&format!("ceiling_mmap_copy/{}", size_name(size)), n);
        for threads in ASYNC_THREADS {
            let id = format!("append_async/{}/{threads}p", size_name(size));
            let s = stats(&id, n);
            let rate = s.as_ref().map(|s| s.per_s());
            let ratio = rate.zip(ceiling.as_ref()).map(|(r, c)| r / c.per_s());
            let (target, met) = match size {
                128 => ("≥ 2.5 M msg/s", rate.map(|r| r >= 2.5e6)),
                1024 => (
                    "≥ 1.2 M msg/s and ≥ 0.5x",
                    rate.zip(ratio).map(|(r, x)| r >= 1.2e6 && x >= 0.5),
                ),
                _ => ("≥ 1.5 GB/s", rate.map(|r| r * size as f64 >= 1.5e9)),
            };
            rows.push(
                Row::new(format!(
                    "async put {}, {threads} producer(s)",
                    size_name(size)
                ))
                .store(rate.map_or("-".into(), |r| {
                    format!("{} ({})", fmt_rate(r), fmt_bw(r * size as f64))
                }))
                .ceiling(ceiling.as_ref().map_or("-".into(), |c| {
                    format!(
                        "{} ({}) mmap copy",
                        fmt_rate(c.per_s()),
                        fmt_bw(c.per_s() * rec as f64)
                    )
                }))
                .ratio(ratio)
                .target(target, met),
            );
        }
    }
    for size in SIZES {
        let (Some(s), Some(c)) = (
            stats(&format!("append_async/{}/1p", size_name(size)), n),
            stats(&format!("ceiling_mmap_copy_crc/{}", size_name(size)), n),
        ) else {
            continue;
        };
        rows.push(
            Row::new(format!(
                "async put {}, 1 producer: vs copy + BODYCRC + record CRC",
                size_name(size)
            ))
            .store(fmt_rate(s.per_s()))
            .ceiling(format!("{} copy + 2 CRC32 passes", fmt_rate(c.per_s())))
            .ratio(Some(s.per_s() / c.per_s())),
        );
    }
    if let (Some(s), Some(c)) = (
        stats("append_async/batch_32x128B/1p", n),
        stats("ceiling_mmap_copy_crc/128B", n),
    ) {
        let ratio = s.per_s() / c.per_s();
        rows.push(
            Row::new("async put_batch 32 × 128 B, 1 producer (per message)")
                .store(fmt_rate(s.per_s()))
                .ceiling(format!(
                    "{} copy + 2 CRC32 passes, same records",
                    fmt_rate(c.per_s())
                ))
                .ratio(Some(ratio))
                .target("≥ 0.8x", Some(ratio >= 0.8)),
        );
    }
    if let Some(s) = stats("append_async/1KiB/1p_first_segment", n) {
        let ceiling = stats("ceiling_mmap_copy/1KiB", n);
        rows.push(
            Row::new("async put 1KiB, 1 producer, first segment of a new store")
                .store(format!(
                    "{} ({})",
                    fmt_rate(s.per_s()),
                    fmt_bw(s.per_s() * 1024.0)
                ))
                .ceiling(
                    ceiling
                        .as_ref()
                        .map_or("-".into(), |c| format!("{} mmap copy", fmt_rate(c.per_s()))),
                )
                .ratio(ceiling.map(|c| s.per_s() / c.per_s())),
        );
    }
    for threads in SYNC_THREADS {
        let s = stats(&format!("append_sync/1KiB/{threads}p"), n_sync);
        let c = stats(&format!("ceiling_group_commit/1KiB/{threads}p"), n_sync);
        let rate = s.as_ref().map(|s| s.per_s());
        let c_rate = c.as_ref().map(|c| c.per_s() * threads as f64);
        let ratio = rate.zip(c_rate).map(|(r, c)| r / c);
        let (target, met) = if threads >= 16 {
            ("≥ 0.8x ideal group commit", ratio.map(|x| x >= 0.8))
        } else {
            ("-", None)
        };
        rows.push(
            Row::new(format!("sync put 1KiB, {threads} producer(s): throughput"))
                .store(rate.map_or("-".into(), fmt_rate))
                .ceiling(c_rate.map_or("-".into(), |r| {
                    format!("{} ({threads} rec/pwrite+fdatasync)", fmt_rate(r))
                }))
                .ratio(ratio)
                .target(target, met),
        );
        for (label, what) in [
            (
                "staged",
                "1 pwrite of the batch + fdatasync, pre-written file",
            ),
            (
                "pwrite_each",
                "pwrite per put, fallocated + 256 KiB zeros ahead",
            ),
        ] {
            let Some(t) = stats(
                &format!("ceiling_threaded_commit/{label}/{threads}p"),
                n_sync,
            ) else {
                continue;
            };
            rows.push(
                Row::new(format!(
                    "sync put 1KiB, {threads} producers: vs thread-per-put bound ({label})"
                ))
                .store(rate.map_or("-".into(), fmt_rate))
                .ceiling(format!("{} ({what})", fmt_rate(t.per_s())))
                .ratio(rate.map(|r| r / t.per_s())),
            );
        }
        let pct = |s: &Option<common::Stats>| {
            s.as_ref()
                .and_then(|s| Some((s.pct_ns(50.0)?, s.pct_ns(99.0)?)))
        };
        let (sp, cp) = (pct(&s), pct(&c));
        let lat_ratio = sp.zip(cp).map(|(s, c)| s.0 / c.0);
        let (target, met) = if threads == 1 {
            (
                "p50 ≤ 1.3x one pwrite+fdatasync",
                lat_ratio.map(|x| x <= 1.3),
            )
        } else {
            ("-", None)
        };
        rows.push(
            Row::new(format!(
                "sync put 1KiB, {threads} producer(s): latency p50 / p99"
            ))
            .store(sp.map_or("-".into(), |(a, b)| {
                format!("{} / {}", fmt_ns(a), fmt_ns(b))
            }))
            .ceiling(cp.map_or("-".into(), |(a, b)| {
                format!("{} / {} per sync", fmt_ns(a), fmt_ns(b))
            }))
            .ratio(lat_ratio)
            .target(target, met),
        );
    }
    let ideal64 = stats("ceiling_group_commit/1KiB/64p", n_sync).map(|c| c.per_s() * 64.0);
    for window in PIPELINE_WINDOWS {
        let Some(s) = stats(&format!("append_sync/1KiB/1p_pipelined_w{window}"), n_sync) else {
            continue;
        };
        let ratio = ideal64.map(|c| s.per_s() / c);
        rows.push(
            Row::new(format!(
                "sync put 1KiB, 1 producer, {window} in flight (put_with_ack): throughput"
            ))
            .store(fmt_rate(s.per_s()))
            .ceiling(ideal64.map_or("-".into(), |r| {
                format!("{} (64 rec/pwrite+fdatasync)", fmt_rate(r))
            }))
            .ratio(ratio)
            .target("≥ 0.8x ideal group commit", ratio.map(|x| x >= 0.8)),
        );
        if let (Some(p50), Some(p99)) = (s.pct_ns(50.0), s.pct_ns(99.0)) {
            rows.push(
                Row::new(format!(
                    "… {window} in flight: latency from put to acknowledgement, p50 / p99"
                ))
                .store(format!("{} / {}", fmt_ns(p50), fmt_ns(p99))),
            );
        }
    }
    notes.push(format!(
        "sync latency percentiles over the {n_sync} measurement samples; FlushDiskTimeout puts: {}",
        SYNC_TIMEOUTS.load(Ordering::Relaxed)
    ));
    notes.push(
        "ratios: throughput rocketstore/ceiling (higher is better); latency rocketstore/ceiling (lower is better)".into(),
    );
    if let Some(m) = mem {
        let mib = |k: u64| k as f64 / 1024.0;
        let growth = m.after_large_kib as i64 - m.after_small_kib as i64;
        notes.push(format!(
            "memory: RssAnon {:.1} MiB after open + 10k puts, {:.1} MiB after {} puts, {:.1} MiB after {} puts (RssFile, mapped pages, {:.0} MiB)",
            mib(m.warm_kib),
            mib(m.after_small_kib),
            m.small,
            mib(m.after_large_kib),
            m.large,
            mib(m.rss_file_kib)
        ));
        rows.push(
            Row::new(format!(
                "RssAnon growth {}→{} puts (128 B, 1 key each)",
                m.small, m.large
            ))
            .store(format!("{:+.2} MiB", growth as f64 / 1024.0))
            .ceiling(format!(
                "{:+.2} MiB for the first {}",
                (m.after_small_kib as i64 - m.warm_kib as i64) as f64 / 1024.0,
                m.small
            ))
            .target("bounded: < 8 MiB", Some(growth < 8 * 1024)),
        );
    }
    print_summary("append (benches/append.rs)", &notes, &rows);
}

fn main() {
    let mut c = common::criterion();
    let async_timing = Timing::new(1.0, 3.0, 30);
    let sync_timing = Timing::new(1.0, 4.0, 20);
    bench_async_ceiling(&mut c, &async_timing);
    bench_async(&mut c, &async_timing);
    bench_sync(&mut c, &sync_timing);
    c.final_summary();
    let mem = wants_memory_probe().then(memory_probe);
    summary(async_timing.samples, sync_timing.samples, mem);
}
