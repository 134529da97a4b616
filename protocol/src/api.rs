//! JSON shapes of nsqd's HTTP API (`/stats`, `/info`), shared by the daemon, nsqadmin and tests.
//! Field order is upstream's (v1.3.0); `Option` fields serialize as `null` where upstream does.

use serde::{Deserialize, Serialize};

/// `GET /stats?format=json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Server version.
    pub version: String,
    /// `OK` or `NOK - <reason>`.
    pub health: String,
    /// Unix seconds.
    pub start_time: i64,
    /// `null` when a `topic=` filter names an unknown topic.
    pub topics: Option<Vec<TopicStats>>,
    /// Absent with `include_mem=false`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub memory: Option<MemoryStats>,
    /// `null` when nothing has published.
    pub producers: Option<Vec<ClientStats>>,
}

/// One topic in `/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicStats {
    /// Name.
    pub topic_name: String,
    /// Channels, sorted by name.
    pub channels: Vec<ChannelStats>,
    /// Messages queued at the topic.
    pub depth: i64,
    /// Disk part of depth.
    pub backend_depth: i64,
    /// Messages accepted since start.
    pub message_count: u64,
    /// Bytes accepted since start.
    pub message_bytes: u64,
    /// Paused flag.
    pub paused: bool,
    /// Latency percentiles merged over channels.
    pub e2e_processing_latency: E2eLatency,
}

/// One channel in `/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// Name.
    pub channel_name: String,
    /// Deliverable messages (memory + disk).
    pub depth: i64,
    /// Disk part of depth.
    pub backend_depth: i64,
    /// Delivered, not yet finished.
    pub in_flight_count: i64,
    /// Deferred.
    pub deferred_count: i64,
    /// Messages put into the channel.
    pub message_count: u64,
    /// Explicit REQs.
    pub requeue_count: u64,
    /// Expired deadlines.
    pub timeout_count: u64,
    /// Connected consumers.
    pub client_count: i64,
    /// `null` with `include_clients=false`.
    pub clients: Option<Vec<ClientStats>>,
    /// Paused flag.
    pub paused: bool,
    /// Latency percentiles.
    pub e2e_processing_latency: E2eLatency,
}

/// One connection in `/stats` (consumer or producer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientStats {
    /// From IDENTIFY.
    pub client_id: String,
    /// From IDENTIFY.
    pub hostname: String,
    /// Always `V2`.
    pub version: String,
    /// `ip:port`.
    pub remote_address: String,
    /// 0 init, 3 subscribed, 4 closing.
    pub state: i32,
    /// Last RDY.
    pub ready_count: i64,
    /// In flight to this connection.
    pub in_flight_count: i64,
    /// Delivered to this connection.
    pub message_count: u64,
    /// FINs.
    pub finish_count: u64,
    /// REQs.
    pub requeue_count: u64,
    /// Unix seconds.
    pub connect_ts: i64,
    /// Sample rate.
    pub sample_rate: i32,
    /// Deflate negotiated.
    pub deflate: bool,
    /// Snappy negotiated.
    pub snappy: bool,
    /// From IDENTIFY.
    pub user_agent: String,
    /// Present (true) only for authenticated connections.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub authed: Option<bool>,
    /// Omitted when empty.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub auth_identity: Option<String>,
    /// Omitted when empty.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub auth_identity_url: Option<String>,
    /// Producers only; omitted when empty.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub pub_counts: Vec<PubCount>,
    /// TLS negotiated.
    pub tls: bool,
    /// Cipher suite name, empty without TLS.
    pub tls_cipher_suite: String,
    /// `TLS1.2`, …, empty without TLS.
    pub tls_version: String,
    /// ALPN protocol.
    pub tls_negotiated_protocol: String,
    /// ALPN mutual.
    pub tls_negotiated_protocol_is_mutual: bool,
}

/// Messages a producer published to one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PubCount {
    /// Topic name.
    pub topic: String,
    /// Messages.
    pub count: u64,
}

/// End-to-end processing latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct E2eLatency {
    /// Samples in the current window.
    pub count: u64,
    /// `null` when no percentiles are configured; sorted by quantile, descending.
    pub percentiles: Option<Vec<Percentile>>,
}

/// One latency quantile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Percentile {
    /// e.g. 0.99.
    pub quantile: f64,
    /// Nanoseconds (written without a fraction when whole, as Go's encoder does).
    #[serde(serialize_with = "go_float")]
    pub value: f64,
}

/// Go's `encoding/json` writes whole floats without `.0` (`505296548`, not `505296548.0`).
fn go_float<S: serde::Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        serializer.serialize_i64(*value as i64)
    } else {
        serializer.serialize_f64(*value)
    }
}

/// The `memory` object (Go runtime figures upstream; best equivalents here).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Live allocations (unknown here: 0).
    pub heap_objects: u64,
    /// Idle heap bytes.
    pub heap_idle_bytes: u64,
    /// In-use heap bytes (resident set size here).
    pub heap_in_use_bytes: u64,
    /// Released heap bytes.
    pub heap_released_bytes: u64,
    /// GC pause percentiles (no GC: 0).
    pub gc_pause_usec_100: u64,
    /// GC pause percentiles (no GC: 0).
    pub gc_pause_usec_99: u64,
    /// GC pause percentiles (no GC: 0).
    pub gc_pause_usec_95: u64,
    /// Next GC target (no GC: 0).
    pub next_gc_bytes: u64,
    /// GC runs (no GC: 0).
    pub gc_total_runs: u64,
}

/// `GET /info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// Server version.
    pub version: String,
    /// Broadcast address.
    pub broadcast_address: String,
    /// OS hostname.
    pub hostname: String,
    /// HTTP port.
    pub http_port: u16,
    /// TCP port.
    pub tcp_port: u16,
    /// Unix seconds.
    pub start_time: i64,
    /// Nanoseconds.
    pub max_heartbeat_interval: u64,
    /// Bytes.
    pub max_output_buffer_size: u64,
    /// Nanoseconds.
    pub max_output_buffer_timeout: u64,
    /// Deflate level cap.
    pub max_deflate_level: i64,
    /// Topology zone.
    pub topology_zone: String,
    /// Topology region.
    pub topology_region: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e2e_values_are_written_like_go() {
        let latency = E2eLatency {
            count: 5,
            percentiles: Some(vec![
                Percentile {
                    quantile: 0.99,
                    value: 505_296_548.0,
                },
                Percentile {
                    quantile: 0.5,
                    value: 1.5,
                },
            ]),
        };
        let json = serde_json::to_string(&latency).unwrap();
        assert_eq!(
            json,
            r#"{"count":5,"percentiles":[{"quantile":0.99,"value":505296548},{"quantile":0.5,"value":1.5}]}"#
        );
        assert_eq!(serde_json::from_str::<E2eLatency>(&json).unwrap(), latency);
        let none = E2eLatency {
            count: 0,
            percentiles: None,
        };
        assert_eq!(
            serde_json::to_string(&none).unwrap(),
            r#"{"count":0,"percentiles":null}"#
        );
    }
}
