//! `Settings`: the effective, validated configuration the running node reads (derived once from
//! [`crate::Options`]).

use crate::backend::DiskSettings;
use nsq_protocol::{IdentifyPolicy, Limits};
use std::path::PathBuf;
use std::time::Duration;

/// Effective configuration shared (read-only) by every part of the node.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Messages per topic/channel memory queue.
    pub mem_queue_size: usize,
    /// Default in-flight timeout.
    pub msg_timeout: Duration,
    /// Cap for IDENTIFY msg_timeout and TOUCH.
    pub max_msg_timeout: Duration,
    /// REQ clamp, DPUB limit.
    pub max_req_timeout: Duration,
    /// Node ID in message IDs (0..1023).
    pub node_id: u16,
    /// 0 = unlimited.
    pub max_channel_consumers: usize,
    /// Codec limits.
    pub limits: Limits,
    /// IDENTIFY negotiation.
    pub identify: IdentifyPolicy,
    /// Where disk queues and metadata live (`--data-path`, default the working directory).
    pub data_path: PathBuf,
    /// Disk-queue tuning.
    pub disk: DiskSettings,
    /// Deadline to read the magic and, without heartbeats, the first command.
    pub client_timeout: Duration,
    /// `--e2e-processing-latency-percentile`, sorted descending (empty: latency not tracked).
    pub e2e_percentiles: Vec<f64>,
    /// `--e2e-processing-latency-window-time`.
    pub e2e_window: Duration,
    /// TLS server configuration (`--tls-cert` + `--tls-key`), for the IDENTIFY upgrade and HTTPS.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Effective `--tls-required` (a client auth policy forces it on).
    pub tls_required: crate::options::TlsRequired,
    /// Auth servers (`--auth-http-address`); `None`: AUTH is disabled.
    pub auth: Option<std::sync::Arc<crate::auth::AuthClient>>,
}
