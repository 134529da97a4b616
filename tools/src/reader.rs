//! One topic/channel consumed over many nsqd connections, the way go-nsq's `Consumer` does it
//! for upstream's tools.
//!
//! * The nsqds come from `--nsqd-tcp-address` (connected at start; a failure is an error, a
//!   connection that drops is retried every poll interval) or from lookupd (`/lookup` at start
//!   and every poll interval, merged over all lookupds; new producers are connected).
//! * Each connection has one task that owns its [`Consumer`]: it forwards messages as
//!   [`Delivery`]s into one channel shared by all connections (and all topics, if the caller
//!   wants), and sends the FIN/REQ/TOUCH the deliveries ask for.
//! * max-in-flight is spread over the connections (`max(1, max / n)` each), re-sent when a
//!   connection comes or goes.
//! * [`Reader::stop`] sends CLS on every connection; a connection closes once every message it
//!   delivered has been answered, and the reader ends when all have closed. A [`Delivery`]
//!   dropped without an answer is requeued, so a stop always finishes.

use crate::lookupd::HttpClient;
use crate::{ToolsError, per_connection_rdy};
use nsq_protocol::client::{Consumer, ConsumerConfig, Event};
use nsq_protocol::{ChannelName, IdentifyRequest, Message, MessageId, ProtocolError, TopicName};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long one nsqd connection (TCP, IDENTIFY, SUB) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a [`Reader`] consumes and where it finds nsqds.
#[derive(Debug, Clone)]
pub struct ReaderSettings {
    /// The topic.
    pub topic: TopicName,
    /// The channel.
    pub channel: ChannelName,
    /// Messages in flight over all connections together.
    pub max_in_flight: u64,
    /// IDENTIFY `user_agent`.
    pub user_agent: String,
    /// nsqd TCP addresses to connect to directly.
    pub nsqd_tcp_addresses: Vec<String>,
    /// lookupd HTTP addresses to discover nsqds through.
    pub lookupd_http_addresses: Vec<String>,
    /// How often lookupd is asked again (and how long before a direct nsqd is reconnected).
    pub lookupd_poll_interval: Duration,
    /// For lookupd queries.
    pub http: HttpClient,
}

/// A message handed to the caller; answer it with [`Delivery::finish`] or
/// [`Delivery::requeue`]. Dropping it unanswered requeues it.
#[derive(Debug)]
pub struct Delivery {
    /// The topic it came from.
    pub topic: TopicName,
    /// The nsqd TCP address it came from.
    pub nsqd: Arc<str>,
    /// The message.
    pub message: Message,
    responder: Option<mpsc::UnboundedSender<Control>>,
}

impl Delivery {
    /// Sends `FIN`.
    pub fn finish(mut self) {
        let id = self.message.id;
        self.respond(Control::Fin(id));
    }

    /// Sends `REQ` with `delay`.
    pub fn requeue(mut self, delay: Duration) {
        let id = self.message.id;
        self.respond(Control::Req(id, delay));
    }

    /// Sends `TOUCH` (the message stays in flight).
    pub fn touch(&self) {
        if let Some(responder) = &self.responder {
            let _ = responder.send(Control::Touch(self.message.id));
        }
    }

    fn respond(&mut self, control: Control) {
        if let Some(responder) = self.responder.take() {
            // The connection may be gone; the server then requeues the message itself.
            let _ = responder.send(control);
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        let id = self.message.id;
        self.respond(Control::Req(id, Duration::ZERO));
    }
}

/// Consumes one topic/channel from many nsqds; see the module docs.
#[derive(Debug)]
pub struct Reader {
    stop: CancellationToken,
    connections: Registry,
    manager: tokio::task::JoinHandle<()>,
}

impl Reader {
    /// Connects to every `nsqd_tcp_addresses` (failing if one cannot be reached, as upstream's
    /// tools do), or starts polling lookupd, and sends every message to `deliveries`.
    pub async fn start(
        settings: ReaderSettings,
        deliveries: mpsc::UnboundedSender<Delivery>,
    ) -> Result<Self, ToolsError> {
        if settings.nsqd_tcp_addresses.is_empty() && settings.lookupd_http_addresses.is_empty() {
            return Err(ToolsError::Invalid(
                "--nsqd-tcp-address or --lookupd-http-address required".to_owned(),
            ));
        }
        let stop = CancellationToken::new();
        let connections = Registry::default();
        let mut manager = Manager {
            settings,
            deliveries,
            stop: stop.clone(),
            connections: connections.clone(),
            tasks: JoinSet::new(),
            task_addresses: HashMap::new(),
            reconnects: JoinSet::new(),
        };
        for address in manager.settings.nsqd_tcp_addresses.clone() {
            manager.connect(Arc::from(address.as_str())).await?;
        }
        Ok(Self {
            stop,
            connections,
            manager: tokio::spawn(manager.run()),
        })
    }

    /// Sends CLS on every connection and stops discovering; see [`Reader::wait`].
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits until every connection has closed (after [`Reader::stop`], once every delivery
    /// was answered).
    pub async fn wait(self) {
        let _ = self.manager.await;
    }

    /// go-nsq's `IsStarved`: some open connection has at least 85% of its RDY count in flight,
    /// so it will not get more messages until some are answered.
    pub fn is_starved(&self) -> bool {
        if self.stop.is_cancelled() {
            return false;
        }
        self.connections.snapshot().iter().any(|connection| {
            let in_flight = connection.in_flight.load(Ordering::Relaxed);
            let rdy = connection.rdy.load(Ordering::Relaxed);
            in_flight > 0 && in_flight as f64 >= rdy as f64 * 0.85
        })
    }
}

/// A request from a delivery (or the manager) to a connection task.
#[derive(Debug)]
enum Control {
    Fin(MessageId),
    Req(MessageId, Duration),
    Touch(MessageId),
    Rdy(u64),
}

/// What the manager and [`Reader`] know about one open connection.
#[derive(Debug)]
struct ConnectionState {
    address: Arc<str>,
    /// Delivered and not yet answered.
    in_flight: AtomicU64,
    /// The last RDY count sent.
    rdy: AtomicU64,
    controls: mpsc::UnboundedSender<Control>,
}

/// The open connections; the lock is held only to copy or edit the list.
#[derive(Debug, Clone, Default)]
struct Registry(Arc<Mutex<Vec<Arc<ConnectionState>>>>);

impl Registry {
    fn snapshot(&self) -> Vec<Arc<ConnectionState>> {
        self.0.lock().map(|list| list.clone()).unwrap_or_default()
    }

    fn edit<T>(&self, change: impl FnOnce(&mut Vec<Arc<ConnectionState>>) -> T) -> Option<T> {
        self.0.lock().ok().map(|mut list| change(&mut list))
    }
}

struct Manager {
    settings: ReaderSettings,
    deliveries: mpsc::UnboundedSender<Delivery>,
    stop: CancellationToken,
    connections: Registry,
    /// One task per open connection.
    tasks: JoinSet<()>,
    task_addresses: HashMap<tokio::task::Id, Arc<str>>,
    /// Direct addresses waiting to be reconnected; each task sleeps, then yields its address.
    reconnects: JoinSet<Arc<str>>,
}

impl Manager {
    async fn run(mut self) {
        let use_lookupd = !self.settings.lookupd_http_addresses.is_empty();
        let mut poll = tokio::time::interval(self.settings.lookupd_poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = poll.tick(), if use_lookupd => self.query_lookupd().await,
                Some(ended) = self.tasks.join_next_with_id() => {
                    let id = match &ended {
                        Ok((id, ())) => *id,
                        Err(error) => error.id(),
                    };
                    if let Some(address) = self.task_addresses.remove(&id) {
                        self.connection_ended(&address);
                    }
                }
                Some(Ok(address)) = self.reconnects.join_next() => {
                    if let Err(error) = self.connect(Arc::clone(&address)).await {
                        tracing::warn!("{error}");
                        self.schedule_reconnect(address);
                    }
                }
            }
        }
        self.reconnects.abort_all();
        // Each connection task has seen the token too: it sends CLS and closes once its
        // deliveries are answered.
        drop(self.deliveries);
        while self.tasks.join_next().await.is_some() {}
    }

    async fn query_lookupd(&mut self) {
        let topic = self.settings.topic.as_str();
        tracing::info!(
            "[{topic}/{}] querying nsqlookupd {}",
            self.settings.channel,
            self.settings.lookupd_http_addresses.join(", ")
        );
        let nodes = match self
            .settings
            .http
            .lookup(&self.settings.lookupd_http_addresses, topic)
            .await
        {
            Ok(nodes) => nodes,
            Err(error) => {
                tracing::warn!("[{topic}] {error}");
                return;
            }
        };
        let connected: BTreeSet<String> = self
            .connections
            .snapshot()
            .iter()
            .map(|connection| connection.address.to_string())
            .collect();
        for node in nodes {
            let address = node.tcp_address();
            if connected.contains(&address) || self.stop.is_cancelled() {
                continue;
            }
            if let Err(error) = self.connect(Arc::from(address.as_str())).await {
                tracing::warn!("{error}");
            }
        }
    }

    /// Opens one connection, registers it and rebalances RDY over all of them.
    async fn connect(&mut self, address: Arc<str>) -> Result<(), ToolsError> {
        let n_connections = self.connections.snapshot().len() + 1;
        let rdy = per_connection_rdy(self.settings.max_in_flight, n_connections);
        let hostname = hostname::get()
            .ok()
            .and_then(|name| name.into_string().ok())
            .unwrap_or_default();
        let config = ConsumerConfig {
            max_in_flight: rdy,
            identify: IdentifyRequest {
                client_id: Some(hostname.split('.').next().unwrap_or_default().to_owned()),
                hostname: Some(hostname.clone()),
                user_agent: Some(self.settings.user_agent.clone()),
                ..IdentifyRequest::default()
            },
        };
        tracing::info!(
            "[{}/{}] ({address}) connecting to nsqd",
            self.settings.topic,
            self.settings.channel
        );
        let consumer = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Consumer::connect(
                &*address,
                &self.settings.topic,
                &self.settings.channel,
                config,
            ),
        )
        .await
        .unwrap_or(Err(ProtocolError::Timeout(CONNECT_TIMEOUT)))
        .map_err(|source| ToolsError::Nsqd {
            address: address.to_string(),
            source,
        })?;
        let (controls, control_receiver) = mpsc::unbounded_channel();
        let state = Arc::new(ConnectionState {
            address: Arc::clone(&address),
            in_flight: AtomicU64::new(0),
            rdy: AtomicU64::new(rdy),
            controls,
        });
        self.connections.edit(|list| list.push(Arc::clone(&state)));
        let task = ConnectionTask {
            consumer,
            state,
            controls: control_receiver,
            deliveries: self.deliveries.clone(),
            topic: self.settings.topic.clone(),
            stop: self.stop.clone(),
        };
        let handle = self.tasks.spawn(task.run());
        self.task_addresses.insert(handle.id(), address);
        self.rebalance();
        Ok(())
    }

    fn connection_ended(&mut self, address: &Arc<str>) {
        self.connections
            .edit(|list| list.retain(|connection| !Arc::ptr_eq(&connection.address, address)));
        if self.stop.is_cancelled() {
            return;
        }
        self.rebalance();
        if self.settings.lookupd_http_addresses.is_empty() {
            self.schedule_reconnect(Arc::clone(address));
        }
    }

    fn schedule_reconnect(&mut self, address: Arc<str>) {
        let delay = self.settings.lookupd_poll_interval;
        tracing::info!(
            "({address}) re-connecting in {}",
            crate::format_duration(delay)
        );
        self.reconnects.spawn(async move {
            tokio::time::sleep(delay).await;
            address
        });
    }

    fn rebalance(&self) {
        let connections = self.connections.snapshot();
        let rdy = per_connection_rdy(self.settings.max_in_flight, connections.len());
        for connection in connections {
            if connection.rdy.swap(rdy, Ordering::Relaxed) != rdy {
                let _ = connection.controls.send(Control::Rdy(rdy));
            }
        }
    }
}

struct ConnectionTask {
    consumer: Consumer,
    state: Arc<ConnectionState>,
    controls: mpsc::UnboundedReceiver<Control>,
    deliveries: mpsc::UnboundedSender<Delivery>,
    topic: TopicName,
    stop: CancellationToken,
}

impl ConnectionTask {
    async fn run(mut self) {
        let address = Arc::clone(&self.state.address);
        let mut closing = false;
        loop {
            if closing && self.state.in_flight.load(Ordering::Relaxed) == 0 {
                // Messages delivered before CLOSE_WAIT may still wait in the consumer's queue:
                // take them (they are handed out and requeued) before disconnecting, or they
                // would stay in flight on nsqd until their timeout.
                match self.consumer.try_next_event() {
                    Some(event) => {
                        if let Err(error) = self.receive(event) {
                            tracing::warn!("[{}] ({address}) {error}", self.topic);
                            break;
                        }
                        continue;
                    }
                    None => {
                        tracing::info!("[{}] ({address}) closing connection", self.topic);
                        break;
                    }
                }
            }
            let result = tokio::select! {
                biased;
                Some(control) = self.controls.recv() => self.apply(control, closing).await,
                _ = self.stop.cancelled(), if !closing => {
                    closing = true;
                    // After CLOSE_WAIT nothing more is delivered; earlier messages are queued.
                    self.consumer.close().await
                }
                event = self.consumer.next_event() => self.receive(event),
            };
            if let Err(error) = result {
                match error {
                    ProtocolError::Closed => {
                        tracing::info!("[{}] ({address}) connection closed", self.topic);
                    }
                    error => tracing::warn!("[{}] ({address}) {error}", self.topic),
                }
                break;
            }
        }
    }

    async fn apply(&mut self, control: Control, closing: bool) -> Result<(), ProtocolError> {
        match control {
            Control::Fin(id) => {
                self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
                self.consumer.finish(id).await
            }
            Control::Req(id, delay) => {
                self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
                self.consumer.requeue(id, delay).await
            }
            Control::Touch(id) => self.consumer.touch(id).await,
            Control::Rdy(_) if closing => Ok(()),
            Control::Rdy(count) => self.consumer.ready(count).await,
        }
    }

    fn receive(&mut self, event: Result<Event, ProtocolError>) -> Result<(), ProtocolError> {
        match event? {
            Event::Message(message) => {
                self.state.in_flight.fetch_add(1, Ordering::Relaxed);
                let delivery = Delivery {
                    topic: self.topic.clone(),
                    nsqd: Arc::clone(&self.state.address),
                    message,
                    responder: Some(self.state.controls.clone()),
                };
                // If nobody listens any more, the returned delivery is dropped, which requeues it.
                let _ = self.deliveries.send(delivery);
            }
            Event::Error(text) => {
                tracing::warn!(
                    "[{}] ({}) nsqd error: {text}",
                    self.topic,
                    self.state.address
                );
            }
            Event::Response(_) => {}
        }
        Ok(())
    }
}
