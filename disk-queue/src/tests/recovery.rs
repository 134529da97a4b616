//! Damage and crashes: exactly the damaged records are lost, nothing else, and nothing panics.

use std::fs::{self, OpenOptions};
use std::path::Path;

use super::{drain, open, record};
use crate::{DiskQueue, Position, RECORD_HEADER_LEN};

const PAYLOAD: usize = 40;
const RECORD: u64 = (RECORD_HEADER_LEN + PAYLOAD) as u64;

fn records(count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|index| record(index, PAYLOAD)).collect()
}

fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

fn without(records: &[Vec<u8>], lost: usize) -> Vec<Vec<u8>> {
    let mut out = records.to_vec();
    out.remove(lost);
    out
}

/// Flips every byte of record 5 of 12 in turn, with the damage before and after the synced
/// metadata, in one segment and across segments.
#[test]
fn flipping_one_byte_in_the_middle_loses_exactly_one_record() {
    let all = records(12);
    for max_bytes_per_file in [1 << 20, 4 * RECORD] {
        for synced in [true, false] {
            for offset_in_record in 0..RECORD {
                let dir = tempfile::tempdir().unwrap();
                let mut queue = open(dir.path(), max_bytes_per_file);
                queue.put_batch(&all).unwrap();
                let (segment, start) = if max_bytes_per_file == RECORD * 4 {
                    (1, RECORD)
                } else {
                    (0, 5 * RECORD)
                };
                let path = queue.segment_path(segment);
                if synced {
                    queue.close().unwrap();
                } else {
                    drop(queue);
                }
                flip(&path, start + offset_in_record);

                let mut queue = open(dir.path(), max_bytes_per_file);
                let got = drain(&mut queue);
                let context = format!(
                    "synced {synced}, segment size {max_bytes_per_file}, byte {offset_in_record}"
                );
                assert_eq!(got, without(&all, 5), "{context}");
                assert_eq!(queue.corrupt_records(), 1, "{context}");
                assert_eq!(queue.depth(), 0, "{context}");
            }
        }
    }
}

#[test]
fn damage_at_the_end_of_a_sealed_segment_loses_only_that_record() {
    let all = records(12);
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 4 * RECORD);
    queue.put_batch(&all).unwrap();
    let path = queue.segment_path(0);
    queue.close().unwrap();
    flip(&path, 3 * RECORD + 2);
    let mut queue = open(dir.path(), 4 * RECORD);
    assert_eq!(queue.depth(), 12);
    assert_eq!(drain(&mut queue), without(&all, 3));
    assert_eq!(queue.corrupt_records(), 1);
}

#[test]
fn torn_tail_is_truncated_and_counted_for_every_cut() {
    let all = records(10);
    for cut in 1..=RECORD {
        let dir = tempfile::tempdir().unwrap();
        let mut queue = open(dir.path(), 1 << 20);
        queue.put_batch(&all[..4]).unwrap();
        queue.sync().unwrap();
        queue.put_batch(&all[4..]).unwrap();
        let path = queue.segment_path(0);
        drop(queue);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(10 * RECORD - cut).unwrap();
        drop(file);

        let mut queue = open(dir.path(), 1 << 20);
        let expected_corrupt = u64::from(cut != RECORD);
        assert_eq!(queue.corrupt_records(), expected_corrupt, "cut {cut}");
        assert_eq!(queue.depth(), 9, "cut {cut}");
        assert_eq!(queue.write_position(), Position::new(0, 9 * RECORD));
        queue.put(b"after").unwrap();
        queue.close().unwrap();
        let mut queue = open(dir.path(), 1 << 20);
        let mut expected = all[..9].to_vec();
        expected.push(b"after".to_vec());
        assert_eq!(drain(&mut queue), expected, "cut {cut}");
        assert_eq!(queue.corrupt_records(), 0);
    }
}

#[test]
fn zero_filled_tail_after_an_os_crash_is_dropped() {
    let all = records(6);
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    queue.put_batch(&all).unwrap();
    let path = queue.segment_path(0);
    drop(queue);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0u8; 4096]);
    fs::write(&path, bytes).unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    assert_eq!(queue.corrupt_records(), 1);
    assert_eq!(fs::metadata(&path).unwrap().len(), 6 * RECORD);
    assert_eq!(drain(&mut queue), all);
}

#[test]
fn missing_metadata_rescans_every_segment() {
    let all = records(20);
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 5 * RECORD);
    queue.put_batch(&all).unwrap();
    for _ in 0..7 {
        queue.read_next().unwrap();
    }
    queue.close().unwrap();
    fs::remove_file(dir.path().join("topic:channel.diskqueue2.meta.dat")).unwrap();
    let mut queue = open(dir.path(), 5 * RECORD);
    // Segment 0 was deleted after being read; segment 1 is replayed from its start.
    assert_eq!(queue.read_position(), Position::new(1, 0));
    assert_eq!(queue.depth(), 15);
    assert_eq!(drain(&mut queue), all[5..].to_vec());
}

#[test]
fn corrupt_metadata_rescans_and_replays() {
    let all = records(8);
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    queue.put_batch(&all).unwrap();
    queue.read_next().unwrap();
    queue.close().unwrap();
    flip(&dir.path().join("topic:channel.diskqueue2.meta.dat"), 20);
    let mut queue = open(dir.path(), 1 << 20);
    assert_eq!(queue.depth(), 8);
    assert_eq!(drain(&mut queue), all);
}

#[test]
fn metadata_beyond_a_truncated_segment_is_recomputed() {
    let all = records(8);
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    queue.put_batch(&all).unwrap();
    queue.read_next().unwrap();
    let path = queue.segment_path(0);
    queue.close().unwrap();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(6 * RECORD + 3).unwrap();
    drop(file);
    let mut queue = open(dir.path(), 1 << 20);
    assert_eq!(queue.depth(), 5);
    assert_eq!(queue.corrupt_records(), 1);
    assert_eq!(drain(&mut queue), all[1..6].to_vec());
}

#[test]
fn everything_read_then_tail_truncated_loses_nothing() {
    let all = records(3);
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    queue.put_batch(&all).unwrap();
    assert_eq!(drain(&mut queue).len(), 3);
    let path = queue.segment_path(0);
    queue.close().unwrap();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(3 * RECORD - 5).unwrap();
    drop(file);
    let mut queue = open(dir.path(), 1 << 20);
    assert_eq!(queue.depth(), 0);
    queue.put(b"next").unwrap();
    assert_eq!(drain(&mut queue), vec![b"next".to_vec()]);
    queue.close().unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    assert_eq!(queue.read_next().unwrap(), None);
}

#[test]
fn crash_after_rolling_finds_records_in_later_segments() {
    let all = records(20);
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 3 * RECORD);
    queue.put_batch(&all[..2]).unwrap();
    queue.sync().unwrap();
    queue.put_batch(&all[2..]).unwrap();
    drop(queue);
    let mut queue = open(dir.path(), 3 * RECORD);
    assert_eq!(queue.depth(), 20);
    assert_eq!(queue.write_position(), Position::new(6, 2 * RECORD));
    assert_eq!(drain(&mut queue), all);
}

#[test]
fn a_vanished_read_segment_is_skipped() {
    let all = records(12);
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 4 * RECORD);
    queue.put_batch(&all).unwrap();
    queue.read_next().unwrap();
    let path = queue.segment_path(0);
    queue.close().unwrap();
    fs::remove_file(path).unwrap();
    let mut queue = open(dir.path(), 4 * RECORD);
    assert_eq!(queue.read_position(), Position::new(1, 0));
    assert_eq!(queue.depth(), 8);
    assert_eq!(drain(&mut queue), all[4..].to_vec());
}

#[test]
fn garbage_between_records_is_one_damaged_region() {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    queue.put(b"before").unwrap();
    let path = queue.segment_path(0);
    drop(queue);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0x93, b'N', b'S', b'Q', 1, 2, 3]);
    bytes.extend_from_slice(&[0xab; 1000]);
    fs::write(&path, &bytes).unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    queue.put(b"after").unwrap();
    queue.close().unwrap();
    // Put the garbage back in front of "after": now it is in the middle.
    let after = fs::read(&path).unwrap();
    let mut middle = bytes;
    middle.extend_from_slice(&after[after.len() - (RECORD_HEADER_LEN + 5)..]);
    fs::write(&path, &middle).unwrap();
    fs::remove_file(dir.path().join("topic:channel.diskqueue2.meta.dat")).unwrap();
    let mut queue = open(dir.path(), 1 << 20);
    assert_eq!(
        drain(&mut queue),
        vec![b"before".to_vec(), b"after".to_vec()]
    );
    assert_eq!(queue.corrupt_records(), 1);
}

#[test]
fn a_fresh_open_never_panics_on_random_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x1234_5678_u32;
    let mut noise = |len: usize| {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            })
            .collect::<Vec<u8>>()
    };
    fs::write(dir.path().join("t.diskqueue2.000003.dat"), noise(5000)).unwrap();
    fs::write(dir.path().join("t.diskqueue2.000004.dat"), noise(10)).unwrap();
    fs::write(dir.path().join("t.diskqueue2.meta.dat"), noise(56)).unwrap();
    let mut queue = DiskQueue::open(dir.path(), "t", super::small_options(1024)).unwrap();
    assert!(drain(&mut queue).is_empty());
    queue.put(b"ok").unwrap();
    assert_eq!(drain(&mut queue), vec![b"ok".to_vec()]);
}
