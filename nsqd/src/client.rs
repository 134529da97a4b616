//! What the rest of the node knows about one connection: its ID, its counters (read by `/stats`
//! without locks) and the handles other tasks use to wake or close it.

use nsq_protocol::{ConnectionState, TopicName};
use parking_lot::Mutex;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Identifies one connection for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Identity fields set by IDENTIFY (shown in `/stats`).
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// `client_id` (remote IP until IDENTIFY).
    pub client_id: String,
    /// `hostname` (remote IP until IDENTIFY).
    pub hostname: String,
    /// `user_agent`.
    pub user_agent: String,
    /// Negotiated sample rate.
    pub sample_rate: u8,
    /// Negotiated deflate.
    pub deflate: bool,
    /// Negotiated snappy.
    pub snappy: bool,
    /// Topology hints.
    pub topology_region: String,
    /// Topology hints.
    pub topology_zone: String,
    /// The connection completed the TLS upgrade: version, cipher suite, ALPN (empty without).
    pub tls: Option<crate::tls::TlsSessionInfo>,
    /// AUTH succeeded with at least one authorization.
    pub authed: bool,
    /// `identity` from the auth server.
    pub auth_identity: String,
    /// `identity_url` from the auth server.
    pub auth_identity_url: String,
}

/// State of one connection shared with channels, the timer tasks and `/stats`.
#[derive(Debug)]
pub struct ClientShared {
    /// Connection ID.
    pub id: ClientId,
    /// Peer address.
    pub remote_addr: SocketAddr,
    /// Connect time, Unix seconds.
    pub connect_ts: i64,
    /// IDENTIFY fields.
    pub info: Mutex<ClientInfo>,
    /// Protocol state code (0 init, 3 subscribed, 4 closing).
    pub state: AtomicI32,
    /// Last RDY.
    pub ready_count: AtomicU64,
    /// Messages delivered and not yet finished, requeued or timed out.
    pub in_flight_count: AtomicU64,
    /// Messages delivered.
    pub message_count: AtomicU64,
    /// FINs.
    pub finish_count: AtomicU64,
    /// REQs.
    pub requeue_count: AtomicU64,
    /// Messages published per topic (a connection is a "producer" once this is non-empty).
    pub pub_counts: Mutex<Vec<(TopicName, u64)>>,
    /// Woken when in-flight capacity is freed from outside the connection (timeouts, empty).
    pub wake: Arc<Notify>,
    /// Cancelled to make the connection close (topic/channel deleted).
    pub close: CancellationToken,
}

impl ClientShared {
    pub(crate) fn new(id: ClientId, remote_addr: SocketAddr, connect_ts: i64) -> Self {
        let ip = remote_addr.ip().to_string();
        Self {
            id,
            remote_addr,
            connect_ts,
            info: Mutex::new(ClientInfo {
                client_id: ip.clone(),
                hostname: ip,
                ..ClientInfo::default()
            }),
            state: AtomicI32::new(ConnectionState::Init.stats_code()),
            ready_count: AtomicU64::new(0),
            in_flight_count: AtomicU64::new(0),
            message_count: AtomicU64::new(0),
            finish_count: AtomicU64::new(0),
            requeue_count: AtomicU64::new(0),
            pub_counts: Mutex::new(Vec::new()),
            wake: Arc::new(Notify::new()),
            close: CancellationToken::new(),
        }
    }

    /// Counts `n` published messages for `topic`.
    pub(crate) fn count_published(&self, topic: &TopicName, n: u64) {
        let mut counts = self.pub_counts.lock();
        match counts.iter_mut().find(|(name, _)| name == topic) {
            Some((_, count)) => *count += n,
            None => counts.push((topic.clone(), n)),
        }
    }

    /// Decrements the in-flight count without wrapping below zero.
    pub(crate) fn in_flight_done(&self, n: u64) {
        let _ = self
            .in_flight_count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |count| {
                Some(count.saturating_sub(n))
            });
    }

    pub(crate) fn is_producer(&self) -> bool {
        !self.pub_counts.lock().is_empty()
    }
}
