//! `Nsqd`: the node context. It owns the topic registry and the connected clients, and knows the
//! node's identity (addresses, start time, settings).

use crate::client::{ClientId, ClientShared};
use crate::commit::{CommitCounters, CommitTicket, GroupCommit};
use crate::settings::Settings;
use crate::topic::{PublishError, Topic};
use bytes::Bytes;
use dashmap::DashMap;
use nsq_protocol::{ChannelName, TopicName};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, watch};

/// The node.
#[derive(Debug)]
pub struct Nsqd {
    /// Effective configuration.
    pub settings: Arc<Settings>,
    topics: DashMap<TopicName, Arc<Topic>>,
    clients: DashMap<ClientId, Arc<ClientShared>>,
    next_client_id: AtomicU64,
    events: RegistryEvents,
    create_lock: parking_lot::Mutex<()>,
    lookupd_tcp_addresses: watch::Sender<Vec<String>>,
    /// The last disk-write error (`/ping` 500, `/stats` health), cleared by a later success.
    health: parking_lot::RwLock<Option<String>>,
    /// Process start, Unix seconds.
    pub start_time: i64,
    /// The node's public identity, set once the listeners are bound.
    pub identity: OnceLock<NodeIdentity>,
    /// Durable mode's acknowledgement point.
    commit: Arc<GroupCommit>,
}

/// How the node presents itself (`/info`, lookupd registration).
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// `--broadcast-address` or the hostname.
    pub broadcast_address: String,
    /// OS hostname.
    pub hostname: String,
    /// Bound TCP address.
    pub tcp_addr: SocketAddr,
    /// Bound HTTP address, if HTTP is enabled.
    pub http_addr: Option<SocketAddr>,
    /// TCP port announced to lookupd.
    pub broadcast_tcp_port: u16,
    /// HTTP port announced to lookupd.
    pub broadcast_http_port: u16,
}

impl Nsqd {
    /// A node with no topics.
    pub fn new(settings: Settings) -> Self {
        let start_time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as i64);
        Self {
            settings: Arc::new(settings),
            topics: DashMap::new(),
            clients: DashMap::new(),
            next_client_id: AtomicU64::new(1),
            events: RegistryEvents::new(),
            create_lock: parking_lot::Mutex::new(()),
            lookupd_tcp_addresses: watch::Sender::new(Vec::new()),
            health: parking_lot::RwLock::new(None),
            start_time,
            identity: OnceLock::new(),
            commit: Arc::new(GroupCommit::new()),
        }
    }

    /// The topic with this name, created if missing.
    pub fn topic(&self, name: &TopicName) -> Arc<Topic> {
        if let Some(topic) = self.topics.get(name) {
            return Arc::clone(topic.value());
        }
        // Creating a topic opens its disk queue (file I/O, possibly a recovery scan): do it under
        // a node-level creation lock, not under the map's shard lock, so lookups of other topics
        // never wait for it.
        let _creating = self.create_lock.lock();
        if let Some(topic) = self.topics.get(name) {
            return Arc::clone(topic.value());
        }
        tracing::info!(topic = %name, "TOPIC({name}): created");
        let topic = Arc::new(Topic::new(
            name.clone(),
            Arc::clone(&self.settings),
            self.events.clone(),
            Arc::clone(&self.commit),
        ));
        self.topics.insert(name.clone(), Arc::clone(&topic));
        self.events.emit(RegistryEvent::TopicCreated(name.clone()));
        topic
    }

    /// The lookupd TCP addresses this node registers with.
    pub fn lookupd_tcp_addresses(&self) -> Vec<String> {
        self.lookupd_tcp_addresses.borrow().clone()
    }

    /// Replaces the lookupd TCP addresses (flags at start, `PUT /config/nsqlookupd_tcp_addresses`
    /// at runtime); the registration task follows.
    pub fn set_lookupd_tcp_addresses(&self, addresses: Vec<String>) {
        self.lookupd_tcp_addresses.send_replace(addresses);
    }

    /// The last disk-write error, if the node is unhealthy.
    pub fn health_error(&self) -> Option<String> {
        self.health.read().clone()
    }

    /// Records the outcome of a disk write (`None`: it succeeded).
    pub fn set_health(&self, error: Option<String>) {
        if error.is_some() || self.health.read().is_some() {
            *self.health.write() = error;
        }
    }

    /// Follows changes of the lookupd TCP addresses.
    pub fn watch_lookupd_tcp_addresses(&self) -> watch::Receiver<Vec<String>> {
        self.lookupd_tcp_addresses.subscribe()
    }

    /// Subscribes to topic/channel creations and deletions (lookupd registration, metadata).
    pub fn subscribe_events(&self) -> broadcast::Receiver<RegistryEvent> {
        self.events.sender.subscribe()
    }

    /// The topic with this name, if it exists.
    pub fn existing_topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.get(name).map(|topic| Arc::clone(topic.value()))
    }

    /// Every topic, sorted by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<Arc<Topic>> = self
            .topics
            .iter()
            .map(|entry| Arc::clone(entry.value()))
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// Publishes to a topic, creating it if needed, and waits (durable mode) until an fsync
    /// covers the messages. A topic deleted concurrently (an ephemeral topic losing its last
    /// channel) is looked up again rather than failing the publisher.
    pub async fn publish(
        &self,
        topic_name: &TopicName,
        bodies: &[Bytes],
        defer: Option<Duration>,
    ) -> Result<(), PublishError> {
        match self.publish_written(topic_name, bodies, defer)? {
            Some(ticket) => self.committed(ticket).await,
            None => Ok(()),
        }
    }

    /// The synchronous part of [`publish`](Self::publish): the messages are in their queues
    /// (memory or disk). In durable mode it returns the commit to wait for before acknowledging
    /// ([`committed`](Self::committed)).
    pub(crate) fn publish_written(
        &self,
        topic_name: &TopicName,
        bodies: &[Bytes],
        defer: Option<Duration>,
    ) -> Result<Option<CommitTicket>, PublishError> {
        let mut attempt = 0;
        loop {
            let topic = self.topic(topic_name);
            match topic.publish(bodies.iter().cloned(), defer) {
                Err(PublishError::Deleted) if attempt < 3 => attempt += 1,
                Err(PublishError::Backend(err)) => {
                    self.set_health(Some(err.clone()));
                    return Err(PublishError::Backend(err));
                }
                Ok(written) if written.is_empty() => {
                    self.set_health(None);
                    return Ok(None);
                }
                Ok(written) => return Ok(Some(self.commit.request(&written))),
                Err(err) => return Err(err),
            }
        }
    }

    /// Waits for a durable publish's commit.
    pub(crate) async fn committed(&self, ticket: CommitTicket) -> Result<(), PublishError> {
        match self.commit.wait(ticket).await {
            Ok(()) => {
                self.set_health(None);
                Ok(())
            }
            Err(err) => {
                self.set_health(Some(err.clone()));
                Err(PublishError::Backend(err))
            }
        }
    }

    /// Durable mode's group-commit counters.
    pub fn commit_counters(&self) -> CommitCounters {
        self.commit.counters()
    }

    /// Deletes a topic and everything in it. Returns whether it existed.
    pub fn delete_topic(&self, name: &str) -> bool {
        // Under the creation lock, so a topic of the same name cannot open its files while these
        // are being deleted.
        let _creating = self.create_lock.lock();
        match self.topics.remove(name) {
            Some((_, topic)) => {
                topic.close();
                tracing::info!(topic = %name, "TOPIC({name}): deleted");
                self.events
                    .emit(RegistryEvent::TopicDeleted(topic.name.clone()));
                true
            }
            None => false,
        }
    }

    /// Deletes `topic` only if it is still the registered instance (ephemeral teardown).
    pub(crate) fn delete_topic_instance(&self, topic: &Arc<Topic>) {
        let _creating = self.create_lock.lock();
        let removed = self.topics.remove_if(topic.name.as_str(), |_, current| {
            Arc::ptr_eq(current, topic)
        });
        if removed.is_some() {
            topic.close();
            self.events
                .emit(RegistryEvent::TopicDeleted(topic.name.clone()));
        }
    }

    pub(crate) fn register_client(&self, remote_addr: SocketAddr) -> Arc<ClientShared> {
        let id = ClientId(self.next_client_id.fetch_add(1, Ordering::Relaxed));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as i64);
        let client = Arc::new(ClientShared::new(id, remote_addr, now));
        self.clients.insert(id, Arc::clone(&client));
        client
    }

    pub(crate) fn unregister_client(&self, id: ClientId) {
        self.clients.remove(&id);
    }

    /// Connections that have published at least once.
    pub fn producers(&self) -> Vec<Arc<ClientShared>> {
        self.clients
            .iter()
            .filter(|entry| entry.value().is_producer())
            .map(|entry| Arc::clone(entry.value()))
            .collect()
    }

    /// Clean shutdown: writes every topic's and channel's messages (memory, in flight,
    /// deferred) to disk and syncs.
    pub(crate) fn flush_to_disk(&self) {
        for topic in self.topics() {
            topic.flush_to_disk();
        }
    }

    /// Syncs disk queues whose policy asks for it.
    pub(crate) fn sync_backends(&self) {
        for topic in self.topics() {
            topic.sync_backends();
        }
    }
}

/// A change to the set of topics and channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryEvent {
    /// A topic was created.
    TopicCreated(TopicName),
    /// A topic was deleted.
    TopicDeleted(TopicName),
    /// A channel was created.
    ChannelCreated(TopicName, ChannelName),
    /// A channel was deleted.
    ChannelDeleted(TopicName, ChannelName),
}

/// The broadcast of [`RegistryEvent`]s. A receiver that lags behind gets `Lagged` and must
/// resynchronise from the full topic list.
#[derive(Debug, Clone)]
pub(crate) struct RegistryEvents {
    sender: broadcast::Sender<RegistryEvent>,
}

impl RegistryEvents {
    fn new() -> Self {
        Self {
            sender: broadcast::channel(4096).0,
        }
    }

    pub(crate) fn emit(&self, event: RegistryEvent) {
        // No receiver is not an error: nobody needs to hear about it.
        let _ = self.sender.send(event);
    }
}
