//! The HTTP handlers: upstream's `/api/*`, `/config/*`, `/ping`, the page shell and its assets,
//! and (with `--proxy-graphite`) graphite's `/render` through nsqadmin.
//!
//! Every `/api` answer is upstream's JSON with a `message` that is "" or
//! `WARNING: <failures of step 1>; <failures of step 2>` (partial failure); a step where every
//! call failed answers `502 UPSTREAM_ERROR: …`. Mutations need an admin (see [`AppState::is_admin`])
//! and post a notification to `--notification-http-endpoint` as upstream does.
//!
//! Beyond upstream: `GET /api/overview` (every topic with its totals and channels, and every node
//! with whether it answered) in one fan-out, for the topics list and its live charts.

use crate::assets::Assets;
use crate::cluster::{
    CallError, ChannelStats, ClientTls, ClusterInfo, Producer, Sources, TopicStats, aggregate_topic,
};
use crate::error::{Error, v1_json};
use crate::gojson;
use crate::logging::LevelControl;
use crate::options::{LogLevel, Options};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::future::join_all;
use nsq_protocol::names::is_valid_name;
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What every handler shares.
pub struct AppState {
    /// Current options (`PUT /config/*` swaps them).
    options: RwLock<Arc<Options>>,
    cluster: ClusterInfo,
    /// The OS hostname (`via` in notifications).
    hostname: String,
    log_control: Option<LevelControl>,
    assets: Assets,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("options", &self.options)
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for `options`; `log_control` changes the log level on `PUT /config/log_level`.
    pub fn new(options: Options, log_control: Option<LevelControl>) -> Result<Self, Error> {
        let cluster = ClusterInfo::new(
            options.http_client_connect_timeout,
            options.http_client_request_timeout,
            &ClientTls::from_options(&options),
        )?;
        Ok(Self {
            assets: Assets::new(options.dev_static_dir.clone()),
            options: RwLock::new(Arc::new(options)),
            cluster,
            hostname: hostname::get()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
            log_control,
        })
    }

    /// A snapshot of the current options.
    pub fn options(&self) -> Arc<Options> {
        Arc::clone(&self.options.read())
    }

    /// Upstream's ACL: everyone is an admin unless `--admin-user` is given; then only requests
    /// whose `--acl-http-header` names one of them (the header is trusted as is).
    pub fn is_admin(&self, headers: &HeaderMap) -> bool {
        let options = self.options();
        if options.admin_users.is_empty() {
            return true;
        }
        let user = headers
            .get(options.acl_http_header.as_str())
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        options.admin_users.iter().any(|admin| admin == user)
    }
}

type Shared = State<Arc<AppState>>;

/// What handlers need to know about the request beyond its body: for the ACL, notifications
/// and the `/config` CIDR check.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    remote: Option<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Self {
            remote: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0),
            headers: parts.headers.clone(),
            uri: parts.uri.clone(),
        })
    }
}

/// `{...inner, "message": …}`.
#[derive(Serialize)]
struct WithMessage<T: Serialize> {
    #[serde(flatten)]
    inner: T,
    message: String,
}

#[derive(Serialize)]
struct MessageOnly {
    message: String,
}

/// Collects the failure texts of each step, for the `message` field.
#[derive(Debug, Default)]
struct Warnings(Vec<String>);

impl Warnings {
    fn add(&mut self, errors: &[CallError]) {
        if !errors.is_empty() {
            let texts: Vec<&str> = errors.iter().map(|err| err.text.as_str()).collect();
            tracing::warn!("{}", texts.join("\n"));
            self.0.push(texts.join("\n"));
        }
    }

    fn message(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            format!("WARNING: {}", self.0.join("; "))
        }
    }
}

fn ok_json<T: Serialize>(body: &T) -> Response {
    v1_json(StatusCode::OK, body)
}

fn sources(options: &Options) -> Sources<'_> {
    Sources {
        lookupds: &options.lookupd_http_addresses,
        nsqds: &options.nsqd_http_addresses,
    }
}

/// `GET /ping`.
pub async fn ping() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "OK").into_response()
}

/// `GET /api/topics[?inactive=true]`.
pub async fn topics(
    State(state): Shared,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, Error> {
    let options = state.options();
    let mut warnings = Warnings::default();
    let found = if options.lookupd_mode() {
        state
            .cluster
            .lookupd_topics(&options.lookupd_http_addresses)
            .await?
    } else {
        state
            .cluster
            .nsqd_topics(&options.nsqd_http_addresses)
            .await?
    };
    warnings.add(&found.errors);
    if params.get("inactive").map(String::as_str) == Some("true") {
        let mut inactive: BTreeMap<String, Option<Vec<String>>> = BTreeMap::new();
        if options.lookupd_mode() {
            let lookupds = &options.lookupd_http_addresses;
            let checks = join_all(found.data.iter().map(|topic| async {
                let producers = state.cluster.lookupd_topic_producers(topic, lookupds).await;
                if producers.is_ok_and(|producers| !producers.data.is_empty()) {
                    return None;
                }
                let channels = state
                    .cluster
                    .lookupd_topic_channels(topic, lookupds)
                    .await
                    .map(|channels| channels.data)
                    .unwrap_or_default();
                Some((topic.clone(), (!channels.is_empty()).then_some(channels)))
            }))
            .await;
            inactive.extend(checks.into_iter().flatten());
        }
        return Ok(ok_json(&TopicsAnswer {
            topics: inactive,
            message: warnings.message(),
        }));
    }
    Ok(ok_json(&TopicsAnswer {
        topics: (!found.data.is_empty()).then_some(found.data),
        message: warnings.message(),
    }))
}

/// `{"topics":…,"message":…}`.
#[derive(Serialize)]
struct TopicsAnswer<T: Serialize> {
    topics: T,
    message: String,
}

/// `GET /api/topics/:topic`: the topic merged over its producers.
pub async fn topic(State(state): Shared, Path(topic): Path<String>) -> Result<Response, Error> {
    let options = state.options();
    let mut warnings = Warnings::default();
    let producers = state
        .cluster
        .topic_producers(&topic, sources(&options))
        .await?;
    warnings.add(&producers.errors);
    let stats = state
        .cluster
        .nsqd_stats(&producers.data, Some(&topic), None, false)
        .await?;
    warnings.add(&stats.errors);
    let total = aggregate_topic(&topic, stats.data.topics);
    Ok(ok_json(&WithMessage {
        inner: total,
        message: warnings.message(),
    }))
}

/// `GET /api/topics/:topic/:channel`: the channel merged over the topic's producers, with
/// clients; just `{"message":…}` when no node has the channel (as upstream).
pub async fn channel(
    State(state): Shared,
    Path((topic, channel)): Path<(String, String)>,
) -> Result<Response, Error> {
    let options = state.options();
    let mut warnings = Warnings::default();
    let producers = state
        .cluster
        .topic_producers(&topic, sources(&options))
        .await?;
    warnings.add(&producers.errors);
    let mut stats = state
        .cluster
        .nsqd_stats(&producers.data, Some(&topic), Some(&channel), true)
        .await?;
    warnings.add(&stats.errors);
    Ok(match stats.data.channels.remove(&channel) {
        Some(merged) => ok_json(&WithMessage {
            inner: merged,
            message: warnings.message(),
        }),
        None => ok_json(&MessageOnly {
            message: warnings.message(),
        }),
    })
}

/// `GET /api/nodes`.
pub async fn nodes(State(state): Shared) -> Result<Response, Error> {
    let options = state.options();
    let mut warnings = Warnings::default();
    let producers = state.cluster.producers(sources(&options)).await?;
    warnings.add(&producers.errors);
    #[derive(Serialize)]
    struct NodesAnswer {
        nodes: Option<Vec<Producer>>,
        message: String,
    }
    Ok(ok_json(&NodesAnswer {
        nodes: (!producers.data.is_empty()).then_some(producers.data),
        message: warnings.message(),
    }))
}

/// `GET /api/nodes/:node` (`:node` = `broadcast_address:http_port`).
pub async fn node(State(state): Shared, Path(node): Path<String>) -> Result<Response, Error> {
    let options = state.options();
    let mut warnings = Warnings::default();
    let producers = state.cluster.producers(sources(&options)).await?;
    warnings.add(&producers.errors);
    let Some(producer) = producers
        .data
        .into_iter()
        .find(|producer| producer.http_address() == node)
    else {
        return Err(Error::not_found("NODE_NOT_FOUND"));
    };
    let stats = state
        .cluster
        .nsqd_stats(std::slice::from_ref(&producer), None, None, true)
        .await?;
    if let Some(first) = stats.errors.first() {
        return Err(Error::Upstream(format!(
            "failed to query any nsqd: {first}"
        )));
    }
    let topics = stats.data.topics;
    let total_clients: usize = topics
        .iter()
        .flat_map(|topic| topic.channels.iter().flatten())
        .map(|channel| channel.clients.as_ref().map_or(0, Vec::len))
        .sum();
    let total_messages: i64 = topics.iter().map(|topic| topic.message_count).sum();
    #[derive(Serialize)]
    struct NodeAnswer {
        node: String,
        topics: Option<Vec<TopicStats>>,
        total_messages: i64,
        total_clients: usize,
        message: String,
    }
    Ok(ok_json(&NodeAnswer {
        node,
        topics: (!topics.is_empty()).then_some(topics),
        total_messages,
        total_clients,
        message: warnings.message(),
    }))
}

/// `GET /api/counter`: every channel's `message_count` per node.
pub async fn counter(State(state): Shared) -> Result<Response, Error> {
    let options = state.options();
    let mut warnings = Warnings::default();
    let producers = state.cluster.producers(sources(&options)).await?;
    warnings.add(&producers.errors);
    let stats = state
        .cluster
        .nsqd_stats(&producers.data, None, None, false)
        .await?;
    warnings.add(&stats.errors);
    #[derive(Serialize)]
    struct Counter {
        node: String,
        topic_name: String,
        channel_name: String,
        message_count: i64,
    }
    let mut counters: BTreeMap<String, Counter> = BTreeMap::new();
    for merged in stats.data.channels.values() {
        for per_node in merged.nodes.iter().flatten() {
            let key = format!(
                "{}:{}:{}",
                merged.topic_name, merged.channel_name, per_node.node
            );
            counters
                .entry(key)
                .or_insert_with(|| Counter {
                    node: per_node.node.clone(),
                    topic_name: merged.topic_name.clone(),
                    channel_name: merged.channel_name.clone(),
                    message_count: 0,
                })
                .message_count += per_node.message_count;
        }
    }
    #[derive(Serialize)]
    struct CounterAnswer {
        stats: BTreeMap<String, Counter>,
        message: String,
    }
    Ok(ok_json(&CounterAnswer {
        stats: counters,
        message: warnings.message(),
    }))
}

/// `GET /api/overview` (beyond upstream): every topic's totals and channels, and every node's
/// health, from one `/stats` per node.
pub async fn overview(State(state): Shared) -> Result<Response, Error> {
    let options = state.options();
    let mut warnings = Warnings::default();
    let (producers, names) = if options.lookupd_mode() {
        let (producers, names) = futures::join!(
            state
                .cluster
                .lookupd_producers(&options.lookupd_http_addresses),
            state
                .cluster
                .lookupd_topics(&options.lookupd_http_addresses)
        );
        let names = match names {
            Ok(names) => {
                warnings.add(&names.errors);
                names.data
            }
            Err(_) => Vec::new(),
        };
        (producers?, names)
    } else {
        (
            state
                .cluster
                .nsqd_producers(&options.nsqd_http_addresses)
                .await?,
            Vec::new(),
        )
    };
    warnings.add(&producers.errors);
    let stats = state
        .cluster
        .nsqd_stats(&producers.data, None, None, false)
        .await?;
    warnings.add(&stats.errors);

    let mut node_status: Vec<NodeStatus> = producers
        .data
        .iter()
        .map(|producer| {
            let addr = producer.http_address();
            let failure = stats.errors.iter().find(|err| err.addr == addr);
            NodeStatus {
                node: addr,
                hostname: producer.hostname.clone(),
                version: producer.version.clone(),
                ok: failure.is_none(),
                error: failure.map(|err| err.text.clone()).unwrap_or_default(),
            }
        })
        .collect();
    for failed in &producers.errors {
        if options.nsqd_http_addresses.contains(&failed.addr) {
            node_status.push(NodeStatus {
                node: failed.addr.clone(),
                hostname: String::new(),
                version: String::new(),
                ok: false,
                error: failed.text.clone(),
            });
        }
    }

    let mut topics: BTreeMap<String, TopicSummary> = names
        .into_iter()
        .map(|name| (name.clone(), TopicSummary::new(name)))
        .collect();
    for per_node in &stats.data.topics {
        let summary = topics
            .entry(per_node.topic_name.clone())
            .or_insert_with(|| TopicSummary::new(per_node.topic_name.clone()));
        summary.depth += per_node.depth;
        summary.memory_depth += per_node.memory_depth;
        summary.backend_depth += per_node.backend_depth;
        summary.message_count += per_node.message_count;
        summary.paused |= per_node.paused;
        summary.nodes.push(per_node.node.clone());
    }
    for merged in stats.data.channels.values() {
        let Some(summary) = topics.get_mut(&merged.topic_name) else {
            continue;
        };
        summary.in_flight_count += merged.in_flight_count;
        summary.deferred_count += merged.deferred_count;
        summary.requeue_count += merged.requeue_count;
        summary.timeout_count += merged.timeout_count;
        summary.client_count += merged.client_count;
        summary.channels.push(ChannelSummary::from(merged));
    }
    #[derive(Serialize)]
    struct Overview {
        topics: Vec<TopicSummary>,
        nodes: Vec<NodeStatus>,
        message: String,
    }
    Ok(ok_json(&Overview {
        topics: topics.into_values().collect(),
        nodes: node_status,
        message: warnings.message(),
    }))
}

/// One node's health in `/api/overview`.
#[derive(Debug, Serialize)]
struct NodeStatus {
    node: String,
    hostname: String,
    version: String,
    ok: bool,
    error: String,
}

/// One topic's totals in `/api/overview`.
#[derive(Debug, Serialize)]
struct TopicSummary {
    topic_name: String,
    depth: i64,
    memory_depth: i64,
    backend_depth: i64,
    message_count: i64,
    in_flight_count: i64,
    deferred_count: i64,
    requeue_count: i64,
    timeout_count: i64,
    client_count: i64,
    paused: bool,
    nodes: Vec<String>,
    channels: Vec<ChannelSummary>,
}

impl TopicSummary {
    fn new(topic_name: String) -> Self {
        Self {
            topic_name,
            depth: 0,
            memory_depth: 0,
            backend_depth: 0,
            message_count: 0,
            in_flight_count: 0,
            deferred_count: 0,
            requeue_count: 0,
            timeout_count: 0,
            client_count: 0,
            paused: false,
            nodes: Vec::new(),
            channels: Vec::new(),
        }
    }
}

/// One channel's totals in `/api/overview`.
#[derive(Debug, Serialize)]
struct ChannelSummary {
    channel_name: String,
    depth: i64,
    in_flight_count: i64,
    deferred_count: i64,
    requeue_count: i64,
    timeout_count: i64,
    message_count: i64,
    client_count: i64,
    paused: bool,
}

impl From<&ChannelStats> for ChannelSummary {
    fn from(merged: &ChannelStats) -> Self {
        Self {
            channel_name: merged.channel_name.clone(),
            depth: merged.depth,
            in_flight_count: merged.in_flight_count,
            deferred_count: merged.deferred_count,
            requeue_count: merged.requeue_count,
            timeout_count: merged.timeout_count,
            message_count: merged.message_count,
            client_count: merged.client_count,
            paused: merged.paused,
        }
    }
}

/// `POST /api/topics` `{"topic":"t","channel":"c"}`: create a topic (and channel).
pub async fn create_topic_channel(
    State(state): Shared,
    meta: RequestMeta,
    body: Bytes,
) -> Result<Response, Error> {
    if !state.is_admin(&meta.headers) {
        return Err(Error::forbidden());
    }
    let fields =
        gojson::decode_string_fields(&body, &["topic", "channel"]).map_err(Error::bad_request)?;
    let (topic, channel) = (&fields[0], &fields[1]);
    if !is_valid_name(topic.as_bytes()) {
        return Err(Error::bad_request("INVALID_TOPIC"));
    }
    if !channel.is_empty() && !is_valid_name(channel.as_bytes()) {
        return Err(Error::bad_request("INVALID_CHANNEL"));
    }
    let options = state.options();
    let channel = (!channel.is_empty()).then_some(channel.as_str());
    let errors = state
        .cluster
        .create_topic_channel(topic, channel, sources(&options))
        .await?;
    let mut warnings = Warnings::default();
    warnings.add(&errors);
    notify(&state, &options, &meta, "create_topic", topic, "", "");
    if let Some(channel) = channel {
        notify(
            &state,
            &options,
            &meta,
            "create_channel",
            topic,
            channel,
            "",
        );
    }
    Ok(ok_json(&MessageOnly {
        message: warnings.message(),
    }))
}

/// `POST /api/topics/:topic` `{"action":"pause"|"unpause"|"empty"}`.
pub async fn topic_action(
    State(state): Shared,
    Path(topic): Path<String>,
    meta: RequestMeta,
    body: Bytes,
) -> Result<Response, Error> {
    topic_channel_action(&state, &topic, None, &meta, &body).await
}

/// `POST /api/topics/:topic/:channel` `{"action":"pause"|"unpause"|"empty"}`.
pub async fn channel_action(
    State(state): Shared,
    Path((topic, channel)): Path<(String, String)>,
    meta: RequestMeta,
    body: Bytes,
) -> Result<Response, Error> {
    topic_channel_action(&state, &topic, Some(&channel), &meta, &body).await
}

async fn topic_channel_action(
    state: &AppState,
    topic: &str,
    channel: Option<&str>,
    meta: &RequestMeta,
    body: &[u8],
) -> Result<Response, Error> {
    if !state.is_admin(&meta.headers) {
        return Err(Error::forbidden());
    }
    let fields = gojson::decode_string_fields(body, &["action"]).map_err(Error::bad_request)?;
    let action = fields[0].as_str();
    if !matches!(action, "pause" | "unpause" | "empty") {
        return Err(Error::bad_request("INVALID_ACTION"));
    }
    let options = state.options();
    let result = state
        .cluster
        .topic_channel_action(topic, channel, action, sources(&options))
        .await;
    // Upstream notifies before looking at the outcome.
    match channel {
        Some(channel) => notify(
            state,
            &options,
            meta,
            &format!("{action}_channel"),
            topic,
            channel,
            "",
        ),
        None => notify(
            state,
            &options,
            meta,
            &format!("{action}_topic"),
            topic,
            "",
            "",
        ),
    }
    let mut warnings = Warnings::default();
    warnings.add(&result?);
    Ok(ok_json(&MessageOnly {
        message: warnings.message(),
    }))
}

/// `DELETE /api/topics/:topic`.
pub async fn delete_topic(
    State(state): Shared,
    Path(topic): Path<String>,
    meta: RequestMeta,
) -> Result<Response, Error> {
    if !state.is_admin(&meta.headers) {
        return Err(Error::forbidden());
    }
    let options = state.options();
    let errors = state
        .cluster
        .delete_topic(&topic, sources(&options))
        .await?;
    let mut warnings = Warnings::default();
    warnings.add(&errors);
    notify(&state, &options, &meta, "delete_topic", &topic, "", "");
    Ok(ok_json(&MessageOnly {
        message: warnings.message(),
    }))
}

/// `DELETE /api/topics/:topic/:channel`.
pub async fn delete_channel(
    State(state): Shared,
    Path((topic, channel)): Path<(String, String)>,
    meta: RequestMeta,
) -> Result<Response, Error> {
    if !state.is_admin(&meta.headers) {
        return Err(Error::forbidden());
    }
    let options = state.options();
    let errors = state
        .cluster
        .delete_channel(&topic, &channel, sources(&options))
        .await?;
    let mut warnings = Warnings::default();
    warnings.add(&errors);
    notify(
        &state,
        &options,
        &meta,
        "delete_channel",
        &topic,
        &channel,
        "",
    );
    Ok(ok_json(&MessageOnly {
        message: warnings.message(),
    }))
}

/// `DELETE /api/nodes/:node` `{"topic":"t"}`: tombstone the node for the topic on every
/// lookupd and delete the topic on the node.
pub async fn tombstone_node_for_topic(
    State(state): Shared,
    Path(node): Path<String>,
    meta: RequestMeta,
    body: Bytes,
) -> Result<Response, Error> {
    if !state.is_admin(&meta.headers) {
        return Err(Error::forbidden());
    }
    let fields = gojson::decode_string_fields(&body, &["topic"])
        .map_err(|_| Error::bad_request("INVALID_BODY"))?;
    let topic = &fields[0];
    if !is_valid_name(topic.as_bytes()) {
        return Err(Error::bad_request("INVALID_TOPIC"));
    }
    let options = state.options();
    let errors = state
        .cluster
        .tombstone_node_for_topic(topic, &node, &options.lookupd_http_addresses)
        .await?;
    let mut warnings = Warnings::default();
    warnings.add(&errors);
    notify(
        &state,
        &options,
        &meta,
        "tombstone_topic_producer",
        topic,
        "",
        &node,
    );
    Ok(ok_json(&MessageOnly {
        message: warnings.message(),
    }))
}

/// `GET /api/graphite?metric=rate&target=T`: a rate from graphite; 500 without graphite.
pub async fn graphite(
    State(state): Shared,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, Error> {
    if params.get("metric").map(String::as_str) != Some("rate") {
        return Err(Error::bad_request("INVALID_ARG_METRIC"));
    }
    let Some(target) = params.get("target") else {
        return Err(Error::bad_request("INVALID_ARG_TARGET"));
    };
    let options = state.options();
    if options.graphite_url.is_empty() {
        tracing::error!("graphite request failed - no --graphite-url");
        return Err(Error::internal());
    }
    let interval = options.statsd_interval.as_secs().max(1);
    let url = format!(
        "{}/render?{}",
        options.graphite_url.trim_end_matches('/'),
        crate::cluster::encode_query(&[
            ("format", "json"),
            ("from", &format!("-{}sec", interval * 2)),
            ("target", target),
            ("until", &format!("-{interval}sec")),
        ])
    );
    tracing::info!("GRAPHITE: {url}");
    #[derive(serde::Deserialize)]
    struct Series {
        datapoints: Vec<Vec<Option<f64>>>,
    }
    let series: Vec<Series> = state
        .cluster
        .get_json(&options.graphite_url, url)
        .await
        .map_err(|err| {
            tracing::error!("graphite request failed - {err}");
            Error::internal()
        })?;
    let rate = series
        .first()
        .and_then(|series| series.datapoints.first())
        .and_then(|point| point.first().copied().flatten())
        .ok_or_else(Error::internal)?;
    let rate = if rate < 0.0 {
        "N/A".to_owned()
    } else {
        format!("{:.2}", rate / interval as f64)
    };
    #[derive(Serialize)]
    struct RateAnswer {
        rate: String,
    }
    Ok(ok_json(&RateAnswer { rate }))
}

/// Request headers passed on to graphite by the `/render` proxy (hop-by-hop and
/// content-negotiation headers the proxy handles itself are left out).
const PROXIED_REQUEST_HEADERS: [header::HeaderName; 7] = [
    header::ACCEPT,
    header::ACCEPT_LANGUAGE,
    header::USER_AGENT,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::CACHE_CONTROL,
    header::AUTHORIZATION,
];

/// Response headers passed back from graphite.
const PROXIED_RESPONSE_HEADERS: [header::HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::LAST_MODIFIED,
    header::ETAG,
    header::PRAGMA,
    header::CONTENT_DISPOSITION,
];

/// `GET <base>/render` with `--proxy-graphite`: a reverse proxy to `<graphite-url>/render`
/// (same query string; the status, type and body come back as graphite sent them, the body
/// streamed). User and password in `--graphite-url` become Basic auth, as upstream does.
/// Graphite unreachable: `502` with an empty body, like Go's reverse proxy.
pub async fn graphite_render(State(state): Shared, uri: Uri, meta: RequestMeta) -> Response {
    let options = state.options();
    let bad_gateway = |reason: String| {
        tracing::error!("http: proxy error: {reason}");
        StatusCode::BAD_GATEWAY.into_response()
    };
    let mut target = format!("{}/render", options.graphite_url.trim_end_matches('/'));
    if let Some(query) = uri.query() {
        target.push('?');
        target.push_str(query);
    }
    let mut url = match reqwest::Url::parse(&target) {
        Ok(url) => url,
        Err(err) => return bad_gateway(format!("{target}: {err}")),
    };
    let credentials = (!url.username().is_empty() || url.password().is_some()).then(|| {
        let decode = |text: &str| percent_decode(text);
        (decode(url.username()), url.password().map(decode))
    });
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut request = state.cluster.plain_client().get(url);
    for name in PROXIED_REQUEST_HEADERS {
        if name == header::AUTHORIZATION && credentials.is_some() {
            continue;
        }
        for value in meta.headers.get_all(&name) {
            request = request.header(&name, value);
        }
    }
    if let Some(remote) = meta.remote {
        request = request.header("x-forwarded-for", remote.ip().to_string());
    }
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, password);
    }
    let upstream = match request.send().await {
        Ok(upstream) => upstream,
        Err(err) => return bad_gateway(crate::cluster::error_chain(&err)),
    };
    let mut response = Response::builder().status(upstream.status().as_u16());
    for name in PROXIED_RESPONSE_HEADERS {
        for value in upstream.headers().get_all(&name) {
            response = response.header(&name, value);
        }
    }
    let body = futures::stream::unfold(Some(upstream), |upstream| async move {
        let mut upstream = upstream?;
        match upstream.chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(upstream))),
            Ok(None) => None,
            Err(err) => {
                tracing::error!("http: proxy error: {}", crate::cluster::error_chain(&err));
                Some((Err(err), None))
            }
        }
    });
    response
        .body(axum::body::Body::from_stream(body))
        .unwrap_or_else(|err| bad_gateway(err.to_string()))
}

/// `%XX` escapes decoded (the user info of a URL), lossily as UTF-8.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET|PUT /config/:opt`, only from `--allow-config-from-cidr`.
pub async fn config(
    State(state): Shared,
    Path(opt): Path<String>,
    method: Method,
    meta: RequestMeta,
    body: Bytes,
) -> Result<Response, Error> {
    let options = state.options();
    if !options.allow_config_from_cidr.is_empty() {
        let cidr =
            Cidr::from_str(&options.allow_config_from_cidr).map_err(|_| Error::internal())?;
        let Some(remote) = meta.remote else {
            tracing::error!("failed to parse RemoteAddr");
            return Err(Error::bad_request("INVALID_REMOTE_ADDR"));
        };
        if !cidr.contains(remote.ip()) {
            return Err(Error::forbidden());
        }
    }
    if method == Method::PUT {
        if body.is_empty() || body.len() > 1024 * 1024 {
            return Err(Error::api(StatusCode::PAYLOAD_TOO_LARGE, "INVALID_VALUE"));
        }
        let mut updated = Options::clone(&options);
        match opt.as_str() {
            "nsqlookupd_http_addresses" => {
                updated.lookupd_http_addresses =
                    serde_json::from_slice::<Option<Vec<String>>>(&body)
                        .map_err(|_| Error::bad_request("INVALID_VALUE"))?
                        .unwrap_or_default();
            }
            "log_level" => {
                let text = String::from_utf8_lossy(&body);
                let level = LogLevel::from_str(text.trim())
                    .map_err(|_| Error::bad_request("INVALID_VALUE"))?;
                updated.log_level = level;
                if let Some(control) = &state.log_control {
                    control(level);
                }
            }
            _ => return Err(Error::bad_request("INVALID_OPTION")),
        }
        *state.options.write() = Arc::new(updated);
    }
    let options = state.options();
    let value = config_value(&options, &opt).ok_or_else(|| Error::bad_request("INVALID_OPTION"))?;
    Ok(ok_json(&value))
}

/// An option by its config-file name, as `GET /config/:opt` shows it (durations in ns).
fn config_value(options: &Options, name: &str) -> Option<serde_json::Value> {
    use serde_json::json;
    let nanos = |duration: std::time::Duration| json!(duration.as_nanos() as u64);
    Some(match name {
        "log_level" => json!(options.log_level.number()),
        "log_prefix" => json!(options.log_prefix),
        "http_address" => json!(options.http_address),
        "base_path" => json!(options.base_path),
        "nsqlookupd_http_addresses" => json!(options.lookupd_http_addresses),
        "nsqd_http_addresses" => json!(options.nsqd_http_addresses),
        "graphite_url" => json!(options.graphite_url),
        "proxy_graphite" => json!(options.proxy_graphite),
        "statsd_prefix" => json!(options.statsd_prefix),
        "statsd_counter_format" => json!(options.statsd_counter_format),
        "statsd_gauge_format" => json!(options.statsd_gauge_format),
        "statsd_interval" => nanos(options.statsd_interval),
        "notification_http_endpoint" => json!(options.notification_http_endpoint),
        "http_client_connect_timeout" => nanos(options.http_client_connect_timeout),
        "http_client_request_timeout" => nanos(options.http_client_request_timeout),
        "http_client_tls_insecure_skip_verify" => {
            json!(options.http_client_tls_insecure_skip_verify)
        }
        "http_client_tls_root_ca_file" => json!(options.http_client_tls_root_ca_file),
        "http_client_tls_cert" => json!(options.http_client_tls_cert),
        "http_client_tls_key" => json!(options.http_client_tls_key),
        "allow_config_from_cidr" => json!(options.allow_config_from_cidr),
        "acl_http_header" => json!(options.acl_http_header),
        "admin_users" => json!(options.admin_users),
        "dev_static_dir" => json!(
            options
                .dev_static_dir
                .as_ref()
                .map(|dir| dir.display().to_string())
                .unwrap_or_default()
        ),
        _ => return None,
    })
}

/// The page shell, for every page route. Its config carries what upstream templates into the
/// page: version, ACL, lookupds, and the graphite settings the page builds graph URLs from
/// (`graphite_url` is where the browser fetches `/render`: the graphite URL itself, or the
/// `--base-path` prefix when nsqadmin proxies graphite).
pub async fn index(State(state): Shared, meta: RequestMeta) -> Response {
    let options = state.options();
    let graphite_url = if options.proxy_graphite {
        base_prefix(&options).to_owned()
    } else {
        options.graphite_url.trim_end_matches('/').to_owned()
    };
    let config = serde_json::json!({
        "version": crate::VERSION,
        "base_path": base_prefix(&options),
        "is_admin": state.is_admin(&meta.headers),
        "lookupd_mode": options.lookupd_mode(),
        "nsqlookupd": options.lookupd_http_addresses,
        "nsqd": options.nsqd_http_addresses,
        "graphite_enabled": !options.graphite_url.is_empty(),
        "graphite_url": graphite_url,
        "proxy_graphite": options.proxy_graphite,
        "statsd_interval": options.statsd_interval.as_secs(),
        "statsd_prefix": options.statsd_prefix,
        "statsd_counter_format": options.statsd_counter_format,
        "statsd_gauge_format": options.statsd_gauge_format,
    });
    // `<` never appears raw, so the JSON cannot close the script element it sits in.
    let config = config.to_string().replace('<', "\\u003c");
    let html = state.assets.index(base_prefix(&options), &config);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response()
}

/// `--base-path` as a prefix: "" at the root, else `/path`.
pub fn base_prefix(options: &Options) -> &str {
    if options.base_path == "/" {
        ""
    } else {
        &options.base_path
    }
}

/// `GET /static/:asset` and `/fonts/:asset`.
pub async fn static_asset(
    State(state): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(asset) = state.assets.get(&name) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "NOT_FOUND",
        )
            .into_response();
    };
    let etag = HeaderValue::from_str(&asset.etag).unwrap_or(HeaderValue::from_static("\"0\""));
    let cache = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag),
    ];
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag.as_bytes() == asset.etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.bytes.into_owned(),
    )
        .into_response()
}

/// Unknown path: `404 {"message":"NOT_FOUND"}`.
pub async fn not_found() -> Error {
    Error::not_found("NOT_FOUND")
}

/// The answer to a method a path does not have (or `OPTIONS`), with the `Allow` list.
pub fn method_not_allowed(
    allow: &'static str,
) -> impl Fn(Method) -> std::future::Ready<Response> + Clone {
    move |method: Method| {
        let allow_header = (header::ALLOW, HeaderValue::from_static(allow));
        std::future::ready(if method == Method::OPTIONS {
            (StatusCode::OK, [allow_header]).into_response()
        } else {
            let mut response =
                Error::api(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED").into_response();
            response
                .headers_mut()
                .insert(allow_header.0, allow_header.1);
            response
        })
    }
}

/// An admin action, as posted to `--notification-http-endpoint` (upstream's key order).
#[derive(Debug, Serialize)]
struct AdminAction {
    action: String,
    topic: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    channel: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    node: String,
    timestamp: i64,
    #[serde(skip_serializing_if = "String::is_empty")]
    user: String,
    remote_ip: String,
    user_agent: String,
    url: String,
    via: String,
}

/// Posts the action to `--notification-http-endpoint` in the background (no retries; failures
/// are logged), as upstream does.
fn notify(
    state: &AppState,
    options: &Options,
    meta: &RequestMeta,
    action: &str,
    topic: &str,
    channel: &str,
    node: &str,
) {
    if options.notification_http_endpoint.is_empty() {
        return;
    }
    let header = |name: header::HeaderName| {
        meta.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let scheme = if meta
        .headers
        .get("x-scheme")
        .is_some_and(|value| value.as_bytes() == b"https")
    {
        "https"
    } else {
        "http"
    };
    let host = match header(header::HOST) {
        host if !host.is_empty() => host,
        _ => meta
            .uri
            .authority()
            .map(|authority| authority.to_string())
            .unwrap_or_default(),
    };
    let path_and_query = meta
        .uri
        .path_and_query()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| meta.uri.path().to_owned());
    let document = AdminAction {
        action: action.to_owned(),
        topic: topic.to_owned(),
        channel: channel.to_owned(),
        node: node.to_owned(),
        timestamp: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64,
        user: basic_auth_user(&header(header::AUTHORIZATION)).unwrap_or_default(),
        remote_ip: meta.remote.map(|addr| addr.to_string()).unwrap_or_default(),
        user_agent: header(header::USER_AGENT),
        url: format!("{scheme}://{host}{path_and_query}"),
        via: state.hostname.clone(),
    };
    let endpoint = options.notification_http_endpoint.clone();
    let client = state.cluster.plain_client().clone();
    tokio::spawn(async move {
        let sent = client
            .post(&endpoint)
            .header(header::CONTENT_TYPE, "application/json")
            .json(&document)
            .send()
            .await;
        if let Err(err) = sent {
            tracing::error!("failed to POST notification - {err}");
        }
    });
}

/// The user name of an `Authorization: Basic …` header.
fn basic_auth_user(authorization: &str) -> Option<String> {
    let encoded = authorization.strip_prefix("Basic ")?.trim();
    let decoded = base64_decode(encoded)?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, _password) = text.split_once(':')?;
    Some(user.to_owned())
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for byte in text.bytes().filter(|byte| *byte != b'=') {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

/// An IP network (`127.0.0.1/8`, `::1/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let invalid = || format!("invalid CIDR address: {text}");
        let (address, prefix) = text.split_once('/').ok_or_else(invalid)?;
        let network: IpAddr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(invalid());
        }
        Ok(Self { network, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is inside the network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let loopback: Cidr = "127.0.0.1/8".parse().unwrap();
        assert!(loopback.contains("127.9.9.9".parse().unwrap()));
        assert!(loopback.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!loopback.contains("10.0.0.1".parse().unwrap()));
        assert!(!loopback.contains("::1".parse().unwrap()));
        let everything: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "::1/128".parse().unwrap();
        assert!(v6.contains("::1".parse().unwrap()));
        assert!("127.0.0.1".parse::<Cidr>().is_err());
        assert!("127.0.0.1/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn basic_auth() {
        assert_eq!(
            basic_auth_user("Basic YWxpY2U6c2VjcmV0").as_deref(),
            Some("alice")
        );
        assert_eq!(basic_auth_user("Bearer x"), None);
    }

    #[test]
    fn warnings_join_steps_with_semicolons() {
        let mut warnings = Warnings::default();
        assert_eq!(warnings.message(), "");
        let err = |text: &str| CallError {
            addr: "a".to_owned(),
            text: text.to_owned(),
        };
        warnings.add(&[err("one"), err("two")]);
        warnings.add(&[]);
        warnings.add(&[err("three")]);
        assert_eq!(warnings.message(), "WARNING: one\ntwo; three");
    }
}
