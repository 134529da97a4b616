//! Throughput of the disk queue with nsqd-sized records: `put_batch` of 200 × 200-byte records and
//! `read_next` draining a backlog. No fsync inside the timed loops (nsqd syncs every 2500 ops or
//! 2 s, which amortises to nothing at these rates); a separate case measures `sync` itself.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use nsq_diskqueue::{DiskQueue, Options};

const RECORD_SIZE: usize = 200;
const BATCH: usize = 200;

fn options() -> Options {
    Options {
        sync_every: u64::MAX,
        sync_timeout: Duration::from_secs(3600),
        ..Options::default()
    }
}

fn batch() -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|index| {
            let mut record = vec![b'x'; RECORD_SIZE];
            record[..8].copy_from_slice(&(index as u64).to_be_bytes());
            record
        })
        .collect()
}

fn put_batch(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = batch();
    let mut group = c.benchmark_group("disk_queue");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(
        BenchmarkId::new("put_batch", format!("{BATCH}x{RECORD_SIZE}B")),
        |b| {
            let mut queue = DiskQueue::open(dir.path(), "bench", options()).expect("open");
            b.iter_custom(|iterations| {
                let start = Instant::now();
                for _ in 0..iterations {
                    queue.put_batch(black_box(&records)).expect("put_batch");
                }
                let elapsed = start.elapsed();
                // Keep the disk footprint bounded between samples; not timed.
                queue.empty().expect("empty");
                elapsed
            });
            queue.delete().expect("delete");
        },
    );

    group.bench_function(
        BenchmarkId::new("put_single", format!("{RECORD_SIZE}B")),
        |b| {
            let mut queue = DiskQueue::open(dir.path(), "single", options()).expect("open");
            b.iter_custom(|iterations| {
                let start = Instant::now();
                for index in 0..iterations {
                    queue
                        .put(black_box(&records[index as usize % BATCH]))
                        .expect("put");
                }
                let elapsed = start.elapsed() * BATCH as u32;
                queue.empty().expect("empty");
                elapsed
            });
            queue.delete().expect("delete");
        },
    );
    group.finish();
}

fn read_next(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = batch();
    let mut group = c.benchmark_group("disk_queue");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(
        BenchmarkId::new("read_next", format!("{BATCH}x{RECORD_SIZE}B")),
        |b| {
            let mut queue = DiskQueue::open(dir.path(), "bench", options()).expect("open");
            b.iter_custom(|iterations| {
                // Fill the backlog first (not timed), then time draining it.
                for _ in 0..iterations {
                    queue.put_batch(&records).expect("put_batch");
                }
                let start = Instant::now();
                for _ in 0..iterations * BATCH as u64 {
                    black_box(queue.read_next().expect("read_next").expect("record"));
                }
                let elapsed = start.elapsed();
                queue.empty().expect("empty");
                elapsed
            });
            queue.delete().expect("delete");
        },
    );
    group.finish();
}

fn sync(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = batch();
    let mut queue = DiskQueue::open(dir.path(), "sync", options()).expect("open");
    c.bench_function("disk_queue/put_batch+sync", |b| {
        b.iter(|| {
            queue.put_batch(&records).expect("put_batch");
            queue.sync().expect("sync");
        });
    });
    queue.delete().expect("delete");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = put_batch, read_next, sync
}
criterion_main!(benches);
