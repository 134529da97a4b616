//! `Channel`: one consumer group of a topic. It holds the ready queue, the in-flight table and the
//! deferred queue under one short lock, hands messages to ready consumers, and runs one timer task
//! that requeues timed-out messages and releases deferred ones when due.
//!
//! Architecture invariant: every message a channel accepted is in exactly one of {ready queue,
//! disk backend, in flight, deferred} until it is finished (or dropped by an ephemeral channel's
//! overflow, sampling, empty or delete). No I/O and no `.await` happen under the lock: messages
//! beyond `--mem-queue-size` are written to the backend after the lock is released, and read back
//! (`refill`) by a consumer that found the memory queue empty.
//!
//! Durable mode (`--durable`): every message goes to the disk backend first (the memory queue only
//! holds what consumers read back), and each message in memory remembers where its record starts
//! (`pins`). FIN releases that record; REQ with a delay, and messages that stay unfinished while
//! the reader moves on a whole segment, are relocated (a fresh copy with current attempts and due
//! time is appended, then the old record released). Invariant: a message in memory whose record
//! is released has a relocated copy at its pin, so a crash replays every unfinished message.

use crate::backend::{Backend, StoredMessage};
use crate::client::{ClientId, ClientShared};
use crate::deferred::Deferred;
use crate::e2e::{E2eWindows, LatencyHistogram};
use crate::in_flight::{InFlight, InFlightEntry, NotInFlight};
use crate::settings::Settings;
use nsq_diskqueue::Position;
use nsq_protocol::{ChannelName, Message, MessageId, TopicName};
use parking_lot::Mutex;
use rand::Rng;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// One channel of a topic.
#[derive(Debug)]
pub struct Channel {
    /// Channel name.
    pub name: ChannelName,
    /// Name of the owning topic.
    pub topic_name: TopicName,
    settings: Arc<Settings>,
    state: Mutex<ChannelState>,
    /// Disk queue for overflow and shutdown (none for ephemeral channels); in durable mode the
    /// queue every message passes through.
    backend: Option<Arc<Backend>>,
    /// Woken (all waiters) when messages become deliverable: put, requeue, unpause.
    ready: Arc<Notify>,
    /// Woken when a deadline earlier than the timer's current one is inserted.
    timer: Notify,
    deleted: AtomicBool,
    stop: CancellationToken,
    message_count: AtomicU64,
    requeue_count: AtomicU64,
    timeout_count: AtomicU64,
}

#[derive(Debug, Default)]
struct ChannelState {
    queue: VecDeque<Message>,
    in_flight: InFlight,
    deferred: Deferred,
    consumers: FxHashMap<ClientId, Arc<ClientShared>>,
    paused: bool,
    /// What the timer task sleeps until (`None`: nothing scheduled).
    timer_deadline: Option<Instant>,
    /// Publish-to-FIN latency, created on the first FIN when percentiles are configured.
    e2e: Option<E2eWindows>,
    /// Durable mode: where the record of each message in memory starts.
    pins: FxHashMap<MessageId, Position>,
}

/// Why SUB could not join this channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JoinError {
    /// The channel was deleted (ephemeral teardown or HTTP delete) meanwhile.
    Deleted,
    /// `--max-channel-consumers` reached.
    TooManyConsumers(usize),
}

/// A point-in-time view of a channel for `/stats`.
#[derive(Debug, Clone)]
pub struct ChannelSnapshot {
    /// Channel name.
    pub name: ChannelName,
    /// Ready messages (memory + disk).
    pub depth: u64,
    /// Disk part of `depth`.
    pub backend_depth: u64,
    /// In flight.
    pub in_flight_count: u64,
    /// Deferred.
    pub deferred_count: u64,
    /// Messages ever put into the channel.
    pub message_count: u64,
    /// Explicit REQs.
    pub requeue_count: u64,
    /// Expired deadlines.
    pub timeout_count: u64,
    /// Paused flag.
    pub paused: bool,
    /// Disk records skipped as damaged since start.
    pub corrupt_records: u64,
    /// Subscribed connections.
    pub clients: Vec<Arc<ClientShared>>,
    /// E2e latency over the window (`None`: not configured, or no FIN yet).
    pub e2e: Option<LatencyHistogram>,
}

/// How many messages one call to [`Channel::take_for`] may hand out, and on what terms.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TakeRequest {
    /// At most this many messages.
    pub(crate) max: usize,
    /// Delivery time.
    pub(crate) now: Instant,
    /// The consumer's in-flight timeout.
    pub(crate) msg_timeout: Duration,
    /// The consumer's sample rate (0 = every message).
    pub(crate) sample_rate: u8,
}

/// What one call to [`Channel::take_for`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// Messages handed to the sink.
    pub(crate) delivered: usize,
    /// The ready queue ran dry (or the channel is paused): wait for [`Channel::ready_notify`].
    pub(crate) exhausted: bool,
    /// The memory queue is empty but the disk backend holds messages: call [`Channel::refill`].
    pub(crate) refill: bool,
}

/// A channel's disk backend failed; the message did not reach the channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendFailed(pub String);

impl Channel {
    pub(crate) fn new(
        topic_name: TopicName,
        name: ChannelName,
        settings: Arc<Settings>,
        backend: Option<Arc<Backend>>,
    ) -> Arc<Self> {
        let channel = Arc::new(Self {
            name,
            topic_name,
            settings,
            state: Mutex::new(ChannelState::default()),
            backend,
            ready: Arc::new(Notify::new()),
            timer: Notify::new(),
            deleted: AtomicBool::new(false),
            stop: CancellationToken::new(),
            message_count: AtomicU64::new(0),
            requeue_count: AtomicU64::new(0),
            timeout_count: AtomicU64::new(0),
        });
        let span =
            tracing::info_span!("channel", topic = %channel.topic_name, channel = %channel.name);
        tokio::spawn(run_timer(Arc::clone(&channel)).instrument(span));
        channel
    }

    /// Whether the name ends in `#ephemeral`.
    pub fn is_ephemeral(&self) -> bool {
        self.name.is_ephemeral()
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// The disk queue a durable publish to this channel must commit (`None` outside durable
    /// mode and for ephemeral channels).
    pub(crate) fn durable_backend(&self) -> Option<&Arc<Backend>> {
        self.backend.as_ref().filter(|backend| backend.is_durable())
    }

    fn is_durable(&self) -> bool {
        self.settings.disk.durable && !self.is_ephemeral()
    }

    /// The notifier consumers wait on while the queue is empty or the channel paused.
    pub(crate) fn ready_notify(&self) -> &Arc<Notify> {
        &self.ready
    }

    /// Puts messages into the ready queue (topic fan-out); what does not fit in
    /// `--mem-queue-size` goes to the disk backend (an ephemeral channel drops it). Every message
    /// counts in `message_count`.
    pub(crate) fn put_batch(
        &self,
        messages: impl IntoIterator<Item = Message>,
    ) -> Result<(), BackendFailed> {
        if self.is_durable() {
            return self.put_durable(messages.into_iter().collect(), None);
        }
        let mut n_put = 0u64;
        let mut overflow = Vec::new();
        {
            let mut state = self.state.lock();
            if self.is_deleted() {
                return Ok(());
            }
            let cap = self.settings.mem_queue_size;
            for message in messages {
                n_put += 1;
                if state.queue.len() < cap {
                    state.queue.push_back(message);
                } else if self.backend.is_some() {
                    overflow.push(message);
                }
            }
        }
        let spilled = self.spill(&overflow, None);
        self.message_count.fetch_add(n_put, Ordering::Relaxed);
        self.ready.notify_waiters();
        spilled
    }

    /// Durable mode: every message goes to the disk queue; consumers read it back.
    fn put_durable(
        &self,
        messages: Vec<Message>,
        due_unix_ns: Option<i64>,
    ) -> Result<(), BackendFailed> {
        if self.is_deleted() || messages.is_empty() {
            return Ok(());
        }
        if self.backend.is_none() {
            return Err(BackendFailed("disk queue unavailable".to_owned()));
        }
        self.spill(&messages, due_unix_ns)?;
        self.message_count
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        // Deferred records too: a waiting consumer reads them into the deferred queue.
        self.ready.notify_waiters();
        Ok(())
    }

    /// Writes messages to the disk backend (with their due time, if deferred).
    fn spill(&self, messages: &[Message], due_unix_ns: Option<i64>) -> Result<(), BackendFailed> {
        match &self.backend {
            Some(backend) if !messages.is_empty() => backend
                .put(messages.iter().map(|message| (message, due_unix_ns)))
                .map_err(|err| {
                    tracing::error!("CHANNEL({}): disk write failed - {err}", self.name);
                    BackendFailed(err.to_string())
                }),
            _ => Ok(()),
        }
    }

    /// Moves up to `max` messages from the disk backend into memory (ready queue, or the deferred
    /// queue for a message whose due time has not come), reading on until at least one is ready
    /// or the backend is empty. Returns how many became ready.
    pub(crate) fn refill(&self, max: usize) -> usize {
        let Some(backend) = &self.backend else {
            return 0;
        };
        let mut ready = 0;
        while ready == 0 && backend.unread() > 0 {
            let mut batch = Vec::new();
            if let Err(err) = backend.read_batch(max, &mut batch) {
                tracing::error!("CHANNEL({}): disk read failed - {err}", self.name);
                break;
            }
            if batch.is_empty() {
                break;
            }
            let now_ns = crate::topic::unix_now_ns();
            let now = Instant::now();
            let mut duplicates = Vec::new();
            let mut state = self.state.lock();
            if self.is_deleted() {
                break;
            }
            for stored in batch {
                let Some(stored) = self.pin_read(&mut state, stored, &mut duplicates) else {
                    continue;
                };
                match stored.due_unix_ns {
                    Some(due) if due > now_ns => {
                        let due = now + Duration::from_nanos((due - now_ns) as u64);
                        state.deferred.push(stored.message, due);
                        self.schedule_timer(&mut state, due);
                    }
                    _ => {
                        state.queue.push_back(stored.message);
                        ready += 1;
                    }
                }
            }
            drop(state);
            if !duplicates.is_empty() {
                backend.release(duplicates);
            }
        }
        if ready > 0 {
            self.ready.notify_waiters();
        }
        ready
    }

    /// Durable mode: records where a message read from disk lives. Returns `None` for records
    /// that must not enter memory: a relocated copy of a message already in memory, or a second
    /// copy of a message replayed after a crash (its record goes to `duplicates` to release).
    fn pin_read(
        &self,
        state: &mut ChannelState,
        stored: StoredMessage,
        duplicates: &mut Vec<Position>,
    ) -> Option<StoredMessage> {
        if !self.is_durable() {
            return Some(stored);
        }
        if stored.copy_in_memory {
            return None;
        }
        match state.pins.entry(stored.message.id) {
            std::collections::hash_map::Entry::Occupied(_) => {
                duplicates.push(stored.position);
                None
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(stored.position);
                Some(stored)
            }
        }
    }

    /// Durable mode: appends fresh copies of in-memory messages (with their current attempts
    /// and due times), moves their pins to the copies and releases the old records. A message
    /// finished meanwhile has its copy released instead.
    fn relocate(&self, moves: Vec<(Message, Option<i64>, Position)>) -> Result<(), BackendFailed> {
        let Some(backend) = &self.backend else {
            return Ok(());
        };
        if moves.is_empty() {
            return Ok(());
        }
        let positions = backend
            .relocate(moves.iter().map(|(message, due, _)| (message, *due)))
            .map_err(|err| {
                tracing::error!("CHANNEL({}): disk write failed - {err}", self.name);
                BackendFailed(err.to_string())
            })?;
        let mut released = Vec::with_capacity(moves.len());
        {
            let mut state = self.state.lock();
            for ((message, _, old), new) in moves.iter().zip(positions) {
                match state.pins.get_mut(&message.id) {
                    Some(pin) if *pin == *old => {
                        *pin = new;
                        released.push(*old);
                    }
                    _ => released.push(new),
                }
            }
        }
        backend.release(released);
        Ok(())
    }

    /// Durable mode: relocates the messages whose records keep a segment the reader has left
    /// alive (long-deferred or long in-flight messages), so finished segments can be deleted.
    /// Called from the periodic sync.
    pub(crate) fn relocate_pinned(&self) {
        let Some(backend) = self.durable_backend() else {
            return;
        };
        let Some(read_segment) = backend.pinned_behind() else {
            return;
        };
        let now_ns = crate::topic::unix_now_ns();
        let now = Instant::now();
        let moves: Vec<(Message, Option<i64>, Position)> = {
            let state = self.state.lock();
            // Two segments behind: messages read ahead or in flight across one segment boundary
            // are normal and soon finished; only those pinning a whole older segment move.
            let old = |id: &MessageId| {
                state
                    .pins
                    .get(id)
                    .filter(|pin| pin.segment + 1 < read_segment)
                    .copied()
            };
            let mut moves = Vec::new();
            for message in &state.queue {
                if let Some(pin) = old(&message.id) {
                    moves.push((message.clone(), None, pin));
                }
            }
            for entry in state.in_flight.iter() {
                if let Some(pin) = old(&entry.message.id) {
                    moves.push((entry.message.clone(), None, pin));
                }
            }
            for (message, due) in state.deferred.iter() {
                if let Some(pin) = old(&message.id) {
                    let wait = due.saturating_duration_since(now).as_nanos() as i64;
                    moves.push((
                        message.clone(),
                        Some(now_ns.saturating_add(wait.max(1))),
                        pin,
                    ));
                }
            }
            moves
        };
        if !moves.is_empty() {
            tracing::debug!(
                "CHANNEL({}): relocating {} unfinished messages out of old segments",
                self.name,
                moves.len()
            );
        }
        let relocated = !moves.is_empty();
        if let Err(err) = self.relocate(moves) {
            tracing::error!("CHANNEL({}): relocation failed - {err}", self.name);
        }
        if relocated {
            // Waiting consumers read past the copies, so the old segments can go.
            self.ready.notify_waiters();
        }
    }

    /// Writes everything in memory, in flight and deferred to the disk backend and syncs it
    /// (clean shutdown). In-flight messages keep their attempts; deferred ones their due time.
    pub(crate) fn flush_to_disk(&self) -> Result<(), BackendFailed> {
        let Some(backend) = &self.backend else {
            return Ok(());
        };
        if backend.is_durable() {
            // Everything unfinished is already on disk and pinned: make the positions durable.
            return backend.sync().map_err(|err| BackendFailed(err.to_string()));
        }
        let now_ns = crate::topic::unix_now_ns();
        let now = Instant::now();
        let (ready, deferred) = {
            let mut state = self.state.lock();
            let mut ready: Vec<Message> = state.queue.drain(..).collect();
            ready.extend(state.in_flight.drain().map(|entry| entry.message));
            let deferred: Vec<(Message, i64)> = state
                .deferred
                .drain()
                .map(|(message, due)| {
                    let wait = due.saturating_duration_since(now).as_nanos() as i64;
                    (message, now_ns.saturating_add(wait.max(1)))
                })
                .collect();
            (ready, deferred)
        };
        tracing::info!(
            "CHANNEL({}): flushing {} memory/in-flight and {} deferred messages to disk",
            self.name,
            ready.len(),
            deferred.len()
        );
        let result = backend
            .put(
                ready
                    .iter()
                    .map(|message| (message, None))
                    .chain(deferred.iter().map(|(message, due)| (message, Some(*due)))),
            )
            .and_then(|()| backend.sync());
        result.map_err(|err| BackendFailed(err.to_string()))
    }

    /// Syncs the disk backend if its policy (`--sync-every`, `--sync-timeout`) says so.
    pub(crate) fn sync_backend_if_needed(&self) {
        if let Some(backend) = &self.backend
            && let Err(err) = backend.sync_if_needed()
        {
            tracing::error!("CHANNEL({}): disk sync failed - {err}", self.name);
        }
    }

    /// Parks messages until `due` (DPUB fan-out).
    pub(crate) fn put_deferred(
        &self,
        messages: impl IntoIterator<Item = Message>,
        due: Instant,
    ) -> Result<(), BackendFailed> {
        if self.is_durable() {
            let wait = due.saturating_duration_since(Instant::now()).as_nanos() as i64;
            let due_ns = crate::topic::unix_now_ns().saturating_add(wait.max(1));
            return self.put_durable(messages.into_iter().collect(), Some(due_ns));
        }
        let mut n_put = 0u64;
        let mut state = self.state.lock();
        if self.is_deleted() {
            return Ok(());
        }
        for message in messages {
            n_put += 1;
            state.deferred.push(message, due);
        }
        self.schedule_timer(&mut state, due);
        drop(state);
        self.message_count.fetch_add(n_put, Ordering::Relaxed);
        Ok(())
    }

    /// Registers a subscribed connection.
    pub(crate) fn add_consumer(&self, client: Arc<ClientShared>) -> Result<(), JoinError> {
        let mut state = self.state.lock();
        if self.is_deleted() {
            return Err(JoinError::Deleted);
        }
        let max = self.settings.max_channel_consumers;
        if max > 0 && state.consumers.len() >= max {
            return Err(JoinError::TooManyConsumers(max));
        }
        state.consumers.insert(client.id, client);
        Ok(())
    }

    /// Unregisters a connection; returns whether it was the last consumer. Its in-flight
    /// messages stay until their deadline (upstream behaviour).
    pub(crate) fn remove_consumer(&self, id: ClientId) -> bool {
        let mut state = self.state.lock();
        state.consumers.remove(&id);
        state.consumers.is_empty()
    }

    pub(crate) fn consumer_count(&self) -> usize {
        self.state.lock().consumers.len()
    }

    /// Under one lock, hands up to `max` messages to `client`: each gets attempts + 1, enters the
    /// in-flight table with deadline `now + msg_timeout`, and is passed to `sink` (which encodes
    /// it). With a sample rate, skipped messages are dropped for this channel, as upstream does.
    pub(crate) fn take_for(
        &self,
        client: &ClientShared,
        request: TakeRequest,
        rng: &mut impl Rng,
        mut sink: impl FnMut(&Message) -> bool,
    ) -> Taken {
        let TakeRequest {
            max,
            now,
            msg_timeout,
            sample_rate,
        } = request;
        let mut delivered = 0;
        let mut sampled_out = Vec::new();
        let mut state = self.state.lock();
        if state.paused || self.is_deleted() {
            return Taken {
                delivered: 0,
                exhausted: true,
                refill: false,
            };
        }
        let deadline = now + msg_timeout;
        while delivered < max {
            let Some(mut message) = state.queue.pop_front() else {
                break;
            };
            if sample_rate > 0 && rng.random_range(0..100u8) > sample_rate {
                // Dropped for this channel: in durable mode its record is done too.
                if let Some(pin) = state.pins.remove(&message.id) {
                    sampled_out.push(pin);
                }
                continue;
            }
            if state.in_flight.contains(&message.id) {
                // A duplicate copy of a message already in flight: drop the copy.
                continue;
            }
            message.attempts = message.attempts.wrapping_add(1);
            let more = sink(&message);
            let _ = state.in_flight.insert(InFlightEntry {
                message,
                client: client.id,
                deadline,
                delivered_at: now,
            });
            delivered += 1;
            if !more {
                break;
            }
        }
        if delivered > 0 {
            self.schedule_timer(&mut state, deadline);
        }
        let exhausted = state.queue.is_empty();
        drop(state);
        if let Some(backend) = &self.backend
            && !sampled_out.is_empty()
        {
            backend.release(sampled_out);
        }
        let refill = exhausted && self.backend.as_ref().is_some_and(|b| b.unread() > 0);
        if delivered > 0 {
            client
                .in_flight_count
                .fetch_add(delivered as u64, Ordering::AcqRel);
            client
                .message_count
                .fetch_add(delivered as u64, Ordering::Relaxed);
        }
        Taken {
            delivered,
            exhausted,
            refill,
        }
    }

    /// FINs a batch of IDs under one lock; reports refusals to `on_error`. Returns how many
    /// were finished.
    pub(crate) fn finish_batch(
        &self,
        client: ClientId,
        ids: &[MessageId],
        mut on_error: impl FnMut(&MessageId, NotInFlight),
    ) -> u64 {
        let mut finished = 0;
        // One clock read per batch, and only when e2e latency is tracked.
        let e2e_clock = (!self.settings.e2e_percentiles.is_empty())
            .then(|| (crate::topic::unix_now_ns(), Instant::now()));
        let durable = self.is_durable();
        let mut released = Vec::new();
        let mut state = self.state.lock();
        if let (Some((_, now)), Some(windows)) = (e2e_clock, state.e2e.as_mut()) {
            windows.rotate(now);
        }
        for id in ids {
            match state.in_flight.remove(id, client) {
                Ok(entry) => {
                    finished += 1;
                    if durable && let Some(pin) = state.pins.remove(id) {
                        released.push(pin);
                    }
                    if let Some((now_ns, now)) = e2e_clock {
                        let window = self.settings.e2e_window;
                        state
                            .e2e
                            .get_or_insert_with(|| E2eWindows::new(window, now))
                            .record(now_ns - entry.message.timestamp);
                    }
                }
                Err(reason) => on_error(id, reason),
            }
        }
        drop(state);
        if let Some(backend) = self.durable_backend()
            && !released.is_empty()
        {
            backend.release(released);
        }
        finished
    }

    /// REQ: back to the queue now, or into the deferred queue for `delay`.
    pub(crate) fn requeue(
        &self,
        client: ClientId,
        id: &MessageId,
        delay: Duration,
        now: Instant,
    ) -> Result<(), NotInFlight> {
        let mut state = self.state.lock();
        let entry = state.in_flight.remove(id, client)?;
        self.requeue_count.fetch_add(1, Ordering::Relaxed);
        if delay.is_zero() {
            state.queue.push_back(entry.message);
            drop(state);
            self.ready.notify_waiters();
        } else {
            let due = now + delay;
            let relocation = self.is_durable().then(|| {
                let due_ns = crate::topic::unix_now_ns().saturating_add(delay.as_nanos() as i64);
                let pin = state.pins.get(id).copied();
                (entry.message.clone(), Some(due_ns), pin)
            });
            state.deferred.push(entry.message, due);
            self.schedule_timer(&mut state, due);
            drop(state);
            // Durable mode: the delay must survive a crash, so the message moves to a new record
            // that carries its due time.
            if let Some((message, due_ns, Some(pin))) = relocation
                && let Err(err) = self.relocate(vec![(message, due_ns, pin)])
            {
                tracing::error!("CHANNEL({}): relocation failed - {err}", self.name);
            }
        }
        Ok(())
    }

    /// TOUCH: extends the deadline.
    pub(crate) fn touch(
        &self,
        client: ClientId,
        id: &MessageId,
        now: Instant,
        msg_timeout: Duration,
    ) -> Result<(), NotInFlight> {
        let mut state = self.state.lock();
        state
            .in_flight
            .touch(id, client, now, msg_timeout, self.settings.max_msg_timeout)?;
        Ok(())
    }

    /// Pauses or resumes delivery.
    pub fn set_paused(&self, paused: bool) {
        self.state.lock().paused = paused;
        if !paused {
            self.ready.notify_waiters();
        }
    }

    /// Whether delivery is paused.
    pub fn is_paused(&self) -> bool {
        self.state.lock().paused
    }

    /// Drops everything queued (memory and disk), in flight and deferred; consumers stay
    /// connected.
    pub fn empty(&self) {
        if let Some(backend) = &self.backend
            && let Err(err) = backend.empty()
        {
            tracing::error!("CHANNEL({}): failed to empty disk queue - {err}", self.name);
        }
        let consumers: Vec<Arc<ClientShared>> = {
            let mut state = self.state.lock();
            state.queue.clear();
            state.in_flight.drain().for_each(drop);
            state.deferred.drain().for_each(drop);
            state.pins.clear();
            state.consumers.values().cloned().collect()
        };
        for consumer in consumers {
            consumer.in_flight_count.store(0, Ordering::Release);
            consumer.wake.notify_one();
        }
    }

    /// Deletes the channel: closes its consumers' connections and drops its messages.
    pub(crate) fn close(&self) {
        self.deleted.store(true, Ordering::Release);
        let consumers: Vec<Arc<ClientShared>> = {
            let mut state = self.state.lock();
            state.queue.clear();
            state.in_flight.drain().for_each(drop);
            state.deferred.drain().for_each(drop);
            state.pins.clear();
            state.consumers.drain().map(|(_, client)| client).collect()
        };
        for consumer in consumers {
            consumer.close.cancel();
        }
        self.stop.cancel();
        self.ready.notify_waiters();
        if let Some(backend) = &self.backend
            && let Err(err) = backend.delete()
        {
            tracing::error!(
                "CHANNEL({}): failed to delete disk queue - {err}",
                self.name
            );
        }
    }

    /// Stops the timer task at shutdown (messages stay where they are).
    pub(crate) fn stop(&self) {
        self.stop.cancel();
    }

    /// Counters and sizes for `/stats`.
    pub fn snapshot(&self) -> ChannelSnapshot {
        // Read before taking the channel lock: it waits on the disk queue's lock.
        let corrupt_records = self
            .backend
            .as_ref()
            .map_or(0, |backend| backend.corrupt_records());
        let mut state = self.state.lock();
        ChannelSnapshot {
            name: self.name.clone(),
            depth: state.queue.len() as u64 + self.backend_depth(),
            backend_depth: self.backend_depth(),
            in_flight_count: state.in_flight.len() as u64,
            deferred_count: state.deferred.len() as u64,
            message_count: self.message_count.load(Ordering::Relaxed),
            requeue_count: self.requeue_count.load(Ordering::Relaxed),
            timeout_count: self.timeout_count.load(Ordering::Relaxed),
            paused: state.paused,
            corrupt_records,
            clients: state.consumers.values().cloned().collect(),
            e2e: state
                .e2e
                .as_mut()
                .map(|windows| windows.merged(Instant::now())),
        }
    }

    fn backend_depth(&self) -> u64 {
        self.backend.as_ref().map_or(0, |backend| backend.depth())
    }

    /// Wakes the timer if `deadline` is earlier than what it sleeps until.
    fn schedule_timer(&self, state: &mut ChannelState, deadline: Instant) {
        if state
            .timer_deadline
            .is_none_or(|current| deadline < current)
        {
            state.timer_deadline = Some(deadline);
            self.timer.notify_one();
        }
    }

    /// Requeues expired in-flight messages and releases due deferred ones; returns the next
    /// deadline.
    fn process_timers(&self, now: Instant) -> Option<Instant> {
        let mut woken = Vec::new();
        let mut requeued = false;
        let next = {
            let mut state = self.state.lock();
            while let Some(entry) = state.in_flight.pop_expired(now) {
                self.timeout_count.fetch_add(1, Ordering::Relaxed);
                if let Some(owner) = state.consumers.get(&entry.client) {
                    owner.in_flight_done(1);
                    woken.push(Arc::clone(owner));
                }
                state.queue.push_back(entry.message);
                requeued = true;
            }
            while let Some(message) = state.deferred.pop_due(now) {
                state.queue.push_back(message);
                requeued = true;
            }
            let next = match (state.in_flight.next_deadline(), state.deferred.next_due()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            state.timer_deadline = next;
            next
        };
        for owner in woken {
            owner.wake.notify_one();
        }
        if requeued {
            self.ready.notify_waiters();
        }
        next
    }
}

/// The channel's one timer task: sleeps until the earliest deadline (or an earlier one is
/// scheduled), then processes everything due.
async fn run_timer(channel: Arc<Channel>) {
    loop {
        let scheduled = channel.timer.notified();
        tokio::pin!(scheduled);
        scheduled.as_mut().enable();
        let next = channel.process_timers(Instant::now());
        let sleep = async {
            match next {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = channel.stop.cancelled() => return,
            () = &mut scheduled => {}
            () = sleep => {}
        }
    }
}
