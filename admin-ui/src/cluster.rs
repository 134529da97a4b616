//! Gathering cluster state over HTTP (upstream's `internal/clusterinfo`).
//!
//! Every step fans out to all the lookupds or nsqds it needs *concurrently* and merges what came
//! back. A step whose calls all failed is an [`Error::Upstream`] (`failed to query any nsqd: …`);
//! a step where only some failed returns its data plus the failures ([`Gathered::errors`]), which
//! the API turns into `"message":"WARNING: …"`. Failure texts are worded as upstream's Go client
//! words them (`Get "http://…/stats?…": dial tcp …: connect: connection refused`,
//! `got response 404 Not Found "{…}"`), so scripts that grep them keep working and the page can
//! tell which node failed.
//!
//! The JSON types here are what nsqadmin *serves*, in upstream's key order; what it *reads* from
//! lookupd and nsqd is parsed leniently (missing fields default), so older or newer nodes work.

use crate::error::Error;
use futures::future::join_all;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What one failed upstream call says, and where it went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The `host:port` that was called.
    pub addr: String,
    /// Upstream's wording of the failure.
    pub text: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The data a step gathered, and the calls that failed on the way (a partial failure).
#[derive(Debug, Clone)]
pub struct Gathered<T> {
    /// What the calls that worked returned, merged.
    pub data: T,
    /// The calls that failed.
    pub errors: Vec<CallError>,
}

impl<T> Gathered<T> {
    fn new(data: T, errors: Vec<CallError>) -> Self {
        Self { data, errors }
    }
}

/// Which daemons nsqadmin asks: the lookupds (lookupd mode) or the nsqds (direct mode).
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// `--lookupd-http-address` values.
    pub lookupds: &'a [String],
    /// `--nsqd-http-address` values.
    pub nsqds: &'a [String],
}

impl Sources<'_> {
    fn lookupd_mode(&self) -> bool {
        !self.lookupds.is_empty()
    }
}

/// An nsqd as nsqadmin shows it in `/api/nodes` (upstream's `Producer`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Producer {
    /// `"<lookupd>/<remote address>"` per lookupd that reports the node; `null` in nsqd mode.
    pub remote_addresses: Option<Vec<String>>,
    /// The node's lookupd connection as the (first) lookupd sees it; "" in nsqd mode.
    pub remote_address: String,
    /// The node's OS hostname.
    pub hostname: String,
    /// The address clients use.
    pub broadcast_address: String,
    /// TCP port.
    pub tcp_port: i64,
    /// HTTP port.
    pub http_port: i64,
    /// nsqd version.
    pub version: String,
    /// Topology zone (only when set).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub topology_zone: String,
    /// Topology region (only when set).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub topology_region: String,
    /// Topics on the node, sorted, with their tombstone flags (`null` when none).
    #[serde(serialize_with = "empty_as_null")]
    pub topics: Vec<ProducerTopic>,
    /// Version lower than the highest one in the cluster (lookupd mode).
    pub out_of_date: bool,
}

impl Producer {
    /// `broadcast_address:http_port` (brackets around an IPv6 address): the node's id in the API.
    pub fn http_address(&self) -> String {
        join_host_port(&self.broadcast_address, self.http_port)
    }

    fn tcp_address(&self) -> String {
        join_host_port(&self.broadcast_address, self.tcp_port)
    }
}

/// One topic of a [`Producer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProducerTopic {
    /// Topic name.
    pub topic: String,
    /// Tombstoned on (one of) the lookupds.
    pub tombstoned: bool,
}

/// Topic stats as nsqadmin serves them: one node's (`node` = its HTTP address) or merged over
/// nodes (`node` = `*`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicStats {
    /// Node HTTP address, or `*` for an aggregate.
    pub node: String,
    /// Node hostname ("" for the top-level aggregate).
    pub hostname: String,
    /// Topic name.
    pub topic_name: String,
    /// Messages queued at the topic.
    pub depth: i64,
    /// `depth - backend_depth`.
    pub memory_depth: i64,
    /// Disk part of depth.
    pub backend_depth: i64,
    /// Messages published.
    pub message_count: i64,
    /// Per-node entries of an aggregate, sorted by hostname.
    pub nodes: Option<Vec<TopicStats>>,
    /// Channels.
    pub channels: Option<Vec<ChannelStats>>,
    /// Paused on any node.
    pub paused: bool,
    /// End-to-end latency.
    pub e2e_processing_latency: Option<E2eLatency>,
}

/// Channel stats as nsqadmin serves them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelStats {
    /// Node HTTP address, or `*` for an aggregate.
    pub node: String,
    /// Node hostname.
    pub hostname: String,
    /// Topic name.
    pub topic_name: String,
    /// Channel name.
    pub channel_name: String,
    /// Deliverable messages.
    pub depth: i64,
    /// `depth - backend_depth`.
    pub memory_depth: i64,
    /// Disk part of depth.
    pub backend_depth: i64,
    /// Delivered, not finished.
    pub in_flight_count: i64,
    /// Deferred.
    pub deferred_count: i64,
    /// Requeued by consumers.
    pub requeue_count: i64,
    /// Timed out.
    pub timeout_count: i64,
    /// Messages put into the channel.
    pub message_count: i64,
    /// Connected consumers.
    pub client_count: i64,
    /// Per-node entries of an aggregate, sorted by hostname.
    pub nodes: Option<Vec<ChannelStats>>,
    /// Consumers (`null` when not asked for), sorted by hostname.
    pub clients: Option<Vec<ClientStats>>,
    /// Paused on any node.
    pub paused: bool,
    /// End-to-end latency.
    pub e2e_processing_latency: Option<E2eLatency>,
}

/// A consumer connection: nsqd's client stats plus `node` and `connected`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientStats {
    /// The nsqd HTTP address the client is connected to.
    pub node: String,
    /// `ip:port`.
    pub remote_address: String,
    /// Protocol version (`V2`).
    pub version: String,
    /// From IDENTIFY.
    pub client_id: String,
    /// From IDENTIFY.
    pub hostname: String,
    /// From IDENTIFY.
    pub user_agent: String,
    /// Unix seconds.
    pub connect_ts: i64,
    /// How long it has been connected, in nanoseconds (computed by nsqadmin).
    pub connected: i64,
    /// Messages in flight to it.
    pub in_flight_count: i64,
    /// Its RDY.
    pub ready_count: i64,
    /// FINs.
    pub finish_count: i64,
    /// REQs.
    pub requeue_count: i64,
    /// Messages delivered to it.
    pub message_count: i64,
    /// Sample rate (0 = off).
    pub sample_rate: i64,
    /// Deflate negotiated.
    pub deflate: bool,
    /// Snappy negotiated.
    pub snappy: bool,
    /// Authenticated.
    pub authed: bool,
    /// Auth identity.
    pub auth_identity: String,
    /// Auth identity URL.
    pub auth_identity_url: String,
    /// TLS negotiated.
    pub tls: bool,
    /// TLS cipher suite.
    pub tls_cipher_suite: String,
    /// TLS version.
    pub tls_version: String,
    /// ALPN protocol.
    pub tls_negotiated_protocol: String,
    /// ALPN mutual.
    pub tls_negotiated_protocol_is_mutual: bool,
}

/// End-to-end processing latency, as upstream aggregates it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct E2eLatency {
    /// Samples.
    pub count: i64,
    /// Per quantile: `quantile`, `value` (per node only), `min`, `max`, `average`, `count`;
    /// sorted by quantile, descending.
    pub percentiles: Option<Vec<BTreeMap<String, GoFloat>>>,
    /// Topic ("" per node).
    pub topic: String,
    /// Channel ("" per node and for topics).
    pub channel: String,
    /// `*` for an aggregate.
    pub host: String,
}

/// A float that serializes like Go's encoder: integral values without a fraction (`5`, not `5.0`).
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct GoFloat(pub f64);

impl Serialize for GoFloat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = self.0;
        if value.fract() == 0.0 && value.abs() < 1e15 {
            serializer.serialize_i64(value as i64)
        } else {
            serializer.serialize_f64(value)
        }
    }
}

impl E2eLatency {
    fn from_node(raw: Option<RawE2e>) -> Option<Self> {
        let raw = raw?;
        let percentiles = raw.percentiles.map(|list| {
            list.into_iter()
                .map(|percentile| {
                    let value = GoFloat(percentile.value);
                    BTreeMap::from([
                        ("quantile".to_owned(), GoFloat(percentile.quantile)),
                        ("value".to_owned(), value),
                        ("min".to_owned(), value),
                        ("max".to_owned(), value),
                        ("average".to_owned(), value),
                        ("count".to_owned(), GoFloat(raw.count as f64)),
                    ])
                })
                .collect()
        });
        Some(Self {
            count: raw.count,
            percentiles,
            ..Self::default()
        })
    }

    /// Merges another node's figures: counts add up, min/max over nodes, the average is the
    /// count-weighted running mean (upstream's formula).
    fn add(&mut self, other: Option<&E2eLatency>) {
        self.host = "*".to_owned();
        let Some(other) = other else {
            return;
        };
        self.count += other.count;
        for theirs in other.percentiles.iter().flatten() {
            let field = |map: &BTreeMap<String, GoFloat>, key: &str| {
                map.get(key).copied().unwrap_or_default().0
            };
            let quantile = field(theirs, "quantile");
            let ours = self.percentiles.get_or_insert_with(Vec::new);
            let index = match ours
                .iter()
                .position(|mine| field(mine, "quantile") == quantile)
            {
                Some(index) => index,
                None => {
                    ours.push(BTreeMap::from([
                        ("quantile".to_owned(), GoFloat(quantile)),
                        ("min".to_owned(), GoFloat(field(theirs, "min"))),
                    ]));
                    ours.len() - 1
                }
            };
            let mine = &mut ours[index];
            let max = field(mine, "max").max(field(theirs, "max"));
            let min = field(mine, "min").min(field(theirs, "min"));
            let count = field(mine, "count") + field(theirs, "count");
            mine.insert("max".to_owned(), GoFloat(max));
            mine.insert("min".to_owned(), GoFloat(min));
            mine.insert("count".to_owned(), GoFloat(count));
            let average = if count == 0.0 {
                0.0
            } else {
                let current = field(mine, "average");
                current + (field(theirs, "average") - current) * field(theirs, "count") / count
            };
            mine.insert("average".to_owned(), GoFloat(average));
        }
        if let Some(list) = &mut self.percentiles {
            list.sort_by(|left, right| {
                let key = |map: &BTreeMap<String, GoFloat>| map.get("quantile").map(|q| q.0);
                key(right)
                    .partial_cmp(&key(left))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        }
    }
}

impl ChannelStats {
    /// An empty aggregate for a channel, to [`ChannelStats::add`] nodes into.
    pub fn aggregate(node: &str, topic: &str, channel: &str) -> Self {
        Self {
            node: node.to_owned(),
            hostname: String::new(),
            topic_name: topic.to_owned(),
            channel_name: channel.to_owned(),
            depth: 0,
            memory_depth: 0,
            backend_depth: 0,
            in_flight_count: 0,
            deferred_count: 0,
            requeue_count: 0,
            timeout_count: 0,
            message_count: 0,
            client_count: 0,
            nodes: None,
            clients: None,
            paused: false,
            e2e_processing_latency: None,
        }
    }

    /// Adds one node's channel to this aggregate (which becomes `node: "*"`).
    pub fn add(&mut self, other: ChannelStats) {
        self.add_figures(&other);
        let nodes = self.nodes.get_or_insert_with(Vec::new);
        nodes.push(other);
        nodes.sort_by(|left, right| left.hostname.cmp(&right.hostname));
    }

    /// Everything [`ChannelStats::add`] does except recording `other` as a node.
    fn add_figures(&mut self, other: &ChannelStats) {
        self.node = "*".to_owned();
        self.depth += other.depth;
        self.memory_depth += other.memory_depth;
        self.backend_depth += other.backend_depth;
        self.in_flight_count += other.in_flight_count;
        self.deferred_count += other.deferred_count;
        self.requeue_count += other.requeue_count;
        self.timeout_count += other.timeout_count;
        self.message_count += other.message_count;
        self.client_count += other.client_count;
        self.paused |= other.paused;
        let e2e = self
            .e2e_processing_latency
            .get_or_insert_with(|| E2eLatency {
                topic: self.topic_name.clone(),
                channel: self.channel_name.clone(),
                host: self.node.clone(),
                ..E2eLatency::default()
            });
        e2e.add(other.e2e_processing_latency.as_ref());
        if let Some(clients) = other.clients.as_ref().filter(|list| !list.is_empty()) {
            let ours = self.clients.get_or_insert_with(Vec::new);
            ours.extend(clients.iter().cloned());
            ours.sort_by(|left, right| left.hostname.cmp(&right.hostname));
        }
    }
}

/// Merges per-node topic stats (sorted by hostname) into the cluster-wide entry of
/// `GET /api/topics/:topic`.
///
/// Upstream merges each later node's channels *into the first node's channel objects*, so the
/// first node's `channels` show the merged figures (`node: "*"`, nested `nodes`); this keeps that
/// quirk (fixtures README, behaviour 21) by merging through indices into one arena. Unlike
/// upstream, a channel that exists on a later node but not on the first is never dropped.
pub fn aggregate_topic(topic_name: &str, per_node: Vec<TopicStats>) -> TopicStats {
    let mut arena: Vec<ChannelStats> = Vec::new();
    let mut merged_into: Vec<Vec<usize>> = Vec::new();
    let mut node_channels: Vec<Option<Vec<usize>>> = Vec::new();
    let mut merged_channels: Vec<usize> = Vec::new();
    let mut total = TopicStats {
        node: String::new(),
        hostname: String::new(),
        topic_name: topic_name.to_owned(),
        depth: 0,
        memory_depth: 0,
        backend_depth: 0,
        message_count: 0,
        nodes: None,
        channels: None,
        paused: false,
        e2e_processing_latency: None,
    };
    let mut nodes = Vec::new();
    for mut topic in per_node {
        total.node = "*".to_owned();
        total.depth += topic.depth;
        total.memory_depth += topic.memory_depth;
        total.backend_depth += topic.backend_depth;
        total.message_count += topic.message_count;
        total.paused |= topic.paused;
        let ids = topic.channels.take().map(|channels| {
            channels
                .into_iter()
                .map(|channel| {
                    arena.push(channel);
                    merged_into.push(Vec::new());
                    arena.len() - 1
                })
                .collect::<Vec<_>>()
        });
        for &id in ids.iter().flatten() {
            let name = arena[id].channel_name.clone();
            match merged_channels
                .iter()
                .copied()
                .find(|&base| arena[base].channel_name == name)
            {
                Some(base) => {
                    let other = arena[id].clone();
                    arena[base].add_figures(&other);
                    merged_into[base].push(id);
                    let by_host = |&index: &usize| arena[index].hostname.clone();
                    merged_into[base].sort_by_key(by_host);
                }
                None => merged_channels.push(id),
            }
        }
        let e2e = total
            .e2e_processing_latency
            .get_or_insert_with(|| E2eLatency {
                topic: topic_name.to_owned(),
                host: "*".to_owned(),
                ..E2eLatency::default()
            });
        e2e.add(topic.e2e_processing_latency.as_ref());
        node_channels.push(ids);
        nodes.push(topic);
    }
    let render = |id: usize| render_channel(&arena, &merged_into, id);
    for (topic, ids) in nodes.iter_mut().zip(node_channels) {
        topic.channels = ids.map(|ids| ids.into_iter().map(render).collect());
    }
    if !nodes.is_empty() {
        total.nodes = Some(nodes);
    }
    if !merged_channels.is_empty() {
        total.channels = Some(merged_channels.into_iter().map(render).collect());
    }
    total
}

fn render_channel(arena: &[ChannelStats], merged_into: &[Vec<usize>], id: usize) -> ChannelStats {
    let mut channel = arena[id].clone();
    if !merged_into[id].is_empty() {
        channel.nodes = Some(
            merged_into[id]
                .iter()
                .map(|&child| render_channel(arena, merged_into, child))
                .collect(),
        );
    }
    channel
}

/// What [`ClusterInfo::nsqd_stats`] gathered.
#[derive(Debug, Clone, Default)]
pub struct NodeStats {
    /// Every (selected) topic of every node, sorted by hostname.
    pub topics: Vec<TopicStats>,
    /// Channels merged over nodes, keyed by channel name (one topic selected) or
    /// `topic:channel` (all topics).
    pub channels: BTreeMap<String, ChannelStats>,
}

/// TLS settings of the client that calls lookupds, nsqds and graphite's JSON API
/// (`--http-client-tls-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// `--http-client-tls-insecure-skip-verify`: accept any server certificate.
    pub insecure_skip_verify: bool,
    /// `--http-client-tls-root-ca-file`: trust only the CAs in this PEM bundle ("" = built-in).
    pub root_ca_file: String,
    /// `--http-client-tls-cert`: client certificate (PEM), sent when a server asks for one.
    pub cert: String,
    /// `--http-client-tls-key`: its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

impl ClientTls {
    /// The TLS flags of `options`.
    pub fn from_options(options: &crate::Options) -> Self {
        Self {
            insecure_skip_verify: options.http_client_tls_insecure_skip_verify,
            root_ca_file: options.http_client_tls_root_ca_file.clone(),
            cert: options.http_client_tls_cert.clone(),
            key: options.http_client_tls_key.clone(),
        }
    }

    /// Applies the settings to a client builder, reading the files; the errors are upstream's
    /// start-up failures (`failed to LoadX509KeyPair …`, `failed to read TLS root CA file …`,
    /// `failed to AppendCertsFromPEM …`).
    fn apply(&self, mut builder: reqwest::ClientBuilder) -> Result<reqwest::ClientBuilder, Error> {
        if !self.cert.is_empty() || !self.key.is_empty() {
            let load_failed = |reason: String| {
                Error::Startup(format!(
                    "failed to LoadX509KeyPair {}, {} - {reason}",
                    self.cert, self.key
                ))
            };
            let cert = std::fs::read(&self.cert).map_err(|err| load_failed(err.to_string()))?;
            let key = std::fs::read(&self.key).map_err(|err| load_failed(err.to_string()))?;
            // reqwest wants the key and the chain in one PEM document.
            let mut pem = key;
            pem.push(b'\n');
            pem.extend_from_slice(&cert);
            let identity =
                reqwest::Identity::from_pem(&pem).map_err(|err| load_failed(error_chain(&err)))?;
            builder = builder.identity(identity);
        }
        if !self.root_ca_file.is_empty() {
            let pem = std::fs::read(&self.root_ca_file).map_err(|err| {
                Error::Startup(format!(
                    "failed to read TLS root CA file {} - {err}",
                    self.root_ca_file
                ))
            })?;
            let appended = || {
                Error::Startup(format!(
                    "failed to AppendCertsFromPEM {}",
                    self.root_ca_file
                ))
            };
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| appended())?;
            if certs.is_empty() {
                return Err(appended());
            }
            // Go's tls.Config.RootCAs: the given pool replaces the system roots.
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(builder.danger_accept_invalid_certs(self.insecure_skip_verify))
    }
}

/// Talks to lookupds and nsqds.
#[derive(Debug, Clone)]
pub struct ClusterInfo {
    client: reqwest::Client,
    plain_client: reqwest::Client,
}

impl ClusterInfo {
    /// Clients with upstream's timeouts; they never use a proxy. The cluster client (lookupd,
    /// nsqd, `/api/graphite`) uses `tls`; the plain one (notifications, the `/render` proxy)
    /// uses the built-in roots, as upstream's separate transports do.
    pub fn new(
        connect_timeout: Duration,
        request_timeout: Duration,
        tls: &ClientTls,
    ) -> Result<Self, Error> {
        let builder = || {
            reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(connect_timeout)
                .timeout(request_timeout)
                .pool_idle_timeout(Duration::from_secs(90))
        };
        let client = tls.apply(builder())?.build().map_err(Error::HttpClient)?;
        let plain_client = builder().build().map_err(Error::HttpClient)?;
        Ok(Self {
            client,
            plain_client,
        })
    }

    /// The client for lookupd, nsqd and graphite's JSON API (with the `--http-client-tls-*`
    /// settings).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The client for notifications and the graphite `/render` proxy (built-in roots, no client
    /// certificate).
    pub fn plain_client(&self) -> &reqwest::Client {
        &self.plain_client
    }

    /// Union of every lookupd's `/topics`, sorted.
    pub async fn lookupd_topics(
        &self,
        lookupds: &[String],
    ) -> Result<Gathered<Vec<String>>, Error> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Topics {
            topics: Vec<String>,
        }
        let results = join_all(
            lookupds
                .iter()
                .map(|addr| self.get_json::<Topics>(addr, format!("http://{addr}/topics"))),
        )
        .await;
        let (ok, errors) = split(results);
        fail_if_all(lookupds.len(), &errors, "nsqlookupd")?;
        let mut topics: Vec<String> = ok.into_iter().flat_map(|found| found.topics).collect();
        topics.sort();
        topics.dedup();
        Ok(Gathered::new(topics, errors))
    }

    /// Union of every lookupd's `/channels?topic=`, sorted.
    pub async fn lookupd_topic_channels(
        &self,
        topic: &str,
        lookupds: &[String],
    ) -> Result<Gathered<Vec<String>>, Error> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Channels {
            channels: Vec<String>,
        }
        let query = encode_query(&[("topic", topic)]);
        let results = join_all(lookupds.iter().map(|addr| {
            self.get_json::<Channels>(addr, format!("http://{addr}/channels?{query}"))
        }))
        .await;
        let (ok, errors) = split(results);
        fail_if_all(lookupds.len(), &errors, "nsqlookupd")?;
        let mut channels: Vec<String> = ok.into_iter().flat_map(|found| found.channels).collect();
        channels.sort();
        channels.dedup();
        Ok(Gathered::new(channels, errors))
    }

    /// Every nsqd known to any lookupd (`/nodes`), keyed by TCP address, sorted by hostname.
    pub async fn lookupd_producers(
        &self,
        lookupds: &[String],
    ) -> Result<Gathered<Vec<Producer>>, Error> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Nodes {
            producers: Vec<RawProducer>,
        }
        let results = join_all(
            lookupds
                .iter()
                .map(|addr| self.get_json::<Nodes>(addr, format!("http://{addr}/nodes"))),
        )
        .await;
        let mut producers: Vec<Producer> = Vec::new();
        let mut errors = Vec::new();
        for (addr, result) in lookupds.iter().zip(results) {
            let nodes = match result {
                Ok(nodes) => nodes,
                Err(err) => {
                    errors.push(err);
                    continue;
                }
            };
            for raw in nodes.producers {
                let remote = if raw.remote_address.is_empty() {
                    "N/A".to_owned()
                } else {
                    raw.remote_address.clone()
                };
                let mut producer = raw.into_producer();
                let key = producer.tcp_address();
                let existing = match producers.iter().position(|p| p.tcp_address() == key) {
                    Some(index) => index,
                    None => {
                        producer.topics.sort_by(|l, r| l.topic.cmp(&r.topic));
                        producer.remote_addresses = Some(Vec::new());
                        producers.push(producer);
                        producers.len() - 1
                    }
                };
                producers[existing]
                    .remote_addresses
                    .get_or_insert_with(Vec::new)
                    .push(format!("{addr}/{remote}"));
            }
        }
        fail_if_all(lookupds.len(), &errors, "nsqlookupd")?;
        let newest = producers
            .iter()
            .map(|producer| SemVer::parse(&producer.version))
            .max()
            .unwrap_or_default();
        for producer in &mut producers {
            producer.out_of_date = SemVer::parse(&producer.version) < newest;
        }
        producers.sort_by(|left, right| left.hostname.cmp(&right.hostname));
        Ok(Gathered::new(producers, errors))
    }

    /// Union (by HTTP address) of every lookupd's producers of `topic` (`/lookup?topic=`).
    pub async fn lookupd_topic_producers(
        &self,
        topic: &str,
        lookupds: &[String],
    ) -> Result<Gathered<Vec<Producer>>, Error> {
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Lookup {
            producers: Vec<RawProducer>,
        }
        let query = encode_query(&[("topic", topic)]);
        let results =
            join_all(lookupds.iter().map(|addr| {
                self.get_json::<Lookup>(addr, format!("http://{addr}/lookup?{query}"))
            }))
            .await;
        let (ok, errors) = split(results);
        fail_if_all(lookupds.len(), &errors, "nsqlookupd")?;
        let mut producers: Vec<Producer> = Vec::new();
        for raw in ok.into_iter().flat_map(|lookup| lookup.producers) {
            let producer = raw.into_producer();
            if !producers
                .iter()
                .any(|known| known.http_address() == producer.http_address())
            {
                producers.push(producer);
            }
        }
        Ok(Gathered::new(producers, errors))
    }

    /// Union of the topic names in every nsqd's `/stats`, sorted.
    pub async fn nsqd_topics(&self, nsqds: &[String]) -> Result<Gathered<Vec<String>>, Error> {
        let results = join_all(nsqds.iter().map(|addr| {
            self.get_json::<RawStats>(addr, format!("http://{addr}/stats?format=json"))
        }))
        .await;
        let (ok, errors) = split(results);
        fail_if_all(nsqds.len(), &errors, "nsqd")?;
        let mut topics: Vec<String> = ok
            .into_iter()
            .flat_map(|stats| stats.topics.unwrap_or_default())
            .map(|topic| topic.topic_name)
            .collect();
        topics.sort();
        topics.dedup();
        Ok(Gathered::new(topics, errors))
    }

    /// Every given nsqd, from its `/info` and `/stats` (nsqd mode), in the given order.
    pub async fn nsqd_producers(&self, nsqds: &[String]) -> Result<Gathered<Vec<Producer>>, Error> {
        self.nsqd_producers_matching(nsqds, None).await
    }

    /// The given nsqds whose `/stats` list `topic` (nsqd mode).
    pub async fn nsqd_topic_producers(
        &self,
        topic: &str,
        nsqds: &[String],
    ) -> Result<Gathered<Vec<Producer>>, Error> {
        self.nsqd_producers_matching(nsqds, Some(topic)).await
    }

    async fn nsqd_producers_matching(
        &self,
        nsqds: &[String],
        topic: Option<&str>,
    ) -> Result<Gathered<Vec<Producer>>, Error> {
        let results = join_all(nsqds.iter().map(|addr| async move {
            let stats_url = match topic {
                Some(topic) => format!(
                    "http://{addr}/stats?format=json&{}&include_clients=false",
                    encode_query(&[("topic", topic)])
                ),
                None => format!("http://{addr}/stats?format=json&include_clients=false"),
            };
            let stats = self.get_json::<RawStats>(addr, stats_url).await?;
            let topics: Vec<ProducerTopic> = stats
                .topics
                .unwrap_or_default()
                .into_iter()
                .map(|found| ProducerTopic {
                    topic: found.topic_name,
                    tombstoned: false,
                })
                .collect();
            if let Some(topic) = topic
                && !topics.iter().any(|found| found.topic == topic)
            {
                return Ok(None);
            }
            let info = self
                .get_json::<RawInfo>(addr, format!("http://{addr}/info"))
                .await?;
            let (host, port) = split_host_port(addr);
            Ok(Some(Producer {
                remote_addresses: None,
                remote_address: String::new(),
                hostname: if info.hostname.is_empty() {
                    host.clone()
                } else {
                    info.hostname
                },
                broadcast_address: if info.broadcast_address.is_empty() {
                    host
                } else {
                    info.broadcast_address
                },
                tcp_port: info.tcp_port,
                http_port: if info.http_port == 0 {
                    port
                } else {
                    info.http_port
                },
                version: info.version,
                topology_zone: info.topology_zone,
                topology_region: info.topology_region,
                topics,
                out_of_date: false,
            }))
        }))
        .await;
        let (ok, errors) = split(results);
        fail_if_all(nsqds.len(), &errors, "nsqd")?;
        Ok(Gathered::new(ok.into_iter().flatten().collect(), errors))
    }

    /// Every nsqd of the cluster (lookupd `/nodes`, or the configured nsqds).
    pub async fn producers(&self, sources: Sources<'_>) -> Result<Gathered<Vec<Producer>>, Error> {
        if sources.lookupd_mode() {
            self.lookupd_producers(sources.lookupds).await
        } else {
            self.nsqd_producers(sources.nsqds).await
        }
    }

    /// The nsqds that have `topic`.
    pub async fn topic_producers(
        &self,
        topic: &str,
        sources: Sources<'_>,
    ) -> Result<Gathered<Vec<Producer>>, Error> {
        if sources.lookupd_mode() {
            self.lookupd_topic_producers(topic, sources.lookupds).await
        } else {
            self.nsqd_topic_producers(topic, sources.nsqds).await
        }
    }

    /// Every given node's `/stats` (optionally filtered to one topic and channel), with the
    /// channels also merged over nodes. No producers at all gives empty stats (upstream answers
    /// 502 `failed to query any nsqd: ` then).
    pub async fn nsqd_stats(
        &self,
        producers: &[Producer],
        topic: Option<&str>,
        channel: Option<&str>,
        include_clients: bool,
    ) -> Result<Gathered<NodeStats>, Error> {
        let results = join_all(producers.iter().map(|producer| async move {
            let addr = producer.http_address();
            let mut url = format!("http://{addr}/stats?format=json");
            if let Some(topic) = topic {
                url.push('&');
                url.push_str(&encode_query(&[("topic", topic)]));
                if let Some(channel) = channel {
                    url.push('&');
                    url.push_str(&encode_query(&[("channel", channel)]));
                }
            }
            if !include_clients {
                url.push_str("&include_clients=false");
            }
            let stats = self.get_json::<RawStats>(&addr, url).await?;
            Ok((addr, producer.hostname.clone(), stats))
        }))
        .await;
        let (ok, errors) = split(results);
        if !producers.is_empty() {
            fail_if_all(producers.len(), &errors, "nsqd")?;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        let mut gathered = NodeStats::default();
        for (addr, hostname, stats) in ok {
            for raw_topic in stats.topics.unwrap_or_default() {
                if topic.is_some_and(|wanted| wanted != raw_topic.topic_name) {
                    continue;
                }
                let topic_name = raw_topic.topic_name.clone();
                let channels = raw_topic.channels.map(|channels| {
                    channels
                        .into_iter()
                        .map(|raw| raw.into_stats(&addr, &hostname, &topic_name, now))
                        .collect::<Vec<_>>()
                });
                for channel in channels.iter().flatten() {
                    let key = match topic {
                        Some(_) => channel.channel_name.clone(),
                        None => format!("{topic_name}:{}", channel.channel_name),
                    };
                    gathered
                        .channels
                        .entry(key)
                        .or_insert_with(|| {
                            ChannelStats::aggregate(&addr, &topic_name, &channel.channel_name)
                        })
                        .add(channel.clone());
                }
                gathered.topics.push(TopicStats {
                    node: addr.clone(),
                    hostname: hostname.clone(),
                    topic_name,
                    depth: raw_topic.depth,
                    memory_depth: raw_topic.depth - raw_topic.backend_depth,
                    backend_depth: raw_topic.backend_depth,
                    message_count: raw_topic.message_count,
                    nodes: None,
                    channels,
                    paused: raw_topic.paused,
                    e2e_processing_latency: E2eLatency::from_node(raw_topic.e2e_processing_latency),
                });
            }
        }
        gathered
            .topics
            .sort_by(|left, right| left.hostname.cmp(&right.hostname));
        Ok(Gathered::new(gathered, errors))
    }

    /// Tombstones `node` for `topic` on every lookupd, then deletes the topic on that node.
    pub async fn tombstone_node_for_topic(
        &self,
        topic: &str,
        node: &str,
        lookupds: &[String],
    ) -> Result<Vec<CallError>, Error> {
        let mut errors = self
            .post_all(
                lookupds,
                "topic/tombstone",
                &encode_query(&[("topic", topic), ("node", node)]),
            )
            .await;
        let producers = self.nsqd_producers(&[node.to_owned()]).await?;
        errors.extend(producers.errors);
        errors.extend(
            self.post_producers(
                &producers.data,
                "topic/delete",
                &encode_query(&[("topic", topic)]),
            )
            .await,
        );
        Ok(errors)
    }

    /// Creates the topic (and channel) on every lookupd, and the channel on the topic's nsqds.
    /// In nsqd mode there is no lookupd: both are created on every configured nsqd.
    pub async fn create_topic_channel(
        &self,
        topic: &str,
        channel: Option<&str>,
        sources: Sources<'_>,
    ) -> Result<Vec<CallError>, Error> {
        let topic_query = encode_query(&[("topic", topic)]);
        if !sources.lookupd_mode() {
            let mut errors = self
                .post_all(sources.nsqds, "topic/create", &topic_query)
                .await;
            if let Some(channel) = channel {
                let query = encode_query(&[("topic", topic), ("channel", channel)]);
                errors.extend(self.post_all(sources.nsqds, "channel/create", &query).await);
            }
            return Ok(errors);
        }
        let mut errors = self
            .post_all(sources.lookupds, "topic/create", &topic_query)
            .await;
        if let Some(channel) = channel {
            let query = encode_query(&[("topic", topic), ("channel", channel)]);
            errors.extend(
                self.post_all(sources.lookupds, "channel/create", &query)
                    .await,
            );
            let producers = self
                .lookupd_topic_producers(topic, sources.lookupds)
                .await?;
            errors.extend(producers.errors);
            errors.extend(
                self.post_producers(&producers.data, "channel/create", &query)
                    .await,
            );
        }
        Ok(errors)
    }

    /// Deletes a topic: producers first, then every lookupd, then every producer.
    pub async fn delete_topic(
        &self,
        topic: &str,
        sources: Sources<'_>,
    ) -> Result<Vec<CallError>, Error> {
        let producers = self.topic_producers(topic, sources).await?;
        let query = encode_query(&[("topic", topic)]);
        let mut errors = producers.errors;
        errors.extend(
            self.post_all(sources.lookupds, "topic/delete", &query)
                .await,
        );
        errors.extend(
            self.post_producers(&producers.data, "topic/delete", &query)
                .await,
        );
        Ok(errors)
    }

    /// Deletes a channel on every lookupd and every producer of its topic.
    pub async fn delete_channel(
        &self,
        topic: &str,
        channel: &str,
        sources: Sources<'_>,
    ) -> Result<Vec<CallError>, Error> {
        let producers = self.topic_producers(topic, sources).await?;
        let query = encode_query(&[("topic", topic), ("channel", channel)]);
        let mut errors = producers.errors;
        errors.extend(
            self.post_all(sources.lookupds, "channel/delete", &query)
                .await,
        );
        errors.extend(
            self.post_producers(&producers.data, "channel/delete", &query)
                .await,
        );
        Ok(errors)
    }

    /// `POST /topic/<action>` (or `/channel/<action>`) on every producer of the topic; `action`
    /// is `pause`, `unpause` or `empty`.
    pub async fn topic_channel_action(
        &self,
        topic: &str,
        channel: Option<&str>,
        action: &str,
        sources: Sources<'_>,
    ) -> Result<Vec<CallError>, Error> {
        let producers = self.topic_producers(topic, sources).await?;
        let (path, query) = match channel {
            Some(channel) => (
                format!("channel/{action}"),
                encode_query(&[("topic", topic), ("channel", channel)]),
            ),
            None => (format!("topic/{action}"), encode_query(&[("topic", topic)])),
        };
        let mut errors = producers.errors;
        errors.extend(self.post_producers(&producers.data, &path, &query).await);
        Ok(errors)
    }

    async fn post_all(&self, addrs: &[String], path: &str, query: &str) -> Vec<CallError> {
        join_all(
            addrs
                .iter()
                .map(|addr| self.post(addr, format!("http://{addr}/{path}?{query}"))),
        )
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect()
    }

    async fn post_producers(
        &self,
        producers: &[Producer],
        path: &str,
        query: &str,
    ) -> Vec<CallError> {
        let addrs: Vec<String> = producers.iter().map(Producer::http_address).collect();
        self.post_all(&addrs, path, query).await
    }

    /// `GET` with `Accept: application/vnd.nsq; version=1.0`, then JSON.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        addr: &str,
        url: String,
    ) -> Result<T, CallError> {
        let body = self.call(reqwest::Method::GET, addr, url).await?;
        serde_json::from_slice(&body).map_err(|err| CallError {
            addr: addr.to_owned(),
            text: err.to_string(),
        })
    }

    async fn post(&self, addr: &str, url: String) -> Result<(), CallError> {
        self.call(reqwest::Method::POST, addr, url).await.map(drop)
    }

    /// One call; a 403 from an `http://` node is retried on the `https_port` its body names.
    async fn call(
        &self,
        method: reqwest::Method,
        addr: &str,
        mut url: String,
    ) -> Result<Vec<u8>, CallError> {
        let failed = |text: String| CallError {
            addr: addr.to_owned(),
            text,
        };
        let verb = if method == reqwest::Method::POST {
            "Post"
        } else {
            "Get"
        };
        let mut retried = false;
        loop {
            tracing::debug!("CI: querying {url}");
            let response = self
                .client
                .request(method.clone(), &url)
                .header(reqwest::header::ACCEPT, "application/vnd.nsq; version=1.0")
                .send()
                .await
                .map_err(|err| failed(go_request_error(verb, &url, &err)))?;
            let status = response.status();
            let body = response
                .bytes()
                .await
                .map_err(|err| failed(go_request_error(verb, &url, &err)))?;
            if status == StatusCode::OK {
                return Ok(body.to_vec());
            }
            if status == StatusCode::FORBIDDEN
                && !retried
                && let Some(https) = https_endpoint(&url, &body)
            {
                retried = true;
                url = https;
                continue;
            }
            return Err(failed(format!(
                "got response {} {}",
                go_status(status),
                go_quote(&body)
            )));
        }
    }
}

/// `404 Not Found`, as Go's `resp.Status`.
fn go_status(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Go's `%q` of a byte string: double-quoted, with `"`, `\` and non-printable bytes escaped.
pub fn go_quote(bytes: &[u8]) -> String {
    let mut quoted = String::with_capacity(bytes.len() + 2);
    quoted.push('"');
    let text = String::from_utf8_lossy(bytes);
    for ch in text.chars() {
        match ch {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\u{b}' => quoted.push_str("\\v"),
            ch if (ch as u32) < 0x20 || ch == '\u{7f}' => {
                quoted.push_str(&format!("\\x{:02x}", ch as u32));
            }
            ch => quoted.push(ch),
        }
    }
    quoted.push('"');
    quoted
}

/// Words a transport failure as Go's `net/http` client does.
fn go_request_error(verb: &str, url: &str, err: &reqwest::Error) -> String {
    let host_port = reqwest::Url::parse(url)
        .ok()
        .map(|parsed| {
            let host = parsed.host_str().unwrap_or_default().to_owned();
            let port = parsed.port_or_known_default().unwrap_or_default();
            join_host_port(&host, i64::from(port))
        })
        .unwrap_or_default();
    let io_error = {
        let mut source = std::error::Error::source(err);
        let mut found = None;
        while let Some(current) = source {
            if let Some(io) = current.downcast_ref::<std::io::Error>() {
                found = Some(io.kind());
                break;
            }
            source = current.source();
        }
        found
    };
    let detail = if let Some(tls) = tls_failure(err) {
        tls
    } else if err.is_connect() {
        match io_error {
            Some(std::io::ErrorKind::ConnectionRefused) => {
                format!("dial tcp {host_port}: connect: connection refused")
            }
            _ if err.is_timeout() => format!("dial tcp {host_port}: i/o timeout"),
            Some(kind) => format!("dial tcp {host_port}: {kind}"),
            None => format!("dial tcp {host_port}: {}", error_chain(err)),
        }
    } else if err.is_timeout() {
        "net/http: timeout awaiting response headers".to_owned()
    } else {
        error_chain(err)
    };
    format!("{verb} \"{url}\": {detail}")
}

/// A TLS failure in `err`'s chain, worded as Go's `crypto/tls` words the common ones
/// (`tls: failed to verify certificate: x509: certificate signed by unknown authority`,
/// `remote error: tls: certificate required`).
fn tls_failure(err: &reqwest::Error) -> Option<String> {
    use rustls::{AlertDescription, CertificateError};
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut found = None;
    while let Some(error) = current {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            found = Some(tls);
            break;
        }
        // `io::Error::source` skips the error it wraps (rustls's, possibly inside another
        // io::Error), so step into it explicitly.
        current = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    let verify = |what: &str| format!("tls: failed to verify certificate: x509: {what}");
    Some(match found? {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer => verify("certificate signed by unknown authority"),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                verify("certificate is not valid for the requested host")
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => {
                verify("certificate has expired or is not yet valid")
            }
            other => verify(&format!("{other:?}")),
        },
        rustls::Error::AlertReceived(alert) => {
            let text = match alert {
                AlertDescription::CertificateRequired => "certificate required".to_owned(),
                AlertDescription::BadCertificate => "bad certificate".to_owned(),
                AlertDescription::UnknownCA => "unknown certificate authority".to_owned(),
                AlertDescription::HandshakeFailure => "handshake failure".to_owned(),
                other => format!("{other:?}"),
            };
            format!("remote error: tls: {text}")
        }
        other => format!("tls: {other}"),
    })
}

/// An error and its sources, `: `-separated.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(current) = source {
        text.push_str(": ");
        text.push_str(&current.to_string());
        source = current.source();
    }
    text
}

/// The `https://host:<https_port>/…` to retry a 403 on, from a `{"https_port":N}` body.
fn https_endpoint(url: &str, body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Forbidden {
        https_port: u16,
    }
    let forbidden: Forbidden = serde_json::from_slice(body).ok()?;
    let mut parsed = reqwest::Url::parse(url).ok()?;
    if parsed.scheme() != "http" {
        return None;
    }
    parsed.set_scheme("https").ok()?;
    parsed.set_port(Some(forbidden.https_port)).ok()?;
    Some(parsed.to_string())
}

/// `host:port`, with brackets around an IPv6 host.
pub fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn split_host_port(addr: &str) -> (String, i64) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port.parse().unwrap_or_default(),
        ),
        None => (addr.to_owned(), 0),
    }
}

/// `k=v&k2=v2`, form-encoded like Go's `url.QueryEscape`.
pub fn encode_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={}", query_escape(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn query_escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                escaped.push(byte as char);
            }
            b' ' => escaped.push('+'),
            other => escaped.push_str(&format!("%{other:02X}")),
        }
    }
    escaped
}

fn split<T>(results: Vec<Result<T, CallError>>) -> (Vec<T>, Vec<CallError>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(value) => ok.push(value),
            Err(err) => errors.push(err),
        }
    }
    (ok, errors)
}

/// Upstream's total-failure rule: every call of the step failed (zero calls count as all).
fn fail_if_all(calls: usize, errors: &[CallError], what: &str) -> Result<(), Error> {
    if errors.len() == calls {
        let details: Vec<&str> = errors.iter().map(|err| err.text.as_str()).collect();
        return Err(Error::Upstream(format!(
            "failed to query any {what}: {}",
            details.join("\n")
        )));
    }
    Ok(())
}

fn empty_as_null<S: Serializer, T: Serialize>(
    list: &[T],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if list.is_empty() {
        serializer.serialize_none()
    } else {
        list.serialize(serializer)
    }
}

/// A semantic version, as far as ordering nodes goes; anything unparsable is 0.0.0.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct SemVer {
    core: (u64, u64, u64),
    /// Release (no pre-release) sorts after any pre-release of the same core.
    release: bool,
    pre: Vec<PreIdentifier>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum PreIdentifier {
    Numeric(u64),
    Text(String),
}

impl SemVer {
    fn parse(text: &str) -> Self {
        Self::try_parse(text).unwrap_or_default()
    }

    fn try_parse(text: &str) -> Option<Self> {
        let text = text.split('+').next()?;
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let mut parts = core.split('.').map(|part| {
            let valid = !part.is_empty()
                && part.bytes().all(|byte| byte.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'));
            valid.then(|| part.parse::<u64>().ok()).flatten()
        });
        let core = (parts.next()??, parts.next()??, parts.next()??);
        if parts.next().is_some() {
            return None;
        }
        let pre = match pre {
            Some(pre) => pre
                .split('.')
                .map(|id| match id.parse::<u64>() {
                    Ok(number) => Some(PreIdentifier::Numeric(number)),
                    Err(_) if !id.is_empty() => Some(PreIdentifier::Text(id.to_owned())),
                    Err(_) => None,
                })
                .collect::<Option<Vec<_>>>()?,
            None => Vec::new(),
        };
        Some(Self {
            core,
            release: pre.is_empty(),
            pre,
        })
    }
}

/// A node in lookupd's `/nodes` or `/lookup`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawProducer {
    remote_address: String,
    hostname: String,
    broadcast_address: String,
    tcp_port: i64,
    http_port: i64,
    version: String,
    topology_zone: String,
    topology_region: String,
    topics: Vec<String>,
    tombstones: Vec<bool>,
}

impl RawProducer {
    fn into_producer(self) -> Producer {
        let topics = self
            .topics
            .into_iter()
            .enumerate()
            .map(|(index, topic)| ProducerTopic {
                topic,
                tombstoned: self.tombstones.get(index).copied().unwrap_or(false),
            })
            .collect();
        Producer {
            remote_addresses: None,
            remote_address: self.remote_address,
            hostname: self.hostname,
            broadcast_address: self.broadcast_address,
            tcp_port: self.tcp_port,
            http_port: self.http_port,
            version: self.version,
            topology_zone: self.topology_zone,
            topology_region: self.topology_region,
            topics,
            out_of_date: false,
        }
    }
}

/// nsqd's `/info`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawInfo {
    version: String,
    broadcast_address: String,
    hostname: String,
    http_port: i64,
    tcp_port: i64,
    topology_zone: String,
    topology_region: String,
}

/// nsqd's `/stats?format=json`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawStats {
    topics: Option<Vec<RawTopic>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawTopic {
    topic_name: String,
    channels: Option<Vec<RawChannel>>,
    depth: i64,
    backend_depth: i64,
    message_count: i64,
    paused: bool,
    e2e_processing_latency: Option<RawE2e>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawChannel {
    channel_name: String,
    depth: i64,
    backend_depth: i64,
    in_flight_count: i64,
    deferred_count: i64,
    message_count: i64,
    requeue_count: i64,
    timeout_count: i64,
    client_count: i64,
    clients: Option<Vec<ClientStats>>,
    paused: bool,
    e2e_processing_latency: Option<RawE2e>,
}

impl RawChannel {
    fn into_stats(self, addr: &str, hostname: &str, topic: &str, now: i64) -> ChannelStats {
        let clients = self.clients.map(|clients| {
            clients
                .into_iter()
                .map(|mut client| {
                    client.node = addr.to_owned();
                    client.connected = (now - client.connect_ts).max(0) * 1_000_000_000;
                    client
                })
                .collect()
        });
        ChannelStats {
            node: addr.to_owned(),
            hostname: hostname.to_owned(),
            topic_name: topic.to_owned(),
            channel_name: self.channel_name,
            depth: self.depth,
            memory_depth: self.depth - self.backend_depth,
            backend_depth: self.backend_depth,
            in_flight_count: self.in_flight_count,
            deferred_count: self.deferred_count,
            requeue_count: self.requeue_count,
            timeout_count: self.timeout_count,
            message_count: self.message_count,
            client_count: self.client_count,
            nodes: None,
            clients,
            paused: self.paused,
            e2e_processing_latency: E2eLatency::from_node(self.e2e_processing_latency),
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawE2e {
    count: i64,
    percentiles: Option<Vec<RawPercentile>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RawPercentile {
    quantile: f64,
    value: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(node: &str, hostname: &str, name: &str, depth: i64) -> ChannelStats {
        let mut stats = ChannelStats::aggregate(node, "t", name);
        stats.hostname = hostname.to_owned();
        stats.depth = depth;
        stats.memory_depth = depth;
        stats.e2e_processing_latency = Some(E2eLatency::default());
        stats
    }

    fn topic(node: &str, hostname: &str, channels: Vec<ChannelStats>) -> TopicStats {
        TopicStats {
            node: node.to_owned(),
            hostname: hostname.to_owned(),
            topic_name: "t".to_owned(),
            depth: 1,
            memory_depth: 1,
            backend_depth: 0,
            message_count: 2,
            nodes: None,
            channels: Some(channels),
            paused: false,
            e2e_processing_latency: Some(E2eLatency::default()),
        }
    }

    #[test]
    fn topic_aggregate_aliases_first_node_channels_like_upstream() {
        let first = topic("a:1", "vm", vec![channel("a:1", "vm", "c", 7)]);
        let second = topic(
            "b:2",
            "vm",
            vec![channel("b:2", "vm", "c", 201), channel("b:2", "vm", "d", 1)],
        );
        let total = aggregate_topic("t", vec![first, second]);
        assert_eq!(total.node, "*");
        assert_eq!(total.hostname, "");
        assert_eq!(total.depth, 2);
        assert_eq!(total.message_count, 4);
        let channels = total.channels.as_ref().unwrap();
        assert_eq!(channels.len(), 2, "a channel only on a later node is kept");
        assert_eq!(channels[0].node, "*");
        assert_eq!(channels[0].depth, 208);
        assert_eq!(channels[0].nodes.as_ref().unwrap().len(), 1);
        assert_eq!(channels[0].nodes.as_ref().unwrap()[0].node, "b:2");
        assert_eq!(channels[1].node, "b:2");
        let nodes = total.nodes.as_ref().unwrap();
        assert_eq!(nodes[0].channels.as_ref().unwrap()[0], channels[0]);
        assert_eq!(nodes[1].channels.as_ref().unwrap()[0].node, "b:2");
        assert_eq!(nodes[1].channels.as_ref().unwrap()[0].depth, 201);
        let e2e = total.e2e_processing_latency.as_ref().unwrap();
        assert_eq!((e2e.topic.as_str(), e2e.host.as_str()), ("t", "*"));
        assert_eq!(
            channels[0].e2e_processing_latency.as_ref().unwrap().host,
            "*"
        );
    }

    #[test]
    fn channel_aggregate_collects_nodes_and_clients() {
        let mut total = ChannelStats::aggregate("a:1", "t", "c");
        let mut first = channel("a:1", "vm2", "c", 3);
        first.clients = Some(vec![ClientStats {
            hostname: "z".to_owned(),
            ..ClientStats::default()
        }]);
        let mut second = channel("b:2", "vm1", "c", 4);
        second.clients = Some(vec![]);
        second.paused = true;
        total.add(first);
        total.add(second);
        assert_eq!(total.node, "*");
        assert_eq!(total.depth, 7);
        assert!(total.paused);
        let nodes = total.nodes.as_ref().unwrap();
        assert_eq!(nodes[0].hostname, "vm1", "sorted by hostname");
        assert_eq!(total.clients.as_ref().unwrap().len(), 1);
        let e2e = total.e2e_processing_latency.unwrap();
        assert_eq!(
            (e2e.topic.as_str(), e2e.channel.as_str(), e2e.host.as_str()),
            ("t", "c", "*")
        );
        let mut empty = ChannelStats::aggregate("a:1", "t", "c");
        empty.add(channel("a:1", "vm", "c", 0));
        assert_eq!(empty.clients, None, "no clients stays null");
    }

    #[test]
    fn e2e_percentiles_merge() {
        let node = |count: i64, p99: f64, p50: f64| {
            E2eLatency::from_node(Some(RawE2e {
                count,
                percentiles: Some(vec![
                    RawPercentile {
                        quantile: 0.99,
                        value: p99,
                    },
                    RawPercentile {
                        quantile: 0.5,
                        value: p50,
                    },
                ]),
            }))
        };
        let mut total = E2eLatency::default();
        total.add(node(1, 100.0, 10.0).as_ref());
        total.add(node(3, 300.0, 30.0).as_ref());
        let percentiles = total.percentiles.unwrap();
        assert_eq!(percentiles[0]["quantile"], GoFloat(0.99));
        assert_eq!(percentiles[0]["max"], GoFloat(300.0));
        assert_eq!(percentiles[0]["min"], GoFloat(100.0));
        assert_eq!(percentiles[0]["count"], GoFloat(4.0));
        assert_eq!(percentiles[0]["average"], GoFloat(250.0));
        assert_eq!(percentiles[1]["quantile"], GoFloat(0.5));
        assert_eq!(total.count, 4);
        assert_eq!(
            serde_json::to_string(&GoFloat(4.0)).unwrap(),
            "4",
            "integral floats print like Go"
        );
    }

    #[test]
    fn semver_ordering() {
        assert!(SemVer::parse("1.3.0") > SemVer::parse("1.2.1"));
        assert!(SemVer::parse("1.3.0") > SemVer::parse("1.3.0-alpha"));
        assert!(SemVer::parse("1.3.0-alpha.2") > SemVer::parse("1.3.0-alpha.1"));
        assert_eq!(SemVer::parse("garbage"), SemVer::default());
        assert_eq!(SemVer::parse("1.3"), SemVer::default());
    }

    #[test]
    fn go_wording() {
        assert_eq!(
            go_quote(br#"{"message":"TOPIC_NOT_FOUND"}"#),
            r#""{\"message\":\"TOPIC_NOT_FOUND\"}""#
        );
        assert_eq!(go_quote(b"a\x01\n"), r#""a\x01\n""#);
        assert_eq!(go_status(StatusCode::NOT_FOUND), "404 Not Found");
        assert_eq!(
            encode_query(&[("topic", "a b#ephemeral"), ("node", "[::1]:4151")]),
            "topic=a+b%23ephemeral&node=%5B%3A%3A1%5D%3A4151"
        );
        assert_eq!(join_host_port("::1", 4151), "[::1]:4151");
        assert_eq!(split_host_port("[::1]:4151"), ("::1".to_owned(), 4151));
        assert_eq!(
            https_endpoint(
                "http://127.0.0.1:4151/stats?format=json",
                br#"{"message": "TLS_REQUIRED", "https_port": 4152}"#
            )
            .as_deref(),
            Some("https://127.0.0.1:4152/stats?format=json")
        );
    }

    #[tokio::test]
    async fn refused_connections_are_worded_like_go() {
        // Bound but not listening: refused, and no parallel test can take the port meanwhile.
        let reserved =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        reserved
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        let addr = reserved
            .local_addr()
            .unwrap()
            .as_socket()
            .unwrap()
            .to_string();
        let cluster = ClusterInfo::new(
            Duration::from_secs(1),
            Duration::from_secs(1),
            &ClientTls::default(),
        )
        .unwrap();
        let err = cluster
            .lookupd_topics(std::slice::from_ref(&addr))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "UPSTREAM_ERROR: failed to query any nsqlookupd: Get \"http://{addr}/topics\": dial tcp {addr}: connect: connection refused"
            )
        );
    }

    /// TLS for calls to nsqd: a fake nsqd whose plain HTTP port answers every request with
    /// `403 TLS_REQUIRED` and its `https_port` (nsqd's `--tls-required`), and whose HTTPS port
    /// serves `/stats`, with certificates from a throw-away CA.
    mod tls {
        use super::*;
        use axum::http::StatusCode as Status;
        use std::net::SocketAddr;
        use std::sync::Arc;
        use tokio::net::{TcpListener, TcpStream};

        /// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
        pub(super) struct Pki {
            pub(super) dir: tempfile::TempDir,
            ca_cert: rcgen::Certificate,
            server: (String, String),
        }

        impl Pki {
            pub(super) fn new() -> Self {
                let ca_key = rcgen::KeyPair::generate().unwrap();
                let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
                ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                ca.distinguished_name
                    .push(rcgen::DnType::CommonName, "nsqadmin test CA");
                let ca_cert = ca.self_signed(&ca_key).unwrap();
                let leaf = |names: Vec<String>, usage: rcgen::ExtendedKeyUsagePurpose| {
                    let key = rcgen::KeyPair::generate().unwrap();
                    let mut params = rcgen::CertificateParams::new(names).unwrap();
                    params.extended_key_usages = vec![usage];
                    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
                    (cert.pem(), key.serialize_pem())
                };
                let server = leaf(
                    vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
                    rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                );
                let client = leaf(
                    vec!["nsqadmin".to_owned()],
                    rcgen::ExtendedKeyUsagePurpose::ClientAuth,
                );
                let dir = tempfile::tempdir().unwrap();
                for (name, text) in [
                    ("ca.pem", ca_cert.pem()),
                    ("client.pem", client.0),
                    ("client.key", client.1),
                    ("server.pem", server.0.clone()),
                    ("empty.pem", "not a certificate\n".to_owned()),
                ] {
                    std::fs::write(dir.path().join(name), text).unwrap();
                }
                Self {
                    dir,
                    ca_cert,
                    server,
                }
            }

            pub(super) fn path(&self, name: &str) -> String {
                self.dir.path().join(name).display().to_string()
            }

            fn server_config(&self, require_client_cert: bool) -> rustls::ServerConfig {
                use rustls_pki_types::pem::PemObject as _;
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let certs = vec![
                    rustls_pki_types::CertificateDer::from_pem_slice(self.server.0.as_bytes())
                        .unwrap(),
                ];
                let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(self.server.1.as_bytes())
                    .unwrap();
                let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
                    .with_safe_default_protocol_versions()
                    .unwrap();
                let builder = if require_client_cert {
                    let mut roots = rustls::RootCertStore::empty();
                    roots.add(self.ca_cert.der().clone()).unwrap();
                    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider,
                    )
                    .build()
                    .unwrap();
                    builder.with_client_cert_verifier(verifier)
                } else {
                    builder.with_no_client_auth()
                };
                builder.with_single_cert(certs, key).unwrap()
            }
        }

        /// Accepts TCP connections and completes the TLS handshake (failed handshakes are
        /// dropped).
        struct TlsListener {
            tcp: TcpListener,
            acceptor: tokio_rustls::TlsAcceptor,
        }

        impl axum::serve::Listener for TlsListener {
            type Io = tokio_rustls::server::TlsStream<TcpStream>;
            type Addr = SocketAddr;

            async fn accept(&mut self) -> (Self::Io, Self::Addr) {
                loop {
                    let Ok((stream, addr)) = self.tcp.accept().await else {
                        continue;
                    };
                    if let Ok(tls) = self.acceptor.accept(stream).await {
                        return (tls, addr);
                    }
                }
            }

            fn local_addr(&self) -> std::io::Result<SocketAddr> {
                self.tcp.local_addr()
            }
        }

        /// Starts the fake nsqd; returns its plain HTTP address (what nsqadmin is given).
        pub(super) async fn tls_required_nsqd(pki: &Pki, require_client_cert: bool) -> String {
            let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let https_port = tcp.local_addr().unwrap().port();
            let acceptor =
                tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config(require_client_cert)));
            let https = axum::Router::new().route(
                "/stats",
                axum::routing::get(|| async {
                    axum::Json(serde_json::json!({
                        "version": "1.3.0", "health": "OK", "start_time": 1,
                        "topics": [{"topic_name": "tls_topic", "channels": [], "depth": 0,
                                    "backend_depth": 0, "message_count": 3, "paused": false}],
                        "producers": []
                    }))
                }),
            );
            tokio::spawn(async move { axum::serve(TlsListener { tcp, acceptor }, https).await });
            let plain = axum::Router::new().fallback(move || async move {
                (
                    Status::FORBIDDEN,
                    [("content-type", "application/json; charset=utf-8")],
                    format!(r#"{{"message": "TLS_REQUIRED", "https_port": {https_port}}}"#),
                )
            });
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            tokio::spawn(async move { axum::serve(listener, plain).await });
            addr
        }

        fn cluster(tls: ClientTls) -> Result<ClusterInfo, Error> {
            ClusterInfo::new(Duration::from_secs(2), Duration::from_secs(5), &tls)
        }

        async fn topics(cluster: &ClusterInfo, nsqd: &str) -> Result<Vec<String>, String> {
            cluster
                .nsqd_topics(&[nsqd.to_owned()])
                .await
                .map(|found| found.data)
                .map_err(|err| err.to_string())
        }

        #[tokio::test]
        async fn root_ca_and_skip_verify_reach_an_https_nsqd() {
            let pki = Pki::new();
            let nsqd = tls_required_nsqd(&pki, false).await;
            let with_ca = cluster(ClientTls {
                root_ca_file: pki.path("ca.pem"),
                ..ClientTls::default()
            })
            .unwrap();
            assert_eq!(topics(&with_ca, &nsqd).await.unwrap(), ["tls_topic"]);

            // No CA: the certificate is refused, and the error says why (Go's wording).
            let without = cluster(ClientTls::default()).unwrap();
            let err = topics(&without, &nsqd).await.unwrap_err();
            let https_port = err
                .split("https://127.0.0.1:")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .unwrap_or_default()
                .to_owned();
            assert_eq!(
                err,
                format!(
                    "UPSTREAM_ERROR: failed to query any nsqd: Get \"https://127.0.0.1:{https_port}/stats?format=json\": tls: failed to verify certificate: x509: certificate signed by unknown authority"
                )
            );

            let skip = cluster(ClientTls {
                insecure_skip_verify: true,
                ..ClientTls::default()
            })
            .unwrap();
            assert_eq!(topics(&skip, &nsqd).await.unwrap(), ["tls_topic"]);
        }

        #[tokio::test]
        async fn client_certificate_for_an_nsqd_that_requires_one() {
            let pki = Pki::new();
            let nsqd = tls_required_nsqd(&pki, true).await;
            let with_cert = cluster(ClientTls {
                root_ca_file: pki.path("ca.pem"),
                cert: pki.path("client.pem"),
                key: pki.path("client.key"),
                ..ClientTls::default()
            })
            .unwrap();
            assert_eq!(topics(&with_cert, &nsqd).await.unwrap(), ["tls_topic"]);

            let without_cert = cluster(ClientTls {
                root_ca_file: pki.path("ca.pem"),
                ..ClientTls::default()
            })
            .unwrap();
            let err = topics(&without_cert, &nsqd).await.unwrap_err();
            assert!(
                err.starts_with(
                    "UPSTREAM_ERROR: failed to query any nsqd: Get \"https://127.0.0.1:"
                ) && err.ends_with("\": remote error: tls: certificate required"),
                "{err}"
            );
        }

        #[test]
        fn unusable_tls_files_stop_start_up_with_upstreams_messages() {
            let pki = Pki::new();
            let failure = |tls: ClientTls| cluster(tls).unwrap_err().to_string();
            let missing = pki.path("missing.pem");
            assert!(
                failure(ClientTls {
                    root_ca_file: missing.clone(),
                    ..ClientTls::default()
                })
                .starts_with(&format!("failed to read TLS root CA file {missing} - ")),
            );
            let empty = pki.path("empty.pem");
            assert_eq!(
                failure(ClientTls {
                    root_ca_file: empty.clone(),
                    ..ClientTls::default()
                }),
                format!("failed to AppendCertsFromPEM {empty}")
            );
            let (cert, key) = (pki.path("client.pem"), pki.path("ca.pem"));
            assert!(
                failure(ClientTls {
                    cert: cert.clone(),
                    key: key.clone(),
                    ..ClientTls::default()
                })
                .starts_with(&format!("failed to LoadX509KeyPair {cert}, {key} - ")),
            );
            assert!(
                failure(ClientTls {
                    cert: cert.clone(),
                    key: missing.clone(),
                    ..ClientTls::default()
                })
                .starts_with(&format!("failed to LoadX509KeyPair {cert}, {missing} - ")),
            );
        }
    }
}
