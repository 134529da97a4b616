//! IDENTIFY: the request body, the server's negotiation rules and the JSON reply.
//!
//! Durations are milliseconds on the wire. The checks run in upstream's order (heartbeat, output
//! buffer timeout, output buffer size, sample rate, msg timeout) and produce upstream's messages.

use crate::error::{ClientError, ErrorCode};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The IDENTIFY JSON body. Every field is optional; unknown fields are ignored; `null` means absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentifyRequest {
    /// Shown in stats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Shown in stats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Shown in stats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Ask for the JSON reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feature_negotiation: Option<bool>,
    /// ms; -1 disables, 0 keeps the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<i64>,
    /// bytes; -1 unbuffered, 0 default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_buffer_size: Option<i64>,
    /// ms; -1 no timed flush, 0 default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_buffer_timeout: Option<i64>,
    /// Request a TLS upgrade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_v1: Option<bool>,
    /// Request snappy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snappy: Option<bool>,
    /// Request deflate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deflate: Option<bool>,
    /// Deflate level (≤ 0 means 6; clamped to the server's maximum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deflate_level: Option<i64>,
    /// 0–99.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<i64>,
    /// ms; 0 default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_timeout: Option<i64>,
    /// Topology hint (post-1.3.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topology_region: Option<String>,
    /// Topology hint (post-1.3.0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topology_zone: Option<String>,
}

impl IdentifyRequest {
    /// Parses the body: it must be a JSON object whose known fields have the right types.
    pub fn from_json(body: &[u8]) -> Result<Self, ClientError> {
        let failed = || ClientError::new(ErrorCode::BadBody, "IDENTIFY failed to decode JSON body");
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| failed())?;
        if !value.is_object() {
            return Err(failed());
        }
        serde_json::from_value(value).map_err(|_| failed())
    }
}

/// The server settings negotiation depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifyPolicy {
    /// Server version reported in the reply.
    pub version: String,
    /// `--max-rdy-count`.
    pub max_rdy_count: u64,
    /// Default heartbeat interval (client timeout / 2).
    pub default_heartbeat_interval: Duration,
    /// `--max-heartbeat-interval`.
    pub max_heartbeat_interval: Duration,
    /// `--output-buffer-timeout`.
    pub default_output_buffer_timeout: Duration,
    /// `--min-output-buffer-timeout`.
    pub min_output_buffer_timeout: Duration,
    /// `--max-output-buffer-timeout`.
    pub max_output_buffer_timeout: Duration,
    /// Default output buffer size (16 KiB).
    pub default_output_buffer_size: u64,
    /// `--max-output-buffer-size`.
    pub max_output_buffer_size: u64,
    /// `--msg-timeout`.
    pub default_msg_timeout: Duration,
    /// `--max-msg-timeout`.
    pub max_msg_timeout: Duration,
    /// `--max-deflate-level`.
    pub max_deflate_level: i64,
    /// `--deflate`.
    pub deflate_enabled: bool,
    /// `--snappy`.
    pub snappy_enabled: bool,
    /// The server has a certificate and key.
    pub tls_available: bool,
    /// At least one `--auth-http-address`.
    pub auth_required: bool,
    /// `--topology-region`.
    pub topology_region: String,
    /// `--topology-zone`.
    pub topology_zone: String,
}

impl Default for IdentifyPolicy {
    fn default() -> Self {
        Self {
            version: "1.3.0".to_owned(),
            max_rdy_count: 2500,
            default_heartbeat_interval: Duration::from_secs(30),
            max_heartbeat_interval: Duration::from_secs(60),
            default_output_buffer_timeout: Duration::from_millis(250),
            min_output_buffer_timeout: Duration::from_millis(25),
            max_output_buffer_timeout: Duration::from_secs(30),
            default_output_buffer_size: 16 * 1024,
            max_output_buffer_size: 64 * 1024,
            default_msg_timeout: Duration::from_secs(60),
            max_msg_timeout: Duration::from_secs(15 * 60),
            max_deflate_level: 6,
            deflate_enabled: true,
            snappy_enabled: true,
            tls_available: false,
            auth_required: false,
            topology_region: String::new(),
            topology_zone: String::new(),
        }
    }
}

/// The settings a connection runs with after IDENTIFY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Client ID (the supplied value, `""` if omitted).
    pub client_id: String,
    /// Hostname (the supplied value, `""` if omitted).
    pub hostname: String,
    /// User agent.
    pub user_agent: String,
    /// Reply with JSON rather than `OK`.
    pub feature_negotiation: bool,
    /// `None`: heartbeats disabled.
    pub heartbeat_interval: Option<Duration>,
    /// Output buffer size in bytes (1 = unbuffered).
    pub output_buffer_size: u64,
    /// `None`: no timed flush.
    pub output_buffer_timeout: Option<Duration>,
    /// TLS will be started.
    pub tls: bool,
    /// Snappy will be started.
    pub snappy: bool,
    /// Deflate will be started.
    pub deflate: bool,
    /// Deflate level to use.
    pub deflate_level: i64,
    /// 0–99.
    pub sample_rate: u8,
    /// In-flight timeout for this connection.
    pub msg_timeout: Duration,
    /// Topology hint.
    pub topology_region: String,
    /// Topology hint.
    pub topology_zone: String,
}

/// The JSON reply to IDENTIFY with `feature_negotiation` (keys in upstream's order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentifyResponse {
    /// `--max-rdy-count`.
    pub max_rdy_count: i64,
    /// Server version.
    pub version: String,
    /// `--max-msg-timeout` in ms.
    pub max_msg_timeout: i64,
    /// This connection's msg timeout in ms.
    pub msg_timeout: i64,
    /// TLS will be started.
    pub tls_v1: bool,
    /// Deflate will be started.
    pub deflate: bool,
    /// Deflate level.
    pub deflate_level: i64,
    /// `--max-deflate-level`.
    pub max_deflate_level: i64,
    /// Snappy will be started.
    pub snappy: bool,
    /// Effective sample rate.
    pub sample_rate: i64,
    /// AUTH is required.
    pub auth_required: bool,
    /// Effective output buffer size.
    pub output_buffer_size: i64,
    /// Effective output buffer timeout in ms (0 = none).
    pub output_buffer_timeout: i64,
    /// Server topology region.
    #[serde(default)]
    pub topology_region: String,
    /// Server topology zone.
    #[serde(default)]
    pub topology_zone: String,
}

fn bad_body(reason: String) -> ClientError {
    ClientError::new(ErrorCode::BadBody, format!("IDENTIFY {reason}"))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl IdentifyPolicy {
    /// Applies upstream's negotiation rules to a request.
    pub fn negotiate(&self, request: &IdentifyRequest) -> Result<Negotiated, ClientError> {
        let heartbeat_interval = match request.heartbeat_interval.unwrap_or(0) {
            -1 => None,
            0 => Some(self.default_heartbeat_interval),
            ms if ms >= 1000 && ms <= millis(self.max_heartbeat_interval) => {
                Some(Duration::from_millis(ms as u64))
            }
            ms => return Err(bad_body(format!("heartbeat interval ({ms}) is invalid"))),
        };
        let mut output_buffer_timeout = match request.output_buffer_timeout.unwrap_or(0) {
            -1 => None,
            0 => Some(self.default_output_buffer_timeout),
            ms if ms >= millis(self.min_output_buffer_timeout)
                && ms <= millis(self.max_output_buffer_timeout) =>
            {
                Some(Duration::from_millis(ms as u64))
            }
            ms => return Err(bad_body(format!("output buffer timeout ({ms}) is invalid"))),
        };
        let output_buffer_size = match request.output_buffer_size.unwrap_or(0) {
            -1 => {
                output_buffer_timeout = None;
                1
            }
            0 => self.default_output_buffer_size,
            size if size >= 64 && size as u64 <= self.max_output_buffer_size => size as u64,
            size => return Err(bad_body(format!("output buffer size ({size}) is invalid"))),
        };
        let sample_rate = match request.sample_rate.unwrap_or(0) {
            rate @ 0..=99 => rate as u8,
            rate => return Err(bad_body(format!("sample rate ({rate}) is invalid"))),
        };
        let msg_timeout = match request.msg_timeout.unwrap_or(0) {
            0 => self.default_msg_timeout,
            ms if ms >= 1000 && ms <= millis(self.max_msg_timeout) => {
                Duration::from_millis(ms as u64)
            }
            ms => return Err(bad_body(format!("msg timeout ({ms}) is invalid"))),
        };
        // Upstream looks at the upgrade fields only when negotiating features.
        let feature_negotiation = request.feature_negotiation.unwrap_or(false);
        let tls = feature_negotiation && request.tls_v1.unwrap_or(false) && self.tls_available;
        let snappy = feature_negotiation && request.snappy.unwrap_or(false) && self.snappy_enabled;
        let deflate =
            feature_negotiation && request.deflate.unwrap_or(false) && self.deflate_enabled;
        if snappy && deflate {
            return Err(ClientError::new(
                ErrorCode::IdentifyFailed,
                "cannot enable both deflate and snappy compression",
            ));
        }
        let requested_level = request
            .deflate_level
            .filter(|level| deflate && *level > 0)
            .unwrap_or(6);
        let deflate_level = requested_level.min(self.max_deflate_level);
        Ok(Negotiated {
            client_id: request.client_id.clone().unwrap_or_default(),
            hostname: request.hostname.clone().unwrap_or_default(),
            user_agent: request.user_agent.clone().unwrap_or_default(),
            feature_negotiation,
            heartbeat_interval,
            output_buffer_size,
            output_buffer_timeout,
            tls,
            snappy,
            deflate,
            deflate_level,
            sample_rate,
            msg_timeout,
            topology_region: request.topology_region.clone().unwrap_or_default(),
            topology_zone: request.topology_zone.clone().unwrap_or_default(),
        })
    }

    /// The JSON reply for a negotiated connection.
    pub fn response(&self, negotiated: &Negotiated) -> IdentifyResponse {
        IdentifyResponse {
            max_rdy_count: self.max_rdy_count as i64,
            version: self.version.clone(),
            max_msg_timeout: millis(self.max_msg_timeout),
            msg_timeout: millis(negotiated.msg_timeout),
            tls_v1: negotiated.tls,
            deflate: negotiated.deflate,
            deflate_level: negotiated.deflate_level,
            max_deflate_level: self.max_deflate_level,
            snappy: negotiated.snappy,
            sample_rate: i64::from(negotiated.sample_rate),
            auth_required: self.auth_required,
            output_buffer_size: negotiated.output_buffer_size as i64,
            output_buffer_timeout: negotiated.output_buffer_timeout.map_or(0, millis),
            topology_region: self.topology_region.clone(),
            topology_zone: self.topology_zone.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn negotiate(json: &str) -> Result<Negotiated, String> {
        let request = IdentifyRequest::from_json(json.as_bytes()).map_err(|e| e.to_frame_data())?;
        IdentifyPolicy::default()
            .negotiate(&request)
            .map_err(|e| e.to_frame_data())
    }

    #[test]
    fn default_reply_matches_upstream() {
        let policy = IdentifyPolicy::default();
        let negotiated = negotiate(r#"{"feature_negotiation":true}"#).unwrap();
        let json = serde_json::to_string(&policy.response(&negotiated)).unwrap();
        assert_eq!(
            json,
            r#"{"max_rdy_count":2500,"version":"1.3.0","max_msg_timeout":900000,"msg_timeout":60000,"tls_v1":false,"deflate":false,"deflate_level":6,"max_deflate_level":6,"snappy":false,"sample_rate":0,"auth_required":false,"output_buffer_size":16384,"output_buffer_timeout":250,"topology_region":"","topology_zone":""}"#
        );
    }

    #[test]
    fn bounds_and_errors() {
        let cases = [
            (
                r#"{"heartbeat_interval":999}"#,
                "E_BAD_BODY IDENTIFY heartbeat interval (999) is invalid",
            ),
            (
                r#"{"output_buffer_size":63}"#,
                "E_BAD_BODY IDENTIFY output buffer size (63) is invalid",
            ),
            (
                r#"{"output_buffer_timeout":10}"#,
                "E_BAD_BODY IDENTIFY output buffer timeout (10) is invalid",
            ),
            (
                r#"{"sample_rate":100}"#,
                "E_BAD_BODY IDENTIFY sample rate (100) is invalid",
            ),
            (
                r#"{"msg_timeout":999}"#,
                "E_BAD_BODY IDENTIFY msg timeout (999) is invalid",
            ),
            ("notjson", "E_BAD_BODY IDENTIFY failed to decode JSON body"),
            ("[]", "E_BAD_BODY IDENTIFY failed to decode JSON body"),
            (
                r#"{"heartbeat_interval":"1000"}"#,
                "E_BAD_BODY IDENTIFY failed to decode JSON body",
            ),
            (
                r#"{"heartbeat_interval":1000.5}"#,
                "E_BAD_BODY IDENTIFY failed to decode JSON body",
            ),
            (
                r#"{"feature_negotiation":true,"snappy":true,"deflate":true}"#,
                "E_IDENTIFY_FAILED cannot enable both deflate and snappy compression",
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(negotiate(json).unwrap_err(), expected, "{json}");
        }
        let unbuffered = negotiate(r#"{"output_buffer_size":-1}"#).unwrap();
        assert_eq!(
            (
                unbuffered.output_buffer_size,
                unbuffered.output_buffer_timeout
            ),
            (1, None)
        );
        assert_eq!(
            negotiate(r#"{"heartbeat_interval":-1}"#)
                .unwrap()
                .heartbeat_interval,
            None
        );
        assert_eq!(
            negotiate(r#"{"msg_timeout":5000,"short_id":"x","foo":null,"client_id":null}"#)
                .unwrap()
                .msg_timeout,
            Duration::from_secs(5)
        );
        let deflate =
            negotiate(r#"{"feature_negotiation":true,"deflate":true,"deflate_level":9}"#).unwrap();
        assert_eq!((deflate.deflate, deflate.deflate_level), (true, 6));
        let policy = IdentifyPolicy {
            max_deflate_level: 9,
            ..IdentifyPolicy::default()
        };
        let request = |json: &str| IdentifyRequest::from_json(json.as_bytes()).unwrap();
        let level = |json: &str| policy.negotiate(&request(json)).unwrap().deflate_level;
        assert_eq!(
            level(r#"{"feature_negotiation":true,"deflate":true,"deflate_level":3}"#),
            3
        );
        assert_eq!(
            level(r#"{"feature_negotiation":true,"deflate_level":3}"#),
            6
        );
        // Without feature negotiation nothing is upgraded and nothing conflicts.
        let plain = negotiate(r#"{"snappy":true,"deflate":true,"tls_v1":true}"#).unwrap();
        assert!(!plain.snappy && !plain.deflate && !plain.tls);
    }
}
