//! `Topic`: accepts published messages and copies each into every channel.
//!
//! While a topic has channels and is not paused, a publish fans out directly into the channels
//! (no extra hop: the channel list is read under the topic lock, the copies are put after it is
//! released). Otherwise messages wait in the topic's backlog (its `depth`): in memory up to
//! `--mem-queue-size`, beyond that in the topic's disk backend. When the first channel appears or
//! the topic is unpaused the memory backlog is handed over at once and a drain task moves the disk
//! backlog. Each channel gets its own `Message` sharing the same `Bytes` body.
//!
//! Durable mode (`--durable`): a topic that cannot route writes every message to its disk queue
//! (no memory backlog), and the drain task releases a record only after the channels' copies are
//! committed. [`Topic::publish`] returns the disk queues the publish wrote, for the caller to
//! commit before acknowledging.
//!
//! Lock order: topic state, then channel state. A channel never takes its topic's lock. No file
//! I/O happens under the topic lock: opening a channel's disk queue happens under `create_lock`,
//! which only channel creation takes.

use crate::backend::Backend;
use crate::channel::{BackendFailed, Channel, ChannelSnapshot};
use crate::commit::GroupCommit;
use crate::guid::GuidFactory;
use crate::nsqd::{RegistryEvent, RegistryEvents};
use crate::settings::Settings;
use bytes::Bytes;
use nsq_protocol::{ChannelName, Message, TopicName};
use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::{Duration, Instant};

/// Messages waiting at a topic, with their due time if deferred.
type Backlog = Vec<(Message, Option<Instant>)>;

/// Messages moved per step of the disk-backlog drain.
const DRAIN_BATCH: usize = 256;
/// Durable mode: each step of the drain waits for a group commit, so steps are larger.
const DURABLE_DRAIN_BATCH: usize = 4096;

/// One topic.
#[derive(Debug)]
pub struct Topic {
    /// Topic name.
    pub name: TopicName,
    settings: Arc<Settings>,
    events: RegistryEvents,
    state: Mutex<TopicState>,
    /// Disk queue for the backlog beyond `--mem-queue-size` (none for ephemeral topics).
    backend: Option<Arc<Backend>>,
    /// The node's group commit (durable mode's drain waits on it).
    commit: Arc<GroupCommit>,
    /// Serialises channel creation, which opens a disk queue, without blocking publishers.
    create_lock: Mutex<()>,
    draining: AtomicBool,
    deleted: AtomicBool,
    message_count: AtomicU64,
    message_bytes: AtomicU64,
}

#[derive(Debug)]
struct TopicState {
    channels: BTreeMap<ChannelName, Arc<Channel>>,
    /// The channels as a shared list, rebuilt when the set changes, so a publish takes one
    /// reference count instead of collecting the channels.
    routes: Arc<[Arc<Channel>]>,
    /// Messages waiting for a channel or for unpause, with their due time if deferred.
    backlog: VecDeque<(Message, Option<Instant>)>,
    paused: bool,
    guid: GuidFactory,
}

/// Why a publish failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The topic was deleted while the publish was on its way in.
    #[error("exiting")]
    Deleted,
    /// A disk write failed; the message may have reached some channels (at-least-once).
    #[error("{0}")]
    Backend(String),
}

impl From<BackendFailed> for PublishError {
    fn from(failed: BackendFailed) -> Self {
        PublishError::Backend(failed.0)
    }
}

/// A point-in-time view of a topic for `/stats`.
#[derive(Debug, Clone)]
pub struct TopicSnapshot {
    /// Topic name.
    pub name: TopicName,
    /// Backlog (memory + disk).
    pub depth: u64,
    /// Disk part of `depth`.
    pub backend_depth: u64,
    /// Messages accepted since start.
    pub message_count: u64,
    /// Sum of their body sizes.
    pub message_bytes: u64,
    /// Paused flag.
    pub paused: bool,
    /// Channels, sorted by name.
    pub channels: Vec<ChannelSnapshot>,
}

pub(crate) fn unix_now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX)
        })
}

impl Topic {
    pub(crate) fn new(
        name: TopicName,
        settings: Arc<Settings>,
        events: RegistryEvents,
        commit: Arc<GroupCommit>,
    ) -> Self {
        let guid = GuidFactory::new(settings.node_id);
        let backend = open_backend(&settings, &name, name.as_str());
        Self {
            name,
            settings,
            events,
            state: Mutex::new(TopicState {
                channels: BTreeMap::new(),
                routes: Arc::from(Vec::new()),
                backlog: VecDeque::new(),
                paused: false,
                guid,
            }),
            backend,
            commit,
            create_lock: Mutex::new(()),
            draining: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            message_count: AtomicU64::new(0),
            message_bytes: AtomicU64::new(0),
        }
    }

    /// Whether the name ends in `#ephemeral`.
    pub fn is_ephemeral(&self) -> bool {
        self.name.is_ephemeral()
    }

    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Accepts a batch of bodies (PUB: one; MPUB: many) with consecutive IDs; `defer` delays
    /// delivery (DPUB). Returns the disk queues written in durable mode (to commit before
    /// acknowledging; empty otherwise).
    pub(crate) fn publish(
        &self,
        bodies: impl ExactSizeIterator<Item = Bytes>,
        defer: Option<Duration>,
    ) -> Result<Vec<Arc<Backend>>, PublishError> {
        let durable = self.is_durable();
        let timestamp = unix_now_ns();
        let defer = defer.filter(|delay| !delay.is_zero());
        let due = defer.map(|delay| Instant::now() + delay);
        let due_unix_ns = defer.map(|delay| timestamp.saturating_add(delay.as_nanos() as i64));
        let mut n_bytes = 0u64;
        let n_bodies = bodies.len();
        let mut messages = Vec::with_capacity(n_bodies);
        let mut targets: Arc<[Arc<Channel>]> = Arc::from(Vec::new());
        let mut overflow: Vec<Message> = Vec::new();
        {
            let mut state = self.state.lock();
            if self.is_deleted() {
                return Err(PublishError::Deleted);
            }
            for body in bodies {
                n_bytes += body.len() as u64;
                messages.push(Message::new(state.guid.next_id(timestamp), timestamp, body));
            }
            if state.can_route() {
                targets = Arc::clone(&state.routes);
            } else if durable {
                overflow = std::mem::take(&mut messages);
            } else {
                let cap = self.settings.mem_queue_size;
                for message in messages.drain(..) {
                    if state.backlog.len() < cap || self.keeps_overflow_in_memory() {
                        state.backlog.push_back((message, due));
                    } else if self.backend.is_some() {
                        overflow.push(message);
                    }
                }
            }
        }
        let n_messages = if targets.is_empty() {
            // Backlogged (or dropped by an ephemeral topic): counted all the same.
            n_bodies
        } else {
            messages.len()
        };
        self.message_count
            .fetch_add(n_messages as u64, Ordering::Relaxed);
        self.message_bytes.fetch_add(n_bytes, Ordering::Relaxed);
        let routed = fan_out(&targets, messages, due);
        let spilled = match &self.backend {
            Some(backend) if !overflow.is_empty() => backend
                .put(overflow.iter().map(|message| (message, due_unix_ns)))
                .map_err(|err| PublishError::Backend(err.to_string())),
            None if durable && !overflow.is_empty() => {
                Err(PublishError::Backend("disk queue unavailable".to_owned()))
            }
            _ => Ok(()),
        };
        routed?;
        spilled?;
        if !durable {
            return Ok(Vec::new());
        }
        let mut written: Vec<Arc<Backend>> = targets
            .iter()
            .filter_map(|channel| channel.durable_backend().cloned())
            .collect();
        if !overflow.is_empty()
            && let Some(backend) = &self.backend
        {
            written.push(Arc::clone(backend));
        }
        Ok(written)
    }

    fn is_durable(&self) -> bool {
        self.settings.disk.durable && !self.is_ephemeral()
    }

    /// A non-ephemeral topic whose disk queue could not be opened keeps everything in memory
    /// rather than dropping it.
    fn keeps_overflow_in_memory(&self) -> bool {
        self.backend.is_none() && !self.is_ephemeral()
    }

    /// The channel with this name, created if missing; `true` if it was created. A new channel
    /// receives the whole backlog if the topic is not paused.
    pub(crate) fn get_or_create_channel(
        self: &Arc<Self>,
        name: &ChannelName,
    ) -> (Arc<Channel>, bool) {
        if let Some(channel) = self.state.lock().channels.get(name) {
            return (Arc::clone(channel), false);
        }
        let created = self.create_channels(std::slice::from_ref(name));
        let channel = self
            .state
            .lock()
            .channels
            .get(name)
            .cloned()
            // Only reachable if the topic was deleted meanwhile: hand out a detached channel that
            // refuses consumers, so SUB retries on a fresh topic.
            .unwrap_or_else(|| {
                let channel = Channel::new(
                    self.name.clone(),
                    name.clone(),
                    Arc::clone(&self.settings),
                    None,
                );
                channel.close();
                channel
            });
        (channel, !created.is_empty())
    }

    /// Creates every missing channel of `names` at once, then hands the backlog to all of them
    /// (lookupd pre-creation: each channel must get the messages that waited). Returns the names
    /// created.
    pub(crate) fn create_channels(self: &Arc<Self>, names: &[ChannelName]) -> Vec<ChannelName> {
        let _creating = self.create_lock.lock();
        let missing: Vec<&ChannelName> = {
            let state = self.state.lock();
            names
                .iter()
                .filter(|name| !state.channels.contains_key(*name))
                .collect()
        };
        if missing.is_empty() || self.is_deleted() {
            return Vec::new();
        }
        let new_channels: Vec<Arc<Channel>> = missing
            .iter()
            .map(|name| {
                let backend =
                    open_backend(&self.settings, name, &format!("{}:{}", self.name, name));
                Channel::new(
                    self.name.clone(),
                    (*name).clone(),
                    Arc::clone(&self.settings),
                    backend,
                )
            })
            .collect();
        let (targets, backlog) = {
            let mut state = self.state.lock();
            for channel in &new_channels {
                state
                    .channels
                    .insert(channel.name.clone(), Arc::clone(channel));
            }
            state.refresh_routes();
            state.take_backlog()
        };
        let _ = hand_over(&targets, backlog);
        let created: Vec<ChannelName> = new_channels.iter().map(|c| c.name.clone()).collect();
        for name in &created {
            tracing::info!(topic = %self.name, channel = %name, "TOPIC({}): new channel({name})", self.name);
            self.events.emit(RegistryEvent::ChannelCreated(
                self.name.clone(),
                name.clone(),
            ));
        }
        self.start_drain();
        created
    }

    /// The channel with this name, if it exists.
    pub fn channel(&self, name: &str) -> Option<Arc<Channel>> {
        self.state.lock().channels.get(name).cloned()
    }

    /// Every channel, sorted by name.
    pub fn channels(&self) -> Vec<Arc<Channel>> {
        self.state.lock().channels.values().cloned().collect()
    }

    /// Removes and closes a channel (its disk queue is deleted). Returns it if it existed.
    pub fn delete_channel(&self, name: &str) -> Option<Arc<Channel>> {
        // A channel of the same name must not open its files while these are being deleted.
        let _creating = self.create_lock.lock();
        let channel = {
            let mut state = self.state.lock();
            let channel = state.channels.remove(name)?;
            state.refresh_routes();
            channel
        };
        channel.close();
        self.events.emit(RegistryEvent::ChannelDeleted(
            self.name.clone(),
            channel.name.clone(),
        ));
        Some(channel)
    }

    /// Removes an ephemeral channel whose last consumer left, unless someone subscribed again
    /// meanwhile. Returns whether the topic has no channels left.
    pub(crate) fn remove_if_abandoned(&self, channel: &Arc<Channel>) -> Option<bool> {
        let mut state = self.state.lock();
        let current = state.channels.get(channel.name.as_str())?;
        if !Arc::ptr_eq(current, channel) || channel.consumer_count() > 0 {
            return None;
        }
        state.channels.remove(channel.name.as_str());
        state.refresh_routes();
        let now_empty = state.channels.is_empty();
        drop(state);
        channel.close();
        self.events.emit(RegistryEvent::ChannelDeleted(
            self.name.clone(),
            channel.name.clone(),
        ));
        Some(now_empty)
    }

    /// Channel names, sorted.
    pub fn channel_names(&self) -> Vec<ChannelName> {
        self.state.lock().channels.keys().cloned().collect()
    }

    /// Pauses or resumes routing to channels; resuming hands over the backlog.
    pub fn set_paused(self: &Arc<Self>, paused: bool) {
        let (targets, backlog) = {
            let mut state = self.state.lock();
            state.paused = paused;
            state.take_backlog()
        };
        let _ = hand_over(&targets, backlog);
        if !paused {
            self.start_drain();
        }
    }

    /// Whether routing is paused.
    pub fn is_paused(&self) -> bool {
        self.state.lock().paused
    }

    /// Drops the backlog (memory and disk).
    pub fn empty(&self) {
        self.state.lock().backlog.clear();
        if let Some(backend) = &self.backend
            && let Err(err) = backend.empty()
        {
            tracing::error!("TOPIC({}): failed to empty disk queue - {err}", self.name);
        }
    }

    /// Marks the topic deleted, closes its channels and deletes its disk queues.
    pub(crate) fn close(&self) {
        self.deleted.store(true, Ordering::Release);
        let channels: Vec<Arc<Channel>> = {
            let mut state = self.state.lock();
            state.backlog.clear();
            let channels = std::mem::take(&mut state.channels).into_values().collect();
            state.refresh_routes();
            channels
        };
        for channel in channels {
            channel.close();
        }
        if let Some(backend) = &self.backend
            && let Err(err) = backend.delete()
        {
            tracing::error!("TOPIC({}): failed to delete disk queue - {err}", self.name);
        }
    }

    /// Clean shutdown: stops the channels' timers and writes every channel's messages and the
    /// topic's memory backlog to disk.
    pub(crate) fn flush_to_disk(&self) {
        let (channels, backlog) = {
            let mut state = self.state.lock();
            let backlog: Backlog = state.backlog.drain(..).collect();
            (
                state.channels.values().cloned().collect::<Vec<_>>(),
                backlog,
            )
        };
        for channel in &channels {
            channel.stop();
            if let Err(err) = channel.flush_to_disk() {
                tracing::error!("CHANNEL({}): flush to disk failed - {err}", channel.name);
            }
        }
        let Some(backend) = &self.backend else {
            return;
        };
        let now = Instant::now();
        let now_ns = unix_now_ns();
        let items: Vec<(Message, Option<i64>)> = backlog
            .into_iter()
            .map(|(message, due)| {
                let due_ns = due.map(|due| {
                    now_ns.saturating_add(due.saturating_duration_since(now).as_nanos() as i64)
                });
                (message, due_ns)
            })
            .collect();
        if !items.is_empty() {
            tracing::info!(
                "TOPIC({}): flushing {} backlog messages to disk",
                self.name,
                items.len()
            );
        }
        let result = backend
            .put(items.iter().map(|(message, due)| (message, *due)))
            .and_then(|()| backend.sync());
        if let Err(err) = result {
            tracing::error!("TOPIC({}): flush to disk failed - {err}", self.name);
        }
    }

    /// Syncs the topic's and channels' disk queues where their policy says so.
    pub(crate) fn sync_backends(&self) {
        for channel in self.channels() {
            channel.relocate_pinned();
        }
        if let Some(backend) = &self.backend
            && let Err(err) = backend.sync_if_needed()
        {
            tracing::error!("TOPIC({}): disk sync failed - {err}", self.name);
        }
        for channel in self.channels() {
            channel.sync_backend_if_needed();
        }
    }

    /// Counters and sizes for `/stats`.
    pub fn snapshot(&self) -> TopicSnapshot {
        let (memory_depth, paused, channels) = {
            let state = self.state.lock();
            (
                state.backlog.len() as u64,
                state.paused,
                state.channels.values().cloned().collect::<Vec<_>>(),
            )
        };
        let backend_depth = self.backend.as_ref().map_or(0, |backend| backend.depth());
        TopicSnapshot {
            name: self.name.clone(),
            depth: memory_depth + backend_depth,
            backend_depth,
            message_count: self.message_count.load(Ordering::Relaxed),
            message_bytes: self.message_bytes.load(Ordering::Relaxed),
            paused,
            channels: channels.iter().map(|channel| channel.snapshot()).collect(),
        }
    }

    /// Starts moving the disk backlog into the channels, unless that is already happening or
    /// the topic cannot route.
    fn start_drain(self: &Arc<Self>) {
        let Some(backend) = &self.backend else {
            return;
        };
        if backend.depth() == 0 || self.draining.swap(true, Ordering::AcqRel) {
            return;
        }
        let topic = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let targets: Vec<Arc<Channel>> = {
                    let state = topic.state.lock();
                    if !state.can_route() || topic.is_deleted() {
                        break;
                    }
                    state.channels.values().cloned().collect()
                };
                let mut batch = Vec::new();
                if let Some(backend) = &topic.backend
                    && let Err(err) = backend.read_batch(
                        if topic.is_durable() {
                            DURABLE_DRAIN_BATCH
                        } else {
                            DRAIN_BATCH
                        },
                        &mut batch,
                    )
                {
                    tracing::error!("TOPIC({}): disk read failed - {err}", topic.name);
                }
                if batch.is_empty() {
                    break;
                }
                let now_ns = unix_now_ns();
                let now = Instant::now();
                let positions: Vec<nsq_diskqueue::Position> =
                    batch.iter().map(|stored| stored.position).collect();
                let backlog = batch
                    .into_iter()
                    .map(|stored| {
                        let due = stored
                            .due_unix_ns
                            .filter(|due| *due > now_ns)
                            .map(|due| now + Duration::from_nanos((due - now_ns) as u64));
                        (stored.message, due)
                    })
                    .collect();
                let handed = hand_over(&targets, backlog);
                if topic.is_durable()
                    && let Some(backend) = &topic.backend
                {
                    // The topic's records go only once the channels' copies are durable.
                    let written: Vec<Arc<Backend>> = targets
                        .iter()
                        .filter_map(|channel| channel.durable_backend().cloned())
                        .collect();
                    let committed = match handed {
                        Ok(()) => topic.commit.commit(&written).await,
                        Err(err) => Err(err.to_string()),
                    };
                    if let Err(err) = committed {
                        tracing::error!(
                            "TOPIC({}): backlog hand-over not durable, kept on disk until restart - {err}",
                            topic.name
                        );
                        break;
                    }
                    backend.release(positions);
                }
                tokio::task::yield_now().await;
            }
            topic.draining.store(false, Ordering::Release);
        });
    }
}

impl TopicState {
    fn refresh_routes(&mut self) {
        self.routes = self.channels.values().cloned().collect();
    }

    fn can_route(&self) -> bool {
        !self.paused && !self.channels.is_empty()
    }

    /// The channels and the memory backlog to hand to them, if the topic can route now.
    fn take_backlog(&mut self) -> (Vec<Arc<Channel>>, Backlog) {
        if !self.can_route() || self.backlog.is_empty() {
            return (Vec::new(), Vec::new());
        }
        (
            self.channels.values().cloned().collect(),
            self.backlog.drain(..).collect(),
        )
    }
}

/// Hands waiting messages to the channels: ready ones in one batch, deferred ones with the time
/// they have left. Every message is tried; the first failure is logged and returned.
fn hand_over(channels: &[Arc<Channel>], backlog: Backlog) -> Result<(), PublishError> {
    if backlog.is_empty() {
        return Ok(());
    }
    let now = Instant::now();
    let mut ready = Vec::new();
    let mut deferred: Vec<(Message, Instant)> = Vec::new();
    for (message, due) in backlog {
        match due {
            Some(due) if due > now => deferred.push((message, due)),
            _ => ready.push(message),
        }
    }
    let mut results = vec![fan_out(channels, ready, None)];
    for (message, due) in deferred {
        results.push(fan_out(channels, vec![message], Some(due)));
    }
    let mut outcome = Ok(());
    for result in results {
        if let Err(err) = result {
            tracing::error!("backlog hand-over failed - {err}");
            if outcome.is_ok() {
                outcome = Err(err);
            }
        }
    }
    outcome
}

/// Copies `messages` into every channel: the last channel gets the originals, the others copies
/// that share the bodies. Every channel is tried; the first failure is reported.
fn fan_out(
    channels: &[Arc<Channel>],
    messages: Vec<Message>,
    due: Option<Instant>,
) -> Result<(), PublishError> {
    if messages.is_empty() || channels.is_empty() {
        return Ok(());
    }
    let n_channels = channels.len();
    let mut messages = Some(messages);
    let mut outcome = Ok(());
    for (index, channel) in channels.iter().enumerate() {
        let batch = if index + 1 == n_channels {
            messages.take().unwrap_or_default()
        } else {
            messages.clone().unwrap_or_default()
        };
        let result = match due {
            Some(due) => channel.put_deferred(batch, due),
            None => channel.put_batch(batch),
        };
        if let Err(err) = result
            && outcome.is_ok()
        {
            outcome = Err(PublishError::from(err));
        }
    }
    outcome
}

/// Opens the disk queue `queue_name` for topic/channel `name`, unless the name is ephemeral. A
/// failure is logged and the queue runs without disk.
fn open_backend(
    settings: &Settings,
    name: &impl AsRef<str>,
    queue_name: &str,
) -> Option<Arc<Backend>> {
    if name
        .as_ref()
        .ends_with(nsq_protocol::names::EPHEMERAL_SUFFIX)
    {
        return None;
    }
    match Backend::open(
        &settings.data_path,
        queue_name,
        &settings.disk,
        settings.limits.max_msg_size,
    ) {
        Ok(backend) => Some(Arc::new(backend)),
        Err(err) => {
            tracing::error!("failed to open disk queue {queue_name} - {err}");
            None
        }
    }
}
