//! `nsq-diskqueue`: the spill log nsqd keeps for every non-ephemeral topic and channel, and a
//! reader for the files upstream nsqd (go-diskqueue v1.1.0) leaves behind.
//!
//! * [`DiskQueue`]: our own append-only, segmented, checksummed FIFO of byte records.
//! * [`Options`]: segment size, sync policy and record size limits.
//! * [`go`]: [`go::open_go_queue`] drains an upstream `<name>.diskqueue.*` backlog once, so a node
//!   can be swapped in place (nsqd-behaviour.md §6.8).
//!
//! The queue is synchronous and blocking. nsqd owns one per topic or channel behind a mutex and
//! calls it from a blocking thread; there is one writer and one reader.
//!
//! # Design constraints
//!
//! * A record accepted by [`DiskQueue::put`] is in the kernel before `put` returns (one `write`
//!   per call or per segment touched by a batch; no user-space buffer holds records). A process
//!   crash therefore loses nothing that was put; only an OS crash can lose records written since
//!   the last [`DiskQueue::sync`].
//! * Damage costs exactly the damaged records. Every record carries a CRC of its payload and a
//!   CRC of its header; a bad record is skipped and counted ([`DiskQueue::corrupt_records`]),
//!   never the rest of its file, and never a panic.
//! * Reading may replay (records read after the last sync come back after a crash); it never loses.
//! * Our files never collide with upstream's: ours contain `.diskqueue2.`, upstream's `.diskqueue.`.
//! * No file is created until the first record is put.
//!
//! # On-disk format
//!
//! In the queue's directory, for queue `<name>` (`topic` or `topic:channel`):
//!
//! ```text
//! <name>.diskqueue2.000000.dat      segment 0     (6-digit decimal, more digits past 999999)
//! <name>.diskqueue2.000001.dat      segment 1 ...
//! <name>.diskqueue2.meta.dat        metadata (56 bytes)
//! <name>.diskqueue2.meta.dat.tmp    metadata being written (transient)
//! ```
//!
//! A segment is a concatenation of records and nothing else. A record is a 16-byte header and the
//! payload:
//!
//! ```text
//! offset  size  field
//!      0     4  magic  93 4E 53 51 ("\x93NSQ")
//!      4     4  payload length, u32 little-endian
//!      8     4  CRC-32 (IEEE) of the payload, u32 LE
//!     12     4  CRC-32 (IEEE) of header bytes 0..12, u32 LE
//!     16     n  payload
//! ```
//!
//! Rolling: before a record is written, if the current segment is non-empty and
//! `offset + 16 + len > max_bytes_per_file`, writing moves to segment number + 1 at offset 0. A
//! segment thus exceeds the limit only when it holds a single oversize record. Records never span
//! segments.
//!
//! The metadata file is `"NSQDQ2MD"`, a u32 version (1), then u64 LE depth, read segment, read
//! offset, write segment, write offset, then a CRC-32 of the preceding 52 bytes. The read position
//! is the start of the next unread record; the write position is the end of the last record.
//! Segments from the read segment to the write segment exist (the write segment may not exist yet
//! while its offset is 0); segments below the read segment are deleted.
//!
//! # Reading and damage
//!
//! The reader reads 64 KiB pieces (less when following the writer closely) and hands out each
//! payload as a [`bytes::Bytes`] slice of that piece, without copying; a payload kept alive keeps
//! its piece alive. At each record start:
//!
//! 1. A header whose magic and header CRC match is trusted for its length. If the payload CRC then
//!    fails, exactly that record is skipped.
//! 2. Otherwise (bad magic, bad header CRC, or a record that would run past the end of the data)
//!    the reader resynchronises: it scans forward for the next offset holding the magic and a valid
//!    header whose record ends within the data, and skips the bytes in between as one damaged
//!    record. With no such offset, the rest of the segment's data is one damaged record.
//!
//! Each damaged region adds 1 to [`DiskQueue::corrupt_records`], takes 1 from the depth and is
//! logged with `tracing::warn!`. When the reader catches up with the writer, a non-zero depth is
//! logged and reset to 0.
//!
//! # Recovery (on [`DiskQueue::open`])
//!
//! 1. Missing or unreadable metadata (bad size, magic, version or CRC) is logged and treated as
//!    "read from the start of the lowest segment, depth 0" and step 3 is a full scan: records may
//!    be replayed, none are lost.
//! 2. The metadata is *consistent* when read ≤ write, the read segment exists (or read = write),
//!    every segment between them exists, and the write segment is at least `write offset` long.
//!    Inconsistent metadata (e.g. a file truncated behind our back) is logged and the full scan
//!    starts at the metadata's read position, clamped to the existing files.
//! 3. Consistent metadata: scan forward from the write position to the real end of the write
//!    segment and through every later segment. These are records put after the last sync (a crash
//!    without an OS crash keeps them in the page cache); they are added to the depth. Damaged
//!    regions followed by valid records are added too, so the reader's later −1 balances.
//! 4. Damage after the last valid record of the last segment is a torn tail: the file is truncated
//!    to the end of the last valid record, each such region counts as a corrupt record, and writing
//!    continues there.
//! 5. A read position whose segment is gone moves to the start of the next existing segment.
//!    Segments below the read segment are deleted.
//! 6. If anything differs from the metadata on disk, the queue syncs before `open` returns.
//!
//! # Durability (on [`DiskQueue::sync`], also run by [`DiskQueue::close`])
//!
//! 0. (When the writer rolls) the finished segment is fdatasync'ed before the next one is created.
//! 1. fdatasync the write segment, so every record up to the write position is on disk.
//! 2. If a segment file was created since the last sync, fsync the directory, so every segment the
//!    new metadata names exists after an OS crash.
//! 3. Write the metadata to `<name>.diskqueue2.meta.dat.tmp`, fsync it, rename it over
//!    `<name>.diskqueue2.meta.dat`.
//! 4. If the reader has finished segments since the last sync: fsync the directory (the rename is
//!    now durable, so no surviving metadata names those segments), then delete them. A finished
//!    segment is deleted at the first sync after the reader leaves it, never before.
//!
//! # Retaining records until released (`retain_until_released`)
//!
//! In this mode a record read is not done until the caller calls [`DiskQueue::release`] with the
//! position [`DiskQueue::read_next_at`] gave for it (a position not read yet may be released
//! ahead: the record is then done as soon as it is read). The queue keeps the start positions of
//! read, unreleased records in read order; the *committed position* is the oldest of them (or the
//! read position when none). [`DiskQueue::sync`] persists the committed position as the metadata's
//! read position, and the depth as unread records plus read-but-not-committed ones, so after a
//! crash or restart every unreleased record is read again (released records between the
//! committed position and the old read position are replayed too: at-least-once). A segment the
//! reader has left is deleted only once the committed position has moved past it.
//!
//! # Acknowledging after fsync
//!
//! [`DiskQueue::write_sync`] returns a [`WriteSync`]: a duplicate handle on the write segment (and
//! the directory, if a segment was created since it was last synced). Running it (outside the
//! caller's lock, on any thread) fdatasyncs everything put before the handle was taken. Records
//! past the metadata's write position are found again by recovery step 3, so no metadata write is
//! needed for them to survive an OS crash. Several writers' records are covered by one
//! `WriteSync::run`: that is nsqd's group commit.
//!
//! The caller decides when to sync: [`DiskQueue::needs_sync`] says when `sync_every` reads and
//! writes have happened, `sync_timeout` has passed with operations pending, or a segment was
//! finished by the writer or the reader. Dropping a queue without [`DiskQueue::close`] is the same
//! as a process crash: nothing is lost, reads since the last sync are replayed.
#![warn(missing_docs)]

mod error;
pub mod go;
mod meta;
mod queue;
mod record;
mod segment;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

pub use error::Error;
pub use queue::{DiskQueue, WriteSync};
pub use record::RECORD_HEADER_LEN;

/// Tuning and limits for one [`DiskQueue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// A new segment is started when the next record would take the current one past this size
    /// (nsqd `--max-bytes-per-file`, default 100 MiB).
    pub max_bytes_per_file: u64,
    /// [`DiskQueue::needs_sync`] turns true after this many reads plus writes (nsqd `--sync-every`,
    /// default 2500).
    pub sync_every: u64,
    /// [`DiskQueue::needs_sync`] turns true when this long has passed since the last sync with
    /// operations pending (nsqd `--sync-timeout`, default 2 s). The caller runs the timer.
    pub sync_timeout: Duration,
    /// Smallest record `put` accepts (default 26: an NSQ message header with an empty body).
    pub min_record_size: u32,
    /// Largest record `put` accepts (default 1 MiB + 26: nsqd's default `--max-msg-size` plus the
    /// message header).
    pub max_record_size: u32,
    /// Keep read records until the caller [releases](DiskQueue::release) them (nsqd's durable
    /// mode): the persisted read position is the *committed* position, the start of the oldest
    /// record read and not released, so a crash replays every record not yet released. Default
    /// `false`: a record is done once read.
    pub retain_until_released: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_bytes_per_file: 100 * 1024 * 1024,
            sync_every: 2500,
            sync_timeout: Duration::from_secs(2),
            min_record_size: 26,
            max_record_size: 1024 * 1024 + 26,
            retain_until_released: false,
        }
    }
}

impl Options {
    fn validate(&self) -> Result<(), Error> {
        if self.max_bytes_per_file == 0 {
            return Err(Error::InvalidOptions("max_bytes_per_file must be > 0"));
        }
        if self.min_record_size > self.max_record_size {
            return Err(Error::InvalidOptions(
                "min_record_size must be <= max_record_size",
            ));
        }
        Ok(())
    }
}

/// A place in the queue: a segment number and a byte offset inside that segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Segment number (the `NNNNNN` in the file name).
    pub segment: u64,
    /// Byte offset inside the segment.
    pub offset: u64,
}

impl Position {
    /// A position at `offset` in segment `segment`.
    pub const fn new(segment: u64, offset: u64) -> Self {
        Self { segment, offset }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.segment, self.offset)
    }
}

/// Checks that `name` is a topic name or `topic:channel` ([.a-zA-Z0-9_-], at most one `:`), so it
/// can be embedded in a file name. Ephemeral (`#ephemeral`) queues never touch disk.
pub(crate) fn validate_name(name: &str) -> Result<(), Error> {
    let valid_chars = name
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b':'));
    let colons = name.bytes().filter(|&byte| byte == b':').count();
    let parts_non_empty = name.split(':').all(|part| !part.is_empty());
    if name.is_empty() || !valid_chars || colons > 1 || !parts_non_empty {
        return Err(Error::InvalidName(name.to_owned()));
    }
    Ok(())
}
