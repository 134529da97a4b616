//! `retain_until_released`: read records stay until released; a restart (clean or crash) replays
//! every record not released, and segments are deleted only once the committed position passes
//! them. Includes a model-based property test with random put / read / release / sync / restart.

use proptest::collection::vec;
use proptest::prelude::*;

use super::{record, small_options};
use crate::{DiskQueue, Position};

const NAME: &str = "t:c";

fn retaining(max_bytes_per_file: u64) -> crate::Options {
    crate::Options {
        retain_until_released: true,
        ..small_options(max_bytes_per_file)
    }
}

fn open(dir: &std::path::Path, max_bytes_per_file: u64) -> DiskQueue {
    DiskQueue::open(dir, NAME, retaining(max_bytes_per_file)).unwrap()
}

fn read_all(queue: &mut DiskQueue) -> Vec<(Position, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((position, data)) = queue.read_next_at().unwrap() {
        out.push((position, data.to_vec()));
    }
    out
}

#[test]
fn unreleased_records_come_back_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    for index in 0..10 {
        queue.put(&record(index, 20)).unwrap();
    }
    let read = read_all(&mut queue);
    assert_eq!(read.len(), 10);
    // Release all but 3 and 7.
    for (index, (position, _)) in read.iter().enumerate() {
        if index != 3 && index != 7 {
            queue.release(*position);
        }
    }
    assert_eq!(queue.committed_position(), read[3].0);
    assert_eq!(queue.depth(), 0);
    assert_eq!(queue.uncommitted_reads(), 7);
    queue.sync().unwrap();
    drop(queue);

    let mut queue = open(dir.path(), 1 << 20);
    assert_eq!(queue.depth(), 7, "records 3..10 are replayed");
    let replayed: Vec<Vec<u8>> = read_all(&mut queue).into_iter().map(|(_, r)| r).collect();
    let expected: Vec<Vec<u8>> = (3..10).map(|index| record(index, 20)).collect();
    assert_eq!(replayed, expected);
}

#[test]
fn without_release_nothing_is_committed_even_on_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    for index in 0..5 {
        queue.put(&record(index, 20)).unwrap();
    }
    assert_eq!(read_all(&mut queue).len(), 5);
    queue.close().unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    assert_eq!(read_all(&mut queue).len(), 5);
}

#[test]
fn release_ahead_of_the_reader_takes_effect_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    let first = queue.put_at(&record(0, 20)).unwrap();
    let second = queue.put_at(&record(1, 20)).unwrap();
    assert_eq!(first, Position::new(0, 0));
    assert!(second > first);
    queue.release(second);
    let read = read_all(&mut queue);
    assert_eq!(read[1].0, second);
    assert_eq!(queue.committed_position(), first);
    queue.release(first);
    assert_eq!(queue.committed_position(), queue.read_position());
    assert_eq!(queue.uncommitted_reads(), 0);
}

#[test]
fn a_segment_is_deleted_only_after_the_commit_passes_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 200);
    for index in 0..12 {
        queue.put(&record(index, 40)).unwrap();
    }
    let read = read_all(&mut queue);
    let segments = queue.segments_on_disk().unwrap();
    assert!(segments.len() >= 3, "{segments:?}");
    // Everything released except the first record: segment 0 is pinned, so every segment stays.
    for (position, _) in &read[1..] {
        queue.release(*position);
    }
    queue.sync().unwrap();
    assert_eq!(queue.segments_on_disk().unwrap()[0], 0);
    queue.release(read[0].0);
    assert!(queue.needs_sync());
    queue.sync().unwrap();
    let left = queue.segments_on_disk().unwrap();
    assert_eq!(left, vec![queue.write_position().segment]);
}

#[test]
fn empty_forgets_outstanding_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    for index in 0..3 {
        queue.put(&record(index, 20)).unwrap();
    }
    let read = read_all(&mut queue);
    queue.empty().unwrap();
    queue.release(read[0].0);
    assert_eq!(queue.uncommitted_reads(), 0);
    drop(queue);
    let mut queue = open(dir.path(), 1 << 20);
    assert!(read_all(&mut queue).is_empty());
}

#[test]
fn write_sync_covers_records_put_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    let handle = queue.write_sync().unwrap();
    assert_eq!(handle.run().unwrap(), 0, "nothing written yet: no fsync");
    queue.put(&record(0, 20)).unwrap();
    let handle = queue.write_sync().unwrap();
    // The segment was just created: segment fdatasync plus directory fsync.
    assert_eq!(handle.run().unwrap(), 2);
    drop(queue);
    let mut queue = open(dir.path(), 1 << 20);
    assert_eq!(read_all(&mut queue).len(), 1);
}

#[test]
fn scan_unread_visits_what_the_reader_will_return_without_moving_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 200);
    for index in 0..12 {
        queue.put(&record(index, 40)).unwrap();
    }
    queue.read_next().unwrap();
    let mut scanned = Vec::new();
    queue
        .scan_unread(|position, data| scanned.push((position, data.to_vec())))
        .unwrap();
    assert_eq!(queue.depth(), 11);
    assert_eq!(scanned, read_all(&mut queue));
}

#[derive(Clone, Debug)]
enum Op {
    Put(usize),
    Read,
    Release(usize),
    Sync,
    Restart { crash: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1usize..120).prop_map(Op::Put),
        5 => Just(Op::Read),
        5 => any::<usize>().prop_map(Op::Release),
        1 => Just(Op::Sync),
        1 => any::<bool>().prop_map(|crash| Op::Restart { crash }),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct State {
    read: bool,
    released: bool,
}

const UNREAD: State = State {
    read: false,
    released: false,
};

struct Model {
    /// Every record still possibly on disk: position, payload, state.
    records: Vec<(Position, Vec<u8>, State)>,
    next: usize,
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(96),
        ..ProptestConfig::default()
    })]

    /// No record that was not released is ever lost across restarts, and reads come in order.
    #[test]
    fn unreleased_records_survive_restarts(ops in vec(op(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = Some(open(dir.path(), 300));
        let mut model = Model { records: Vec::new(), next: 0 };
        for op in &ops {
            let q = queue.as_mut().unwrap();
            match op {
                Op::Put(len) => {
                    let data = record(model.next, *len);
                    model.next += 1;
                    let position = q.put_at(&data).unwrap();
                    model.records.push((position, data, UNREAD));
                }
                Op::Read => {
                    // Records released ahead are still read (the caller skips them).
                    let expected = model.records.iter().position(|r| !r.2.read);
                    let got = q.read_next_at().unwrap();
                    match (got, expected) {
                        (None, None) => {}
                        (Some((position, data)), Some(index)) => {
                            prop_assert_eq!(position, model.records[index].0);
                            prop_assert_eq!(&data[..], &model.records[index].1[..]);
                            model.records[index].2.read = true;
                        }
                        (got, expected) => prop_assert!(false, "read {:?}, model expected {:?}", got.map(|g| g.0), expected),
                    }
                }
                Op::Release(selector) => {
                    // Release a read record, or (a quarter of the time) one not read yet.
                    let candidates: Vec<usize> = (0..model.records.len())
                        .filter(|&index| !model.records[index].2.released)
                        .collect();
                    if !candidates.is_empty() {
                        let index = candidates[selector % candidates.len()];
                        q.release(model.records[index].0);
                        model.records[index].2.released = true;
                    }
                }
                Op::Sync => q.sync().unwrap(),
                Op::Restart { crash } => {
                    let old = queue.take().unwrap();
                    if *crash { drop(old) } else { old.close().unwrap() }
                    let reopened = open(dir.path(), 300);
                    let start = reopened.read_position();
                    for (position, _, state) in &mut model.records {
                        if *position < start {
                            prop_assert!(state.released, "record at {} lost", position);
                        } else {
                            // Replayed; a record released ahead of the reader is forgotten by
                            // the restart and comes back too.
                            *state = UNREAD;
                        }
                    }
                    model.records.retain(|(position, _, _)| *position >= start);
                    queue = Some(reopened);
                }
            }
        }
        // A final crash: every record not released is read again, in order.
        drop(queue.take());
        let mut reopened = open(dir.path(), 300);
        let replayed = read_all(&mut reopened);
        let mut replayed_iter = replayed.iter();
        for (position, data, state) in &model.records {
            if !state.released {
                let found = replayed_iter.by_ref().any(|(p, d)| p == position && d == data);
                prop_assert!(found, "unreleased record at {} missing after crash", position);
            }
        }
    }
}
