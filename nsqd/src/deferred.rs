//! `Deferred`: messages of one channel parked until a due time (REQ with delay, DPUB).
//! Pure and synchronous; the channel holds it under its lock. Entries with equal due times leave
//! in insertion order.

use nsq_protocol::Message;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use tokio::time::Instant;

#[derive(Debug)]
struct Entry {
    due: Instant,
    seq: u64,
    message: Message,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed so the max-heap yields the earliest due time first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

#[derive(Debug, Default)]
pub(crate) struct Deferred {
    heap: BinaryHeap<Entry>,
    next_seq: u64,
}

impl Deferred {
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    pub(crate) fn push(&mut self, message: Message, due: Instant) {
        self.next_seq += 1;
        self.heap.push(Entry {
            due,
            seq: self.next_seq,
            message,
        });
    }

    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|entry| entry.due)
    }

    /// Removes and returns one message due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Message> {
        if self.heap.peek()?.due > now {
            return None;
        }
        self.heap.pop().map(|entry| entry.message)
    }

    /// Every entry with its due time, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Message, Instant)> + '_ {
        self.heap.iter().map(|entry| (&entry.message, entry.due))
    }

    /// Removes every entry, with its due time.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (Message, Instant)> + '_ {
        self.heap.drain().map(|entry| (entry.message, entry.due))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use nsq_protocol::MessageId;
    use proptest::prelude::*;
    use tokio::time::Duration;

    fn message(id: u64) -> Message {
        Message::new(MessageId::from_u64(id), 0, Bytes::new())
    }

    #[test]
    fn pops_in_due_order_then_fifo() {
        let now = Instant::now();
        let mut deferred = Deferred::default();
        deferred.push(message(1), now + Duration::from_secs(2));
        deferred.push(message(2), now + Duration::from_secs(1));
        deferred.push(message(3), now + Duration::from_secs(1));
        assert_eq!(deferred.next_due(), Some(now + Duration::from_secs(1)));
        assert!(deferred.pop_due(now).is_none());
        let order: Vec<u64> = std::iter::from_fn(|| deferred.pop_due(now + Duration::from_secs(5)))
            .map(|m| m.id.to_u64().unwrap())
            .collect();
        assert_eq!(order, [2, 3, 1]);
        assert_eq!(deferred.len(), 0);
    }

    proptest! {
        /// Whatever the insertion order, messages leave sorted by (due, insertion order) and
        /// never before they are due.
        #[test]
        fn matches_sorted_model(dues in proptest::collection::vec(0u64..50, 0..100), checkpoints in proptest::collection::vec(0u64..60, 1..10)) {
            let base = Instant::now();
            let mut deferred = Deferred::default();
            let mut model: Vec<(u64, usize)> = Vec::new();
            for (index, due) in dues.iter().enumerate() {
                deferred.push(message(index as u64), base + Duration::from_millis(*due));
                model.push((*due, index));
            }
            model.sort();
            let mut checkpoints = checkpoints;
            checkpoints.sort();
            let mut out = Vec::new();
            for now in checkpoints {
                while let Some(m) = deferred.pop_due(base + Duration::from_millis(now)) {
                    let index = m.id.to_u64().unwrap() as usize;
                    prop_assert!(dues[index] <= now);
                    out.push(index);
                }
            }
            let expected: Vec<usize> = model.iter().map(|(_, i)| *i).take(out.len()).collect();
            prop_assert_eq!(out, expected);
        }
    }
}
