//! `Backend`: a topic's or channel's disk queue, holding messages that do not fit in memory (and,
//! at shutdown, everything that was in memory, in flight or deferred).
//!
//! Each disk-queue record is one message with a small header:
//!
//! ```text
//! offset 0   1 byte   record kind: 0x01 message, 0x02 relocated copy (durable mode)
//! offset 1   8 bytes  i64 BE   due time, ns since the Unix epoch (0 = not deferred)
//! offset 9   …        the message: 8-byte timestamp, 2-byte attempts, 16-byte ID, body
//! ```
//!
//! In durable mode (`--durable`) a channel's queue retains read records until the channel
//! releases them (FIN, or the message was relocated), so a crash replays every message not yet
//! finished. A message that stays unfinished for long (deferred, or held in flight) would keep old
//! segments alive; the channel then *relocates* it: it appends a copy (kind 0x02, with the current
//! attempts and due time) and releases the old record. While the process runs, a relocated copy
//! read back is skipped (the message is in memory). At open, a durable queue scans what it is
//! about to replay and notes the last relocated copy of each message: earlier records of that
//! message are skipped (and released) when read, so a REQ delay or attempts count carried by a
//! copy wins over the original after a crash.
//!
//! Keeping the due time on disk is what lets a deferred message survive a restart and still wait
//! for its original due time (upstream delivers it at once). A backlog left by upstream nsqd
//! (go-diskqueue files) is imported into this format when the queue is first opened, IDs,
//! timestamps and attempts kept.
//!
//! The disk queue sits behind its own mutex, never the channel's or topic's: file I/O never
//! happens under a topic or channel lock.

use nsq_diskqueue::{DiskQueue, Options, Position};
use nsq_protocol::message::MESSAGE_HEADER_LEN;
use nsq_protocol::{Message, MessageId};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const RECORD_KIND_MESSAGE: u8 = 0x01;
const RECORD_KIND_RELOCATED: u8 = 0x02;
const RECORD_HEADER_LEN: usize = 1 + 8;

/// Disk-queue settings from nsqd's flags.
#[derive(Debug, Clone)]
pub struct DiskSettings {
    /// `--max-bytes-per-file`.
    pub max_bytes_per_file: u64,
    /// `--sync-every`.
    pub sync_every: u64,
    /// `--sync-timeout`.
    pub sync_timeout: Duration,
    /// `--durable`: write-through, acknowledge after fsync, retain until finished.
    pub durable: bool,
}

/// One message read back from disk, with its due time if it was deferred.
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage {
    pub(crate) message: Message,
    /// ns since the Unix epoch; `None` when deliverable at once.
    pub(crate) due_unix_ns: Option<i64>,
    /// Where the record starts (what [`Backend::release`] takes in durable mode).
    pub(crate) position: Position,
    /// A relocated copy written by this process: the message is already in memory.
    pub(crate) copy_in_memory: bool,
}

#[derive(Debug)]
pub(crate) struct Backend {
    name: String,
    /// `None` once deleted.
    queue: Mutex<Option<DiskQueue>>,
    depth: AtomicU64,
    undecodable: AtomicU64,
    /// Relocated copies written by this process and not read yet: unread records, but not
    /// messages (their messages are in memory), so they do not count in the reported depth.
    copies_unread: AtomicU64,
    durable: bool,
    /// The write position at open: relocated copies before it are replayed, later ones are
    /// copies of messages in memory.
    replay_end: Position,
    /// Durable mode, until replayed: the last relocated copy of each message found at open.
    /// Earlier records of those messages are stale.
    latest_copies: Mutex<FxHashMap<MessageId, Position>>,
}

impl Backend {
    /// Opens (or creates) the queue `name` in `dir`, importing an upstream backlog of the same
    /// name once.
    pub(crate) fn open(
        dir: &Path,
        name: &str,
        settings: &DiskSettings,
        max_msg_size: u64,
    ) -> Result<Self, nsq_diskqueue::Error> {
        let options = Options {
            max_bytes_per_file: settings.max_bytes_per_file,
            sync_every: settings.sync_every,
            sync_timeout: settings.sync_timeout,
            min_record_size: (RECORD_HEADER_LEN + MESSAGE_HEADER_LEN) as u32,
            max_record_size: u32::try_from(
                max_msg_size + (RECORD_HEADER_LEN + MESSAGE_HEADER_LEN) as u64,
            )
            .unwrap_or(u32::MAX),
            retain_until_released: settings.durable,
        };
        let mut queue = DiskQueue::open(dir, name, options)?;
        import_upstream(dir, name, &mut queue)?;
        let depth = queue.depth();
        let replay_end = queue.write_position();
        let mut latest_copies = FxHashMap::default();
        if settings.durable {
            queue.scan_unread(|position, record| {
                if record.first() == Some(&RECORD_KIND_RELOCATED)
                    && let Some(id) = record_id(record)
                {
                    latest_copies.insert(id, position);
                }
            })?;
        }
        Ok(Self {
            name: name.to_owned(),
            queue: Mutex::new(Some(queue)),
            depth: AtomicU64::new(depth),
            undecodable: AtomicU64::new(0),
            copies_unread: AtomicU64::new(0),
            durable: settings.durable,
            replay_end,
            latest_copies: Mutex::new(latest_copies),
        })
    }

    /// Messages waiting on disk.
    pub(crate) fn depth(&self) -> u64 {
        self.unread()
            .saturating_sub(self.copies_unread.load(Ordering::Acquire))
    }

    /// Records not read yet (messages plus relocated copies): whether a reader has work.
    pub(crate) fn unread(&self) -> u64 {
        self.depth.load(Ordering::Acquire)
    }

    /// Records skipped as damaged (disk-queue CRC failures plus undecodable records).
    pub(crate) fn corrupt_records(&self) -> u64 {
        self.queue
            .lock()
            .as_ref()
            .map_or(0, DiskQueue::corrupt_records)
            + self.undecodable.load(Ordering::Relaxed)
    }

    /// Whether this queue retains records until released (`--durable`).
    pub(crate) fn is_durable(&self) -> bool {
        self.durable
    }

    /// Appends messages (with optional due times) in one batch.
    pub(crate) fn put<'a>(
        &self,
        messages: impl IntoIterator<Item = (&'a Message, Option<i64>)>,
    ) -> Result<(), nsq_diskqueue::Error> {
        let records = EncodedRecords::new(RECORD_KIND_MESSAGE, messages);
        if records.is_empty() {
            return Ok(());
        }
        let count = records.len() as u64;
        let mut guard = self.queue.lock();
        let queue = guard.as_mut().ok_or_else(deleted)?;
        queue.put_batch(records.iter())?;
        self.depth.store(queue.depth(), Ordering::Release);
        drop(guard);
        tracing::trace!(queue = %self.name, count, "spilled to disk");
        Ok(())
    }

    /// Reads up to `max` messages.
    pub(crate) fn read_batch(
        &self,
        max: usize,
        out: &mut Vec<StoredMessage>,
    ) -> Result<(), nsq_diskqueue::Error> {
        let mut guard = self.queue.lock();
        let Some(queue) = guard.as_mut() else {
            return Ok(());
        };
        while out.len() < max {
            let Some(record) = queue.read_next_at()? else {
                break;
            };
            let (position, record) = record;
            match decode_record(record, position, self.replay_end) {
                Some(stored) if self.is_stale(&stored) => queue.release(position),
                Some(stored) => {
                    if stored.copy_in_memory {
                        let _ = self.copies_unread.fetch_update(
                            Ordering::AcqRel,
                            Ordering::Acquire,
                            |copies| Some(copies.saturating_sub(1)),
                        );
                    }
                    out.push(stored);
                }
                None => {
                    self.undecodable.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(queue = %self.name, "skipping an undecodable disk record");
                }
            }
        }
        self.depth.store(queue.depth(), Ordering::Release);
        Ok(())
    }

    /// Whether a replayed record has a later relocated copy (and so must be skipped).
    fn is_stale(&self, stored: &StoredMessage) -> bool {
        if !self.durable || stored.position >= self.replay_end {
            return false;
        }
        let mut latest = self.latest_copies.lock();
        match latest.get(&stored.message.id) {
            Some(&copy) if copy == stored.position => {
                latest.remove(&stored.message.id);
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Durable mode: the records at `positions` are done (finished, or relocated).
    pub(crate) fn release(&self, positions: impl IntoIterator<Item = Position>) {
        if let Some(queue) = self.queue.lock().as_mut() {
            for position in positions {
                queue.release(position);
            }
        }
    }

    /// Durable mode: appends relocated copies (current attempts, due time) one by one and
    /// returns where each landed.
    pub(crate) fn relocate<'a>(
        &self,
        messages: impl IntoIterator<Item = (&'a Message, Option<i64>)>,
    ) -> Result<Vec<Position>, nsq_diskqueue::Error> {
        let records = EncodedRecords::new(RECORD_KIND_RELOCATED, messages);
        let mut guard = self.queue.lock();
        let queue = guard.as_mut().ok_or_else(deleted)?;
        let positions = records
            .iter()
            .map(|record| queue.put_at(record))
            .collect::<Result<Vec<_>, _>>();
        if let Ok(positions) = &positions {
            self.copies_unread
                .fetch_add(positions.len() as u64, Ordering::AcqRel);
        }
        self.depth.store(queue.depth(), Ordering::Release);
        positions
    }

    /// Durable mode: the read segment, if records pinned by unfinished messages keep an older
    /// segment alive (time to relocate those messages).
    pub(crate) fn pinned_behind(&self) -> Option<u64> {
        let guard = self.queue.lock();
        let queue = guard.as_ref()?;
        let read = queue.read_position().segment;
        (queue.committed_position().segment < read).then_some(read)
    }

    /// fdatasyncs what was written so far (group commit), without holding the queue's lock
    /// during the fsync. Returns the number of fsync calls.
    pub(crate) fn sync_writes(&self) -> Result<u32, nsq_diskqueue::Error> {
        let handle = match self.queue.lock().as_ref() {
            Some(queue) => queue.write_sync()?,
            None => return Ok(0),
        };
        handle.run()
    }

    /// Syncs if the sync policy says so (called periodically).
    pub(crate) fn sync_if_needed(&self) -> Result<(), nsq_diskqueue::Error> {
        match self.queue.lock().as_mut() {
            Some(queue) if queue.needs_sync() => queue.sync(),
            _ => Ok(()),
        }
    }

    /// fsync + metadata now.
    pub(crate) fn sync(&self) -> Result<(), nsq_diskqueue::Error> {
        self.queue.lock().as_mut().map_or(Ok(()), DiskQueue::sync)
    }

    /// Drops everything queued on disk.
    pub(crate) fn empty(&self) -> Result<(), nsq_diskqueue::Error> {
        if let Some(queue) = self.queue.lock().as_mut() {
            queue.empty()?;
        }
        self.depth.store(0, Ordering::Release);
        self.copies_unread.store(0, Ordering::Release);
        Ok(())
    }

    /// Removes the queue's files (topic/channel deletion). Later puts fail; reads find nothing.
    pub(crate) fn delete(&self) -> Result<(), nsq_diskqueue::Error> {
        self.depth.store(0, Ordering::Release);
        match self.queue.lock().take() {
            Some(queue) => queue.delete(),
            None => Ok(()),
        }
    }
}

fn deleted() -> nsq_diskqueue::Error {
    nsq_diskqueue::Error::Io {
        op: "write to deleted queue",
        path: std::path::PathBuf::new(),
        source: std::io::Error::other("queue deleted"),
    }
}

/// A batch of records encoded into one buffer (two allocations per batch, none per message).
struct EncodedRecords {
    buf: Vec<u8>,
    /// End offset of each record in `buf`.
    ends: Vec<usize>,
}

impl EncodedRecords {
    fn new<'a>(kind: u8, messages: impl IntoIterator<Item = (&'a Message, Option<i64>)>) -> Self {
        let mut records = Self {
            buf: Vec::new(),
            ends: Vec::new(),
        };
        for (message, due) in messages {
            records
                .buf
                .reserve(RECORD_HEADER_LEN + message.encoded_len());
            records.buf.push(kind);
            records
                .buf
                .extend_from_slice(&due.unwrap_or(0).to_be_bytes());
            message.encode_to_vec(&mut records.buf);
            records.ends.push(records.buf.len());
        }
        records
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.buf[start..end])
    }
}

fn decode_record(
    record: bytes::Bytes,
    position: Position,
    replay_end: Position,
) -> Option<StoredMessage> {
    if record.len() < RECORD_HEADER_LEN + MESSAGE_HEADER_LEN {
        return None;
    }
    let relocated = match record[0] {
        RECORD_KIND_MESSAGE => false,
        RECORD_KIND_RELOCATED => true,
        _ => return None,
    };
    let due = i64::from_be_bytes(record[1..RECORD_HEADER_LEN].try_into().ok()?);
    let message = Message::decode(record.slice(RECORD_HEADER_LEN..))?;
    Some(StoredMessage {
        message,
        due_unix_ns: (due != 0).then_some(due),
        position,
        copy_in_memory: relocated && position >= replay_end,
    })
}

/// The message ID of a record, without decoding the rest.
fn record_id(record: &[u8]) -> Option<MessageId> {
    let start = RECORD_HEADER_LEN + 8 + 2;
    let id: [u8; 16] = record.get(start..start + 16)?.try_into().ok()?;
    Some(MessageId(id))
}

/// Moves an upstream go-diskqueue backlog named `name` into `queue`, then removes the upstream
/// files (after our copy is synced).
fn import_upstream(
    dir: &Path,
    name: &str,
    queue: &mut DiskQueue,
) -> Result<(), nsq_diskqueue::Error> {
    let Some(mut upstream) = nsq_diskqueue::go::open_go_queue(dir, name)? else {
        return Ok(());
    };
    let mut imported = 0u64;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    while let Some(payload) = upstream.read_next()? {
        if payload.len() < MESSAGE_HEADER_LEN {
            continue;
        }
        let mut record = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
        record.push(RECORD_KIND_MESSAGE);
        record.extend_from_slice(&0i64.to_be_bytes());
        record.extend_from_slice(&payload);
        batch.push(record);
        if batch.len() >= 1024 {
            imported += batch.len() as u64;
            queue.put_batch(&batch)?;
            batch.clear();
        }
    }
    imported += batch.len() as u64;
    queue.put_batch(&batch)?;
    queue.sync()?;
    upstream.remove_files()?;
    tracing::info!(queue = %name, imported, "imported upstream go-diskqueue backlog");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use nsq_protocol::MessageId;

    fn settings() -> DiskSettings {
        DiskSettings {
            max_bytes_per_file: 4096,
            sync_every: 10,
            sync_timeout: Duration::from_secs(2),
            durable: false,
        }
    }

    #[test]
    fn messages_and_due_times_round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let messages: Vec<Message> = (0..100)
            .map(|n| Message {
                id: MessageId::from_u64(n),
                timestamp: 1_000 + n as i64,
                attempts: (n % 3) as u16,
                body: Bytes::from(format!("body-{n}")),
            })
            .collect();
        {
            let backend = Backend::open(dir.path(), "t:c", &settings(), 1024).unwrap();
            backend
                .put(
                    messages
                        .iter()
                        .enumerate()
                        .map(|(n, m)| (m, (n % 2 == 0).then_some(n as i64 + 1))),
                )
                .unwrap();
            assert_eq!(backend.depth(), 100);
            backend.sync().unwrap();
        }
        let backend = Backend::open(dir.path(), "t:c", &settings(), 1024).unwrap();
        let mut out = Vec::new();
        backend.read_batch(1000, &mut out).unwrap();
        assert_eq!(out.len(), 100);
        for (n, stored) in out.iter().enumerate() {
            assert_eq!(stored.message, messages[n]);
            assert_eq!(stored.due_unix_ns, (n % 2 == 0).then_some(n as i64 + 1));
        }
        assert_eq!(backend.depth(), 0);
    }
}
