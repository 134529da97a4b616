//! Queue-level tests: behaviour, recovery, a model-based property test and the upstream fixture.

mod basic;
mod go_fixture;
mod model;
mod recovery;
mod retain;

use std::path::Path;

use crate::{DiskQueue, Options};

/// Small limits so a handful of records exercises rolling.
pub(crate) fn small_options(max_bytes_per_file: u64) -> Options {
    Options {
        max_bytes_per_file,
        sync_every: 1_000_000,
        sync_timeout: std::time::Duration::from_secs(3600),
        min_record_size: 0,
        max_record_size: 64 * 1024,
        retain_until_released: false,
    }
}

pub(crate) fn open(dir: &Path, max_bytes_per_file: u64) -> DiskQueue {
    DiskQueue::open(dir, "topic:channel", small_options(max_bytes_per_file)).unwrap()
}

pub(crate) fn drain(queue: &mut DiskQueue) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(record) = queue.read_next().unwrap() {
        out.push(record.to_vec());
    }
    out
}

pub(crate) fn record(index: usize, len: usize) -> Vec<u8> {
    let mut out = format!("record-{index}:").into_bytes();
    out.resize(len.max(out.len()), b'a' + (index % 26) as u8);
    out
}
