//! Command-line flags, with upstream nsqd's names, defaults and syntax (Go durations such as
//! `250ms` or `1m0s`, single-dash long flags, `--flag=false` for booleans, `--config` TOML files).

use clap::Parser;
use std::ffi::OsString;
use std::time::Duration;

/// nsqd: the NSQ node daemon.
#[derive(Debug, Clone, Parser)]
#[command(name = "nsqd", disable_version_flag = true, args_override_self = true)]
pub struct Options {
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
    /// Path to a TOML config file (keys are flag names with `_`).
    #[arg(long)]
    pub config: Option<String>,
    /// Log level: debug, info, warn, error or fatal.
    #[arg(long, default_value = "info", value_parser = parse_log_level)]
    pub log_level: String,
    /// Log message prefix.
    #[arg(long, default_value = "[nsqd] ")]
    pub log_prefix: String,
    /// Unique part of message IDs, 0..1023 (default: derived from the hostname).
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..1024))]
    pub node_id: Option<u16>,
    /// <addr>:<port> to listen on for TCP clients.
    #[arg(long, default_value = "0.0.0.0:4150")]
    pub tcp_address: String,
    /// <addr>:<port> to listen on for HTTP clients ("" disables).
    #[arg(long, default_value = "0.0.0.0:4151")]
    pub http_address: String,
    /// Address registered with lookupd (default: the OS hostname).
    #[arg(long)]
    pub broadcast_address: Option<String>,
    /// TCP port registered with lookupd (default: the TCP listening port).
    #[arg(long, default_value_t = 0)]
    pub broadcast_tcp_port: u16,
    /// HTTP port registered with lookupd (default: the HTTP listening port).
    #[arg(long, default_value_t = 0)]
    pub broadcast_http_port: u16,
    /// lookupd TCP address to register with (repeatable).
    #[arg(long = "lookupd-tcp-address")]
    pub lookupd_tcp_addresses: Vec<String>,
    /// Directory for node data (default: the working directory).
    #[arg(long, default_value = "")]
    pub data_path: String,
    /// Bytes per disk-queue file before rolling to the next.
    #[arg(long, default_value_t = 104_857_600)]
    pub max_bytes_per_file: u64,
    /// Disk-queue reads + writes between syncs (fsync + metadata).
    #[arg(long, default_value_t = 2500)]
    pub sync_every: u64,
    /// Longest time between disk-queue syncs while there are reads or writes.
    #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
    pub sync_timeout: Duration,
    /// Messages kept in memory per topic and per channel.
    #[arg(long, default_value_t = 10_000)]
    pub mem_queue_size: usize,
    /// Durable mode (nsq-rs addition): PUB, MPUB and DPUB are acknowledged only after an fsync
    /// covers their messages (concurrent publishers share one fsync), and messages in flight or
    /// deferred survive a crash (kill -9): every acknowledged message not yet FINished is
    /// delivered again after restart. Every message passes through the disk queue;
    /// --mem-queue-size then only bounds read-ahead.
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub durable: bool,
    /// Default time to wait for a FIN before requeueing.
    #[arg(long, default_value = "1m0s", value_parser = parse_go_duration)]
    pub msg_timeout: Duration,
    /// Maximum msg timeout a client may negotiate (and TOUCH may reach).
    #[arg(long, default_value = "15m0s", value_parser = parse_go_duration)]
    pub max_msg_timeout: Duration,
    /// Maximum size of one message body in bytes.
    #[arg(long, default_value_t = 1_048_576)]
    pub max_msg_size: u64,
    /// Maximum size of one command body in bytes (MPUB, IDENTIFY, AUTH).
    #[arg(long, default_value_t = 5_242_880)]
    pub max_body_size: u64,
    /// Maximum REQ delay (and DPUB deferral).
    #[arg(long, default_value = "1h0m0s", value_parser = parse_go_duration)]
    pub max_req_timeout: Duration,
    /// Maximum heartbeat interval a client may negotiate.
    #[arg(long, default_value = "1m0s", value_parser = parse_go_duration)]
    pub max_heartbeat_interval: Duration,
    /// Maximum RDY count per connection.
    #[arg(long, default_value_t = 2500)]
    pub max_rdy_count: u64,
    /// Maximum output buffer size a client may negotiate.
    #[arg(long, default_value_t = 65_536)]
    pub max_output_buffer_size: u64,
    /// Maximum output buffer timeout a client may negotiate.
    #[arg(long, default_value = "30s", value_parser = parse_go_duration)]
    pub max_output_buffer_timeout: Duration,
    /// Minimum output buffer timeout a client may negotiate.
    #[arg(long, default_value = "25ms", value_parser = parse_go_duration)]
    pub min_output_buffer_timeout: Duration,
    /// Default output buffer timeout.
    #[arg(long, default_value = "250ms", value_parser = parse_go_duration)]
    pub output_buffer_timeout: Duration,
    /// Maximum consumers per channel on this node (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    pub max_channel_consumers: usize,
    /// Maximum deflate level a client may negotiate (1-9; reported in IDENTIFY and /info).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i64).range(1..=9))]
    pub max_deflate_level: i64,
    /// How long a clean shutdown may take before the process gives up (nsq-rs addition).
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    pub shutdown_timeout: Duration,
    /// UDP <addr>:<port> of a statsd daemon to push stats to ("" disables).
    #[arg(long, default_value = "")]
    pub statsd_address: String,
    /// Prefix of statsd keys (`%s` becomes the host key).
    #[arg(long, default_value = "nsq.%s")]
    pub statsd_prefix: String,
    /// Period of statsd pushes.
    #[arg(long, default_value = "1m0s", value_parser = parse_go_duration)]
    pub statsd_interval: Duration,
    /// Push memory stats to statsd.
    #[arg(long, default_value = "true", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub statsd_mem_stats: bool,
    /// Largest statsd UDP datagram.
    #[arg(long, default_value_t = 508)]
    pub statsd_udp_packet_size: usize,
    /// Leave `#ephemeral` topics and channels out of statsd.
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub statsd_exclude_ephemeral: bool,
    /// Message processing time percentile to track, in (0,1] (repeatable, or comma-separated).
    #[arg(long = "e2e-processing-latency-percentile", value_delimiter = ',')]
    pub e2e_processing_latency_percentiles: Vec<f64>,
    /// Window over which the e2e latency percentiles are computed.
    #[arg(long, default_value = "10m0s", value_parser = parse_go_duration)]
    pub e2e_processing_latency_window_time: Duration,
    /// <addr>:<port> to listen on for HTTPS clients (only with --tls-cert and --tls-key; "" disables).
    #[arg(long, default_value = "0.0.0.0:4152")]
    pub https_address: String,
    /// Path to a PEM certificate file (with --tls-key: enables TLS and HTTPS).
    #[arg(long, default_value = "")]
    pub tls_cert: String,
    /// Path to a PEM private key file.
    #[arg(long, default_value = "")]
    pub tls_key: String,
    /// Path to a PEM CA bundle: verifies client certificates (require-verify) and is trusted by
    /// outgoing HTTPS calls (auth servers).
    #[arg(long, default_value = "")]
    pub tls_root_ca_file: String,
    /// Client certificate policy: "" (none), require, require-verify (any policy forces
    /// --tls-required=true).
    #[arg(long, default_value = "")]
    pub tls_client_auth_policy: String,
    /// Require TLS: false, true, or tcp-https (TCP requires TLS, plain HTTP still served).
    #[arg(long, default_value = "false", num_args = 0..=1, default_missing_value = "true", value_parser = parse_tls_required)]
    pub tls_required: TlsRequired,
    /// Minimum TLS version: tls1.0, tls1.1, tls1.2, tls1.3 (rustls supports TLS 1.2 and 1.3
    /// only, so tls1.0 and tls1.1 mean TLS 1.2).
    #[arg(long, default_value = "tls1.0", value_parser = parse_tls_min_version)]
    pub tls_min_version: String,
    /// Allow clients to negotiate snappy compression.
    #[arg(long, default_value = "true", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub snappy: bool,
    /// Allow clients to negotiate deflate compression.
    #[arg(long, default_value = "true", num_args = 0..=1, default_missing_value = "true", value_parser = parse_go_bool)]
    pub deflate: bool,
    /// Auth server <addr>:<port> or full URL to query for AUTH (repeatable).
    #[arg(long = "auth-http-address")]
    pub auth_http_addresses: Vec<String>,
    /// HTTP method of auth server requests: get or post.
    #[arg(long, default_value = "get")]
    pub auth_http_request_method: String,
    /// Timeout for outgoing HTTP connections (auth servers).
    #[arg(long, default_value = "2s", value_parser = parse_go_duration)]
    pub http_client_connect_timeout: Duration,
    /// Timeout for outgoing HTTP requests (auth servers).
    #[arg(long, default_value = "5s", value_parser = parse_go_duration)]
    pub http_client_request_timeout: Duration,
}

/// Go's `strconv.ParseBool` (what `--flag=value` accepts for booleans).
pub fn parse_go_bool(raw: &str) -> Result<bool, String> {
    match raw {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!("parse error: invalid boolean value {other:?}")),
    }
}

/// `--tls-required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsRequired {
    /// `false`: TLS is optional.
    #[default]
    No,
    /// `tcp-https`: TCP clients must upgrade; plain HTTP is still served.
    TcpHttps,
    /// `true`: TCP clients must upgrade; plain HTTP answers 403 `TLS_REQUIRED`.
    Yes,
}

impl TlsRequired {
    /// The number `/config/tls_required` shows (0 no, 1 tcp-https, 2 yes).
    pub fn config_value(self) -> i64 {
        match self {
            TlsRequired::No => 0,
            TlsRequired::TcpHttps => 1,
            TlsRequired::Yes => 2,
        }
    }
}

/// Upstream's `--tls-required` syntax: `tcp-https` or a Go boolean (case-insensitive).
pub fn parse_tls_required(raw: &str) -> Result<TlsRequired, String> {
    let lower = raw.to_ascii_lowercase();
    if lower == "tcp-https" {
        return Ok(TlsRequired::TcpHttps);
    }
    if parse_go_bool(&lower)? {
        Ok(TlsRequired::Yes)
    } else {
        Ok(TlsRequired::No)
    }
}

/// `--tls-min-version`: `tls1.0` … `tls1.3` (case-insensitive; `ssl3.0` is refused).
pub fn parse_tls_min_version(raw: &str) -> Result<String, String> {
    match raw.to_ascii_lowercase().as_str() {
        "" => Ok("tls1.0".to_owned()),
        version @ ("tls1.0" | "tls1.1" | "tls1.2" | "tls1.3") => Ok(version.to_owned()),
        _ => Err(format!("unknown tlsVersionOption {raw:?}")),
    }
}

impl Default for Options {
    fn default() -> Self {
        Self::parse_from(["nsqd"])
    }
}

/// The line `--version` prints.
pub fn version_line(name: &str) -> String {
    format!(
        "{name} v{} (built w/rust-{})",
        nsq_protocol::NSQ_VERSION,
        env!("NSQ_RUSTC_VERSION")
    )
}

fn parse_log_level(raw: &str) -> Result<String, String> {
    match raw.to_ascii_lowercase().as_str() {
        level @ ("debug" | "info" | "warn" | "error" | "fatal") => Ok(level.to_owned()),
        other => Err(format!("invalid log level {other:?}")),
    }
}

/// Parses Go's duration syntax (`300ms`, `1.5s`, `1m0s`, `2h45m`, `0`).
pub fn parse_go_duration(raw: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {raw:?}");
    if raw == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = raw.strip_prefix('+').unwrap_or(raw);
    if rest.is_empty() || rest.starts_with('-') {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let value: f64 = rest[..number_len].parse().map_err(|_| invalid())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        total += value * nanos_per_unit;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Turns Go-style arguments into ones clap understands: `-flag` → `--flag`, and prepends the
/// flags from a `--config` TOML file so that the command line overrides them.
pub fn normalize_args(
    args: impl IntoIterator<Item = OsString>,
    config_key_to_flag: fn(&str) -> String,
) -> Result<Vec<OsString>, String> {
    let mut args: Vec<OsString> = args
        .into_iter()
        .enumerate()
        .map(|(index, arg)| {
            let Some(text) = arg.to_str() else { return arg };
            let single_dash_long = text.len() > 2
                && text.starts_with('-')
                && !text.starts_with("--")
                && text[1..].starts_with(|c: char| c.is_ascii_alphabetic());
            if index > 0 && single_dash_long {
                OsString::from(format!("-{text}"))
            } else {
                arg
            }
        })
        .collect();
    let config_path = args.iter().enumerate().find_map(|(index, arg)| {
        let text = arg.to_str()?;
        if let Some(path) = text.strip_prefix("--config=") {
            Some(path.to_owned())
        } else if text == "--config" {
            args.get(index + 1)?.to_str().map(str::to_owned)
        } else {
            None
        }
    });
    if let Some(path) = config_path {
        let text = std::fs::read_to_string(&path)
            .map_err(|err| format!("failed to load config file {path} - {err}"))?;
        let table: toml::Table = text
            .parse()
            .map_err(|err| format!("failed to parse config file {path} - {err}"))?;
        let mut from_file = Vec::new();
        for (key, value) in table {
            let flag = config_key_to_flag(&key);
            let values = match value {
                toml::Value::Array(items) => items,
                single => vec![single],
            };
            for item in values {
                let text = match item {
                    toml::Value::String(text) => text,
                    other => other.to_string(),
                };
                from_file.push(OsString::from(format!("--{flag}={text}")));
            }
        }
        let program = args.remove(0);
        args = std::iter::once(program)
            .chain(from_file)
            .chain(args)
            .collect();
    }
    Ok(args)
}

/// Maps nsqd's config-file keys to flag names.
pub fn nsqd_config_key_to_flag(key: &str) -> String {
    match key {
        "id" => "node-id".to_owned(),
        "nsqlookupd_tcp_addresses" => "lookupd-tcp-address".to_owned(),
        "auth_http_addresses" => "auth-http-address".to_owned(),
        "e2e_processing_latency_percentiles" => "e2e-processing-latency-percentile".to_owned(),
        other => other.replace('_', "-"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (raw, expected) in [
            ("250ms", Duration::from_millis(250)),
            ("1m0s", Duration::from_secs(60)),
            ("1h0m0s", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
            ("2h45m", Duration::from_secs(9900)),
            ("0", Duration::ZERO),
            ("100us", Duration::from_micros(100)),
        ] {
            assert_eq!(parse_go_duration(raw), Ok(expected), "{raw}");
        }
        for bad in ["", "10", "1x", "-1s", "s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_style_flags_and_defaults() {
        let args = normalize_args(
            [
                "nsqd",
                "-tcp-address",
                "127.0.0.1:0",
                "-mem-queue-size=5",
                "--msg-timeout=7s",
            ]
            .map(OsString::from),
            nsqd_config_key_to_flag,
        )
        .unwrap();
        let options = Options::try_parse_from(args).unwrap();
        assert_eq!(options.tcp_address, "127.0.0.1:0");
        assert_eq!(options.mem_queue_size, 5);
        assert_eq!(options.msg_timeout, Duration::from_secs(7));
        assert_eq!(options.max_rdy_count, 2500);
        assert_eq!(options.max_req_timeout, Duration::from_secs(3600));
        assert!(Options::try_parse_from(["nsqd", "--bogus"]).is_err());
    }

    #[test]
    fn config_file_is_overridden_by_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nsqd.toml");
        std::fs::write(
            &path,
            "tcp_address = \"127.0.0.1:4150\"\nmax_rdy_count = 33\nmsg_timeout = \"7s\"\nid = 12\n",
        )
        .unwrap();
        let args = normalize_args(
            [
                "nsqd".to_owned(),
                format!("--config={}", path.display()),
                "--max-rdy-count=44".to_owned(),
            ]
            .map(OsString::from),
            nsqd_config_key_to_flag,
        )
        .unwrap();
        let options = Options::try_parse_from(args).unwrap();
        assert_eq!(options.tcp_address, "127.0.0.1:4150");
        assert_eq!(options.max_rdy_count, 44);
        assert_eq!(options.msg_timeout, Duration::from_secs(7));
        assert_eq!(options.node_id, Some(12));
    }
}
