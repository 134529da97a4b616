//! Command-line flags and the `--config` file, resolved into [`Options`].
//!
//! Flags are upstream's names. Go's flag syntax also works: `-http-address 127.0.0.1:4171` (one
//! dash, see [`go_style_args`]), `--flag=value`, `--flag value`; boolean flags
//! (`--proxy-graphite`, `--http-client-tls-insecure-skip-verify`) take no value or `=<bool>`. The
//! address flags and `--admin-user` repeat. A value given on the command line beats the config file, which beats the
//! default. Config keys are the flag names with `_`, except the lists: `nsqlookupd_http_addresses`,
//! `nsqd_http_addresses`, `admin_users`. Durations use Go syntax (`2s`, `1m0s`, `250ms`); a bare
//! number in the config file is milliseconds.

use crate::error::Error;
use clap::{ArgAction, Parser};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// Resolved settings of one nsqadmin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `--log-level`.
    pub log_level: LogLevel,
    /// `--log-prefix`, printed at the start of every log line.
    pub log_prefix: String,
    /// `--http-address`: where the page and its API listen (port 0 picks a free port).
    pub http_address: String,
    /// `--base-path`, normalised: starts with `/`, no trailing `/` unless it is `/`.
    pub base_path: String,
    /// `--lookupd-http-address` (repeatable): lookupd mode.
    pub lookupd_http_addresses: Vec<String>,
    /// `--nsqd-http-address` (repeatable): direct-nsqd mode.
    pub nsqd_http_addresses: Vec<String>,
    /// `--graphite-url`: graphite-web's base URL; enables the page's graphs and `/api/graphite`
    /// ("" = no graphite).
    pub graphite_url: String,
    /// `--proxy-graphite`: serve `<base>/render` as a reverse proxy to `--graphite-url`, so the
    /// browser only talks to nsqadmin.
    pub proxy_graphite: bool,
    /// `--statsd-prefix`: nsqd's statsd key prefix (`%s` = host key), for graphite target names.
    pub statsd_prefix: String,
    /// `--statsd-counter-format`: how the statsd server names counters in graphite (`%s` = the
    /// key; "" = no wrapping).
    pub statsd_counter_format: String,
    /// `--statsd-gauge-format`: how the statsd server names gauges in graphite.
    pub statsd_gauge_format: String,
    /// `--statsd-interval`: nsqd's statsd push interval, used for graphite rate maths.
    pub statsd_interval: Duration,
    /// `--notification-http-endpoint`: receives a JSON POST per admin action ("" = none).
    pub notification_http_endpoint: String,
    /// `--http-client-connect-timeout` for calls to lookupd and nsqd.
    pub http_client_connect_timeout: Duration,
    /// `--http-client-request-timeout` for calls to lookupd and nsqd.
    pub http_client_request_timeout: Duration,
    /// `--http-client-tls-insecure-skip-verify`: accept any server certificate on HTTPS calls to
    /// lookupd, nsqd and graphite.
    pub http_client_tls_insecure_skip_verify: bool,
    /// `--http-client-tls-root-ca-file`: PEM bundle of the CAs trusted for those calls (replaces
    /// the built-in roots; "" = built-in roots).
    pub http_client_tls_root_ca_file: String,
    /// `--http-client-tls-cert`: PEM client certificate presented on those calls (with the key).
    pub http_client_tls_cert: String,
    /// `--http-client-tls-key`: PEM private key of `--http-client-tls-cert`.
    pub http_client_tls_key: String,
    /// `--allow-config-from-cidr`: who may use `/config/*` ("" = anyone).
    pub allow_config_from_cidr: String,
    /// `--acl-http-header`: the request header naming the authenticated user.
    pub acl_http_header: String,
    /// `--admin-user` (repeatable): if any, only these users may perform actions.
    pub admin_users: Vec<String>,
    /// `--dev-static-dir`: serve the page's assets from this directory instead of the binary.
    pub dev_static_dir: Option<PathBuf>,
}

impl Default for Options {
    /// Upstream's defaults (no discovery source: one must be given).
    fn default() -> Self {
        Self {
            log_level: LogLevel::Info,
            log_prefix: "[nsqadmin] ".to_owned(),
            http_address: "0.0.0.0:4171".to_owned(),
            base_path: "/".to_owned(),
            lookupd_http_addresses: Vec::new(),
            nsqd_http_addresses: Vec::new(),
            graphite_url: String::new(),
            proxy_graphite: false,
            statsd_prefix: "nsq.%s".to_owned(),
            statsd_counter_format: "stats.counters.%s.count".to_owned(),
            statsd_gauge_format: "stats.gauges.%s".to_owned(),
            statsd_interval: Duration::from_secs(60),
            notification_http_endpoint: String::new(),
            http_client_connect_timeout: Duration::from_secs(2),
            http_client_request_timeout: Duration::from_secs(5),
            http_client_tls_insecure_skip_verify: false,
            http_client_tls_root_ca_file: String::new(),
            http_client_tls_cert: String::new(),
            http_client_tls_key: String::new(),
            allow_config_from_cidr: "127.0.0.1/8".to_owned(),
            acl_http_header: "X-Forwarded-User".to_owned(),
            admin_users: Vec::new(),
            dev_static_dir: None,
        }
    }
}

impl Options {
    /// Upstream's start-up checks that need no I/O: exactly one discovery source,
    /// `--http-client-tls-cert` and `--http-client-tls-key` together, a parsable
    /// `--allow-config-from-cidr`, and a parsable `--graphite-url` when `--proxy-graphite`.
    pub fn validate(&self) -> Result<(), Error> {
        match (
            self.lookupd_http_addresses.is_empty(),
            self.nsqd_http_addresses.is_empty(),
        ) {
            (true, true) => {
                return Err(Error::Startup(
                    "--nsqd-http-address or --lookupd-http-address required".to_owned(),
                ));
            }
            (false, false) => {
                return Err(Error::Startup(
                    "use --nsqd-http-address or --lookupd-http-address not both".to_owned(),
                ));
            }
            _ => {}
        }
        if !self.http_client_tls_cert.is_empty() && self.http_client_tls_key.is_empty() {
            return Err(Error::Startup(
                "--http-client-tls-key must be specified with --http-client-tls-cert".to_owned(),
            ));
        }
        if !self.http_client_tls_key.is_empty() && self.http_client_tls_cert.is_empty() {
            return Err(Error::Startup(
                "--http-client-tls-cert must be specified with --http-client-tls-key".to_owned(),
            ));
        }
        if self.proxy_graphite {
            // Go's url.Parse accepts a relative reference (upstream then starts and every
            // proxied request fails); anything it would reject stops start-up here too.
            if let Err(err) = reqwest::Url::parse(&self.graphite_url) {
                let relative = reqwest::Url::parse("http://relative.invalid/")
                    .and_then(|base| base.join(&self.graphite_url));
                if relative.is_err() {
                    return Err(Error::Startup(format!(
                        "failed to parse --graphite-url ({}) - {err}",
                        self.graphite_url
                    )));
                }
            }
        }
        if !self.allow_config_from_cidr.is_empty() {
            crate::api::Cidr::from_str(&self.allow_config_from_cidr).map_err(|reason| {
                Error::Startup(format!(
                    "failed to parse --allow-config-from-cidr ({}) - {reason}",
                    self.allow_config_from_cidr
                ))
            })?;
        }
        Ok(())
    }

    /// Whether nsqadmin discovers the cluster through lookupds (else it talks to the given nsqds).
    pub fn lookupd_mode(&self) -> bool {
        !self.lookupd_http_addresses.is_empty()
    }
}

/// Upstream's log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `debug`.
    Debug,
    /// `info` (default).
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
    /// `fatal`: only fatal start-up errors.
    Fatal,
}

impl LogLevel {
    /// The number upstream reports in `GET /config/log_level` (debug = 1 … fatal = 5).
    pub fn number(self) -> u8 {
        match self {
            Self::Debug => 1,
            Self::Info => 2,
            Self::Warn => 3,
            Self::Error => 4,
            Self::Fatal => 5,
        }
    }
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "debug" => Ok(Self::Debug),
            "info" => Ok(Self::Info),
            "warn" => Ok(Self::Warn),
            "error" => Ok(Self::Error),
            "fatal" => Ok(Self::Fatal),
            _ => Err(format!("invalid log-level '{text}'")),
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Fatal => "fatal",
        })
    }
}

/// The command line. Every value is optional so that the config file can fill the gaps.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "nsqadmin",
    about = "nsqadmin: the NSQ admin web page",
    disable_version_flag = true,
    args_override_self = true
)]
pub struct Cli {
    /// Path to a TOML config file (keys are flag names with '_').
    #[arg(long, value_name = "FILE", allow_hyphen_values = true)]
    pub config: Option<PathBuf>,

    /// Print version string and exit.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub version: Option<bool>,

    /// Deprecated; has no effect.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub verbose: Option<bool>,

    /// Log level: debug, info, warn, error or fatal [default: info].
    #[arg(long, value_parser = LogLevel::from_str)]
    pub log_level: Option<LogLevel>,

    /// Log message prefix.
    #[arg(
        long,
        allow_hyphen_values = true,
        help = "Log message prefix [default: \"[nsqadmin] \"]"
    )]
    pub log_prefix: Option<String>,

    /// Address to listen on for HTTP clients.
    #[arg(
        long,
        allow_hyphen_values = true,
        help = "<addr>:<port> to listen on for HTTP clients [default: 0.0.0.0:4171]"
    )]
    pub http_address: Option<String>,

    /// URL base path [default: /].
    #[arg(long, allow_hyphen_values = true)]
    pub base_path: Option<String>,

    /// lookupd HTTP address (may be given multiple times).
    #[arg(long = "lookupd-http-address", action = ArgAction::Append, allow_hyphen_values = true)]
    pub lookupd_http_addresses: Vec<String>,

    /// nsqd HTTP address (may be given multiple times).
    #[arg(long = "nsqd-http-address", action = ArgAction::Append, allow_hyphen_values = true)]
    pub nsqd_http_addresses: Vec<String>,

    /// graphite HTTP address (enables the page's graphs and /api/graphite).
    #[arg(long, allow_hyphen_values = true)]
    pub graphite_url: Option<String>,

    /// Proxy HTTP requests to graphite (the page then loads graphs from <base>/render).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub proxy_graphite: Option<bool>,

    /// Prefix used for keys sent to statsd (%s for host replacement, must match nsqd).
    #[arg(
        long,
        allow_hyphen_values = true,
        help = "Prefix used for keys sent to statsd (%s for host replacement, must match nsqd) [default: nsq.%s]"
    )]
    pub statsd_prefix: Option<String>,

    /// The counter stats key formatting applied by the statsd server ("" = none).
    #[arg(
        long,
        allow_hyphen_values = true,
        help = "The counter stats key formatting applied by the implementation of statsd; \"\" for none [default: stats.counters.%s.count]"
    )]
    pub statsd_counter_format: Option<String>,

    /// The gauge stats key formatting applied by the statsd server ("" = none).
    #[arg(
        long,
        allow_hyphen_values = true,
        help = "The gauge stats key formatting applied by the implementation of statsd; \"\" for none [default: stats.gauges.%s]"
    )]
    pub statsd_gauge_format: Option<String>,

    /// Time interval nsqd is configured to push to statsd (must match nsqd) [default: 1m0s].
    #[arg(long, value_parser = parse_go_duration_arg)]
    pub statsd_interval: Option<Duration>,

    /// HTTP endpoint (fully qualified) to which POST notifications of admin actions will be sent.
    #[arg(long, allow_hyphen_values = true)]
    pub notification_http_endpoint: Option<String>,

    /// Timeout for HTTP connect [default: 2s].
    #[arg(long, value_parser = parse_go_duration_arg)]
    pub http_client_connect_timeout: Option<Duration>,

    /// Timeout for HTTP request [default: 5s].
    #[arg(long, value_parser = parse_go_duration_arg)]
    pub http_client_request_timeout: Option<Duration>,

    /// Configure the HTTP client to skip verification of TLS certificates.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = parse_go_bool)]
    pub http_client_tls_insecure_skip_verify: Option<bool>,

    /// Path to CA file for the HTTP client.
    #[arg(long, allow_hyphen_values = true)]
    pub http_client_tls_root_ca_file: Option<String>,

    /// Path to certificate file for the HTTP client.
    #[arg(long, allow_hyphen_values = true)]
    pub http_client_tls_cert: Option<String>,

    /// Path to key file for the HTTP client.
    #[arg(long, allow_hyphen_values = true)]
    pub http_client_tls_key: Option<String>,

    /// A CIDR from which to allow HTTP requests to the /config endpoint [default: 127.0.0.1/8].
    #[arg(long, allow_hyphen_values = true)]
    pub allow_config_from_cidr: Option<String>,

    /// HTTP header to check for authenticated admin users [default: X-Forwarded-User].
    #[arg(long, allow_hyphen_values = true)]
    pub acl_http_header: Option<String>,

    /// Admin user (may be given multiple times; if none, everyone is an admin).
    #[arg(long = "admin-user", action = ArgAction::Append, allow_hyphen_values = true)]
    pub admin_users: Vec<String>,

    /// Path to a directory holding the page's assets (development: edit without rebuilding).
    #[arg(long, allow_hyphen_values = true)]
    pub dev_static_dir: Option<PathBuf>,
}

impl Cli {
    /// Parses Go-style or clap-style arguments (the first one is the program name). Clap errors
    /// (unknown flag, bad value, `--help`) are returned for the caller to print and exit with.
    pub fn parse_go_style<I>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = OsString>,
    {
        Self::try_parse_from(go_style_args(args))
    }

    /// Whether `--version` was given (and not `--version=false`).
    pub fn wants_version(&self) -> bool {
        self.version.unwrap_or(false)
    }

    /// Merges the command line, the config file (if `--config`) and the defaults.
    pub fn into_options(self) -> Result<Options, Error> {
        let config = match &self.config {
            Some(path) => Some(ConfigFile::load(path)?),
            None => None,
        };
        let defaults = Options::default();
        let config = config.as_ref();
        let list = |flag: Vec<String>, key: &str| -> Result<Vec<String>, Error> {
            let flag = (!flag.is_empty()).then_some(flag);
            Ok(pick(flag, config, key, config_string_list)?.unwrap_or_default())
        };
        let base_path =
            pick(self.base_path, config, "base_path", config_string)?.unwrap_or(defaults.base_path);
        Ok(Options {
            log_level: pick(self.log_level, config, "log_level", |value| {
                config_string(value)?.parse::<LogLevel>()
            })?
            .unwrap_or(defaults.log_level),
            log_prefix: pick(self.log_prefix, config, "log_prefix", config_string)?
                .unwrap_or(defaults.log_prefix),
            http_address: pick(self.http_address, config, "http_address", config_string)?
                .unwrap_or(defaults.http_address),
            base_path: normalize_base_path(&base_path),
            lookupd_http_addresses: list(self.lookupd_http_addresses, "nsqlookupd_http_addresses")?,
            nsqd_http_addresses: list(self.nsqd_http_addresses, "nsqd_http_addresses")?,
            graphite_url: pick(self.graphite_url, config, "graphite_url", config_string)?
                .unwrap_or(defaults.graphite_url),
            proxy_graphite: pick(self.proxy_graphite, config, "proxy_graphite", config_bool)?
                .unwrap_or(defaults.proxy_graphite),
            statsd_prefix: pick(self.statsd_prefix, config, "statsd_prefix", config_string)?
                .unwrap_or(defaults.statsd_prefix),
            statsd_counter_format: pick(
                self.statsd_counter_format,
                config,
                "statsd_counter_format",
                config_string,
            )?
            .unwrap_or(defaults.statsd_counter_format),
            statsd_gauge_format: pick(
                self.statsd_gauge_format,
                config,
                "statsd_gauge_format",
                config_string,
            )?
            .unwrap_or(defaults.statsd_gauge_format),
            statsd_interval: pick(
                self.statsd_interval,
                config,
                "statsd_interval",
                config_duration,
            )?
            .unwrap_or(defaults.statsd_interval),
            notification_http_endpoint: pick(
                self.notification_http_endpoint,
                config,
                "notification_http_endpoint",
                config_string,
            )?
            .unwrap_or(defaults.notification_http_endpoint),
            http_client_connect_timeout: pick(
                self.http_client_connect_timeout,
                config,
                "http_client_connect_timeout",
                config_duration,
            )?
            .unwrap_or(defaults.http_client_connect_timeout),
            http_client_request_timeout: pick(
                self.http_client_request_timeout,
                config,
                "http_client_request_timeout",
                config_duration,
            )?
            .unwrap_or(defaults.http_client_request_timeout),
            http_client_tls_insecure_skip_verify: pick(
                self.http_client_tls_insecure_skip_verify,
                config,
                "http_client_tls_insecure_skip_verify",
                config_bool,
            )?
            .unwrap_or(defaults.http_client_tls_insecure_skip_verify),
            http_client_tls_root_ca_file: pick(
                self.http_client_tls_root_ca_file,
                config,
                "http_client_tls_root_ca_file",
                config_string,
            )?
            .unwrap_or(defaults.http_client_tls_root_ca_file),
            http_client_tls_cert: pick(
                self.http_client_tls_cert,
                config,
                "http_client_tls_cert",
                config_string,
            )?
            .unwrap_or(defaults.http_client_tls_cert),
            http_client_tls_key: pick(
                self.http_client_tls_key,
                config,
                "http_client_tls_key",
                config_string,
            )?
            .unwrap_or(defaults.http_client_tls_key),
            allow_config_from_cidr: pick(
                self.allow_config_from_cidr,
                config,
                "allow_config_from_cidr",
                config_string,
            )?
            .unwrap_or(defaults.allow_config_from_cidr),
            acl_http_header: pick(
                self.acl_http_header,
                config,
                "acl_http_header",
                config_string,
            )?
            .unwrap_or(defaults.acl_http_header),
            admin_users: list(self.admin_users, "admin_users")?,
            dev_static_dir: pick(self.dev_static_dir, config, "dev_static_dir", |value| {
                config_string(value).map(PathBuf::from)
            })?
            .filter(|path| !path.as_os_str().is_empty()),
        })
    }
}

/// Upstream's normalisation: a leading `/`, then `path.Clean` (no trailing `/`, no `//`, `.`
/// or `..` segments).
pub fn normalize_base_path(raw: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in raw.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    format!("/{}", segments.join("/"))
}

/// The flags that take a value, so the next argument is never rewritten.
const VALUE_FLAGS: [&str; 22] = [
    "config",
    "log-level",
    "log-prefix",
    "http-address",
    "base-path",
    "lookupd-http-address",
    "nsqd-http-address",
    "graphite-url",
    "statsd-prefix",
    "statsd-counter-format",
    "statsd-gauge-format",
    "statsd-interval",
    "notification-http-endpoint",
    "http-client-connect-timeout",
    "http-client-request-timeout",
    "http-client-tls-root-ca-file",
    "http-client-tls-cert",
    "http-client-tls-key",
    "allow-config-from-cidr",
    "acl-http-header",
    "admin-user",
    "dev-static-dir",
];

/// Rewrites Go's single-dash long flags (`-http-address`, `-help`) to `--…` so clap accepts them.
/// Values of flags that take one are left alone (`-log-prefix -x-`), as is everything after `--`.
pub fn go_style_args<I>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = OsString>,
{
    let mut args = args.into_iter();
    let mut rewritten: Vec<OsString> = args.next().into_iter().collect();
    let mut next_is_value = false;
    while let Some(arg) = args.next() {
        if std::mem::take(&mut next_is_value) {
            rewritten.push(arg);
            continue;
        }
        let Some(text) = arg.to_str() else {
            rewritten.push(arg);
            continue;
        };
        if text == "--" {
            rewritten.push(arg);
            rewritten.extend(args);
            break;
        }
        let long = if text.len() > 2 && text.starts_with('-') && !text.starts_with("--") {
            format!("-{text}")
        } else {
            text.to_owned()
        };
        if let Some(name) = long.strip_prefix("--") {
            next_is_value = !name.contains('=') && VALUE_FLAGS.contains(&name);
        }
        rewritten.push(long.into());
    }
    rewritten
}

/// Parses a Go duration (`time.ParseDuration`): an optional sign, then one or more decimal
/// numbers with a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), e.g. `1m0s`, `1.5h`, `-2s`; `0`
/// needs no unit. Returns nanoseconds.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration \"{text}\"");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let integer_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (integer, after) = rest.split_at(integer_len);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let fraction_len = after.bytes().take_while(u8::is_ascii_digit).count();
                after.split_at(fraction_len)
            }
            None => ("", after),
        };
        if integer.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_len = after
            .bytes()
            .take_while(|byte| *byte != b'.' && !byte.is_ascii_digit())
            .count();
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "" => return Err(format!("time: missing unit in duration \"{text}\"")),
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit \"{unit}\" in duration \"{text}\""
                ));
            }
        };
        let whole: u128 = if integer.is_empty() {
            0
        } else {
            integer.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(unit_nanos).ok_or_else(invalid)?;
        if !fraction.is_empty() {
            // Go keeps at most the digits that fit and scales in floating point.
            let digits = &fraction[..fraction.len().min(18)];
            let numerator: f64 = digits.parse::<u64>().map_err(|_| invalid())? as f64;
            let scale = 10f64.powi(digits.len() as i32);
            value += (numerator * (unit_nanos as f64 / scale)) as u128;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        if total > 1 << 63 {
            return Err(invalid());
        }
        rest = after;
    }
    if negative {
        return Ok(-(total as i128) as i64);
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// [`parse_go_duration`] for a flag: a negative duration behaves like zero here.
fn parse_go_duration_arg(text: &str) -> Result<Duration, String> {
    parse_go_duration(text).map(|nanos| Duration::from_nanos(nanos.max(0) as u64))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("parse error: invalid boolean value {text:?}")),
    }
}

/// A parsed `--config` file.
#[derive(Debug)]
struct ConfigFile {
    path: PathBuf,
    table: toml::Table,
}

impl ConfigFile {
    fn load(path: &Path) -> Result<Self, Error> {
        let failed = |reason: String| Error::Config {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|err| failed(err.to_string()))?;
        let table = toml::from_str(&text).map_err(|err| failed(err.to_string()))?;
        Ok(Self {
            path: path.to_owned(),
            table,
        })
    }
}

/// The command-line value if given, else the config value (converted), else `None`.
fn pick<T>(
    flag: Option<T>,
    config: Option<&ConfigFile>,
    key: &str,
    convert: impl Fn(&toml::Value) -> Result<T, String>,
) -> Result<Option<T>, Error> {
    if flag.is_some() {
        return Ok(flag);
    }
    let Some((config, value)) = config.and_then(|config| Some((config, config.table.get(key)?)))
    else {
        return Ok(None);
    };
    convert(value).map(Some).map_err(|reason| Error::Config {
        path: config.path.clone(),
        reason: format!("{key}: {reason}"),
    })
}

/// Go's options loader turns any scalar into its text form for a string option.
fn config_string(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(number) => Ok(number.to_string()),
        toml::Value::Float(number) => Ok(number.to_string()),
        toml::Value::Boolean(flag) => Ok(flag.to_string()),
        other => Err(format!("expected a string, got {}", other.type_str())),
    }
}

/// An array of strings (a single string is a one-element list).
fn config_string_list(value: &toml::Value) -> Result<Vec<String>, String> {
    match value {
        toml::Value::Array(items) => items.iter().map(config_string).collect(),
        other => config_string(other).map(|text| vec![text]),
    }
}

/// A boolean: TOML `true`/`false`, a string Go's `strconv.ParseBool` accepts, or a number
/// (non-zero = true), as Go's options loader coerces them.
fn config_bool(value: &toml::Value) -> Result<bool, String> {
    match value {
        toml::Value::Boolean(flag) => Ok(*flag),
        toml::Value::String(text) => parse_go_bool(text),
        toml::Value::Integer(number) => Ok(*number != 0),
        other => Err(format!("expected a boolean, got {}", other.type_str())),
    }
}

/// A Go duration string, or an integer number of milliseconds.
fn config_duration(value: &toml::Value) -> Result<Duration, String> {
    match value {
        toml::Value::String(text) => parse_go_duration_arg(text),
        toml::Value::Integer(millis) => Ok(Duration::from_millis((*millis).max(0) as u64)),
        other => Err(format!("expected a duration, got {}", other.type_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("nsqadmin")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn parse(list: &[&str]) -> Result<Options, String> {
        Cli::parse_go_style(args(list))
            .map_err(|err| err.to_string())?
            .into_options()
            .map_err(|err| err.to_string())
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("2s"), Ok(2_000_000_000));
        assert_eq!(parse_go_duration("1m0s"), Ok(60_000_000_000));
        assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("250ms"), Ok(250_000_000));
        assert!(parse_go_duration("5").is_err());
        assert!(parse_go_duration("1d").is_err());
        assert_eq!(parse_go_duration_arg("-5s"), Ok(Duration::ZERO));
    }

    #[test]
    fn defaults_and_flags() {
        let defaults = parse(&[]).unwrap();
        assert_eq!(defaults, Options::default());
        assert_eq!(defaults.http_address, "0.0.0.0:4171");
        assert_eq!(defaults.acl_http_header, "X-Forwarded-User");
        assert_eq!(defaults.http_client_connect_timeout, Duration::from_secs(2));
        assert_eq!(defaults.http_client_request_timeout, Duration::from_secs(5));

        let options = parse(&[
            "-http-address",
            "127.0.0.1:0",
            "-lookupd-http-address=127.0.0.1:4161",
            "--lookupd-http-address",
            "127.0.0.1:5161",
            "-admin-user",
            "alice",
            "--admin-user=bob",
            "-acl-http-header",
            "X-User",
            "-notification-http-endpoint=http://127.0.0.1:9/x",
            "-base-path",
            "admin//ui/",
            "-http-client-connect-timeout=250ms",
            "-http-client-request-timeout",
            "1s",
            "-log-level=debug",
            "-verbose",
        ])
        .unwrap();
        assert_eq!(options.http_address, "127.0.0.1:0");
        assert_eq!(
            options.lookupd_http_addresses,
            ["127.0.0.1:4161", "127.0.0.1:5161"]
        );
        assert_eq!(options.admin_users, ["alice", "bob"]);
        assert_eq!(options.acl_http_header, "X-User");
        assert_eq!(options.notification_http_endpoint, "http://127.0.0.1:9/x");
        assert_eq!(options.base_path, "/admin/ui");
        assert_eq!(
            options.http_client_connect_timeout,
            Duration::from_millis(250)
        );
        assert_eq!(options.http_client_request_timeout, Duration::from_secs(1));
        assert_eq!(options.log_level, LogLevel::Debug);

        for bad in [
            &["--bogus"][..],
            &["--http-client-connect-timeout", "2"],
            &["--log-level", "loud"],
            &["positional"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(
            Cli::parse_go_style(args(&["-version"]))
                .unwrap()
                .wants_version()
        );
    }

    #[test]
    fn graphite_statsd_and_tls_flags() {
        let defaults = parse(&[]).unwrap();
        assert!(!defaults.proxy_graphite);
        assert_eq!(defaults.statsd_prefix, "nsq.%s");
        assert_eq!(defaults.statsd_counter_format, "stats.counters.%s.count");
        assert_eq!(defaults.statsd_gauge_format, "stats.gauges.%s");
        assert!(!defaults.http_client_tls_insecure_skip_verify);
        assert_eq!(defaults.http_client_tls_root_ca_file, "");
        assert_eq!(defaults.http_client_tls_cert, "");
        assert_eq!(defaults.http_client_tls_key, "");

        // Go style (one dash, separate values) and clap style, bools with and without a value.
        let options = parse(&[
            "-graphite-url",
            "http://graphite.local:8080",
            "-proxy-graphite",
            "-statsd-prefix",
            "-prod.nsq.%s",
            "--statsd-counter-format=%s",
            "-statsd-gauge-format",
            "",
            "-statsd-interval=10s",
            "-http-client-tls-insecure-skip-verify=true",
            "-http-client-tls-root-ca-file",
            "/etc/nsq/ca.pem",
            "--http-client-tls-cert",
            "/etc/nsq/client.pem",
            "-http-client-tls-key=/etc/nsq/client.key",
        ])
        .unwrap();
        assert_eq!(options.graphite_url, "http://graphite.local:8080");
        assert!(options.proxy_graphite);
        assert_eq!(options.statsd_prefix, "-prod.nsq.%s");
        assert_eq!(options.statsd_counter_format, "%s");
        assert_eq!(options.statsd_gauge_format, "");
        assert_eq!(options.statsd_interval, Duration::from_secs(10));
        assert!(options.http_client_tls_insecure_skip_verify);
        assert_eq!(options.http_client_tls_root_ca_file, "/etc/nsq/ca.pem");
        assert_eq!(options.http_client_tls_cert, "/etc/nsq/client.pem");
        assert_eq!(options.http_client_tls_key, "/etc/nsq/client.key");

        let off = parse(&[
            "--proxy-graphite=false",
            "--http-client-tls-insecure-skip-verify=0",
        ])
        .unwrap();
        assert!(!off.proxy_graphite);
        assert!(!off.http_client_tls_insecure_skip_verify);
        for bad in [
            &["--proxy-graphite=maybe"][..],
            &["--http-client-tls-insecure-skip-verify=yes"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn graphite_statsd_and_tls_config_keys() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            r#"
nsqd_http_addresses = ["127.0.0.1:4151"]
graphite_url = "http://graphite.local"
proxy_graphite = true
statsd_prefix = "prod.%s"
statsd_counter_format = "stats_counts.%s"
statsd_gauge_format = ""
statsd_interval = "30s"
http_client_tls_insecure_skip_verify = true
http_client_tls_root_ca_file = "/ca.pem"
http_client_tls_cert = "/client.pem"
http_client_tls_key = "/client.key"
"#
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let options = parse(&["--config", path]).unwrap();
        assert_eq!(options.graphite_url, "http://graphite.local");
        assert!(options.proxy_graphite);
        assert_eq!(options.statsd_prefix, "prod.%s");
        assert_eq!(options.statsd_counter_format, "stats_counts.%s");
        assert_eq!(options.statsd_gauge_format, "");
        assert_eq!(options.statsd_interval, Duration::from_secs(30));
        assert!(options.http_client_tls_insecure_skip_verify);
        assert_eq!(options.http_client_tls_root_ca_file, "/ca.pem");
        assert_eq!(options.http_client_tls_cert, "/client.pem");
        assert_eq!(options.http_client_tls_key, "/client.key");
        options.validate().unwrap();

        // The command line beats the file.
        let flagged = parse(&[
            "--config",
            path,
            "--proxy-graphite=false",
            "--statsd-prefix=other.%s",
            "--http-client-tls-insecure-skip-verify=false",
        ])
        .unwrap();
        assert!(!flagged.proxy_graphite);
        assert_eq!(flagged.statsd_prefix, "other.%s");
        assert!(!flagged.http_client_tls_insecure_skip_verify);

        // Booleans as Go's options loader takes them; anything else is an error.
        for (text, expected) in [("\"true\"", true), ("\"0\"", false), ("1", true)] {
            let mut file = tempfile::NamedTempFile::new().unwrap();
            writeln!(file, "proxy_graphite = {text}").unwrap();
            let options = parse(&["--config", file.path().to_str().unwrap()]).unwrap();
            assert_eq!(options.proxy_graphite, expected, "{text}");
        }
        let mut bad = tempfile::NamedTempFile::new().unwrap();
        writeln!(bad, "proxy_graphite = [1]").unwrap();
        let err = parse(&["--config", bad.path().to_str().unwrap()]).unwrap_err();
        assert!(err.contains("proxy_graphite"), "{err}");
    }

    #[test]
    fn tls_pair_and_proxied_graphite_url_are_checked() {
        let base = || Options {
            nsqd_http_addresses: vec!["127.0.0.1:4151".to_owned()],
            ..Options::default()
        };
        let cert_only = Options {
            http_client_tls_cert: "/client.pem".to_owned(),
            ..base()
        };
        assert_eq!(
            cert_only.validate().unwrap_err().to_string(),
            "--http-client-tls-key must be specified with --http-client-tls-cert"
        );
        let key_only = Options {
            http_client_tls_key: "/client.key".to_owned(),
            ..base()
        };
        assert_eq!(
            key_only.validate().unwrap_err().to_string(),
            "--http-client-tls-cert must be specified with --http-client-tls-key"
        );
        let bad_url = Options {
            graphite_url: "http://graphite:notaport".to_owned(),
            proxy_graphite: true,
            ..base()
        };
        assert!(
            bad_url
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("failed to parse --graphite-url (http://graphite:notaport) - "),
        );
        // Only checked when proxying, as upstream; a relative URL parses in Go too.
        Options {
            proxy_graphite: false,
            ..bad_url
        }
        .validate()
        .unwrap();
        Options {
            graphite_url: "graphite.local/x".to_owned(),
            proxy_graphite: true,
            ..base()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn exactly_one_discovery_source() {
        let neither = Options::default().validate().unwrap_err().to_string();
        assert_eq!(
            neither,
            "--nsqd-http-address or --lookupd-http-address required"
        );
        let both = Options {
            lookupd_http_addresses: vec!["127.0.0.1:4161".to_owned()],
            nsqd_http_addresses: vec!["127.0.0.1:4151".to_owned()],
            ..Options::default()
        };
        assert_eq!(
            both.validate().unwrap_err().to_string(),
            "use --nsqd-http-address or --lookupd-http-address not both"
        );
        let bad_cidr = Options {
            nsqd_http_addresses: vec!["127.0.0.1:4151".to_owned()],
            allow_config_from_cidr: "nope".to_owned(),
            ..Options::default()
        };
        assert!(bad_cidr.validate().is_err());
    }

    #[test]
    fn base_path_is_cleaned() {
        for (raw, clean) in [
            ("/", "/"),
            ("", "/"),
            ("admin", "/admin"),
            ("/admin/", "/admin"),
            ("//a/./b/../c", "/a/c"),
        ] {
            assert_eq!(normalize_base_path(raw), clean, "{raw:?}");
        }
    }

    #[test]
    fn config_file_lists_and_flags_win() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            r#"
http_address = "127.0.0.1:4999"
nsqlookupd_http_addresses = ["127.0.0.1:4161", "127.0.0.1:4162"]
admin_users = ["carol"]
http_client_request_timeout = 1500
unknown_key = 3
"#
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let options = parse(&["--config", path, "--http-address=127.0.0.1:0"]).unwrap();
        assert_eq!(options.http_address, "127.0.0.1:0");
        assert_eq!(
            options.lookupd_http_addresses,
            ["127.0.0.1:4161", "127.0.0.1:4162"]
        );
        assert_eq!(options.admin_users, ["carol"]);
        assert_eq!(
            options.http_client_request_timeout,
            Duration::from_millis(1500)
        );
        let flagged = parse(&["--config", path, "--admin-user", "dave"]).unwrap();
        assert_eq!(flagged.admin_users, ["dave"]);
    }
}
