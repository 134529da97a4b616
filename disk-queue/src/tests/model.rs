//! Model-based property test: random puts, gets, syncs, clean and crash restarts, empties and
//! on-disk damage, checked against a `Vec` of everything written.
//!
//! The model keeps every record with the position it was written at, and a read index. After a
//! restart the model's read index is re-derived from the queue's recovered read position (a crash
//! may replay reads since the last sync). Damage marks records as damaged: the queue must skip
//! exactly those, and return every other record in order. Depth must equal the model exactly while
//! no damage was injected; with damage, a damaged region may be counted until the reader passes it.

use std::fs::{self, OpenOptions};
use std::path::Path;

use proptest::collection::vec;
use proptest::prelude::*;

use super::small_options;
use crate::{DiskQueue, Position, RECORD_HEADER_LEN};

const MAX_BYTES_PER_FILE: u64 = 400;
const NAME: &str = "t:c";

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>),
    PutBatch(Vec<Vec<u8>>),
    Get,
    Sync,
    Restart {
        crash: bool,
    },
    CorruptTail {
        crash: bool,
        truncate: bool,
        selector: u64,
    },
    CorruptMiddle {
        crash: bool,
        selector: u64,
        byte: u64,
        xor: u8,
    },
    Empty,
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..100),
        1 => vec(any::<u8>(), 380..500),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => payload().prop_map(Op::Put),
        2 => vec(payload(), 0..6).prop_map(Op::PutBatch),
        9 => Just(Op::Get),
        1 => Just(Op::Sync),
        2 => any::<bool>().prop_map(|crash| Op::Restart { crash }),
        1 => (any::<bool>(), any::<bool>(), any::<u64>())
            .prop_map(|(crash, truncate, selector)| Op::CorruptTail { crash, truncate, selector }),
        2 => (any::<bool>(), any::<u64>(), any::<u64>(), 1..=u8::MAX)
            .prop_map(|(crash, selector, byte, xor)| Op::CorruptMiddle { crash, selector, byte, xor }),
        1 => Just(Op::Empty),
    ]
}

#[derive(Debug)]
struct Entry {
    position: Position,
    record_len: u64,
    data: Vec<u8>,
    damaged: bool,
}

struct Harness {
    dir: tempfile::TempDir,
    queue: Option<DiskQueue>,
    entries: Vec<Entry>,
    /// Entries before this index were read (or skipped as damaged) by the queue.
    read_index: usize,
    /// Damage injected since the last `empty`: how far depth may run ahead of the model.
    corruptions: u64,
    /// Damage injected at all: until then the queue must not have counted any.
    any_corruption: bool,
}

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let queue = DiskQueue::open(dir.path(), NAME, small_options(MAX_BYTES_PER_FILE)).unwrap();
        Self {
            dir,
            queue: Some(queue),
            entries: Vec::new(),
            read_index: 0,
            corruptions: 0,
            any_corruption: false,
        }
    }

    fn queue(&mut self) -> &mut DiskQueue {
        self.queue.as_mut().unwrap()
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Put(data) => {
                self.queue().put(data).unwrap();
                let end = self.queue().write_position();
                let record_len = (RECORD_HEADER_LEN + data.len()) as u64;
                self.push(Position::new(end.segment, end.offset - record_len), data);
            }
            Op::PutBatch(batch) => {
                let mut position = self.queue().write_position();
                self.queue().put_batch(batch).unwrap();
                for data in batch {
                    let record_len = (RECORD_HEADER_LEN + data.len()) as u64;
                    if position.offset > 0 && position.offset + record_len > MAX_BYTES_PER_FILE {
                        position = Position::new(position.segment + 1, 0);
                    }
                    self.push(position, data);
                    position.offset += record_len;
                }
                prop_assert_eq!(position, self.queue().write_position(), "segment maths");
            }
            Op::Get => {
                let got = self.queue().read_next().unwrap();
                let next_valid = (self.read_index..self.entries.len())
                    .find(|&index| !self.entries[index].damaged);
                match (got, next_valid) {
                    (Some(record), Some(index)) => {
                        prop_assert_eq!(
                            &record[..],
                            &self.entries[index].data[..],
                            "record {}",
                            index
                        );
                        self.read_index = index + 1;
                    }
                    (None, None) => {
                        self.read_index = self.entries.len();
                        prop_assert_eq!(self.queue().depth(), 0);
                    }
                    (got, expected) => {
                        return Err(TestCaseError::fail(format!(
                            "queue returned {:?}, model expected entry {:?}",
                            got.map(|record| record.len()),
                            expected
                        )));
                    }
                }
            }
            Op::Sync => self.queue().sync().unwrap(),
            Op::Restart { crash } => {
                let before = self.read_index;
                self.stop(*crash);
                self.reopen();
                if !crash {
                    // Only damaged entries (which nobody can read) may lie between the two.
                    let (low, high) = (before.min(self.read_index), before.max(self.read_index));
                    prop_assert!(
                        self.entries[low..high].iter().all(|entry| entry.damaged),
                        "clean restart moved the reader from {} to {}",
                        before,
                        self.read_index
                    );
                }
            }
            Op::CorruptTail {
                crash,
                truncate,
                selector,
            } => {
                let write_segment = self.queue().write_position().segment;
                self.stop(*crash);
                self.corrupt_tail(write_segment, *truncate, *selector);
                self.reopen();
            }
            Op::CorruptMiddle {
                crash,
                selector,
                byte,
                xor,
            } => {
                self.stop(*crash);
                self.corrupt_middle(*selector, *byte, *xor);
                self.reopen();
            }
            Op::Empty => {
                self.queue().empty().unwrap();
                self.entries.clear();
                self.read_index = 0;
                self.corruptions = 0;
            }
        }
        self.check()
    }

    fn push(&mut self, position: Position, data: &[u8]) {
        self.entries.push(Entry {
            position,
            record_len: (RECORD_HEADER_LEN + data.len()) as u64,
            data: data.to_vec(),
            damaged: false,
        });
    }

    fn check(&mut self) -> Result<(), TestCaseError> {
        let valid_unread = self.entries[self.read_index..]
            .iter()
            .filter(|entry| !entry.damaged)
            .count() as u64;
        let corruptions = self.corruptions;
        let any_corruption = self.any_corruption;
        let queue = self.queue();
        if !any_corruption {
            prop_assert_eq!(queue.corrupt_records(), 0);
        }
        if corruptions == 0 {
            prop_assert_eq!(queue.depth(), valid_unread);
        } else {
            prop_assert!(
                queue.depth() >= valid_unread && queue.depth() <= valid_unread + corruptions,
                "depth {} outside {}..={}",
                queue.depth(),
                valid_unread,
                valid_unread + corruptions
            );
        }
        Ok(())
    }

    fn stop(&mut self, crash: bool) {
        let queue = self.queue.take().unwrap();
        if crash {
            drop(queue);
        } else {
            queue.close().unwrap();
        }
    }

    /// Reopens and re-derives the read index from the recovered read position: every entry at or
    /// after it is read again.
    fn reopen(&mut self) {
        let queue =
            DiskQueue::open(self.dir.path(), NAME, small_options(MAX_BYTES_PER_FILE)).unwrap();
        let read = queue.read_position();
        // Truncated damaged entries can share a position with later ones, so look from the end.
        self.read_index = self
            .entries
            .iter()
            .rposition(|entry| entry.position < read)
            .map_or(0, |index| index + 1);
        self.queue = Some(queue);
    }

    fn segment_path(&self, segment: u64) -> std::path::PathBuf {
        crate::segment::segment_path(self.dir.path(), NAME, segment)
    }

    /// Truncates or garbles the last record of the last segment, if it is an intact record.
    fn corrupt_tail(&mut self, write_segment: u64, truncate: bool, selector: u64) {
        let path = self.segment_path(write_segment);
        let Ok(metadata) = fs::metadata(&path) else {
            return;
        };
        let file_len = metadata.len();
        let Some(index) = self.entries.iter().rposition(|entry| {
            !entry.damaged
                && entry.position.segment == write_segment
                && entry.position.offset + entry.record_len == file_len
        }) else {
            return;
        };
        let record_len = self.entries[index].record_len;
        if truncate {
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(file_len - 1 - selector % record_len).unwrap();
        } else {
            let at = self.entries[index].position.offset + selector % record_len;
            flip_byte(&path, at, 0x41);
        }
        self.entries[index].damaged = true;
        self.corruptions += 1;
        self.any_corruption = true;
    }

    /// Flips one byte of some intact record whose segment is still on disk.
    fn corrupt_middle(&mut self, selector: u64, byte: u64, xor: u8) {
        let candidates: Vec<usize> = (0..self.entries.len())
            .filter(|&index| {
                let entry = &self.entries[index];
                !entry.damaged && self.segment_path(entry.position.segment).exists()
            })
            .collect();
        if candidates.is_empty() {
            return;
        }
        let index = candidates[(selector % candidates.len() as u64) as usize];
        let entry = &self.entries[index];
        let at = entry.position.offset + byte % entry.record_len;
        flip_byte(&self.segment_path(entry.position.segment), at, xor);
        self.entries[index].damaged = true;
        self.corruptions += 1;
        self.any_corruption = true;
    }
}

fn flip_byte(path: &Path, at: u64, xor: u8) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= xor;
    fs::write(path, bytes).unwrap();
}

proptest! {
    // PROPTEST_CASES=5000 cargo test -p nsq-diskqueue model  searches harder than the default run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    #[test]
    fn queue_matches_model(ops in vec(op(), 1..80)) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.apply(op)?;
        }
        // Whatever happened, a final restart and drain returns exactly the undamaged rest.
        harness.apply(&Op::Restart { crash: true })?;
        while harness.queue().depth() > 0 || harness.read_index < harness.entries.len() {
            let before = harness.read_index;
            harness.apply(&Op::Get)?;
            if harness.read_index == before {
                break;
            }
        }
        prop_assert_eq!(harness.queue().read_next().unwrap(), None);
    }
}
