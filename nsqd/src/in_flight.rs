//! `InFlight`: the messages of one channel that were delivered and await FIN, REQ or their
//! deadline. Pure and synchronous; the channel holds it under its lock.
//!
//! A hash map finds an entry by ID; a min-heap of `(deadline, id)` finds the next deadline. TOUCH
//! and FIN leave stale heap items behind (lazy deletion): a heap item counts only while the map
//! holds an entry with that ID *and* that deadline. The heap is rebuilt from the map when stale
//! items outnumber live ones, so memory stays proportional to the in-flight count.

use crate::client::ClientId;
use nsq_protocol::{Message, MessageId};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use tokio::time::{Duration, Instant};

/// One delivered message.
#[derive(Debug, Clone)]
pub(crate) struct InFlightEntry {
    pub(crate) message: Message,
    pub(crate) client: ClientId,
    pub(crate) deadline: Instant,
    pub(crate) delivered_at: Instant,
}

/// Why FIN, REQ or TOUCH was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotInFlight {
    /// No such ID in flight on this channel.
    Unknown,
    /// In flight, but delivered to another connection.
    NotOwner,
}

impl NotInFlight {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            NotInFlight::Unknown => "ID not in flight",
            NotInFlight::NotOwner => "client does not own message",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct InFlight {
    entries: FxHashMap<MessageId, InFlightEntry>,
    deadlines: BinaryHeap<Reverse<(Instant, MessageId)>>,
}

/// Stale heap items tolerated beyond twice the live count before a rebuild.
const COMPACTION_SLACK: usize = 1024;

impl InFlight {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn contains(&self, id: &MessageId) -> bool {
        self.entries.contains_key(id)
    }

    /// Adds a delivered message. Returns it back if the ID is already in flight (a duplicate
    /// copy, e.g. replayed after a crash): at most one entry per ID.
    pub(crate) fn insert(&mut self, entry: InFlightEntry) -> Result<(), InFlightEntry> {
        if self.entries.contains_key(&entry.message.id) {
            return Err(entry);
        }
        self.deadlines
            .push(Reverse((entry.deadline, entry.message.id)));
        self.entries.insert(entry.message.id, entry);
        Ok(())
    }

    /// Removes the entry if `client` owns it (FIN, REQ).
    pub(crate) fn remove(
        &mut self,
        id: &MessageId,
        client: ClientId,
    ) -> Result<InFlightEntry, NotInFlight> {
        match self.entries.get(id) {
            None => Err(NotInFlight::Unknown),
            Some(entry) if entry.client != client => Err(NotInFlight::NotOwner),
            Some(_) => {
                let entry = self.entries.remove(id).ok_or(NotInFlight::Unknown)?;
                self.maybe_compact();
                Ok(entry)
            }
        }
    }

    /// Moves the deadline to `now + timeout`, but never past `delivered_at + max_timeout` (TOUCH).
    pub(crate) fn touch(
        &mut self,
        id: &MessageId,
        client: ClientId,
        now: Instant,
        timeout: Duration,
        max_timeout: Duration,
    ) -> Result<Instant, NotInFlight> {
        let entry = self.entries.get_mut(id).ok_or(NotInFlight::Unknown)?;
        if entry.client != client {
            return Err(NotInFlight::NotOwner);
        }
        let deadline = (now + timeout).min(entry.delivered_at + max_timeout);
        entry.deadline = deadline;
        self.deadlines.push(Reverse((deadline, *id)));
        self.maybe_compact();
        Ok(deadline)
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.drop_stale_heads();
        self.deadlines
            .peek()
            .map(|Reverse((deadline, _))| *deadline)
    }

    /// Removes and returns one entry whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<InFlightEntry> {
        self.drop_stale_heads();
        let Reverse((deadline, id)) = *self.deadlines.peek()?;
        if deadline > now {
            return None;
        }
        self.deadlines.pop();
        self.entries.remove(&id)
    }

    /// Every entry, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &InFlightEntry> + '_ {
        self.entries.values()
    }

    /// Removes every entry (channel empty, shutdown flush).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = InFlightEntry> + '_ {
        self.deadlines.clear();
        self.entries.drain().map(|(_, entry)| entry)
    }

    fn is_live(&self, deadline: Instant, id: &MessageId) -> bool {
        self.entries
            .get(id)
            .is_some_and(|entry| entry.deadline == deadline)
    }

    fn drop_stale_heads(&mut self) {
        while let Some(Reverse((deadline, id))) = self.deadlines.peek() {
            if self.is_live(*deadline, id) {
                return;
            }
            self.deadlines.pop();
        }
    }

    fn maybe_compact(&mut self) {
        if self.deadlines.len() > 2 * self.entries.len() + COMPACTION_SLACK {
            self.deadlines = self
                .entries
                .values()
                .map(|entry| Reverse((entry.deadline, entry.message.id)))
                .collect();
        }
    }

    #[cfg(test)]
    fn heap_len(&self) -> usize {
        self.deadlines.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn entry(id: u64, client: u64, deadline: Instant) -> InFlightEntry {
        InFlightEntry {
            message: Message::new(MessageId::from_u64(id), 0, Bytes::from_static(b"x")),
            client: ClientId(client),
            deadline,
            delivered_at: deadline - Duration::from_secs(60),
        }
    }

    #[test]
    fn fin_checks_owner_and_presence() {
        let now = Instant::now();
        let mut in_flight = InFlight::default();
        in_flight
            .insert(entry(1, 7, now + Duration::from_secs(1)))
            .unwrap();
        let id = MessageId::from_u64(1);
        assert_eq!(
            in_flight.remove(&id, ClientId(8)).unwrap_err(),
            NotInFlight::NotOwner
        );
        assert!(in_flight.remove(&id, ClientId(7)).is_ok());
        assert_eq!(
            in_flight.remove(&id, ClientId(7)).unwrap_err(),
            NotInFlight::Unknown
        );
        assert_eq!(in_flight.next_deadline(), None);
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let now = Instant::now();
        let mut in_flight = InFlight::default();
        in_flight.insert(entry(1, 7, now)).unwrap();
        assert!(in_flight.insert(entry(1, 8, now)).is_err());
        assert_eq!(in_flight.len(), 1);
    }

    #[test]
    fn touch_moves_deadline_with_cap() {
        let start = Instant::now();
        let mut in_flight = InFlight::default();
        let mut first = entry(1, 7, start + Duration::from_secs(1));
        first.delivered_at = start;
        in_flight.insert(first).unwrap();
        let id = MessageId::from_u64(1);
        let deadline = in_flight
            .touch(
                &id,
                ClientId(7),
                start + Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(deadline, start + Duration::from_millis(1500));
        assert!(
            in_flight
                .pop_expired(start + Duration::from_secs(1))
                .is_none()
        );
        let capped = in_flight
            .touch(
                &id,
                ClientId(7),
                start + Duration::from_secs(59),
                Duration::from_secs(10),
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(capped, start + Duration::from_secs(60));
        assert_eq!(
            in_flight.touch(
                &id,
                ClientId(9),
                start,
                Duration::from_secs(1),
                Duration::from_secs(60)
            ),
            Err(NotInFlight::NotOwner)
        );
        assert!(
            in_flight
                .pop_expired(start + Duration::from_secs(60))
                .is_some()
        );
        assert!(
            in_flight
                .pop_expired(start + Duration::from_secs(600))
                .is_none()
        );
    }

    #[test]
    fn heap_stays_bounded_under_fin_churn() {
        let now = Instant::now();
        let mut in_flight = InFlight::default();
        for id in 0..100_000u64 {
            in_flight
                .insert(entry(id, 1, now + Duration::from_secs(60)))
                .unwrap();
            in_flight
                .remove(&MessageId::from_u64(id), ClientId(1))
                .unwrap();
        }
        assert!(in_flight.heap_len() <= COMPACTION_SLACK + 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8, u16),
        Remove(u8, u8),
        Touch(u8, u8, u16),
        Expire(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..16, 0u8..3, 0u16..1000).prop_map(|(id, c, d)| Op::Insert(id, c, d)),
            (0u8..16, 0u8..3).prop_map(|(id, c)| Op::Remove(id, c)),
            (0u8..16, 0u8..3, 0u16..1000).prop_map(|(id, c, d)| Op::Touch(id, c, d)),
            (0u16..1200).prop_map(Op::Expire),
        ]
    }

    proptest! {
        /// InFlight agrees with a naive list of (id, client, deadline).
        #[test]
        fn matches_naive_model(ops in proptest::collection::vec(op(), 1..200)) {
            let base = Instant::now();
            let at = |ms: u16| base + Duration::from_millis(u64::from(ms));
            let mut real = InFlight::default();
            let mut model: Vec<(u64, u64, Instant)> = Vec::new();
            let mut clock = 0u16;
            for op in ops {
                match op {
                    Op::Insert(id, client, delay) => {
                        let deadline = at(clock.saturating_add(delay));
                        let mut new = entry(u64::from(id), u64::from(client), deadline);
                        new.delivered_at = at(clock);
                        let inserted = real.insert(new).is_ok();
                        let exists = model.iter().any(|(mid, _, _)| *mid == u64::from(id));
                        prop_assert_eq!(inserted, !exists);
                        if inserted { model.push((u64::from(id), u64::from(client), deadline)); }
                    }
                    Op::Remove(id, client) => {
                        let result = real.remove(&MessageId::from_u64(u64::from(id)), ClientId(u64::from(client)));
                        let position = model.iter().position(|(mid, _, _)| *mid == u64::from(id));
                        match position {
                            None => prop_assert_eq!(result.unwrap_err(), NotInFlight::Unknown),
                            Some(index) if model[index].1 != u64::from(client) => prop_assert_eq!(result.unwrap_err(), NotInFlight::NotOwner),
                            Some(index) => { prop_assert!(result.is_ok()); model.remove(index); }
                        }
                    }
                    Op::Touch(id, client, timeout) => {
                        let result = real.touch(&MessageId::from_u64(u64::from(id)), ClientId(u64::from(client)), at(clock), Duration::from_millis(u64::from(timeout)), Duration::from_secs(3600));
                        if let Some(item) = model.iter_mut().find(|(mid, c, _)| *mid == u64::from(id) && *c == u64::from(client)) {
                            item.2 = at(clock.saturating_add(timeout));
                            prop_assert_eq!(result.unwrap(), item.2);
                        } else {
                            prop_assert!(result.is_err());
                        }
                    }
                    Op::Expire(now) => {
                        clock = clock.max(now);
                        let mut expired = Vec::new();
                        while let Some(gone) = real.pop_expired(at(clock)) {
                            expired.push(gone.message.id.to_u64().unwrap());
                        }
                        let mut model_expired: Vec<u64> = model.iter().filter(|(_, _, d)| *d <= at(clock)).map(|(id, _, _)| *id).collect();
                        model.retain(|(_, _, d)| *d > at(clock));
                        expired.sort_unstable();
                        model_expired.sort_unstable();
                        prop_assert_eq!(expired, model_expired);
                    }
                }
                prop_assert_eq!(real.len(), model.len());
                prop_assert_eq!(real.next_deadline(), model.iter().map(|(_, _, d)| *d).min());
            }
        }
    }
}
